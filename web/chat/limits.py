"""Wrong status look-ups (case number + access code) counted per IP address and per chat cookie.

More than `limit` wrong pairs within `window` from the same IP or the same cookie, and the status page
answers "too many tries" until the oldest of them is older than the window. The counts are kept in the
same FSM storage as the chat drafts (the database by default), so they survive a restart and are shared
by every web process; each change holds the storage key's event lock.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta

from aiogram.fsm.storage.base import BaseEventIsolation, BaseStorage, StorageKey

from intake.clock import Clock


class FailureLimiter:
    def __init__(self, storage: BaseStorage, isolation: BaseEventIsolation, clock: Clock, *,
                 limit: int = 10, window: timedelta = timedelta(minutes=10)) -> None:
        self._storage = storage
        self._isolation = isolation
        self._clock = clock
        self.limit = limit
        self.window = window

    async def blocked(self, *subjects: str) -> bool:
        """True when any of the subjects (e.g. "ip:1.2.3.4", "chat:<hash>") used up its tries."""
        for subject in subjects:
            if len(await self._recent(_key(subject))) >= self.limit:
                return True
        return False

    async def failed(self, *subjects: str) -> int:
        """Count one wrong try for each subject; the highest count in the window is returned."""
        now = self._clock.now().timestamp()
        highest = 0
        for subject in subjects:
            key = _key(subject)
            async with self._isolation.lock(key):
                times = [*await self._recent(key), now][-(self.limit * 2):]
                await self._storage.set_data(key, {"failures": times})
            highest = max(highest, len(times))
        return highest

    async def _recent(self, key: StorageKey) -> list[float]:
        since = self._clock.now().timestamp() - self.window.total_seconds()
        data = await self._storage.get_data(key)
        return [t for t in data.get("failures", []) if isinstance(t, (int, float)) and t > since]


def _key(subject: str) -> StorageKey:
    digest = hashlib.sha256(subject.encode()).hexdigest()
    return StorageKey(bot_id=0, chat_id=0, user_id=0, destiny=f"web-status-failures:{digest}")
