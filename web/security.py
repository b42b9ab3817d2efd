"""Staff authentication: console sessions (cookie token, hashed in the database), lockout after
repeated failed logins, CSRF tokens, and API bearer tokens."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, func, or_, select, update

from db.models import CaseEvent, StaffSession, StaffUser, Unit
from db.uow import UnitOfWorkFactory
from intake.clock import Clock
from qinglang.errors import QinglangError
from web.accounts import hash_api_token

MAX_FAILED_LOGINS = 5
LOCKOUT = timedelta(minutes=15)
SESSION_IDLE = timedelta(hours=8)
SESSION_MAX = timedelta(hours=24)
MIN_PASSWORD = 10
WRONG_LOGIN = "用户名或密码错误 (wrong username or password)"
LOCKED_LOGIN = "登录失败次数过多，账号已暂时锁定，请15分钟后再试 (too many failed logins: locked for 15 minutes)"


class AuthError(QinglangError):
    """Login refused; the message is safe to show (it never says whether the user exists)."""


@dataclass(frozen=True)
class Principal:
    """The staff member behind a request."""

    id: int
    username: str
    display_name: str
    role: str
    unit_id: int
    unit_code: str
    unit_name: str
    csrf_token: str | None = None  # console sessions only
    via: str = "session"  # session | token


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Authenticator:
    def __init__(self, uow: UnitOfWorkFactory, clock: Clock, hasher: PasswordHasher | None = None) -> None:
        self._uow = uow
        self._clock = clock
        self._hasher = hasher or PasswordHasher()
        # verifying against a real hash for unknown users keeps the timing the same
        self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(16))

    async def login(self, username: str, password: str) -> tuple[str, Principal]:
        """A new session token and its principal, or AuthError. Failures and lockouts are audited.

        Each try is counted before the password is checked, by one conditional UPDATE: tries sent in
        parallel (which would all read the same count and each add one to it) cannot get past the limit,
        and no more than MAX_FAILED_LOGINS passwords are ever checked before the account locks."""
        now = self._clock.now()
        async with self._uow() as uow:
            user = await uow.users.by_username(username.strip())
            if user is None or not user.active:
                # a name nobody has is "locked" after as many tries as a real one, so the answers never
                # tell an attacker which usernames exist
                self._verify(self._dummy_hash, password)
                recent = await uow.session.scalar(
                    select(func.count()).select_from(CaseEvent)
                    .where(CaseEvent.action == "login_failed", CaseEvent.created_at > now - LOCKOUT,
                           CaseEvent.actor_id.is_(None), CaseEvent.note == username[:64]))
                self._audit(uow, None, "login_failed", now, note=username[:64])
                await uow.commit()
                raise AuthError(LOCKED_LOGIN if recent >= MAX_FAILED_LOGINS else WRONG_LOGIN)
            user_id, password_hash = user.id, user.password_hash
            counted = await uow.session.execute(
                update(StaffUser)
                .where(StaffUser.id == user_id, StaffUser.failed_logins < MAX_FAILED_LOGINS,
                       or_(StaffUser.locked_until.is_(None), StaffUser.locked_until <= now))
                .values(failed_logins=StaffUser.failed_logins + 1, locked_until=None)
                .execution_options(synchronize_session=False))
            if counted.rowcount != 1:  # locked, or its last tries are being checked right now
                self._verify(self._dummy_hash, password)  # the same work as every other answer
                self._audit(uow, user_id, "login_locked", now)
                await uow.commit()
                raise AuthError(LOCKED_LOGIN)
            tries = await uow.session.scalar(select(StaffUser.failed_logins).where(StaffUser.id == user_id))
            await uow.commit()
        if not self._verify(password_hash, password):
            async with self._uow() as uow:
                if tries >= MAX_FAILED_LOGINS:
                    await uow.session.execute(
                        update(StaffUser).where(StaffUser.id == user_id)
                        .values(locked_until=now + LOCKOUT, failed_logins=0)
                        .execution_options(synchronize_session=False))
                    self._audit(uow, user_id, "account_locked", now)
                self._audit(uow, user_id, "login_failed", now)
                await uow.commit()
            raise AuthError(WRONG_LOGIN)
        async with self._uow() as uow:
            user = await uow.session.get(StaffUser, user_id)
            if user is None or not user.active:  # disabled while the password was being checked
                raise AuthError(WRONG_LOGIN)
            user.failed_logins, user.locked_until = 0, None
            if self._hasher.check_needs_rehash(user.password_hash):
                user.password_hash = self._hasher.hash(password)
            token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
            uow.session.add(StaffSession(token_hash=_digest(token), user_id=user.id, csrf_token=csrf, created_at=now,
                                         last_seen_at=now, expires_at=now + SESSION_MAX))
            self._audit(uow, user.id, "login", now)
            unit = await uow.session.get(Unit, user.unit_id)
            await uow.commit()
            return token, _principal(user, unit, csrf=csrf, via="session")

    async def session(self, token: str | None) -> Principal | None:
        """The principal of a live session; idle or expired sessions end."""
        if not token:
            return None
        now = self._clock.now()
        async with self._uow() as uow:
            row = await uow.session.scalar(select(StaffSession).where(StaffSession.token_hash == _digest(token)))
            if row is None:
                return None
            if row.expires_at <= now or row.last_seen_at + SESSION_IDLE <= now:
                await uow.session.delete(row)
                await uow.commit()
                return None
            user = await uow.session.get(StaffUser, row.user_id)
            if user is None or not user.active:
                return None
            unit = await uow.session.get(Unit, user.unit_id)
            if now - row.last_seen_at > timedelta(minutes=1):
                row.last_seen_at = now
                await uow.commit()
            return _principal(user, unit, csrf=row.csrf_token, via="session")

    async def logout(self, token: str | None) -> None:
        if not token:
            return
        async with self._uow() as uow:
            await uow.session.execute(delete(StaffSession).where(StaffSession.token_hash == _digest(token)))
            await uow.commit()

    async def bearer(self, token: str | None) -> Principal | None:
        if not token:
            return None
        async with self._uow() as uow:
            user = await uow.session.scalar(select(StaffUser).where(StaffUser.api_token_hash == hash_api_token(token)))
            if user is None or not user.active:
                return None
            unit = await uow.session.get(Unit, user.unit_id)
            return _principal(user, unit, csrf=None, via="token")

    async def change_password(self, user_id: int, old: str, new: str) -> None:
        if len(new) < MIN_PASSWORD:
            raise AuthError(f"新密码至少 {MIN_PASSWORD} 个字符 (the new password needs at least {MIN_PASSWORD} characters)")
        now = self._clock.now()
        async with self._uow() as uow:
            user = await uow.session.get(StaffUser, user_id)
            if user is None or not self._verify(user.password_hash, old):
                raise AuthError("原密码不正确 (the current password is wrong)")
            user.password_hash = self._hasher.hash(new)
            # every session of this user ends, this one too: whoever changed it logs in again
            await uow.session.execute(delete(StaffSession).where(StaffSession.user_id == user_id))
            self._audit(uow, user_id, "password_change", now)
            await uow.commit()

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    @staticmethod
    def _audit(uow, user_id: int | None, action: str, now: datetime, note: str | None = None) -> None:
        uow.session.add(CaseEvent(case_id=None, actor_type="staff" if user_id else "anonymous", actor_id=user_id,
                                  action=action, note=note, created_at=now))


def csrf_matches(expected: str | None, given: str | None) -> bool:
    return bool(expected) and bool(given) and hmac.compare_digest(expected.encode(), given.encode())


def _principal(user: StaffUser, unit: Unit | None, *, csrf: str | None, via: str) -> Principal:
    return Principal(user.id, user.username, user.display_name, user.role, user.unit_id,
                     unit.code if unit else "", unit.name if unit else "", csrf, via)
