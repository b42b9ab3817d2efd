"""Telegram's sending limits, kept by one process: at most N messages in any window of one second
for the bot, at least an interval between two messages to one chat, and a pause for everyone when
Telegram answers 429 with retry_after.

Several worker processes share the bot's limit by each taking a share (NotifySettings.notify_rate);
the per-chat interval is also checked in the database when a notification is claimed (intake/notifier.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable


class SendRate:
    def __init__(
        self,
        per_second: float = 30,
        chat_interval: float = 1.0,
        *,
        margin: float = 0.01,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] = asyncio.sleep,
    ) -> None:
        if per_second <= 0 or chat_interval < 0:
            raise ValueError("per_second must be positive and chat_interval not negative")
        # whole messages per second: a share of 7.5/s sends 7, so shares of 30 never add up to more
        self._slots = max(1, int(per_second))
        self._window = 1.0 + margin
        self._chat_interval = chat_interval + margin if chat_interval else 0.0
        self._recent: deque[float] = deque()  # when recent requests were answered
        self._in_flight = 0
        self._busy_chats: set[str] = set()
        self._poll = 0.01  # re-check interval while a slot is held by a request in flight
        self._spacing = self._window / self._slots
        self._next_start = float("-inf")
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

    @contextlib.asynccontextmanager
    async def slot(self, chat: str | None):
        """Hold a sending slot for `chat` (None: no per-chat limit) while the request is made.

        The receiver counts a message when it arrives, somewhere between our start and the answer.
        So a slot counts from its start until a window after its answer: then no window of the
        receiver's can hold more than the limit, however the requests' latencies vary."""
        await self._acquire(chat)
        try:
            yield
        finally:
            finished = self._now()
            self._in_flight -= 1
            self._recent.append(finished)
            if chat is not None:
                self._last_by_chat[chat] = finished
                self._busy_chats.discard(chat)

    async def _acquire(self, chat: str | None) -> None:
        async with self._lock:  # one waiter at a time, so slots are handed out in order
            while True:
                now = self._now()
                while self._recent and self._recent[0] <= now - self._window:
                    self._recent.popleft()
                wait = self._paused_until - now
                if self._in_flight + len(self._recent) >= self._slots:
                    wait = max(wait, self._recent[0] + self._window - now if self._recent else self._poll)
                wait = max(wait, self._next_start - now)  # an even pace, not bursts of 30
                if chat is not None:
                    wait = max(wait, self._poll if chat in self._busy_chats else self.chat_ready_in(chat))
                if wait <= 0:
                    break
                await self._sleep(wait)
            self._in_flight += 1
            # planned from the previous plan, not from when the sleep ended, so lateness does not add up
            self._next_start = max(self._next_start, now - self._spacing / 2) + self._spacing
            if chat is not None:
                self._busy_chats.add(chat)
                if len(self._last_by_chat) > 10_000:
                    self._forget_idle_chats(now)

    def _forget_idle_chats(self, now: float) -> None:
        for chat, last in list(self._last_by_chat.items()):
            if last < now - self._chat_interval:
                del self._last_by_chat[chat]
