"""The subject ledgers (主体名录) of the staff console: platforms, live rooms and their operators,
live-marketing service agencies and streamers, each with the cases that name it, and a hotspot list
of the live rooms and streamers with the most cases in the last 7 or 30 days.

Read-only. Every role may open the pages, but every case and every count goes through
web.access.case_scope: a handler sees only the cases (and counts) of its own unit. A subject that does
not exist is 404; bad query parameters are 400 pages. Names are untrusted: autoescaped templates only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from sqlalchemy import ColumnElement, func, or_, select

from db.models import Case, CaseSubject, Subject
from qinglang.i18n import N_
from web.access import case_scope
from web.console.routes import _error, _page, _require, _tr
from web.keys import CONTAINER

PAGE_SIZE = 50
CASES_SHOWN = 200
HOTSPOT_LIMIT = 20
HOTSPOT_WINDOWS = (7, 30)
MAX_ID = 2**63 - 1

# the four ledgers of the seed; the live-room ledger holds live rooms and their operators
LEDGERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "platform": (N_("直播平台"), ("platform",)),
    "live_room": (N_("直播间运营者"), ("live_room", "operator")),
    "service_agency": (N_("直播营销服务机构"), ("service_agency",)),
    "streamer": (N_("直播营销人员"), ("streamer",)),
}
LEDGER_OF_TYPE = {t: key for key, (_name, types) in LEDGERS.items() for t in types}
TYPE_NAMES = {
    "platform": N_("直播平台"), "live_room": N_("直播间"), "operator": N_("直播间运营者"),
    "service_agency": N_("直播营销服务机构"), "streamer": N_("直播营销人员"),
}
ROLE_NAMES = {"reported": N_("被投诉举报")}


def register(app: web.Application) -> None:
    router = app.router
    router.add_get("/subjects", subject_list)
    router.add_get("/subjects/hotspots", hotspots)
    router.add_get(r"/subjects/{id:\d{1,19}}", subject_page)
    router.add_get("/subjects/{rest:.+}", not_found)


# -- reads ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SubjectRow:
    id: int
    type: str
    name: str
    platform: str
    in_district: bool | None
    street: str | None
    cases: int


def _scoped_count(scope: ColumnElement[bool]):
    """The number of cases in scope naming the subject of the enclosing query."""
    return (select(func.count(func.distinct(CaseSubject.case_id)))
            .join(Case, Case.id == CaseSubject.case_id)
            .where(CaseSubject.subject_id == Subject.id, scope)
            .correlate(Subject).scalar_subquery())


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _row(subject: Subject, count: int | None) -> SubjectRow:
    return SubjectRow(subject.id, subject.type, subject.name, subject.platform or "", subject.in_district,
                      subject.street, int(count or 0))


async def _ledger(container, scope: ColumnElement[bool], types: tuple[str, ...], text: str | None,
                  page: int) -> tuple[list[SubjectRow], int]:
    conditions = [Subject.type.in_(types)]
    if text:
        pattern = _like(text)
        conditions.append(or_(Subject.name.ilike(pattern, escape="\\"), Subject.platform.ilike(pattern, escape="\\")))
    count = _scoped_count(scope).label("cases")
    async with container.uow() as uow:
        total = await uow.session.scalar(select(func.count(Subject.id)).where(*conditions))
        rows = (await uow.session.execute(
            select(Subject, count).where(*conditions)
            .order_by(count.desc(), Subject.name, Subject.id)
            .offset((page - 1) * PAGE_SIZE).limit(PAGE_SIZE)
        )).all()
    return [_row(subject, n) for subject, n in rows], int(total or 0)


async def _subject(container, scope: ColumnElement[bool], subject_id: int):
    async with container.uow() as uow:
        subject = await uow.session.get(Subject, subject_id)
        if subject is None:
            return None, [], 0
        total = await uow.session.scalar(
            select(func.count(func.distinct(CaseSubject.case_id))).join(Case, Case.id == CaseSubject.case_id)
            .where(CaseSubject.subject_id == subject_id, scope))
        cases = (await uow.session.execute(
            select(Case.id, Case.number, Case.kind, Case.category, Case.status, Case.received_at,
                   Case.next_due_on, Case.platform, CaseSubject.role)
            .join(CaseSubject, CaseSubject.case_id == Case.id)
            .where(CaseSubject.subject_id == subject_id, scope)
            .order_by(Case.received_at.desc(), Case.id.desc())
            .limit(CASES_SHOWN)
        )).all()
        row = _row(subject, total)
        notes = subject.notes
    return (row, notes), list(cases), int(total or 0)


async def _hot(container, scope: ColumnElement[bool], type_: str, since: datetime) -> list[SubjectRow]:
    count = func.count(func.distinct(Case.id)).label("cases")
    async with container.uow() as uow:
        rows = (await uow.session.execute(
            select(Subject.id, Subject.type, Subject.name, Subject.platform, Subject.in_district, Subject.street, count)
            .join(CaseSubject, CaseSubject.subject_id == Subject.id)
            .join(Case, Case.id == CaseSubject.case_id)
            .where(Subject.type == type_, Case.received_at >= since, scope)
            .group_by(Subject.id, Subject.type, Subject.name, Subject.platform, Subject.in_district, Subject.street)
            .order_by(count.desc(), Subject.name, Subject.id)
            .limit(HOTSPOT_LIMIT)
        )).all()
    return [SubjectRow(i, t, n, p or "", d, s, int(c)) for i, t, n, p, d, s, c in rows]


# -- pages ------------------------------------------------------------------------------------------


def _names(request: web.Request) -> dict[str, Any]:
    _ = _tr(request)
    return {
        "ledgers": [(key, _(name)) for key, (name, _types) in LEDGERS.items()],
        "type_names": {k: _(v) for k, v in TYPE_NAMES.items()},
        "subject_role_names": {k: _(v) for k, v in ROLE_NAMES.items()},
    }


def _bad_request(request: web.Request, principal, message: str, back: str = "/subjects") -> web.Response:
    _ = _tr(request)
    return _error(request, principal, 400, _("请求参数无效"), message, back=back)


async def subject_list(request: web.Request) -> web.Response:
    principal = _require(request)
    _ = _tr(request)
    ledger = request.query.get("type") or "platform"
    if ledger not in LEDGERS:
        return _bad_request(request, principal, _("没有这个名录：{name}").format(name=ledger[:40]))
    raw_page = request.query.get("page") or "1"
    if not raw_page.isdigit() or not 1 <= int(raw_page) <= 100_000:
        return _bad_request(request, principal, _("页码无效。"))
    page = int(raw_page)
    text = (request.query.get("q") or "").strip()[:100] or None
    rows, total = await _ledger(request.app[CONTAINER], case_scope(principal), LEDGERS[ledger][1], text, page)
    pages = max(1, -(-total // PAGE_SIZE))

    def href(p: int) -> str:
        pairs = [("type", ledger)] + ([("q", text)] if text else []) + ([("page", str(p))] if p > 1 else [])
        return "/subjects?" + urlencode(pairs)

    return _page(request, principal, "subjects.html", ledger=ledger, ledger_name=_(LEDGERS[ledger][0]),
                 rows=rows, total=total, page=page, pages=pages, text=text or "",
                 prev_href=href(page - 1) if page > 1 else None,
                 next_href=href(page + 1) if page < pages else None, **_names(request))


async def subject_page(request: web.Request) -> web.Response:
    principal = _require(request)
    _ = _tr(request)
    subject_id = int(request.match_info["id"])
    found = None
    if 0 < subject_id <= MAX_ID:
        found, cases, total = await _subject(request.app[CONTAINER], case_scope(principal), subject_id)
    if found is None:
        return _error(request, principal, 404, _("未找到"), _("没有这个主体。"), back="/subjects")
    subject, notes = found
    return _page(request, principal, "subjects_detail.html", subject=subject, notes=notes, cases=cases,
                 total=total, shown=len(cases), ledger=LEDGER_OF_TYPE.get(subject.type, "platform"),
                 **_names(request))


async def hotspots(request: web.Request) -> web.Response:
    principal = _require(request)
    _ = _tr(request)
    raw = request.query.get("days") or "7"
    if not raw.isdigit() or int(raw) not in HOTSPOT_WINDOWS:
        return _bad_request(request, principal, _("统计天数只能是 7 或 30。"), back="/subjects/hotspots")
    days = int(raw)
    container = request.app[CONTAINER]
    now: datetime = container.clock.now()
    since = now - timedelta(days=days)
    scope = case_scope(principal)
    live_rooms = await _hot(container, scope, "live_room", since)
    streamers = await _hot(container, scope, "streamer", since)
    return _page(request, principal, "subjects_hotspots.html", days=days, windows=HOTSPOT_WINDOWS, since=since,
                 until=now, live_rooms=live_rooms, streamers=streamers, **_names(request))


async def not_found(request: web.Request) -> web.Response:
    principal = _require(request)
    _ = _tr(request)
    return _error(request, principal, 404, _("未找到"), _("没有这个主体。"), back="/subjects")


__all__ = ["register"]
