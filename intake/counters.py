"""Limits counted in the database (table rate_counters), shared by every process that uses it.

A limit allows `limit` units (tries, files, bytes) per subject in fixed windows of `window` aligned to
the epoch. `take` counts before the work it guards: one atomic upsert per counter,

    INSERT ... ON CONFLICT (key, window_start) DO UPDATE SET count = count + :n
        WHERE rate_counters.count + :n <= :limit RETURNING count

so a hundred concurrent requests cannot all read "9" and all go ahead, and a refused try is not counted
(someone who was refused can come back when the window ends). Several counters are taken in one
transaction, all or none, in the order of their keys (no two takes wait for each other in a circle).

Fixed windows rather than a sliding-window counter: the long-run rate allowed is the same, the page can
say exactly how many tries remain and when a new window begins, and one row is one statement. The price
is a burst of up to twice the limit around a window's end, which does not matter for what is counted
here (a 49-bit access code; a day's uploads).

The key of a counter is the limit's name and a keyed hash of its subject (HMAC-SHA256 under a key derived
from the data key, db/crypto.py, found through the engine like the encrypted columns' cipher): an address
is not kept in clear, and the few billion IPv4 addresses cannot be tried against the stored keys without
the data key. A new data key starts new counters, which only forgives the tries of one window.

The `limits` library (PyPI) has no SQL storage, only memory, Redis, Memcached and MongoDB; the embedded
default here is SQLite and the scaled one PostgreSQL, so the counter is this small module.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from db.crypto import dialect_cipher
from db.repositories import RateCounterRepository
from db.uow import UnitOfWorkFactory
from intake.clock import Clock

log = logging.getLogger(__name__)

PURGE_EVERY = timedelta(hours=1)  # a process deletes expired rows at most this often by itself
KEY_PURPOSE = "rate-counter"  # of the keyed hash of a subject


@dataclass(frozen=True)
class Limit:
    name: str  # part of the counter's key: "lookup-ip", "upload-bytes-chat", ...
    limit: int
    window: timedelta

    def __post_init__(self) -> None:
        if self.limit < 0 or self.window.total_seconds() < 1:
            raise ValueError(f"limit {self.name}: needs limit >= 0 and a window of at least a second")

    @property
    def seconds(self) -> int:
        return int(self.window.total_seconds())


@dataclass(frozen=True)
class Count:
    """`amount` units of a limit for one subject ("ip:198.51.100.7", "chat:<cookie hash>", "all")."""

    limit: Limit
    subject: str
    amount: int = 1

    def window_start(self, epoch: float) -> int:
        return int(epoch) // self.limit.seconds * self.limit.seconds


@dataclass(frozen=True)
class Taken:
    allowed: bool
    counts: tuple[Count, ...]
    keys: tuple[str, ...]  # of each count, its row's key (for give_back)
    window_starts: tuple[int, ...]  # of each count, as taken (for give_back)
    left: tuple[int, ...]  # of each count: what its window has left after this take (refused: now)
    at: float  # when it was taken (seconds since the epoch)
    refused_by: Count | None = None

    def remaining(self, *names: str) -> int:
        """The least that is left among the counters (of these limit names, or all)."""
        chosen = [left for count, left in zip(self.counts, self.left, strict=True)
                  if not names or count.limit.name in names]
        return min(chosen, default=0)

    def until_reset(self) -> timedelta:
        """From the take until a new window begins for the counter that refused it, else for the one
        with the least left: when the visitor may try again."""
        ends = [start + count.limit.seconds for count, start in zip(self.counts, self.window_starts, strict=True)]
        if not ends:
            return timedelta(0)
        if self.refused_by is not None:
            index = self.counts.index(self.refused_by)
        else:
            index = min(range(len(ends)), key=lambda i: (self.left[i], -ends[i]))
        return timedelta(seconds=max(0.0, ends[index] - self.at))


class RateCounters:
    def __init__(self, uow: UnitOfWorkFactory, clock: Clock) -> None:
        self._uow = uow
        self._clock = clock
        self._purged_at: datetime | None = None

    async def take(self, *counts: Count) -> Taken:
        """Count every amount, or none of them when one would go over its limit."""
        now = self._clock.now()
        epoch = now.timestamp()
        left: list[int] = []
        async with self._uow() as uow:
            cipher = dialect_cipher(uow.session.get_bind().dialect)
            keyed = sorted(((f"{c.limit.name}:{cipher.keyed_digest(KEY_PURPOSE, c.subject)}", c) for c in counts),
                           key=lambda pair: pair[0])
            keys = tuple(key for key, _count in keyed)
            ordered = tuple(count for _key, count in keyed)
            starts = tuple(c.window_start(epoch) for c in ordered)
            counters = RateCounterRepository(uow.session)
            for index, (key, count, start) in enumerate(zip(keys, ordered, starts, strict=True)):
                limit = count.limit.limit
                total = None
                if count.amount <= limit:
                    ends = datetime.fromtimestamp(start + count.limit.seconds, tz=now.tzinfo)
                    total = await counters.add_within(key, start, count.amount, limit, expires_at=ends)
                if total is None:
                    # leaving the block without commit rolls back what the counts before this one added
                    used = await counters.current(key, start)
                    left = [0] * len(ordered)
                    left[index] = max(0, limit - used)
                    return Taken(False, ordered, keys, starts, tuple(left), epoch, refused_by=count)
                left.append(limit - total)
            await uow.commit()
        if self._purged_at is None or now - self._purged_at >= PURGE_EVERY:
            self._purged_at = now
            try:  # apart from the take: two processes deleting the same rows must not hold up a request
                await self.purge_expired(now)
            except Exception:
                log.warning("rate counters: expired rows not deleted now (the daily job does)", exc_info=True)
        return Taken(True, ordered, keys, starts, tuple(left), epoch)

    async def give_back(self, taken: Taken, amounts: dict[str, int]) -> None:
        """Uncount what a take counted but was not used (bytes announced, fewer stored), by limit name;
        never below zero. Only for amounts, never for tries: a try is spent once it is checked."""
        async with self._uow() as uow:
            counters = RateCounterRepository(uow.session)
            for count, key, start in zip(taken.counts, taken.keys, taken.window_starts, strict=True):
                amount = min(amounts.get(count.limit.name, 0), count.amount)
                if amount > 0:
                    await counters.subtract(key, start, amount)
            await uow.commit()

    async def purge_expired(self, now: datetime | None = None) -> int:
        """Delete the counters whose window has ended (the daily job calls it); how many were deleted."""
        async with self._uow() as uow:
            deleted = await RateCounterRepository(uow.session).delete_expired(now or self._clock.now())
            await uow.commit()
        if deleted:
            log.info("rate counters: %d expired rows deleted", deleted)
        return deleted
