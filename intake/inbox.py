"""The inbox: every inbound update is stored before it is handled, so nothing a citizen sent is lost.

Duplicates (same channel and external id) are dropped; an update whose handling failed stays
unprocessed with its error and is tried again until it is handled or has failed MAX_ATTEMPTS times,
after which it waits for staff.

Several processes may handle updates (bot replicas, web processes). A stored update carries a lease: the
process that stored it (or that claimed it for a replay) handles it until `lease_until`; the replay of any
process takes only updates without a live lease, claimed with a conditional UPDATE, so an update is never
replayed by two processes at once nor while its first handling is still running. A failure ends the lease
at once; a process that died mid-way lets it run out.

What a person sent is personal data: the payload (and the error, which may quote it) is encrypted at rest
(db/types.py), and the payload is dropped once the update is handled.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError

from db.models import InboxUpdate
from db.uow import UnitOfWorkFactory
from intake.clock import Clock

MAX_ATTEMPTS = 5
DEFAULT_LEASE = timedelta(seconds=90)  # longer than Telegram waits for a webhook answer (60 s)


@dataclass(frozen=True)
class PendingUpdate:
    id: int
    channel: str
    external_id: str
    payload: dict[str, Any]
    attempts: int


class Inbox:
    def __init__(self, uow: UnitOfWorkFactory, clock: Clock, *, lease: timedelta = DEFAULT_LEASE) -> None:
        self._uow = uow
        self._clock = clock
        self._lease = lease

    async def store(self, channel: str, external_id: str, payload: dict[str, Any]) -> int | None:
        """The new row's id, or None when this update was stored before (a duplicate delivery)."""
        async with self._uow() as uow:
            now = self._clock.now()
            row = InboxUpdate(channel=channel, external_id=external_id, payload=payload, received_at=now,
                              attempts=0, lease_until=now + self._lease)
            uow.session.add(row)
            try:
                await uow.commit()
            except IntegrityError:
                return None
            return row.id

    async def take_over(self, channel: str, external_id: str) -> PendingUpdate | None:
        """A repeated delivery of an update that is stored but not handled: the caller takes it over.

        This is how an update whose store looked failed is not left for the replay: the commit reached the
        database but its answer did not (the connection dropped), the webhook said 503, and Telegram
        delivered the update again. Handling it now keeps it in order with what the person sends next;
        the replay would take it only after the lease, out of order. None: handled already, given up on,
        or changed by another process meanwhile."""
        now = self._clock.now()
        async with self._uow() as uow:
            row = await uow.session.scalar(select(InboxUpdate).where(
                InboxUpdate.channel == channel, InboxUpdate.external_id == external_id))
            if row is None or row.processed_at is not None or row.attempts >= MAX_ATTEMPTS:
                return None
            unchanged = (InboxUpdate.lease_until.is_(None) if row.lease_until is None
                         else InboxUpdate.lease_until == row.lease_until)
            taken = await uow.session.execute(
                update(InboxUpdate).where(InboxUpdate.id == row.id, InboxUpdate.processed_at.is_(None), unchanged)
                .values(lease_until=now + self._lease).execution_options(synchronize_session=False))
            await uow.commit()
            if taken.rowcount != 1:
                return None
            return PendingUpdate(row.id, row.channel, row.external_id, row.payload, row.attempts)

    async def processed(self, row_id: int) -> None:
        """Handled: what was sent now lives in the draft or the case; the row keeps only what drops a
        repeated delivery (channel and external id), not the words."""
        await self._set(row_id, processed_at=self._clock.now(), payload=None, error=None, lease_until=None)

    async def failed(self, row_id: int, error: str) -> None:
        async with self._uow() as uow:
            await uow.session.execute(
                update(InboxUpdate).where(InboxUpdate.id == row_id)
                .values(error=error[:2000], attempts=InboxUpdate.attempts + 1, lease_until=None)
                .execution_options(synchronize_session=False)  # an encrypted column cannot be evaluated in Python
            )
            await uow.commit()

    async def claim(self, channel: str, *, limit: int = 100) -> list[PendingUpdate]:
        """Unprocessed updates of a channel that nobody is handling, oldest first, that may be tried again,
        each now leased to the caller (per channel, so one channel's backlog never starves another)."""
        now = self._clock.now()
        free = (InboxUpdate.channel == channel, InboxUpdate.processed_at.is_(None),
                InboxUpdate.attempts < MAX_ATTEMPTS,
                or_(InboxUpdate.lease_until.is_(None), InboxUpdate.lease_until <= now))
        claimed: list[PendingUpdate] = []
        async with self._uow() as uow:
            rows = list(await uow.session.scalars(select(InboxUpdate).where(*free).order_by(InboxUpdate.id).limit(limit)))
            for row in rows:
                taken = await uow.session.execute(
                    update(InboxUpdate).where(InboxUpdate.id == row.id, *free)
                    .values(lease_until=now + self._lease).execution_options(synchronize_session=False))
                if taken.rowcount == 1:  # else another process claimed it between the select and now
                    claimed.append(PendingUpdate(row.id, row.channel, row.external_id, row.payload, row.attempts))
            await uow.commit()
        return claimed

    async def _set(self, row_id: int, **values: Any) -> None:
        async with self._uow() as uow:
            await uow.session.execute(update(InboxUpdate).where(InboxUpdate.id == row_id).values(**values)
                                      .execution_options(synchronize_session=False))
            await uow.commit()
