"""Unit of work: one session and its repositories per business transaction.

    async with uow:
        ...
        await uow.commit()

Leaving the block without commit rolls back.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.repositories import (
    CaseRepository,
    ComplainantRepository,
    HolidayOverrideRepository,
    StaffUserRepository,
    SubjectRepository,
    UnitRepository,
)


class UnitOfWork:
    session: AsyncSession
    units: UnitRepository
    users: StaffUserRepository
    complainants: ComplainantRepository
    cases: CaseRepository
    holidays: HolidayOverrideRepository
    subjects: SubjectRepository

    def __init__(self, session_factory: async_sessionmaker) -> None:
        self._session_factory = session_factory

    async def __aenter__(self) -> UnitOfWork:
        self.session = self._session_factory()
        self.units = UnitRepository(self.session)
        self.users = StaffUserRepository(self.session)
        self.complainants = ComplainantRepository(self.session)
        self.cases = CaseRepository(self.session)
        self.holidays = HolidayOverrideRepository(self.session)
        self.subjects = SubjectRepository(self.session)
        return self

    async def __aexit__(self, exc_type, exc, tb) -> None:
        # close() rolls back whatever was not committed and detaches objects without expiring
        # them, so values read inside the block stay readable after it.
        await self.session.close()

    async def commit(self) -> None:
        await self.session.commit()

    async def flush(self) -> None:
        await self.session.flush()


class UnitOfWorkFactory:
    """Makes a fresh UnitOfWork per use; this is what services are given."""

    def __init__(self, session_factory: async_sessionmaker) -> None:
        self._session_factory = session_factory

    def __call__(self) -> UnitOfWork:
        return UnitOfWork(self._session_factory)
