"""A person talking to the bot through the fake Telegram Bot API: send, press a button by its label, read."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.fakes.telegram import FakeTelegram, FakeUser


class Person:
    def __init__(self, fake: FakeTelegram, user: FakeUser, deliver) -> None:
        self.fake = fake
        self.user = user
        self._deliver = deliver  # async callable(update dict): pushes to polling or feeds the dispatcher
        self.seen = 0

    @property
    def chat_id(self) -> int:
        return self.user.id

    def _sent_messages(self) -> list[Any]:
        return [c for c in self.fake.sent if c.method == "sendMessage" and int(c.params["chat_id"]) == self.chat_id]

    async def _wait_new(self, count: int, timeout: float) -> list[str]:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self._sent_messages()) < self.seen + count:
            if asyncio.get_running_loop().time() > deadline:
                texts = [c.params["text"] for c in self._sent_messages()[self.seen :]]
                raise AssertionError(f"expected {count} new message(s) for {self.chat_id}, got {texts}")
            await asyncio.sleep(0.01)
        new = self._sent_messages()[self.seen :]
        self.seen = len(self._sent_messages())
        return [c.params["text"] for c in new]

    async def send(self, text: str | None = None, *, expect: int = 1, timeout: float = 10, **kwargs) -> list[str]:
        await self._deliver(self.fake.message(self.user, text, **kwargs))
        return await self._wait_new(expect, timeout) if expect else []

    async def deliver(self, update: dict, *, expect: int = 1, timeout: float = 10) -> list[str]:
        await self._deliver(update)
        return await self._wait_new(expect, timeout) if expect else []

    def last_buttons(self) -> dict[str, str]:
        """Label -> callback data of the latest message that had buttons."""
        for call in reversed(self._sent_messages()):
            markup = call.params.get("reply_markup")
            if markup:
                return {b["text"]: b["callback_data"] for row in markup["inline_keyboard"] for b in row}
        return {}

    async def press(self, label: str, *, expect: int = 1, timeout: float = 10) -> list[str]:
        buttons = self.last_buttons()
        assert label in buttons, f"no button {label!r} in {list(buttons)}"
        return await self.deliver(self.fake.callback(self.user, buttons[label]), expect=expect, timeout=timeout)

    def callback_answers(self) -> list[str | None]:
        return [c.params.get("text") for c in self.fake.sent if c.method == "answerCallbackQuery"]
