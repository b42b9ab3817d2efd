"""How many messages a person sent recently, for the bot's per-user throttling.

`MemoryWindow` counts in one process (the embedded set-up); `RedisWindow` counts in Redis, so two webhook
replicas behind a load balancer throttle a person once, not once each. The Redis count is a fixed window
(INCR and EXPIRE on a key per person and window): cheap, and at worst lets 2x the limit through across a
window boundary, which is fine for flood protection.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Callable
from typing import Protocol

from redis.asyncio import Redis

from db.drafts import redis_connection_options

REDIS_PREFIX = "qinglang:throttle"


class RateWindow(Protocol):
    limit: int
    seconds: float

    async def hit(self, user_id: int) -> bool:
        """Count one message; False when the person is over the limit."""


class MemoryWindow:
    def __init__(self, limit: int = 20, seconds: float = 10.0, *,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.seconds = seconds
        self._monotonic = monotonic
        self._seen: dict[int, deque[float]] = defaultdict(deque)

    async def hit(self, user_id: int) -> bool:
        now = self._monotonic()
        recent = self._seen[user_id]
        while recent and now - recent[0] > self.seconds:
            recent.popleft()
        if len(recent) >= self.limit:
            return False
        recent.append(now)
        return True


class RedisWindow:
    def __init__(self, redis: Redis, limit: int = 20, seconds: float = 10.0, *, prefix: str = REDIS_PREFIX,
                 clock: Callable[[], float] = time.time) -> None:
        self.limit = limit
        self.seconds = seconds
        self._redis = redis
        self._prefix = prefix
        self._clock = clock

    async def hit(self, user_id: int) -> bool:
        window = int(self._clock() // self.seconds)
        key = f"{self._prefix}:{user_id}:{window}"
        async with self._redis.pipeline(transaction=True) as pipe:
            count, _ = await pipe.incr(key).expire(key, int(self.seconds * 2) + 1).execute()
        return count <= self.limit

    async def close(self) -> None:
        await self._redis.aclose()


def build_window(redis_url: str | None, *, limit: int = 20, seconds: float = 10.0) -> MemoryWindow | RedisWindow:
    if redis_url:
        return RedisWindow(Redis.from_url(redis_url, **redis_connection_options()), limit, seconds)
    return MemoryWindow(limit, seconds)
