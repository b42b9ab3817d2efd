"""Repositories: queries and inserts on a session they are given. They never commit."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime

from sqlalchemy import case, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from db.dialect import upsert_insert
from db.models import (
    Case,
    CaseDeadline,
    CaseEvent,
    CaseMessage,
    CaseNumberCounter,
    CaseUnit,
    Complainant,
    Evidence,
    HolidayOverride,
    RateCounter,
    StaffUser,
    Subject,
    Unit,
)


class _Repository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add(self, obj) -> None:
        self.session.add(obj)


class UnitRepository(_Repository):
    async def all(self, *, active_only: bool = False) -> Sequence[Unit]:
        query = select(Unit).order_by(Unit.id)
        if active_only:
            query = query.where(Unit.active.is_(True))
        return (await self.session.scalars(query)).all()

    async def by_code(self, code: str) -> Unit | None:
        return await self.session.scalar(select(Unit).where(Unit.code == code))

    async def by_codes(self, codes: Iterable[str]) -> dict[str, Unit]:
        rows = await self.session.scalars(select(Unit).where(Unit.code.in_(list(codes))))
        return {u.code: u for u in rows}

    async def by_name(self, name: str) -> Unit | None:
        return await self.session.scalar(select(Unit).where(Unit.name == name))


class StaffUserRepository(_Repository):
    async def by_username(self, username: str) -> StaffUser | None:
        return await self.session.scalar(select(StaffUser).where(StaffUser.username == username))

    async def get(self, user_id: int) -> StaffUser | None:
        return await self.session.get(StaffUser, user_id)


class ComplainantRepository(_Repository):
    async def by_channel_user(self, channel: str, channel_user_id: str) -> Complainant | None:
        return await self.session.scalar(
            select(Complainant).where(Complainant.channel == channel, Complainant.channel_user_id == channel_user_id)
        )


class CaseRepository(_Repository):
    async def get(self, case_id: int, *, for_update: bool = False) -> Case | None:
        query = select(Case).where(Case.id == case_id).options(
            selectinload(Case.assignments).selectinload(CaseUnit.unit), selectinload(Case.deadlines)
        )
        if for_update:
            query = query.with_for_update()
        return await self.session.scalar(query)

    async def by_number(self, number: str) -> Case | None:
        return await self.session.scalar(select(Case).where(Case.number == number))

    async def next_number(self, prefix: str, year: int) -> int:
        """Atomically take the next number of the year: an upsert on a counter row, which holds
        the row lock until the transaction ends, so concurrent creators queue and never collide."""
        insert = upsert_insert(self.session)
        statement = (
            insert(CaseNumberCounter)
            .values(prefix=prefix, year=year, last_value=1)
            .on_conflict_do_update(
                index_elements=[CaseNumberCounter.prefix, CaseNumberCounter.year],
                set_={"last_value": CaseNumberCounter.last_value + 1},
            )
            .returning(CaseNumberCounter.last_value)
        )
        return (await self.session.execute(statement)).scalar_one()

    async def events(self, case_id: int) -> Sequence[CaseEvent]:
        query = select(CaseEvent).where(CaseEvent.case_id == case_id).order_by(CaseEvent.id)
        return (await self.session.scalars(query)).all()

    async def messages(self, case_id: int) -> Sequence[CaseMessage]:
        query = select(CaseMessage).where(CaseMessage.case_id == case_id).order_by(CaseMessage.id)
        return (await self.session.scalars(query)).all()

    async def evidence(self, case_id: int) -> Sequence[Evidence]:
        query = select(Evidence).where(Evidence.case_id == case_id).order_by(Evidence.id)
        return (await self.session.scalars(query)).all()

    async def deactivate_assignments(self, case_id: int) -> None:
        await self.session.execute(
            update(CaseUnit).where(CaseUnit.case_id == case_id, CaseUnit.active.is_(True)).values(active=False)
        )

    def add_deadline(self, deadline: CaseDeadline) -> None:
        self.session.add(deadline)


class SubjectRepository(_Repository):
    async def get_or_create(self, type_: str, platform: str, name: str, now) -> Subject:
        """The subject of the registry (主体名录) with this type, platform and name; created if new.
        Insert-or-ignore first, so two cases naming the same new streamer at once do not collide."""
        insert = upsert_insert(self.session)
        await self.session.execute(
            insert(Subject).values(type=type_, platform=platform, name=name, created_at=now)
            .on_conflict_do_nothing(index_elements=[Subject.type, Subject.platform, Subject.name])
        )
        return await self.session.scalar(
            select(Subject).where(Subject.type == type_, Subject.platform == platform, Subject.name == name)
        )


class HolidayOverrideRepository(_Repository):
    async def as_mapping(self) -> dict[date, bool]:
        rows = await self.session.scalars(select(HolidayOverride))
        return {row.day: row.is_workday for row in rows}


class RateCounterRepository(_Repository):
    """The counters of intake/counters.py: one row per key and window, changed by atomic statements."""

    async def add_within(self, key: str, window_start: int, amount: int, limit: int, *,
                         expires_at: datetime) -> int | None:
        """Add `amount` to the counter if it stays within `limit`: the new count, or None (nothing added).
        A single upsert, so concurrent adds never both pass on the same old count. The caller has made sure
        amount <= limit (a new row is inserted without the check)."""
        insert = upsert_insert(self.session)
        statement = (
            insert(RateCounter)
            .values(key=key, window_start=window_start, count=amount, expires_at=expires_at)
            .on_conflict_do_update(index_elements=[RateCounter.key, RateCounter.window_start],
                                   set_={"count": RateCounter.count + amount},
                                   where=RateCounter.count + amount <= limit)
            .returning(RateCounter.count)
        )
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def current(self, key: str, window_start: int) -> int:
        found = await self.session.scalar(select(RateCounter.count).where(
            RateCounter.key == key, RateCounter.window_start == window_start))
        return int(found or 0)

    async def subtract(self, key: str, window_start: int, amount: int) -> None:
        """Take `amount` off the counter, never below zero."""
        await self.session.execute(
            update(RateCounter)
            .where(RateCounter.key == key, RateCounter.window_start == window_start)
            .values(count=case((RateCounter.count > amount, RateCounter.count - amount), else_=0))
        )

    async def delete_expired(self, now: datetime) -> int:
        result = await self.session.execute(delete(RateCounter).where(RateCounter.expires_at <= now))
        return result.rowcount or 0
