"""The figures over the cases for the dashboard and the statistics forms (附件1, 附件2).

Counted in SQL (COUNT, SUM, GROUP BY over time ranges); Python only rolls up grouped rows and never
loads the cases themselves. Portable between SQLite and PostgreSQL: no date arithmetic or time-zone
functions in SQL, every local date is turned into UTC bounds here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Integer, Select, and_, case, exists, func, literal, or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased, join, outerjoin

from db.models import Case, CaseDeadline, CaseEvent, CaseMessage, CaseUnit, Subject, Unit
from db.types import UtcDateTime
from intake.status import Status
from nlu.taxonomy import CATEGORIES, FOCUS_AREAS, Kind
from reports.fields import STATS_DATA_FIELDS
from reports.period import Period, ReportScope, start_of_day

SUBJECT_TYPES = ("platform", "live_room", "operator", "service_agency", "streamer")
# outcomes that answer the matter: 附件2's "推动解决" (withdrawn, mediation failed and duplicates do not)
SOLVING_OUTCOMES = ("mediated", "case_filed", "not_filed", "answered", "other")
OTHER_FOCUS_AREA = 14  # 其他违法行为: for a category without a focus area of its own (tax)
LARGE_CASE_FEN = 1_000_000  # 1万元: 附件1's 万元以上案件
FEN_PER_WAN = Decimal(1_000_000)
SATISFIED_SCORE = 4
WEEKS = 12
OVERDUE_LIMIT = 50
HOTSPOT_LIMIT = 10

Condition = ColumnElement[bool]
Window = tuple[datetime, datetime]

# separate aliases, so the scope's EXISTS never correlates with the join that finds the lead unit
_LEAD = aliased(CaseUnit, name="lead_part")
_LEAD_UNIT = aliased(Unit, name="lead_unit")
_SCOPE_PART = aliased(CaseUnit, name="scope_part")


# -- the figures ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    """Cases received in the span; duplicates are among them and also counted apart."""

    total: int
    duplicates: int
    by_channel: Mapping[str, int]
    by_kind: Mapping[str, int]  # every kind, zeros included
    by_category: Mapping[str, int]  # every category, zeros included
    by_unit: Mapping[str | None, int]  # the current lead unit's code; None: no lead
    by_platform: Mapping[str | None, int]  # None: platform not known


@dataclass(frozen=True)
class Transfers:
    """Transfers made in the span (a case transferred twice counts twice)."""

    inside: int  # to another unit of the bureau
    in_province: int  # to an outside authority in the province
    out_of_province: int


@dataclass(frozen=True)
class Closings:
    """Cases closed in the span, with what closing recorded for 附件1."""

    total: int
    by_kind: Mapping[str, int]  # every kind, zeros included
    filed: int  # 立案
    filed_by_category: Mapping[str, int]  # every category, zeros included
    fines_fen: int
    confiscation_fen: int
    cases_over_10k: int  # filed, fines + confiscations >= 1万元
    judicial_referrals: int
    takedowns: int
    accounts_disposed: int
    sites_closed: int

    @property
    def penalties_fen(self) -> int:
        return self.fines_fen + self.confiscation_fen


@dataclass(frozen=True)
class Replies:
    """Cases received in the span that have a complainant-facing reply. Withdrawn cases and duplicates
    are left out of both numbers: their confirmation is their answer."""

    received: int
    replied: int

    @property
    def rate(self) -> float | None:
        return _share(self.replied, self.received)


@dataclass(frozen=True)
class Satisfaction:
    """Ratings given in the span."""

    distribution: Mapping[int, int]  # score 1..5 -> ratings, every score present

    @property
    def rated(self) -> int:
        return sum(self.distribution.values())

    @property
    def mean(self) -> float | None:
        total = sum(score * count for score, count in self.distribution.items())
        return total / self.rated if self.rated else None

    @property
    def satisfied(self) -> int:
        return sum(count for score, count in self.distribution.items() if score >= SATISFIED_SCORE)

    @property
    def satisfied_share(self) -> float | None:
        return _share(self.satisfied, self.rated)


@dataclass(frozen=True)
class ClockCounts:
    """Deadlines of one clock due in the span that are decided: met, or due before today."""

    clock: str
    on_time: int  # met on or before the due date (local)
    late: int  # met after it
    overdue: int  # not met, due before today

    @property
    def rate(self) -> float | None:
        return _share(self.on_time, self.on_time + self.late + self.overdue)


@dataclass(frozen=True)
class CaseCounts:
    span: Period
    received: Received
    accepted: int  # accepted_at in the span
    rejected: int  # decided in the span with a rejection ground
    transfers: Transfers
    resolved: Mapping[str, int]  # resolved in the span, by outcome
    closings: Closings
    replies: Replies
    satisfaction: Satisfaction
    clocks: Mapping[str, ClockCounts]  # by clock id


@dataclass(frozen=True)
class WeekCounts:
    start: date  # the Monday
    received: int
    closed: int


@dataclass(frozen=True)
class OverdueRow:
    number: str
    category: str
    kind: str
    lead_unit: str | None
    clock: str
    due_on: date
    days_over: int  # calendar days past the due date


@dataclass(frozen=True)
class OverdueList:
    """Unmet deadlines of open cases due before today, most overdue first (at most OVERDUE_LIMIT rows)."""

    rows: tuple[OverdueRow, ...]
    total: int  # overdue deadlines
    cases: int  # cases with at least one


@dataclass(frozen=True)
class Hotspot:
    name: str
    platform: str | None  # the platform of a live room or streamer; None for a platform itself
    cases: int


@dataclass(frozen=True)
class Hotspots:
    """Cases received in the period, top HOTSPOT_LIMIT of each."""

    live_rooms: tuple[Hotspot, ...]
    platforms: tuple[Hotspot, ...]
    streamers: tuple[Hotspot, ...]


@dataclass(frozen=True)
class SubjectCounts:
    """The subject registry (主体名录) by type, every type present; never limited to a unit."""

    in_district: Mapping[str, int]
    all: Mapping[str, int]


@dataclass(frozen=True)
class FocusRow:
    """附件2: the cases of one focus area since the campaign began (consultations and duplicates aside)."""

    focus_area: int
    found: int
    solved: int  # closed with an outcome in SOLVING_OUTCOMES


@dataclass(frozen=True)
class Figures:
    scope: ReportScope
    today: date
    period: CaseCounts
    cumulative: CaseCounts  # from the campaign's start to the period's end
    weekly: tuple[WeekCounts, ...]  # WEEKS ISO weeks, oldest first, the last one holding period.end
    overdue: OverdueList
    hotspots: Hotspots
    subjects: SubjectCounts
    focus_rows: tuple[FocusRow, ...]  # focus areas 1..14

    def stats_form_values(self) -> dict[str, int | Decimal]:
        """附件1's figures from the cases (cumulative) and the registry, by the keys of STATS_DATA_FIELDS."""
        counts = self.cumulative
        closings = counts.closings
        values: dict[str, int | Decimal] = {
            **{f"subjects_{type_}": n for type_, n in self.subjects.in_district.items()},
            "complaints_handled": counts.received.by_kind[Kind.COMPLAINT],
            "complaints_closed": closings.by_kind[Kind.COMPLAINT],
            "other_channel_count": counts.received.by_kind[Kind.TIPOFF],
            "accounts_disposed": closings.accounts_disposed,
            "sites_closed": closings.sites_closed,
            "takedowns": closings.takedowns,
            "criminal_cases": closings.judicial_referrals,
            "judicial_referrals": closings.judicial_referrals,
            "administrative_cases": closings.filed,
            "cases_over_10k": closings.cases_over_10k,
            "penalties_wan": fen_to_wan(closings.penalties_fen),
            **{f"filed_{category}": n for category, n in closings.filed_by_category.items()},
            "out_of_province_transfers": counts.transfers.out_of_province,
        }
        return {field.key: values[field.key] for field in STATS_DATA_FIELDS}


def fen_to_wan(fen: int) -> Decimal:
    """An amount in fen as 万元 with two decimals, half up (the form's unit)."""
    return (Decimal(fen) / FEN_PER_WAN).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


# -- computing them -------------------------------------------------------------------------------


async def compute_figures(session: AsyncSession, *, scope: ReportScope, period: Period, campaign_start: date,
                          tz: ZoneInfo, today: date, subject_streets: Collection[str] | None = None) -> Figures:
    """Every figure of the dashboard and the forms for `period`, of the whole bureau or of one lead unit.
    `subject_streets`: count only the registry's subjects on these streets (a 市监所's own); None: all.
    ValueError for an unknown unit or a period that ends before the campaign began."""
    if campaign_start > period.end:
        raise ValueError(f"the period ends ({period.end}) before the campaign began ({campaign_start})")
    reader = _Reader(session, await _scope_condition(session, scope), tz, today)
    since_start = Period(campaign_start, period.end)
    return Figures(
        scope=scope,
        today=today,
        period=await _case_counts(reader, period),
        cumulative=await _case_counts(reader, since_start),
        weekly=await _weekly(reader, period.end),
        overdue=await _overdue(reader),
        hotspots=await _hotspots(reader, period.bounds(tz)),
        subjects=await _subjects(session, subject_streets),
        focus_rows=await _focus_rows(reader, since_start.bounds(tz)),
    )


@dataclass(frozen=True)
class _Reader:
    session: AsyncSession
    scope: Condition
    tz: ZoneInfo
    today: date

    async def rows(self, query: Select) -> list[Any]:
        return list((await self.session.execute(query)).all())

    async def count_cases(self, *conditions: Condition) -> int:
        return await self.session.scalar(select(func.count()).select_from(Case).where(self.scope, *conditions))


async def _scope_condition(session: AsyncSession, scope: ReportScope) -> Condition:
    if scope.unit_code is None:
        return true()
    unit_id = await session.scalar(select(Unit.id).where(Unit.code == scope.unit_code))
    if unit_id is None:
        raise ValueError(f"unknown unit {scope.unit_code!r}")
    return exists(select(_SCOPE_PART.id).where(
        _SCOPE_PART.case_id == Case.id, _SCOPE_PART.unit_id == unit_id, _SCOPE_PART.active.is_(True),
        _SCOPE_PART.role == "lead"))


async def _case_counts(reader: _Reader, span: Period) -> CaseCounts:
    window = span.bounds(reader.tz)
    accepted, rejected, resolved, satisfaction = await _decisions(reader, window)
    return CaseCounts(
        span=span,
        received=await _received(reader, window),
        accepted=accepted,
        rejected=rejected,
        transfers=await _transfers(reader, window),
        resolved=resolved,
        closings=await _closings(reader, window),
        replies=await _replies(reader, window),
        satisfaction=satisfaction,
        clocks=await _clocks(reader, span),
    )


async def _received(reader: _Reader, window: Window) -> Received:
    dimensions = (Case.channel, Case.kind, Case.category, _LEAD_UNIT.code, Case.platform)
    query = (select(*dimensions, func.count(), _count_where(Case.duplicate_of_id.is_not(None)))
             .select_from(_with_lead(Case)).where(reader.scope, _within(Case.received_at, window))
             .group_by(*dimensions))
    by_channel, by_kind, by_category, by_unit, by_platform = counters = [Counter() for _ in dimensions]
    total = duplicates = 0
    for *keys, count, repeated in await reader.rows(query):
        total += count
        duplicates += repeated
        for counter, key in zip(counters, keys, strict=True):
            counter[key] += count
    return Received(total, duplicates, dict(by_channel), _every_kind(by_kind), _every_category(by_category),
                    dict(by_unit), dict(by_platform))


async def _transfers(reader: _Reader, window: Window) -> Transfers:
    inside = CaseEvent.data["unit"].as_string().is_not(None)
    out_of_province = func.coalesce(CaseEvent.data["scope"].as_string(), "in_province") == "out_of_province"
    kinds = {"inside": inside, "in_province": and_(~inside, ~out_of_province),
             "out_of_province": and_(~inside, out_of_province)}
    query = (select(*(_count_where(condition) for condition in kinds.values()))
             .select_from(join(CaseEvent, Case, CaseEvent.case_id == Case.id))
             .where(reader.scope, CaseEvent.action == "transfer", _within(CaseEvent.created_at, window)))
    (counts,) = await reader.rows(query)
    return Transfers(**{kind: n or 0 for kind, n in zip(kinds, counts, strict=True)})


async def _decisions(reader: _Reader, window: Window) -> tuple[int, int, dict[str, int], Satisfaction]:
    """Accepted, rejected, resolved by outcome and rated in the window: one pass over the cases, since
    none of these times is indexed."""
    accepted = _within(Case.accepted_at, window)
    rejected = and_(_within(Case.decided_at, window), Case.rejection_ground.is_not(None))
    resolved = _within(Case.resolved_at, window)
    rated = and_(_within(Case.rated_at, window), Case.satisfaction.is_not(None))
    query = (select(Case.outcome, Case.satisfaction, *(_count_where(c) for c in (accepted, rejected, resolved, rated)))
             .where(reader.scope, or_(accepted, rejected, resolved, rated))
             .group_by(Case.outcome, Case.satisfaction))
    accepted_count = rejected_count = 0
    by_outcome, by_score = Counter(), Counter()
    for outcome, score, accepted_n, rejected_n, resolved_n, rated_n in await reader.rows(query):
        accepted_count += accepted_n
        rejected_count += rejected_n
        by_outcome[outcome] += resolved_n
        by_score[score] += rated_n
    resolved_by_outcome = {outcome: n for outcome, n in by_outcome.items() if n}
    return accepted_count, rejected_count, resolved_by_outcome, Satisfaction({s: by_score[s] for s in range(1, 6)})


async def _closings(reader: _Reader, window: Window) -> Closings:
    penalties = func.coalesce(Case.fine_fen, 0) + func.coalesce(Case.confiscation_fen, 0)
    sums = {
        "fines_fen": func.sum(Case.fine_fen),
        "confiscation_fen": func.sum(Case.confiscation_fen),
        "cases_over_10k": _count_where(and_(Case.filed.is_(True), penalties >= LARGE_CASE_FEN)),
        "judicial_referrals": _count_where(Case.judicial_referral.is_(True)),
        "takedowns": func.sum(Case.takedowns),
        "accounts_disposed": func.sum(Case.accounts_disposed),
        "sites_closed": func.sum(Case.sites_closed),
    }
    query = (select(Case.kind, Case.category, Case.filed, func.count(), *sums.values())
             .where(reader.scope, _within(Case.closed_at, window))
             .group_by(Case.kind, Case.category, Case.filed))
    by_kind, filed_by_category, totals = Counter(), Counter(), Counter()
    for kind, category, filed, count, *amounts in await reader.rows(query):
        by_kind[kind] += count
        if filed:
            filed_by_category[category] += count
        totals.update({name: int(n or 0) for name, n in zip(sums, amounts, strict=True)})
    return Closings(total=sum(by_kind.values()), by_kind=_every_kind(by_kind), filed=sum(filed_by_category.values()),
                    filed_by_category=_every_category(filed_by_category), **{name: totals[name] for name in sums})


async def _replies(reader: _Reader, window: Window) -> Replies:
    answerable = (_within(Case.received_at, window), Case.duplicate_of_id.is_(None),
                  func.coalesce(Case.outcome, "") != "withdrawn")
    # in WHERE, not in a SUM: the database can then join the replies once instead of probing per case
    has_reply = exists(select(CaseMessage.id).where(CaseMessage.case_id == Case.id, CaseMessage.is_reply.is_(True)))
    return Replies(received=await reader.count_cases(*answerable),
                   replied=await reader.count_cases(*answerable, has_reply))


async def _clocks(reader: _Reader, span: Period) -> dict[str, ClockCounts]:
    met = CaseDeadline.met_at.is_not(None)
    days = span.days()
    next_day_starts = _floor_lookup(CaseDeadline.due_on, days, [
        literal(start_of_day(day + timedelta(days=1), reader.tz), UtcDateTime()) for day in days])
    on_time = and_(met, CaseDeadline.met_at < next_day_starts)
    query = (select(CaseDeadline.clock, func.count(), _count_where(met), _count_where(on_time))
             .select_from(join(CaseDeadline, Case, CaseDeadline.case_id == Case.id))
             .where(reader.scope, CaseDeadline.due_on.between(span.start, span.end),
                    or_(met, CaseDeadline.due_on < reader.today))
             .group_by(CaseDeadline.clock))
    counts = {}
    for clock, decided, met_count, on_time_count in await reader.rows(query):
        met_count, on_time_count = met_count or 0, on_time_count or 0
        counts[clock] = ClockCounts(clock, on_time_count, met_count - on_time_count, decided - met_count)
    return counts


async def _weekly(reader: _Reader, last_day: date) -> tuple[WeekCounts, ...]:
    last_monday = last_day - timedelta(days=last_day.weekday())
    mondays = [last_monday - timedelta(weeks=n) for n in reversed(range(WEEKS))]
    window = (start_of_day(mondays[0], reader.tz), start_of_day(last_monday + timedelta(weeks=1), reader.tz))
    received = await _per_week(reader, Case.received_at, mondays, window)
    closed = await _per_week(reader, Case.closed_at, mondays, window)
    return tuple(WeekCounts(monday, received.get(i, 0), closed.get(i, 0)) for i, monday in enumerate(mondays))


async def _per_week(reader: _Reader, column, mondays: list[date], window: Window) -> dict[int, int]:
    starts = [start_of_day(monday, reader.tz) for monday in mondays]
    week = _floor_lookup(column, starts, [literal(i, Integer) for i in range(len(starts))])
    query = select(week, func.count()).where(reader.scope, _within(column, window)).group_by(week)
    return dict(await reader.rows(query))


async def _overdue(reader: _Reader) -> OverdueList:
    overdue = (CaseDeadline.met_at.is_(None), CaseDeadline.due_on < reader.today, Case.status != Status.CLOSED.value,
               reader.scope)
    cases_with_deadlines = join(CaseDeadline, Case, CaseDeadline.case_id == Case.id)
    query = (select(Case.number, Case.category, Case.kind, _LEAD_UNIT.code, CaseDeadline.clock, CaseDeadline.due_on)
             .select_from(_with_lead(cases_with_deadlines)).where(*overdue)
             .order_by(CaseDeadline.due_on, Case.number, CaseDeadline.clock).limit(OVERDUE_LIMIT))
    rows = tuple(OverdueRow(number, category, kind, unit, clock, due_on, (reader.today - due_on).days)
                 for number, category, kind, unit, clock, due_on in await reader.rows(query))
    totals = select(func.count(), func.count(CaseDeadline.case_id.distinct())).select_from(cases_with_deadlines)
    (total, cases), = await reader.rows(totals.where(*overdue))
    return OverdueList(rows, total, cases)


async def _hotspots(reader: _Reader, window: Window) -> Hotspots:
    async def top(name, platform=None) -> tuple[Hotspot, ...]:
        columns = (name,) if platform is None else (name, platform)
        query = (select(*columns, func.count())
                 .where(reader.scope, _within(Case.received_at, window), name.is_not(None), name != "")
                 .group_by(*columns).order_by(func.count().desc(), *columns).limit(HOTSPOT_LIMIT))
        rows = await reader.rows(query)
        return tuple(Hotspot(row[0], row[1] if platform is not None else None, row[-1]) for row in rows)

    return Hotspots(live_rooms=await top(Case.live_room, Case.platform), platforms=await top(Case.platform),
                    streamers=await top(Case.streamer, Case.platform))


async def _subjects(session: AsyncSession, streets: Collection[str] | None) -> SubjectCounts:
    query = select(Subject.type, func.count(), _count_where(Subject.in_district.is_(True))).group_by(Subject.type)
    if streets is not None:
        query = query.where(Subject.street.in_(list(streets)))
    counted = {type_: (every, local or 0) for type_, every, local in (await session.execute(query)).all()}
    return SubjectCounts(in_district={t: counted.get(t, (0, 0))[1] for t in SUBJECT_TYPES},
                         all={t: counted.get(t, (0, 0))[0] for t in SUBJECT_TYPES})


async def _focus_rows(reader: _Reader, window: Window) -> tuple[FocusRow, ...]:
    first_area_of_category = {c.id: c.focus_areas[0] for c in CATEGORIES if c.focus_areas}
    area = func.coalesce(Case.focus_area, case(first_area_of_category, value=Case.category, else_=OTHER_FOCUS_AREA))
    solved = and_(Case.closed_at < window[1], Case.outcome.in_(SOLVING_OUTCOMES))
    query = (select(area, func.count(), _count_where(solved))
             .where(reader.scope, _within(Case.received_at, window), Case.kind != Kind.CONSULTATION.value,
                    Case.duplicate_of_id.is_(None))
             .group_by(area))
    counted = {focus_area: (found, solved or 0) for focus_area, found, solved in await reader.rows(query)}
    return tuple(FocusRow(n, *counted.get(n, (0, 0))) for n in sorted(FOCUS_AREAS))


# -- helpers --------------------------------------------------------------------------------------


def _within(column, window: Window) -> Condition:
    return and_(column >= window[0], column < window[1])


def _count_where(condition: Condition):
    return func.sum(case((condition, 1), else_=0))


def _with_lead(left):
    """`left` (cases, or a join holding them) with the case's active lead unit, if any."""
    return (outerjoin(left, _LEAD, and_(_LEAD.case_id == Case.id, _LEAD.active.is_(True), _LEAD.role == "lead"))
            .outerjoin(_LEAD_UNIT, _LEAD_UNIT.id == _LEAD.unit_id))


def _floor_lookup(column, keys: Sequence[Any], values: Sequence[ColumnElement[Any]]) -> ColumnElement[Any]:
    """values[i] of the greatest keys[i] <= column, for a column known to be >= keys[0] (keys ascending).

    A balanced CASE: a row costs log2(len(keys)) comparisons, so a local date can be matched to its UTC
    bounds over a campaign of years without SQL date arithmetic, which no two databases share."""
    if len(keys) == 1:
        return values[0]
    middle = len(keys) // 2
    return case((column < keys[middle], _floor_lookup(column, keys[:middle], values[:middle])),
                else_=_floor_lookup(column, keys[middle:], values[middle:]))


def _every_kind(counted: Mapping[str, int]) -> dict[str, int]:
    return {kind.value: counted.get(kind.value, 0) for kind in Kind}


def _every_category(counted: Mapping[str, int]) -> dict[str, int]:
    return {c.id: counted.get(c.id, 0) for c in CATEGORIES}


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None
