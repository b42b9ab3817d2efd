"""A person talking to the bot through the fake Telegram Bot API: send, press a button by its label, read.

Besides what the person sees (`send`, `press`, `wait`), a Person can look behind the scenes when it is
given the channel's storage and the container's unit of work: its stored draft (`draft`) and whether
the inbox has handled one of its updates (`handled`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiogram.fsm.storage.base import BaseStorage, StorageKey
from sqlalchemy import select

from db.models import InboxUpdate
from db.uow import UnitOfWorkFactory
from tests.fakes.telegram import TOKEN, FakeTelegram, FakeUser, SentCall

BOT_ID = int(TOKEN.split(":", 1)[0])


def draft_key(user_id: int, chat_id: int | None = None) -> StorageKey:
    """The aiogram FSM key of a user's conversation in a private chat (strategy USER_IN_CHAT)."""
    return StorageKey(bot_id=BOT_ID, chat_id=user_id if chat_id is None else chat_id, user_id=user_id)


async def inbox_row(uow: UnitOfWorkFactory, update_id: int) -> InboxUpdate | None:
    async with uow() as work:
        return await work.session.scalar(
            select(InboxUpdate).where(InboxUpdate.channel == "telegram", InboxUpdate.external_id == str(update_id)))


async def inbox_rows(uow: UnitOfWorkFactory) -> list[InboxUpdate]:
    async with uow() as work:
        return list(await work.session.scalars(select(InboxUpdate).order_by(InboxUpdate.id)))


class Person:
    def __init__(self, fake: FakeTelegram, user: FakeUser, deliver, *, storage: BaseStorage | None = None,
                 uow: UnitOfWorkFactory | None = None) -> None:
        self.fake = fake
        self.user = user
        self._deliver = deliver  # async callable(update dict): pushes to polling or feeds the dispatcher
        self.storage = storage  # where the bot keeps drafts (any DatabaseStorage on the same database will do)
        self.uow = uow
        self.seen = 0

    @property
    def chat_id(self) -> int:
        return self.user.id

    # -- what the person sees ---------------------------------------------------------------------

    def _sent_messages(self) -> list[Any]:
        return [c for c in self.fake.sent if c.ok and c.method == "sendMessage" and int(c.params["chat_id"]) == self.chat_id]

    def messages(self) -> list[str]:
        """Every message the person received, in order."""
        return [c.params["text"] for c in self._sent_messages()]

    async def wait(self, count: int = 1, timeout: float = 10) -> list[str]:
        """The next `count` messages (waits for them); the person has then seen everything so far."""
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self._sent_messages()) < self.seen + count:
            if asyncio.get_running_loop().time() > deadline:
                texts = [c.params["text"] for c in self._sent_messages()[self.seen :]]
                raise AssertionError(f"expected {count} new message(s) for {self.chat_id}, got {texts}")
            await asyncio.sleep(0.01)
        new = self._sent_messages()[self.seen :]
        self.seen = len(self._sent_messages())
        return [c.params["text"] for c in new]

    _wait_new = wait

    def unseen(self) -> list[str]:
        """Messages that arrived since the last wait (without waiting)."""
        return [c.params["text"] for c in self._sent_messages()[self.seen :]]

    async def send(self, text: str | None = None, *, expect: int = 1, timeout: float = 10, **kwargs) -> list[str]:
        await self._deliver(self.fake.message(self.user, text, **kwargs))
        return await self.wait(expect, timeout) if expect else []

    async def deliver(self, update: dict, *, expect: int = 1, timeout: float = 10) -> list[str]:
        await self._deliver(update)
        return await self.wait(expect, timeout) if expect else []

    def last_buttons(self) -> dict[str, str]:
        """Label -> callback data of the latest message that had buttons."""
        for call in reversed(self._sent_messages()):
            markup = call.params.get("reply_markup")
            if markup:
                return {b["text"]: b["callback_data"] for row in markup["inline_keyboard"] for b in row}
        return {}

    def last_message_with_buttons(self) -> int:
        """The message id (as the fake numbered it) of the latest message that had buttons."""
        for call in reversed(self._sent_messages()):
            if call.params.get("reply_markup"):
                return call.result["message_id"]
        raise AssertionError(f"no message with buttons was sent to {self.chat_id}")

    async def press(self, label: str, *, expect: int = 1, timeout: float = 10) -> list[str]:
        buttons = self.last_buttons()
        assert label in buttons, f"no button {label!r} in {list(buttons)}"
        return await self.deliver(self.fake.callback(self.user, buttons[label]), expect=expect, timeout=timeout)

    async def press_data(self, data: str, *, message_id: int | None = None, expect: int = 1,
                         timeout: float = 10) -> tuple[dict, list[str]]:
        """Press a button with this exact callback data (on `message_id`, default the latest bot message)."""
        update = self.fake.callback(self.user, data, message_id=message_id)
        return update, await self.deliver(update, expect=expect, timeout=timeout)

    def callback_answers(self) -> list[str | None]:
        return [c.params.get("text") for c in self.fake.sent if c.method == "answerCallbackQuery"]

    def answer_to(self, update: dict) -> SentCall | None:
        """The bot's answerCallbackQuery for this callback_query update, if any."""
        query_id = update["callback_query"]["id"]
        return next((c for c in self.fake.sent if c.method == "answerCallbackQuery"
                     and str(c.params.get("callback_query_id")) == query_id), None)

    # -- behind the scenes ------------------------------------------------------------------------

    async def draft(self) -> dict[str, Any] | None:
        """The person's stored draft (the engine's Draft as a dict), None when nothing is kept."""
        assert self.storage is not None, "this Person was made without the bot's storage"
        return (await self.storage.get_data(draft_key(self.user.id))).get("draft")

    async def handled(self, update: dict, timeout: float = 10) -> InboxUpdate:
        """Wait until the inbox has handled the update (processed, or failed at least once)."""
        assert self.uow is not None, "this Person was made without the unit of work"
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            row = await inbox_row(self.uow, update["update_id"])
            if row is not None and (row.processed_at is not None or row.attempts > 0):
                return row
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"update {update['update_id']} was not handled within {timeout}s: {row}")
            await asyncio.sleep(0.02)
