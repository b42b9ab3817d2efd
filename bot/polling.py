"""Long polling that never loses an update: the offset moves past an update only once it is stored.

Telegram forgets updates up to the offset given to the next getUpdates, so each update of a batch is
committed to the inbox before the next call; while the database is down the poller waits (with backoff)
instead of asking for more. A batch is handled (each chat in order) before the next getUpdates, so a
shutdown waits for at most one batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from aiogram.methods import GetUpdates

from bot.updates import StoredUpdate, UpdateFlow

log = logging.getLogger(__name__)


class Poller:
    def __init__(self, flow: UpdateFlow, *, allowed_updates: Sequence[str] | None = None, timeout: int = 30,
                 backoff_start: float = 0.5, backoff_cap: float = 30.0) -> None:
        self._flow = flow
        self._allowed_updates = list(allowed_updates) if allowed_updates is not None else None
        self._timeout = timeout
        self._backoff_start = backoff_start
        self._backoff_cap = backoff_cap
        self.offset: int | None = None

    async def run(self, stop: asyncio.Event) -> None:
        backoff = self._backoff_start
        while not stop.is_set():
            updates = await self._fetch(stop)
            if updates is None:  # failed or stopped
                if not stop.is_set():
                    await _sleep_unless(stop, backoff)
                    backoff = min(backoff * 2, self._backoff_cap)
                continue
            backoff = self._backoff_start
            batch = await self._store_all(updates, stop)
            await self._flow.handle_in_chat_order(batch)

    async def _fetch(self, stop: asyncio.Event) -> list | None:
        bot = self._flow.bot
        request_timeout = int((bot.session.timeout or 0) + self._timeout)
        call = asyncio.ensure_future(bot(GetUpdates(offset=self.offset, timeout=self._timeout,
                                                    allowed_updates=self._allowed_updates),
                                         request_timeout=request_timeout))
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({call, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not call.done():
            call.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await call
            return None
        try:
            return call.result()
        except Exception as exc:  # Telegram or the network: try again after a pause
            log.warning("getUpdates failed (%s: %s); trying again", type(exc).__name__, exc)
            return None

    async def _store_all(self, updates: list, stop: asyncio.Event) -> list[StoredUpdate]:
        batch: list[StoredUpdate] = []
        for update in updates:
            payload = update.model_dump(mode="json", exclude_none=True)
            stored = await self._store_until_done(payload, stop)
            if stored is False:  # stopping while the database is down: Telegram keeps the rest
                break
            self.offset = update.update_id + 1
            if stored is not None:
                batch.append(stored)
        return batch

    async def _store_until_done(self, payload: dict, stop: asyncio.Event) -> StoredUpdate | None | bool:
        backoff = self._backoff_start
        while True:
            try:
                return await self._flow.store(payload)
            except Exception as exc:
                log.warning("could not store update %s (%s: %s); waiting for the database",
                            payload.get("update_id"), type(exc).__name__, exc)
            if stop.is_set():
                return False
            await _sleep_unless(stop, backoff)
            backoff = min(backoff * 2, self._backoff_cap)


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
