"""The inbox: every inbound update is stored before it is handled, so nothing a citizen sent is lost.

Duplicates (same channel and external id) are dropped; an update whose handling failed stays
unprocessed with its error and is tried again until it is handled or has failed MAX_ATTEMPTS times,
after which it waits for staff.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from db.models import InboxUpdate
from db.uow import UnitOfWorkFactory
from intake.clock import Clock

MAX_ATTEMPTS = 5


@dataclass(frozen=True)
class PendingUpdate:
    id: int
    channel: str
    external_id: str
    payload: dict[str, Any]
    attempts: int


class Inbox:
    def __init__(self, uow: UnitOfWorkFactory, clock: Clock) -> None:
        self._uow = uow
        self._clock = clock

    async def store(self, channel: str, external_id: str, payload: dict[str, Any]) -> int | None:
        """The new row's id, or None when this update was stored before (a duplicate delivery)."""
        async with self._uow() as uow:
            row = InboxUpdate(channel=channel, external_id=external_id, payload=payload, received_at=self._clock.now(),
                              attempts=0)
            uow.session.add(row)
            try:
                await uow.commit()
            except IntegrityError:
                return None
            return row.id

    async def processed(self, row_id: int) -> None:
        await self._set(row_id, processed_at=self._clock.now(), error=None)

    async def failed(self, row_id: int, error: str) -> None:
        async with self._uow() as uow:
            await uow.session.execute(
                update(InboxUpdate).where(InboxUpdate.id == row_id)
                .values(error=error[:2000], attempts=InboxUpdate.attempts + 1)
            )
            await uow.commit()

    async def pending(self, channel: str, *, older_than: timedelta, limit: int = 100) -> list[PendingUpdate]:
        """Unprocessed updates of a channel, old enough not to be in flight, oldest first, that may be
        tried again (per channel, so one channel's backlog never starves another)."""
        cutoff: datetime = self._clock.now() - older_than
        async with self._uow() as uow:
            rows = await uow.session.scalars(
                select(InboxUpdate)
                .where(InboxUpdate.channel == channel, InboxUpdate.processed_at.is_(None),
                       InboxUpdate.received_at <= cutoff,
                       InboxUpdate.attempts < MAX_ATTEMPTS)
                .order_by(InboxUpdate.id).limit(limit)
            )
            return [PendingUpdate(r.id, r.channel, r.external_id, r.payload, r.attempts) for r in rows]

    async def _set(self, row_id: int, **values: Any) -> None:
        async with self._uow() as uow:
            await uow.session.execute(update(InboxUpdate).where(InboxUpdate.id == row_id).values(**values))
            await uow.commit()
