"""Telegram's sending limits, kept by one process: at most N messages in any window of one second
for the bot, at least an interval between two messages to one chat, and a pause for everyone when
Telegram answers 429 with retry_after.

Several worker processes share the bot's limit by each taking a share (NotifySettings.notify_rate);
the per-chat interval is also checked in the database when a notification is claimed (intake/notifier.py).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable


class SendRate:
    def __init__(
        self,
        per_second: float = 30,
        chat_interval: float = 1.0,
        *,
        margin: float = 0.02,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] = asyncio.sleep,
    ) -> None:
        if per_second <= 0 or chat_interval < 0:
            raise ValueError("per_second must be positive and chat_interval not negative")
        # a whole number of slots per window: 30/s -> 30 sends in any 1.02 s; 7.5/s -> 15 in any 2.04 s
        slots, window = per_second, 1.0
        while slots != int(slots) and window < 100:
            slots, window = slots * 2, window * 2
        self._slots = max(1, int(slots))
        self._window = window + margin
        self._chat_interval = chat_interval + margin if chat_interval else 0.0
        self._recent: deque[float] = deque()
        self._last_by_chat: dict[str, float] = {}
        self._paused_until = 0.0
        self._now = monotonic
        self._sleep = sleep
        self._lock = asyncio.Lock()

    def pause(self, seconds: float) -> None:
        """Telegram said 429 retry_after: nobody sends before it has passed."""
        self._paused_until = max(self._paused_until, self._now() + max(0.0, seconds))

    def paused_for(self) -> float:
        return max(0.0, self._paused_until - self._now())

    def chat_ready_in(self, chat: str) -> float:
        last = self._last_by_chat.get(chat)
        return 0.0 if last is None else max(0.0, last + self._chat_interval - self._now())

    async def acquire(self, chat: str | None) -> None:
        """Wait for a slot for `chat` (None: no per-chat limit) and take it."""
        async with self._lock:  # one waiter at a time, so slots are handed out in order
            while True:
                now = self._now()
                while self._recent and self._recent[0] <= now - self._window:
                    self._recent.popleft()
                wait = self._paused_until - now
                if len(self._recent) >= self._slots:
                    wait = max(wait, self._recent[0] + self._window - now)
                if chat is not None:
                    wait = max(wait, self.chat_ready_in(chat))
                if wait <= 0:
                    break
                await self._sleep(wait)
            self._recent.append(now)
            if chat is not None:
                self._last_by_chat[chat] = now
                if len(self._last_by_chat) > 10_000:
                    self._forget_idle_chats(now)

    def _forget_idle_chats(self, now: float) -> None:
        for chat, last in list(self._last_by_chat.items()):
            if last < now - self._chat_interval:
                del self._last_by_chat[chat]
