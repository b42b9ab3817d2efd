"""Conversation drafts at rest in Redis: how a draft is sealed there and under which keys.

With QINGLANG_REDIS_URL set, the bot's drafts (aiogram FSM data) rest in Redis instead of the table
`bot_states`. They are personal data, so they are sealed with the data key under the same purpose as the
encrypted `bot_states.data` column (db/types.py). The bot hands this format to aiogram's RedisStorage
(bot/storage.py); the jobs that read every draft (the evidence sweep, `qinglang rekey`) read it through
this module too, so the format, the keys and their scan are defined once, outside the Telegram channel.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.exceptions import WatchError

from db.crypto import DataCipher

REDIS_PREFIX = "qinglang:fsm"
DRAFT_PURPOSE = "bot_states.data"  # the associated data of a draft wherever it rests
_SCAN_COUNT = 500


def redis_connection_options() -> dict[str, Any]:
    """A connection dropped by a Redis restart is dialled again and the command retried, instead of the
    update failing (it would be replayed later, out of order with what the person sent next)."""
    return {
        "retry": Retry(ExponentialBackoff(cap=2.0, base=0.05), retries=6),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
        "health_check_interval": 15,
        "socket_keepalive": True,
    }


class SealedJson:
    """json_dumps / json_loads for RedisStorage: a draft goes to Redis (and its dump files) encrypted.

    A draft written in clear before drafts were encrypted is still read (a JSON object begins with "{",
    a sealed value with "v1."); the next change of it seals it, and `qinglang rekey` seals the rest."""

    def __init__(self, cipher: DataCipher) -> None:
        self.cipher = cipher

    def dumps(self, data: Any) -> str:
        return self.cipher.encrypt(json.dumps(data, separators=(",", ":")), DRAFT_PURPOSE)

    def loads(self, stored: str) -> Any:
        if stored.lstrip().startswith("{"):
            return json.loads(stored)
        return json.loads(self.cipher.decrypt(stored, DRAFT_PURPOSE))


def redis_client(redis_url: str) -> Redis:
    return Redis.from_url(redis_url, **redis_connection_options())


async def draft_names(client: Redis, *, prefix: str = REDIS_PREFIX) -> AsyncIterator[bytes | str]:
    """The Redis key of every draft's data (RedisStorage keeps a draft's data under the key part "data")."""
    async for name in client.scan_iter(match=f"{prefix}:*:data", count=_SCAN_COUNT):
        yield name


def stored_text(value: bytes | str) -> str:
    """A value read from Redis as text (the client answers bytes unless told to decode)."""
    return value.decode() if isinstance(value, bytes) else value


async def reencrypt_redis_drafts(redis_url: str, cipher: DataCipher, *, redis_prefix: str = REDIS_PREFIX) -> int:
    """Seal again under the current key every draft in Redis that is in clear or under an old key; returns
    how many. A draft changed meanwhile by the bot is left alone: that change sealed it already."""
    sealed = SealedJson(cipher)
    rewritten = 0
    client = redis_client(redis_url)
    try:
        async for name in draft_names(client, prefix=redis_prefix):
            async with client.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(name)
                    stored = await pipe.get(name)
                    if stored is None:
                        continue
                    text = stored_text(stored)
                    if cipher.is_current(text):
                        continue
                    pipe.multi()
                    pipe.set(name, sealed.dumps(sealed.loads(text)), keepttl=True)
                    await pipe.execute()
                    rewritten += 1
                except WatchError:
                    pass
    finally:
        await client.aclose()
    return rewritten
