"""The database counters behind the web chat's limits (intake/counters.py), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import timedelta

from sqlalchemy import func, select

from db.crypto import DataCipher, bind_cipher, bound_cipher, parse_key
from db.models import RateCounter
from intake.counters import Count, Limit, RateCounters

TRIES = Limit("test-tries", 10, timedelta(minutes=10))
BYTES = Limit("test-bytes", 1000, timedelta(days=1))


async def rows(container) -> int:
    async with container.uow() as uow:
        return await uow.session.scalar(select(func.count()).select_from(RateCounter))


async def keys(container) -> list[str]:
    async with container.uow() as uow:
        return sorted((await uow.session.scalars(select(RateCounter.key))).all())


async def test_concurrent_takes_pass_only_up_to_the_limit(container):
    counters = RateCounters(container.uow, container.clock)
    taken = await asyncio.gather(*(counters.take(Count(TRIES, "ip:198.51.100.1")) for _ in range(40)))
    assert sum(t.allowed for t in taken) == 10
    assert sorted(t.remaining() for t in taken if t.allowed) == list(range(10))
    refused = [t for t in taken if not t.allowed]
    assert all(t.refused_by.subject == "ip:198.51.100.1" and t.until_reset() == timedelta(minutes=10) for t in refused)


async def test_several_counts_are_taken_all_or_none(container, clock):
    counters = RateCounters(container.uow, container.clock)
    assert (await counters.take(Count(BYTES, "chat:a", 900))).allowed
    both = await counters.take(Count(BYTES, "chat:a", 200), Count(TRIES, "ip:b"))
    assert not both.allowed and both.refused_by.subject == "chat:a"
    alone = await counters.take(Count(TRIES, "ip:b"))
    assert alone.allowed and alone.remaining() == 9  # the refused take above counted nothing for ip:b
    # bytes announced and not stored are given back, never below zero
    reserved = await counters.take(Count(BYTES, "chat:a", 100))
    assert reserved.allowed and reserved.remaining() == 0
    await counters.give_back(reserved, {"test-bytes": 60})
    assert (await counters.take(Count(BYTES, "chat:a", 60))).allowed
    await counters.give_back(reserved, {"test-bytes": 5000})  # at most what that take counted
    again = await counters.take(Count(BYTES, "chat:a", 0))
    assert again.remaining() == 100
    # the next window starts from nothing
    clock.advance(days=1)
    assert (await counters.take(Count(BYTES, "chat:a", 1000))).allowed


async def test_expired_counters_are_purged(container, clock):
    counters = RateCounters(container.uow, container.clock)
    await counters.take(Count(TRIES, "ip:a"), Count(BYTES, "chat:a", 10))
    assert await rows(container) == 2
    clock.advance(minutes=10)
    assert await counters.purge_expired() == 1  # the ten-minute window ended, the day has not
    assert await rows(container) == 1
    clock.advance(days=1)
    assert await counters.purge_expired(clock.now()) == 1
    assert await rows(container) == 0


async def test_a_window_says_when_it_ends(container, clock):
    counters = RateCounters(container.uow, container.clock)
    clock.advance(minutes=4, seconds=30)  # 10:04:30; the ten-minute window began at 10:00
    taken = await counters.take(Count(TRIES, "ip:a"), Count(BYTES, "chat:a", 10))
    assert taken.allowed and taken.until_reset() == timedelta(minutes=5, seconds=30)  # the tries have less left
    refused = await counters.take(Count(TRIES, "ip:a"), Count(BYTES, "chat:a", 991))
    assert refused.refused_by.limit == BYTES
    assert refused.until_reset() == timedelta(hours=24) - timedelta(hours=2, minutes=4, seconds=30)  # UTC day


async def test_a_subject_is_kept_as_a_keyed_hash_only(container):
    """The key of a counter cannot be found by hashing candidate addresses: it takes the data key."""
    counters = RateCounters(container.uow, container.clock)
    await counters.take(Count(TRIES, "ip:198.51.100.7"))
    (key,) = await keys(container)
    assert key.startswith("test-tries:") and len(key) == len("test-tries:") + 64
    assert hashlib.sha256(b"ip:198.51.100.7").hexdigest() not in key
    assert "198.51.100.7" not in key
    # the same subject under another data key is another counter
    own = bound_cipher(container.engine)
    bind_cipher(container.engine, DataCipher(parse_key("A" * 43 + "=")))
    try:
        await counters.take(Count(TRIES, "ip:198.51.100.7"))
    finally:
        bind_cipher(container.engine, own)
    assert len(await keys(container)) == 2 and key in await keys(container)
    # and under the process's key it is the same one again
    again = await counters.take(Count(TRIES, "ip:198.51.100.7"))
    assert again.remaining() == TRIES.limit - 2
