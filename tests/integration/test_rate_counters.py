"""The database counters behind the web chat's limits (intake/counters.py), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import func, select

from db.models import RateCounter
from intake.counters import Count, Limit, RateCounters

TRIES = Limit("test-tries", 10, timedelta(minutes=10))
BYTES = Limit("test-bytes", 1000, timedelta(days=1))


async def rows(container) -> int:
    async with container.uow() as uow:
        return await uow.session.scalar(select(func.count()).select_from(RateCounter))


async def test_concurrent_takes_pass_only_up_to_the_limit(container):
    counters = RateCounters(container.uow, container.clock)
    taken = await asyncio.gather(*(counters.take(Count(TRIES, "ip:198.51.100.1")) for _ in range(40)))
    assert sum(t.allowed for t in taken) == 10
    assert sorted(t.remaining() for t in taken if t.allowed) == list(range(10))
    refused = [t for t in taken if not t.allowed]
    assert all(t.refused_by.subject == "ip:198.51.100.1" and t.retry_after == timedelta(minutes=10) for t in refused)


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
