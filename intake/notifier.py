"""The notifier worker: takes due outbox rows, delivers them on their channel, records the outcome.

Exactly once, or visibly not:
1. claim: in one transaction, due `pending` rows become `claimed` with a lease and this worker's name.
   Per recipient only the oldest unfinished row is taken, and none while another is in flight or was
   sent in the last chat interval, so messages to one chat keep their order and pace across workers.
   On PostgreSQL `FOR UPDATE SKIP LOCKED` lets several workers claim side by side; SQLite serialises.
2. send, outside any transaction, paced by SendRate (intake/ratelimit.py). A Telegram row is first
   marked `sending` in its own commit, right before the request, so a worker that dies leaves a mark
   only on the messages that may have gone out.
3. record the result; if the database is away, keep retrying the write (the send is not repeated).
A row whose lease ran out belongs to a worker that died. `claimed` rows never went out and are
retried. A `sending` Telegram row becomes `unconfirmed` (it may have gone out: never sent twice);
a web or callback row (idempotent) is retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import and_, exists, or_, select, true, update
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import aliased

from db.models import OutboxMessage
from db.uow import UnitOfWorkFactory
from intake.clock import Clock
from intake.delivery import Delivered, Outgoing, Result, Retry, Transport, Unconfirmed, Undeliverable
from intake.notice_templates import NoticeRenderer
from intake.ratelimit import SendRate

log = logging.getLogger(__name__)

PENDING, CLAIMED, SENDING = "pending", "claimed", "sending"
SENT, UNDELIVERABLE, UNCONFIRMED = "sent", "undeliverable", "unconfirmed"
IN_FLIGHT = (CLAIMED, SENDING)
# channels whose delivery can be repeated without a second message reaching a person
IDEMPOTENT_CHANNELS = frozenset({"web", "callback", "none"})
PACED_CHANNELS = frozenset({"telegram"})
OUTCOME_NAMES = {Delivered: SENT, Retry: "retry", Undeliverable: UNDELIVERABLE, Unconfirmed: UNCONFIRMED}
LEASE_MARGIN = timedelta(seconds=15)  # no send starts this close to the end of its claim


@dataclass(frozen=True)
class NotifierConfig:
    batch: int = 120
    lease: timedelta = timedelta(seconds=120)
    max_attempts: int = 10
    backoff_base: float = 5.0  # seconds; attempt n waits base * 2**(n-1), capped, with full jitter
    backoff_cap: float = 3600.0
    chat_interval: float = 1.0
    poll_interval: float = 1.0
    concurrency: int = 64
    low_water: int = 30  # claim more when fewer notices than this are in hand (about a second's worth)
    recovery_interval: float = 30.0  # seconds between looks for rows abandoned by dead workers
    record_retry_interval: float = 1.0  # while the database is away after a send


class Notifier:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        clock: Clock,
        renderer: NoticeRenderer,
        transports: dict[str, Transport],
        rate: SendRate,
        config: NotifierConfig | None = None,
        *,
        worker_id: str | None = None,
        rng: random.Random | None = None,
        on_result: Callable[[str, str, float], None] | None = None,
    ) -> None:
        """`on_result(channel, outcome, seconds)` hears of every send attempt (metrics)."""
        self._uow = uow
        self._clock = clock
        self._renderer = renderer
        self._transports = transports
        self._rate = rate
        self._config = config or NotifierConfig()
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"[:64]
        self._rng = rng or random.Random()
        self._wake = asyncio.Event()
        self._on_result = on_result or (lambda channel, outcome, seconds: None)

    def wake(self) -> None:
        """Something was queued: look now instead of at the next poll."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until `stop` is set; then finish the sends in flight (their results are recorded).

        A new batch is claimed while the last one is still going out (below `low_water` items in
        hand), so sending never pauses for the claim."""
        log.info("notifier %s started", self.worker_id)
        in_hand: set[asyncio.Task] = set()
        last_recovery = float("-inf")
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            try:
                if loop.time() - last_recovery >= self._config.recovery_interval:
                    await self.recover()
                    last_recovery = loop.time()
                claimed = await self.claim(paced=self._rate.paused_for() <= 0) if len(in_hand) < self._config.low_water else []
            except (OperationalError, DBAPIError, OSError) as exc:
                log.warning("notifier: database unavailable (%s); retrying", type(exc).__name__)
                claimed = []
            for item in claimed:
                task = asyncio.create_task(self._deliver(item))
                in_hand.add(task)
                task.add_done_callback(in_hand.discard)
            if claimed and len(in_hand) < self._config.low_water:
                continue
            self._wake.clear()
            waiters = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait()), *in_hand}
            timeout = self._config.poll_interval if not in_hand else None
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters - in_hand:
                waiter.cancel()
        if in_hand:
            await asyncio.gather(*in_hand, return_exceptions=True)
        log.info("notifier %s stopped", self.worker_id)

    async def run_once(self) -> int:
        """Claim what is due and deliver it; the number of rows that reached a final or retry state."""
        claimed = await self.claim(paced=self._rate.paused_for() <= 0)
        if not claimed:
            return 0
        limit = asyncio.Semaphore(self._config.concurrency)

        async def one(item: Outgoing) -> None:
            async with limit:
                await self._deliver(item)

        await asyncio.gather(*(one(item) for item in claimed))
        return len(claimed)

    # -- claim ----------------------------------------------------------------------------------------

    async def claim(self, *, paced: bool = True) -> list[Outgoing]:
        """`paced`: False while Telegram has asked us to wait (429): only the other channels are taken."""
        now = self._clock.now()
        o = OutboxMessage
        earlier, busy = aliased(OutboxMessage), aliased(OutboxMessage)
        same_recipient = lambda other: and_(other.channel == o.channel, other.recipient == o.recipient)  # noqa: E731
        recent = now - timedelta(seconds=self._config.chat_interval)
        query = (
            select(o)
            .where(
                o.status == PENDING,
                o.next_attempt_at <= now,
                ~exists().where(same_recipient(earlier), earlier.status.in_((PENDING, *IN_FLIGHT)), earlier.id < o.id),
                ~exists().where(same_recipient(busy), or_(
                    busy.status.in_(IN_FLIGHT),
                    and_(busy.status == SENT, busy.sent_at > recent, o.channel.in_(PACED_CHANNELS)),
                )),
            )
            .where(o.channel.not_in(PACED_CHANNELS) if not paced else true())
            .order_by(o.next_attempt_at, o.id)
            .limit(self._config.batch)
            .with_for_update(skip_locked=True, of=o)
        )
        async with self._uow() as uow:
            rows = (await uow.session.scalars(query)).all()
            items = []
            for row in rows:
                row.status, row.worker = CLAIMED, self.worker_id
                row.lease_until = now + self._config.lease
                row.attempts += 1
                items.append(self._outgoing(row))
            await uow.commit()
        return items

    def _outgoing(self, row: OutboxMessage) -> Outgoing:
        payload = dict(row.payload or {})
        notice = self._renderer.render(row.template, payload, row.language)
        return Outgoing(row.id, row.idempotency_key, row.channel, row.recipient, row.template,
                        payload.get("number"), row.language, notice, payload, row.lease_until)

    # -- deliver --------------------------------------------------------------------------------------

    async def _deliver(self, item: Outgoing) -> None:
        transport = self._transports.get(item.channel)
        if transport is None:
            result: Result = Retry(f"no transport for channel {item.channel!r} in this worker")
        else:
            paced = self._rate.slot(item.recipient) if item.channel in PACED_CHANNELS else contextlib.nullcontext()
            async with paced:
                started = time.perf_counter()
                result = await self._send(transport, item)
                self._on_result(item.channel, OUTCOME_NAMES[type(result)], time.perf_counter() - started)
        if isinstance(result, Retry) and result.pause_channel and result.after:
            self._rate.pause(result.after)
        await self._record(item, result)

    async def _send(self, transport: Transport, item: Outgoing) -> Result:
        if item.lease_until is not None and self._clock.now() >= item.lease_until - LEASE_MARGIN:
            return Retry("waited too long for a sending slot; not sent")  # another worker may take it now
        if item.channel not in IDEMPOTENT_CHANNELS:
            try:
                if not await self._mark_sending(item):
                    return Retry("taken over by another worker before sending; not sent")
            except (OperationalError, DBAPIError, OSError) as exc:
                return Retry(f"could not mark as sending ({type(exc).__name__}); not sent")
        try:
            return await transport.send(item)
        except Exception as exc:  # a transport bug must not leave the row claimed
            log.exception("notifier: transport %s failed on outbox %s", item.channel, item.id)
            if item.channel in IDEMPOTENT_CHANNELS:
                return Retry(f"{type(exc).__name__}: {exc}"[:500])
            return Unconfirmed(f"transport error: {type(exc).__name__}: {exc}"[:500])

    async def _mark_sending(self, item: Outgoing) -> bool:
        """Record, before the request, that this message may reach the person from now on."""
        o = OutboxMessage
        async with self._uow() as uow:
            marked = await uow.session.execute(
                update(o).where(o.id == item.id, o.status == CLAIMED, o.worker == self.worker_id)
                .values(status=SENDING).execution_options(synchronize_session=False))
            await uow.commit()
        return marked.rowcount == 1

    async def _record(self, item: Outgoing, result: Result) -> None:
        """Write the outcome; while the database is away keep trying (the send is never repeated)."""
        while True:
            try:
                await self._write(item, result)
                return
            except (OperationalError, DBAPIError, OSError) as exc:
                log.warning("notifier: cannot record outbox %s yet (%s); retrying", item.id, type(exc).__name__)
                await asyncio.sleep(self._config.record_retry_interval)

    async def _write(self, item: Outgoing, result: Result) -> None:
        now = self._clock.now()
        async with self._uow() as uow:
            row = await uow.session.get(OutboxMessage, item.id, with_for_update=True)
            if row is None or row.status not in IN_FLIGHT or row.worker != self.worker_id:
                log.warning("notifier: outbox %s was taken over while sending (%s)", item.id, type(result).__name__)
                return
            row.lease_until, row.worker = None, None
            match result:
                case Delivered(external_id):
                    row.status, row.sent_at, row.external_id = SENT, now, external_id
                    row.body, row.last_error = item.notice.text, None
                case Undeliverable(error):
                    row.status, row.last_error = UNDELIVERABLE, error
                case Unconfirmed(error):
                    row.status, row.last_error, row.body = UNCONFIRMED, error, item.notice.text
                case Retry(error, after):
                    if row.attempts >= self._config.max_attempts:
                        row.status = UNDELIVERABLE
                        row.last_error = f"gave up after {row.attempts} attempts: {error}"[:1000]
                    else:
                        row.status, row.last_error = PENDING, error
                        row.next_attempt_at = now + timedelta(seconds=self._backoff(row.attempts, after))
            await uow.commit()
        if isinstance(result, (Undeliverable, Unconfirmed)) or (isinstance(result, Retry) and row.status == UNDELIVERABLE):
            log.warning("notifier: outbox %s (%s) %s: %s", item.id, item.template, row.status, row.last_error)

    def _backoff(self, attempts: int, after: float | None) -> float:
        if after is not None:
            return after
        ceiling = min(self._config.backoff_cap, self._config.backoff_base * 2 ** max(0, attempts - 1))
        return self._rng.uniform(ceiling / 2, ceiling)  # "equal jitter": spread out, never immediate

    # -- recovery -------------------------------------------------------------------------------------

    async def recover(self) -> int:
        """Rows of a worker that died: those it may have sent on Telegram are marked unconfirmed; those it
        never started, and idempotent ones, are retried."""
        now = self._clock.now()
        o = OutboxMessage
        expired = and_(o.status.in_(IN_FLIGHT), o.lease_until < now)
        maybe_sent = and_(o.status == SENDING, o.channel.not_in(IDEMPOTENT_CHANNELS))
        async with self._uow() as uow:
            unconfirmed = await uow.session.execute(
                update(o).where(expired, maybe_sent)
                .values(status=UNCONFIRMED, worker=None, lease_until=None,
                        last_error="the worker stopped while sending; it may have been delivered")
                .execution_options(synchronize_session=False))
            retried = await uow.session.execute(
                update(o).where(expired, ~maybe_sent)
                .values(status=PENDING, worker=None, lease_until=None, next_attempt_at=now)
                .execution_options(synchronize_session=False))
            await uow.commit()
        count = (unconfirmed.rowcount or 0) + (retried.rowcount or 0)
        if count:
            log.warning("notifier: recovered %s abandoned outbox rows", count)
        return count
