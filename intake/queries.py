"""Reading cases for staff: the queue (filters, counts, keyset pages) and one case in full.

Access scope comes in as a SQL clause (web/access.py), so pages and API share one rule.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, fields
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Select, and_, exists, func, or_, select

from db.models import (
    Case,
    CaseDeadline,
    CaseEvent,
    CaseMessage,
    CaseSubject,
    CaseUnit,
    Complainant,
    Evidence,
    Subject,
    Unit,
)
from db.uow import UnitOfWorkFactory
from intake.clock import Clock
from intake.status import Status

OPEN_STATUSES = (Status.RECEIVED, Status.ACCEPTED, Status.TRANSFERRED, Status.IN_PROGRESS, Status.RESOLVED, Status.REJECTED)
DUE_SOON_DAYS = 3
MAX_PAGE = 200
EXCERPT = 80  # characters of the description a list shows
EXPORT_BATCH = 1000  # cases per read of an export


class BadQuery(ValueError):
    """A filter or cursor that cannot be used; the message says which."""


@dataclass(frozen=True)
class CaseFilter:
    status: tuple[str, ...] = ()  # empty: every open status
    kind: tuple[str, ...] = ()
    category: tuple[str, ...] = ()
    unit: str | None = None  # unit code with an active part in the case
    channel: tuple[str, ...] = ()
    platform: str | None = None
    due: str | None = None  # overdue | due_soon | provisional
    received_from: date | None = None
    received_to: date | None = None
    text: str | None = None


@dataclass(frozen=True)
class CaseRow:
    id: int
    number: str
    kind: str
    category: str
    status: str
    channel: str
    platform: str | None
    received_at: datetime
    next_due_on: date | None
    lead_unit: str | None
    excerpt: str
    overdue: bool
    due_soon: bool
    urgent: bool = False  # a crisis signal (nlu/crisis.py)


@dataclass(frozen=True)
class ExportRow:
    """One case of an export: what the queue shows and what closing recorded; no personal data."""

    number: str
    kind: str
    category: str
    status: str
    channel: str
    received_at: datetime
    platform: str | None
    live_room: str | None
    streamer: str | None
    product: str | None
    amount_fen: int | None
    lead_unit: str | None
    next_due_on: date | None
    overdue: bool
    replied_at: datetime | None
    closed_at: datetime | None
    outcome: str | None
    filed: bool | None
    fine_fen: int | None
    confiscation_fen: int | None
    judicial_referral: bool
    takedowns: int | None
    accounts_disposed: int | None
    sites_closed: int | None
    excerpt: str


# the columns of Case an ExportRow is read from (the excerpt is cut in SQL: descriptions can be long)
EXPORT_COLUMNS = (
    Case.id, Case.number, Case.kind, Case.category, Case.status, Case.channel, Case.received_at, Case.platform,
    Case.live_room, Case.streamer, Case.product, Case.amount_fen, Case.next_due_on, Case.replied_at, Case.closed_at,
    Case.outcome, Case.filed, Case.fine_fen, Case.confiscation_fen, Case.judicial_referral, Case.takedowns,
    Case.accounts_disposed, Case.sites_closed, func.substr(Case.description, 1, EXCERPT).label("excerpt"),
)
# the fields of ExportRow taken as read; the others are computed (_export_row)
EXPORT_FIELDS = tuple(f.name for f in fields(ExportRow) if f.name not in ("lead_unit", "overdue", "judicial_referral"))


@dataclass(frozen=True)
class Page:
    rows: list[CaseRow]
    next_cursor: str | None


@dataclass
class CaseDetail:
    case: Case
    complainant: Complainant | None
    units: list[tuple[Unit, str]]  # (unit, lead|co), active parts
    deadlines: list[CaseDeadline]
    evidence: list[Evidence]
    events: list[CaseEvent]
    messages: list[CaseMessage]
    subjects: list[Subject] = field(default_factory=list)

    @property
    def unit_parts(self) -> dict[int, str]:
        return {unit.id: role for unit, role in self.units}


class CaseQueries:
    def __init__(self, uow: UnitOfWorkFactory, clock: Clock, tz: ZoneInfo) -> None:
        self._uow = uow
        self._clock = clock
        self._tz = tz

    def today(self) -> date:
        return self._clock.now().astimezone(self._tz).date()

    async def page(self, scope: ColumnElement[bool], filters: CaseFilter, *, cursor: str | None = None,
                   limit: int = 50) -> Page:
        """Cases ordered by the nearest statutory deadline (none last), then by id; keyset pagination."""
        limit = max(1, min(limit, MAX_PAGE))
        query = select(Case).where(scope, *self._conditions(filters))
        if cursor:
            query = query.where(_after(decode_cursor(cursor)))
        query = query.order_by(Case.next_due_on.asc().nulls_last(), Case.id.asc()).limit(limit + 1)
        today = self.today()
        async with self._uow() as uow:
            cases = list((await uow.session.scalars(query)).all())
            leads = await self.lead_codes(uow, [c.id for c in cases[:limit]])
        rows = [self._row(c, leads.get(c.id), today) for c in cases[:limit]]
        next_cursor = _encode_cursor(cases[limit - 1]) if len(cases) > limit else None
        return Page(rows, next_cursor)

    async def export_batches(self, scope: ColumnElement[bool], filters: CaseFilter, *,
                             batch: int = EXPORT_BATCH) -> AsyncIterator[list[ExportRow]]:
        """Every case the queue lists under the filters, in the order they came in (id), `batch` cases at
        a time. Each batch is a short read of its own that continues after the last id of the one before
        (keyset on the primary key, or on ix_cases_open_id_status for open cases: linear in the cases
        read), so memory holds one batch and no transaction stays open while the caller sends it on."""
        today = self.today()
        conditions = [scope, *self._conditions(filters)]
        last_id = 0
        while True:
            query = select(*EXPORT_COLUMNS).where(*conditions, Case.id > last_id).order_by(Case.id).limit(batch)
            async with self._uow() as uow:
                rows = (await uow.session.execute(query)).all()
                leads = await self.lead_codes(uow, [row.id for row in rows])
            if not rows:
                return
            yield [_export_row(row, leads.get(row.id), today) for row in rows]
            if len(rows) < batch:
                return
            last_id = rows[-1].id

    async def counts(self, scope: ColumnElement[bool], filters: CaseFilter) -> dict[str, int]:
        """Cases per status under the filters (the status filter itself aside). Closed cases, the
        great majority after a while, are counted only when the filter asks for them: counting them
        on every queue page cost 60-250 ms at a million cases (bench/console.py)."""
        query = self.counts_query(scope, filters)
        async with self._uow() as uow:
            return {status: count for status, count in (await uow.session.execute(query)).all()}

    def counts_query(self, scope: ColumnElement[bool], filters: CaseFilter) -> Select:
        """The statement behind counts() (bench/console.py explains it).

        With only open statuses counted, `status IN (open ones)` implies the predicate of the partial
        index ix_cases_open_id_status (id, status), so a handler's counts are a merge of that index with
        its unit's entries of ix_case_units_unit_active_case (unit_id, active, case_id): no table row is
        read (migration 0007; EXPLAIN ANALYZE at 1,000,000 cases on a busy 2-CPU machine: 440-1090 -> 45-60 ms)."""
        counted = [s.value for s in OPEN_STATUSES]
        if Status.CLOSED.value in filters.status:
            counted.append(Status.CLOSED.value)
        other = CaseFilter(**{**filters.__dict__, "status": tuple(counted)})
        return select(Case.status, func.count()).where(scope, *self._conditions(other)).group_by(Case.status)

    async def detail(self, scope: ColumnElement[bool], number: str) -> CaseDetail | None:
        """The case if it exists AND is in scope; otherwise None (callers answer 404 either way)."""
        async with self._uow() as uow:
            case = await uow.session.scalar(select(Case).where(Case.number == number, scope))
            if case is None:
                return None
            units = (await uow.session.execute(
                select(Unit, CaseUnit.role).join(CaseUnit, CaseUnit.unit_id == Unit.id)
                .where(CaseUnit.case_id == case.id, CaseUnit.active.is_(True)).order_by(CaseUnit.role.desc(), Unit.id)
            )).all()
            complainant = await uow.session.get(Complainant, case.complainant_id) if case.complainant_id else None
            deadlines = (await uow.session.scalars(
                select(CaseDeadline).where(CaseDeadline.case_id == case.id).order_by(CaseDeadline.due_on))).all()
            subjects = (await uow.session.scalars(
                select(Subject).join(CaseSubject, CaseSubject.subject_id == Subject.id).where(CaseSubject.case_id == case.id)
            )).all()
            return CaseDetail(
                case=case,
                complainant=complainant,
                units=[(unit, role) for unit, role in units],
                deadlines=list(deadlines),
                evidence=list(await uow.cases.evidence(case.id)),
                events=list(await uow.cases.events(case.id)),
                messages=list(await uow.cases.messages(case.id)),
                subjects=list(subjects),
            )

    def _conditions(self, f: CaseFilter) -> list[ColumnElement[bool]]:
        conditions: list[ColumnElement[bool]] = [Case.status.in_(f.status or [s.value for s in OPEN_STATUSES])]
        if f.kind:
            conditions.append(Case.kind.in_(f.kind))
        if f.category:
            conditions.append(Case.category.in_(f.category))
        if f.channel:
            conditions.append(Case.channel.in_(f.channel))
        if f.platform:
            conditions.append(Case.platform == f.platform)
        if f.unit:
            conditions.append(exists(
                select(CaseUnit.id).join(Unit, Unit.id == CaseUnit.unit_id)
                .where(CaseUnit.case_id == Case.id, CaseUnit.active.is_(True), Unit.code == f.unit)))
        today = self.today()
        if f.due == "overdue":
            conditions.append(Case.next_due_on < today)
        elif f.due == "due_soon":
            conditions.append(Case.next_due_on.between(today, today + timedelta(days=DUE_SOON_DAYS)))
        elif f.due == "provisional":
            conditions.append(exists(select(CaseDeadline.id).where(
                CaseDeadline.case_id == Case.id, CaseDeadline.provisional.is_(True), CaseDeadline.met_at.is_(None))))
        elif f.due:
            raise BadQuery(f"due must be overdue, due_soon or provisional, not {f.due!r}")
        if f.received_from:
            conditions.append(Case.received_at >= self._start_of(f.received_from))
        if f.received_to:
            conditions.append(Case.received_at < self._start_of(f.received_to + timedelta(days=1)))
        if f.text:
            pattern = "%" + f.text.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            conditions.append(or_(
                Case.number.ilike(pattern, escape="\\"),
                Case.description.ilike(pattern, escape="\\"),
                Case.live_room.ilike(pattern, escape="\\"),
                Case.streamer.ilike(pattern, escape="\\"),
                Case.merchant_name.ilike(pattern, escape="\\"),
                exists(select(CaseSubject.id).join(Subject, Subject.id == CaseSubject.subject_id)
                       .where(CaseSubject.case_id == Case.id, Subject.name.ilike(pattern, escape="\\"))),
            ))
        return conditions

    def _start_of(self, day: date) -> datetime:
        return datetime.combine(day, time(0), tzinfo=self._tz)

    @staticmethod
    async def lead_codes(uow, case_ids: list[int]) -> dict[int, str]:
        """The code of each case's lead unit (a case without one is left out)."""
        if not case_ids:
            return {}
        rows = await uow.session.execute(
            select(CaseUnit.case_id, Unit.code).join(Unit, Unit.id == CaseUnit.unit_id)
            .where(CaseUnit.case_id.in_(case_ids), CaseUnit.active.is_(True), CaseUnit.role == "lead"))
        return dict(rows.all())

    @staticmethod
    def _row(case: Case, lead: str | None, today: date) -> CaseRow:
        due = case.next_due_on
        return CaseRow(
            id=case.id, number=case.number, kind=case.kind, category=case.category, status=case.status,
            channel=case.channel, platform=case.platform, received_at=case.received_at, next_due_on=due,
            lead_unit=lead, excerpt=case.description[:EXCERPT], overdue=_overdue(due, today),
            due_soon=due is not None and today <= due <= today + timedelta(days=DUE_SOON_DAYS), urgent=case.urgent,
        )


def _overdue(due: date | None, today: date) -> bool:
    return due is not None and due < today


def _export_row(row, lead: str | None, today: date) -> ExportRow:
    values = row._mapping
    return ExportRow(**{name: values[name] for name in EXPORT_FIELDS}, lead_unit=lead,
                     overdue=_overdue(row.next_due_on, today), judicial_referral=bool(row.judicial_referral))


def _encode_cursor(case: Case) -> str:
    raw = json.dumps([case.next_due_on.isoformat() if case.next_due_on else None, case.id])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[date | None, int]:
    """The position a cursor names; BadQuery for anything this module did not make."""
    try:
        due, case_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        position = (date.fromisoformat(due) if due else None), int(case_id)
    except (ValueError, TypeError):
        raise BadQuery("the page cursor is not valid; start from the first page") from None
    if not 0 < position[1] < 2**63:
        raise BadQuery("the page cursor is not valid; start from the first page")
    return position


def _after(position: tuple[date | None, int]) -> ColumnElement[bool]:
    due, case_id = position
    if due is None:  # already among the cases without a deadline, which come last
        return and_(Case.next_due_on.is_(None), Case.id > case_id)
    return or_(Case.next_due_on > due, and_(Case.next_due_on == due, Case.id > case_id), Case.next_due_on.is_(None))
