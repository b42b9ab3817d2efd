"""Staff accounts: creation with argon2 password hashes and hashed API tokens."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from enum import StrEnum

from argon2 import PasswordHasher
from sqlalchemy.exc import IntegrityError

from db.models import CaseEvent, StaffUser
from db.uow import UnitOfWorkFactory
from intake.clock import Clock
from qinglang.errors import QinglangError


class Role(StrEnum):
    ADMIN = "admin"  # users, units, rules
    TRIAGE = "triage"  # 消保分局: every case
    HANDLER = "handler"  # own unit's cases
    LEADER = "leader"  # read-only, every case


USERNAME = re.compile(r"^[A-Za-z0-9_.-]{2,64}$")


class AccountError(QinglangError):
    pass


@dataclass(frozen=True)
class CreatedUser:
    id: int
    username: str
    unit_code: str
    role: Role
    password: str  # shown once, never stored
    api_token: str | None


def hash_api_token(token: str) -> str:
    # API tokens are 256-bit random values, so a plain digest is enough to keep them unusable if leaked.
    return hashlib.sha256(token.encode()).hexdigest()


class AccountService:
    def __init__(self, uow: UnitOfWorkFactory, clock: Clock, hasher: PasswordHasher | None = None) -> None:
        self._uow = uow
        self._clock = clock
        self._hasher = hasher or PasswordHasher()

    async def create_user(
        self, username: str, unit: str, role: str, *, display_name: str = "", with_api_token: bool = False
    ) -> CreatedUser:
        if not USERNAME.match(username):
            raise AccountError(f"username {username!r} must be 2-64 letters, digits, '_', '.' or '-'")
        try:
            role_value = Role(role)
        except ValueError:
            raise AccountError(f"unknown role {role!r}; one of: {', '.join(r.value for r in Role)}") from None
        password = secrets.token_urlsafe(12)
        token = secrets.token_urlsafe(32) if with_api_token else None
        async with self._uow() as uow:
            found = await uow.units.by_code(unit) or await uow.units.by_name(unit)
            if found is None or not found.active:
                raise AccountError(f"unknown unit {unit!r}; see `qinglang units list` for codes and names")
            if await uow.users.by_username(username) is not None:
                raise AccountError(f"a user named {username!r} exists already")
            now = self._clock.now()
            user = StaffUser(
                username=username,
                display_name=display_name,
                role=role_value.value,
                unit_id=found.id,
                password_hash=self._hasher.hash(password),
                api_token_hash=hash_api_token(token) if token else None,
                created_at=now,
            )
            uow.session.add(user)
            try:
                await uow.flush()
            except IntegrityError:
                raise AccountError(f"a user named {username!r} exists already") from None
            uow.session.add(CaseEvent(
                case_id=None, actor_type="system", action="user_create", note=username,
                data={"user_id": user.id, "role": role_value.value, "unit": found.code, "api_token": bool(token)},
                created_at=now,
            ))
            await uow.commit()
            return CreatedUser(user.id, username, found.code, role_value, password, token)

    def verify_password(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except Exception:  # argon2 raises several mismatch/invalid-hash errors; all mean "no"
            return False
