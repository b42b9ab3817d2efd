"""Access codes: what a citizen of the web chat (who has no Telegram account to be recognised by) shows
to see the status of a case, together with its number.

A code is 10 random characters from an alphabet without look-alikes (about 49 bits), shown once, at
the end of the chat, in groups of five. Only a hash is kept on the case: argon2id of the code, salted
with the case number (unique), raw 32 bytes as 64 hex characters. Guessing online is stopped by the
rate limit of the status page (limits.py); guessing offline from a stolen database costs one argon2id
evaluation (19 MiB of memory) per try.

The code is made when the chat page first shows the receipt of a new case (web/chat/service.py), so it
exists in clear only in that one response.
"""

from __future__ import annotations

import asyncio
import hmac
import re
import secrets

from argon2.low_level import Type, hash_secret_raw
from sqlalchemy import select

from db.models import Case, CaseEvent
from db.uow import UnitOfWorkFactory
from intake.clock import Clock

ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L
LENGTH = 10
_TIME_COST, _MEMORY_KIB, _PARALLELISM = 2, 19 * 1024, 1  # OWASP's argon2id minimum
_NUMBER = re.compile(r"^[A-Z]{1,6}-\d{4}-\d{6,12}$")


def new_code() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))


def shown(code: str) -> str:
    """ABCDE-FGHJK: easier to copy by hand."""
    return f"{code[:5]}-{code[5:]}"


def normalise_code(text: str) -> str:
    """What a person typed, as stored: upper case, without spaces and dashes."""
    return re.sub(r"[\s\-－—_]", "", text or "").upper()[:40]


def normalise_number(text: str) -> str:
    return re.sub(r"\s", "", text or "").upper().replace("－", "-")[:40]


def code_hash(number: str, code: str) -> str:
    salt = b"qinglang-access-code:" + number.encode()
    raw = hash_secret_raw(normalise_code(code).encode(), salt, time_cost=_TIME_COST, memory_cost=_MEMORY_KIB,
                          parallelism=_PARALLELISM, hash_len=32, type=Type.ID)
    return raw.hex()


class AccessCodes:
    def __init__(self, uow: UnitOfWorkFactory, clock: Clock) -> None:
        self._uow = uow
        self._clock = clock

    async def issue(self, case_id: int) -> str:
        """A new code for the case (replacing any earlier one); the clear code is returned, never stored."""
        code = new_code()
        async with self._uow() as uow:
            case = await uow.session.get(Case, case_id)
            if case is None:
                raise LookupError(f"no case with id {case_id}")
            case.access_code_hash = await asyncio.to_thread(code_hash, case.number, code)
            case.updated_at = self._clock.now()
            uow.session.add(CaseEvent(case_id=case.id, actor_type="complainant", action="access_code_issued",
                                      from_status=case.status, to_status=case.status, note="web chat",
                                      created_at=self._clock.now()))
            await uow.commit()
        return code

    async def find(self, number: str, code: str) -> int | None:
        """The id of the case with this number and code, else None (same work either way)."""
        number, code = normalise_number(number), normalise_code(code)
        stored = None
        case_id = None
        if _NUMBER.match(number) and code:
            async with self._uow() as uow:
                row = (await uow.session.execute(
                    select(Case.id, Case.access_code_hash).where(Case.number == number))).first()
            if row is not None:
                case_id, stored = row
        # always computed: an unknown number answers as slowly as a wrong code
        given = await asyncio.to_thread(code_hash, number, code or "-")
        if stored is None or not hmac.compare_digest(stored, given):
            return None
        return case_id
