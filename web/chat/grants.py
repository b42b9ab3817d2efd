"""The cases a chat cookie may act on from the status page, after a right case number + access code.

A successful look-up grants the cookie that case for `lifetime` (30 minutes); an expired grant is still
remembered (among the latest MAX_CASES) as a case the cookie knows. The status page's own
forms (answer an information request, rate the answer) act on a granted case only, so the access code
is typed once and never written back into a page, and the page can be shown again after a post
(post/redirect/get) with a one-time message ("flash"). Every form carries a one-time id: a double
click or a reload re-posting the same form is done once.

Kept in the chat's FSM storage (the database by default, shared by every web process) under a key of
its own per cookie, each change under that key's event lock.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from aiogram.fsm.storage.base import BaseEventIsolation, BaseStorage, StorageKey

from intake.clock import Clock

MAX_CASES = 5  # cases remembered per cookie, granted now or before (the oldest grant goes first)
MAX_FORMS = 50  # form ids remembered per cookie


class StatusGrants:
    def __init__(self, storage: BaseStorage, isolation: BaseEventIsolation, clock: Clock, *,
                 lifetime: timedelta = timedelta(minutes=30)) -> None:
        self._storage = storage
        self._isolation = isolation
        self._clock = clock
        self.lifetime = lifetime

    async def grant(self, user_id: str, case_id: int, number: str) -> None:
        now = self._now()
        async with self._changing(user_id) as data:
            cases = {n: g for n, g in _cases(data).items() if n != number}
            cases[number] = {"id": int(case_id), "until": now + self.lifetime.total_seconds()}
            data["cases"] = dict(sorted(cases.items(), key=lambda item: item[1]["until"])[-MAX_CASES:])

    async def case_id(self, user_id: str, number: str) -> int | None:
        """The id of the case with this number, if the cookie was granted it and the grant is current."""
        granted = _cases(await self._storage.get_data(_key(user_id))).get(number)
        if granted is None or granted["until"] <= self._now():
            return None
        return int(granted["id"])

    async def knows(self, user_id: str, number: str) -> bool:
        """Whether the cookie was granted the case with this number, now or before (it had the code)."""
        return number in _cases(await self._storage.get_data(_key(user_id)))

    async def first_use(self, user_id: str, form_id: str) -> bool:
        """True the first time a form id is posted; False for a repeat of the same form."""
        async with self._changing(user_id) as data:
            used = [f for f in data.get("forms", []) if isinstance(f, str)]
            if form_id in used:
                return False
            data["forms"] = [*used, form_id][-MAX_FORMS:]
            return True

    async def flash(self, user_id: str, number: str, text: str) -> None:
        async with self._changing(user_id) as data:
            data["flash"] = {"number": number, "text": text}

    async def take_flash(self, user_id: str, number: str) -> str | None:
        """The message left for the next showing of this case's page, once."""
        if not (await self._storage.get_data(_key(user_id))).get("flash"):
            return None
        async with self._changing(user_id) as data:
            flash = data.pop("flash", None) or {}
            if flash.get("number") != number:
                return None
            return str(flash.get("text") or "") or None

    def _now(self) -> float:
        return self._clock.now().timestamp()

    @contextlib.asynccontextmanager
    async def _changing(self, user_id: str) -> AsyncIterator[dict[str, Any]]:
        """The cookie's data to change in place, under its key's lock; written back unless the block fails."""
        key = _key(user_id)
        async with self._isolation.lock(key):
            data = await self._storage.get_data(key)
            yield data
            await self._storage.set_data(key, data)


def _cases(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    cases = data.get("cases")
    if not isinstance(cases, dict):
        return {}
    return {n: g for n, g in cases.items()
            if isinstance(g, dict) and isinstance(g.get("id"), int) and isinstance(g.get("until"), (int, float))}


def _key(user_id: str) -> StorageKey:
    digest = hashlib.sha256(f"status-grants:{user_id}".encode()).hexdigest()
    return StorageKey(bot_id=0, chat_id=0, user_id=0, destiny=f"web-status-grants:{digest}")
