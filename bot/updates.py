"""From a raw Telegram update to a handled one: store it in the inbox first, then handle it.

Both ways in (the webhook and long polling) acknowledge an update to Telegram only after `store` has
committed it, so a crash or a database outage never loses what a citizen sent: Telegram delivers it again,
or the inbox replay handles it later. Handling runs as tracked tasks so a shutdown can wait for them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.types import Update
from pydantic import ValidationError

from bot.middlewares import CHANNEL
from intake.inbox import Inbox

log = logging.getLogger(__name__)


class NotAnUpdate(ValueError):
    """The body is not a Telegram update at all (no integer update_id): refused, not stored."""


@dataclass(frozen=True)
class StoredUpdate:
    inbox_id: int
    payload: dict[str, Any]

    @property
    def chat_key(self) -> object:
        """Updates of one chat are handled in order; of different chats, side by side."""
        for kind in ("message", "edited_message", "callback_query", "my_chat_member"):
            part = self.payload.get(kind)
            if isinstance(part, dict):
                chat = part.get("chat") or (part.get("message") or {}).get("chat") or part.get("from") or {}
                if isinstance(chat, dict) and "id" in chat:
                    return chat["id"]
        return ("update", self.inbox_id)


def update_id_of(payload: object) -> int:
    if not isinstance(payload, dict):
        raise NotAnUpdate("a Telegram update is a JSON object")
    update_id = payload.get("update_id")
    if isinstance(update_id, bool) or not isinstance(update_id, int):
        raise NotAnUpdate("a Telegram update has an integer update_id")
    return update_id


class UpdateFlow:
    def __init__(self, dispatcher: Dispatcher, bot: Bot, inbox: Inbox) -> None:
        self.dispatcher = dispatcher
        self.bot = bot
        self.inbox = inbox
        self._in_flight: set[asyncio.Task] = set()
        self._handling: set[int] = set()  # inbox ids being handled in this process

    async def store(self, payload: dict[str, Any]) -> StoredUpdate | None:
        """Commit the update to the inbox; None when it was stored and handled before (Telegram delivered it
        again). Raises NotAnUpdate for a body that is not an update, and the database's error when it is down."""
        update_id = update_id_of(payload)
        inbox_id = await self.inbox.store(CHANNEL, str(update_id), payload)
        if inbox_id is not None:
            return StoredUpdate(inbox_id, payload)
        taken = await self.inbox.take_over(CHANNEL, str(update_id))
        if taken is None or taken.id in self._handling:  # handled, or being handled right here
            return None
        log.info("update %s was stored but not handled (its first delivery was answered 503): handling it now",
                 update_id)
        return StoredUpdate(taken.id, taken.payload)

    async def handle(self, stored: StoredUpdate, *, replay: bool = False) -> None:
        """Handle a stored update; failures stay in the inbox (InboxMiddleware) for the replay."""
        try:
            update = Update.model_validate(stored.payload, context={"bot": self.bot})
        except ValidationError as exc:
            # where and what, never the input: pydantic's own message quotes what the person sent
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['type']}"
                                 for e in exc.errors(include_input=False, include_url=False))
            log.error("stored update %s is not one aiogram can read: %s", stored.inbox_id, problems)
            await self.inbox.failed(stored.inbox_id, f"ValidationError: {problems}")
            return
        self._handling.add(stored.inbox_id)
        try:
            await self.dispatcher.feed_update(self.bot, update, inbox_id=stored.inbox_id, replay=replay)
        except Exception:  # e.g. the database went away before "processed" was written: the replay retries
            log.exception("update in inbox row %s was not completed; the replay will try it again", stored.inbox_id)
        finally:
            self._handling.discard(stored.inbox_id)

    def spawn(self, stored: StoredUpdate) -> asyncio.Task:
        task = asyncio.create_task(self.handle(stored), name=f"update-{stored.inbox_id}")
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)
        return task

    async def handle_in_chat_order(self, batch: Iterable[StoredUpdate]) -> None:
        """A batch (from one getUpdates): each chat's updates in order, the chats side by side."""
        by_chat: dict[object, list[StoredUpdate]] = {}
        for stored in batch:
            by_chat.setdefault(stored.chat_key, []).append(stored)

        async def one_chat(updates: list[StoredUpdate]) -> None:
            for stored in updates:
                await self.spawn(stored)

        await asyncio.gather(*(one_chat(updates) for updates in by_chat.values()))

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    async def drain(self, timeout: float) -> int:
        """Wait for the updates being handled; returns how many were still running at the timeout
        (they are cancelled, and stay in the inbox for the replay after the restart)."""
        if not self._in_flight:
            return 0
        done, pending = await asyncio.wait(set(self._in_flight), timeout=timeout)
        for task in pending:
            task.cancel()
        return len(pending)
