"""The reports (issue 7) on a large database: seed N realistic cases, then time the figures, the exports
of the two forms and the console's report pages.

    .venv/bin/python bench/reports.py --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/bench_reports \\
        --cases 100000 [--cases 1000000] [--requests 20] [--explain] [--reset]

The cases are seeded by bench/console.py (its Generator, Writer and seed_to: the same database serves
both benches, and a database already holding N cases is reused as it is). On top of that seed, which
has no facts of the reports' own, each case is given once (ids past a mark per step, kept in the
case_events row of action 'bench_seed', so a re-run or a top-up only adds the new cases'):

- close facts on part of the closed cases: 立案 (case_filed → yes, not_filed → no), fines and
  confiscations on most filed ones (some over 1万元), judicial referrals, takedowns, disposed
  accounts and closed sites on some platform cases;
- the follow-up survey of named closed complaints (survey_due_on) and a rating on ~45 % of them;
- duplicate_of_id for the cases closed as duplicates;
- transfers as case_events (action 'transfer'): to another unit of the bureau ({"unit": code}) for the
  cases whose lead changed, and to outside authorities ({"authority": ..., "scope": in_province |
  out_of_province}) for the closed ones the seed marks transferred and half of the open 'transferred'
  ones (the case's transfer_authority/transfer_scope updated to match);
- 'resolve' events, and case_messages that are not replies (the complainant's messages, requests for
  information) beside the seed's official replies (is_reply), so the partial index of replies matters;
- the deadlines the closed cases ran (acceptance or check, transfer, mediation, informant notice), met:
  the seed gives case_deadlines to the open cases only, and the reports' on-time rates read them.

The cases are received over the two years before now (bench/console.py), so they cover every month
from two years ago; the campaign start (--campaign-start, default the setting QINGLANG_CAMPAIGN_START)
must leave several of those months after it. Measured, one request at a time, --requests times each
after a warm-up: ReportService.figures for the month of the latest cases (--period to choose another)
for the whole bureau, a station and a branch; the export of 附件1 and 附件2 (the latter with an override
reason when its rules are broken, the count of broken rules printed); GET /dashboard and /reports in
the console as a triage user (the whole bureau) and /dashboard as a handler (its unit). Then the time
per part of compute_figures (each private coroutine of reports/figures.py, timed by wrapping it, and
every SQL statement each part runs), median of --breakdown-runs runs. One JSON object per size on
stdout. --explain adds EXPLAIN (ANALYZE, BUFFERS) of the slowest statements per scope (PostgreSQL):
full plans on stderr, key lines in the JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import random
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402
from sqlalchemy import bindparam, event, func, insert, select, text, update  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine  # noqa: E402

import reports.figures as figures_module  # noqa: E402
from bench.console import (  # noqa: E402
    HANDLER_USER,
    KEY_LINE,
    TRIAGE_USER,
    Writer,
    database_arguments,
    ensure_database,
    ensure_staff,
    ensure_subjects,
    parse_database_arguments,
    reset,
    row_counts,
    seed_to,
    settings_for,
    summary,
)
from db import migrate  # noqa: E402
from db.models import Base, Case, CaseEvent, CaseUnit, Unit  # noqa: E402
from qinglang.bootstrap import Container, build_container  # noqa: E402
from reports.period import Period, ReportScope  # noqa: E402
from reports.service import ReportService  # noqa: E402
from routing.sync import sync_units  # noqa: E402
from web.app import create_app  # noqa: E402
from web.keys import SESSION_COOKIE  # noqa: E402
from web.security import Authenticator  # noqa: E402

CHUNK = 50_000  # cases enriched per transaction
MARKER = "bench_seed"  # case_events.action of the row that remembers how far the cases were enriched
IN_PROVINCE = ["杭州市市场监督管理局", "义乌市市场监督管理局", "温州市鹿城区市场监督管理局", "宁波市市场监督管理局",
               "温州市瓯海区市场监督管理局", "绍兴市柯桥区市场监督管理局"]
OUT_OF_PROVINCE = ["广州市市场监督管理局", "深圳市市场监督管理局", "上海市市场监督管理局", "临沂市市场监督管理局",
                   "泉州市市场监督管理局", "苏州市市场监督管理局"]
MESSAGES_IN = ["补充一下订单截图。", "商家还是没有联系我，请问进展如何？", "我已经把聊天记录发过来了。", "请尽快处理，谢谢。"]
MESSAGES_OUT = ["请补充订单编号和付款截图。", "请提供与商家的沟通记录。", "请确认商家名称和直播间名称。"]
SCORES = ([1, 2, 3, 4, 5], [7, 8, 15, 30, 40])
FACT_COLUMNS = ["id", "filed", "fine_fen", "confiscation_fen", "judicial_referral", "takedowns", "accounts_disposed",
                "sites_closed", "survey_due_on", "satisfaction", "rated_at", "duplicate_of_id", "transfer_authority",
                "transfer_scope"]
EVENT_COLUMNS = ["id", "case_id", "actor_type", "actor_id", "action", "from_status", "to_status", "note", "data",
                 "created_at"]
MESSAGE_COLUMNS = ["id", "case_id", "direction", "body", "is_reply", "info_request", "staff_user_id", "created_at"]


# -- the reports' facts on top of bench/console.py's seed ---------------------------------------------------


@dataclass
class Enrichment:
    """What the enrichment steps share: the next ids, now, the staff who act, unit codes, clock bases."""

    seed: int
    ids: dict[str, int]
    now: datetime
    tz: Any
    staff_ids: list[int]
    unit_codes: dict[int, str]
    basis: dict[str, str]


async def enrich(container: Container, writer: Writer, seed: int, staff_ids: list[int]) -> dict[str, Any]:
    """Run each step over the cases past its mark (kept in the marker event), CHUNK cases a transaction."""
    engine = container.engine
    async with engine.begin() as conn:
        marker = (await conn.execute(select(CaseEvent.data).where(CaseEvent.action == MARKER))).scalar()
        if marker is None:
            marker = {step: 0 for step in STEPS}
            await conn.execute(insert(CaseEvent).values(case_id=None, actor_type="system", action=MARKER,
                                                        data=marker, created_at=container.clock.now()))
        marker = {step: int(marker.get(step, 0)) for step in STEPS}
        last = await conn.scalar(select(func.coalesce(func.max(Case.id), 0)))
        codes = dict((await conn.execute(select(Unit.id, Unit.code))).all())
    if all(done >= last for done in marker.values()):
        return {"enriched_to": last, "added": 0}
    basis = {}
    for clock in ("complaint_acceptance", "complaint_mediation", "tipoff_check", "informant_notice", "transfer"):
        try:
            basis[clock] = container.policy.clock(clock).versions[-1].basis
        except (KeyError, AttributeError):
            basis[clock] = ""
    shared = Enrichment(seed, await writer.next_ids(), container.clock.now(), container.settings.tz, staff_ids,
                        codes, basis)
    added: dict[str, Any] = defaultdict(int)
    started = time.perf_counter()
    for step, function in STEPS.items():
        for low in range(marker[step] + 1, last + 1, CHUNK):
            high = min(low + CHUNK - 1, last)
            rng = random.Random(f"{seed}:{step}:{low}")  # the same rows whatever the top-ups were
            async with engine.begin() as conn:
                for name, n in (await function(conn, shared, rng, low, high)).items():
                    added[name] += n
                marker[step] = high
                await conn.execute(update(CaseEvent).where(CaseEvent.action == MARKER).values(data=dict(marker)))
            print(f"  {step}: cases up to {high:,} ({time.perf_counter() - started:.0f} s)", file=sys.stderr,
                  flush=True)
    await writer.fix_sequences()
    enrich_seconds = time.perf_counter() - started
    started = time.perf_counter()
    await writer.vacuum_analyze()
    return {"enriched_to": last, **added, "enrich_seconds": round(enrich_seconds, 1),
            "vacuum_analyze_seconds": round(time.perf_counter() - started, 1)}


async def _facts_step(conn: AsyncConnection, shared: Enrichment, rng: random.Random, low: int, high: int
                      ) -> dict[str, int]:
    cases = (await conn.execute(
        select(Case.id, Case.kind, Case.status, Case.outcome, Case.platform, Case.anonymous,
               Case.received_at, Case.decided_at, Case.resolved_at, Case.closed_at,
               Case.transfer_authority, Case.transfer_scope)
        .where(Case.id.between(low, high)).order_by(Case.id))).all()
    moved = set((await conn.scalars(select(CaseUnit.case_id).where(
        CaseUnit.case_id.between(low, high), CaseUnit.active.is_(False), CaseUnit.role == "lead"))).all())
    leads = dict((await conn.execute(select(CaseUnit.case_id, CaseUnit.unit_id).where(
        CaseUnit.case_id.between(low, high), CaseUnit.active.is_(True), CaseUnit.role == "lead"))).all())
    facts, events, messages = [], [], []
    for row in cases:
        _enrich_case(rng, row, moved, shared.unit_codes.get(leads.get(row.id)), shared.staff_ids, shared.now,
                     shared.tz, shared.ids, facts, events, messages)
    await _insert(conn, "case_events", EVENT_COLUMNS, events)
    await _insert(conn, "case_messages", MESSAGE_COLUMNS, messages)
    await _update_facts(conn, facts)
    return {"cases_with_facts": len(facts), "events": len(events), "messages": len(messages)}


async def _deadlines_step(conn: AsyncConnection, shared: Enrichment, rng: random.Random, low: int, high: int
                          ) -> dict[str, int]:
    """The clocks closed cases ran, met (the seed gives deadlines to the open cases only)."""
    cases = (await conn.execute(
        select(Case.id, Case.kind, Case.anonymous, Case.received_at, Case.accepted_at, Case.decided_at,
               Case.resolved_at, Case.transfer_authority)
        .where(Case.id.between(low, high), Case.status == "closed").order_by(Case.id))).all()
    tz, rows = shared.tz, []

    def add(case_id: int, clock: str, started: date, due: date, met: datetime | None) -> None:
        rows.append((shared.ids["case_deadlines"], case_id, clock, started, due, False, False, shared.basis[clock],
                     met))
        shared.ids["case_deadlines"] += 1

    for row in cases:
        received_on = row.received_at.astimezone(tz).date()
        decided = row.decided_at or row.received_at
        add(row.id, "tipoff_check" if row.kind == "tipoff" else "complaint_acceptance", received_on,
            received_on + timedelta(days=9), decided)
        if row.transfer_authority is not None:
            add(row.id, "transfer", received_on, received_on + timedelta(days=7), decided)
        if row.accepted_at is not None:
            started = row.accepted_at.astimezone(tz).date()
            if row.kind == "tipoff":
                if not row.anonymous:
                    add(row.id, "informant_notice", started, started + timedelta(days=7),
                        row.accepted_at + timedelta(hours=rng.randrange(2, 24 * 9)))
            elif row.resolved_at is not None:
                add(row.id, "complaint_mediation", started, started + timedelta(days=rng.choice((45, 60, 90))),
                    row.resolved_at)
    await _insert(conn, "case_deadlines", ["id", "case_id", "clock", "started_on", "due_on", "provisional",
                                           "extended", "basis", "met_at"], rows)
    return {"deadlines": len(rows)}


STEPS = {"facts": _facts_step, "deadlines": _deadlines_step}


def _enrich_case(r: random.Random, row, moved: set[int], lead_code: str | None, staff_ids: list[int], now: datetime,
                 tz, ids: dict[str, int], facts: list, events: list, messages: list) -> None:
    staff = staff_ids[r.randrange(len(staff_ids))]
    closed = row.status == "closed"

    def event_(action: str, source, target, at: datetime, data=None) -> None:
        events.append((ids["case_events"], row.id, "staff", staff, action, source, target, None, data, min(at, now)))
        ids["case_events"] += 1

    def message(direction: str, body: str, at: datetime, info_request: bool = False) -> None:
        messages.append((ids["case_messages"], row.id, direction, body, False, info_request,
                         staff if direction == "out" else None, min(at, now)))
        ids["case_messages"] += 1

    # transfers: inside the bureau for the cases whose lead changed, outside for those the seed marks so
    authority, scope = row.transfer_authority, row.transfer_scope
    decided = row.decided_at or row.received_at + timedelta(hours=r.randrange(2, 72))
    if row.id in moved and lead_code:
        at = row.received_at + timedelta(minutes=r.randrange(30, 60 * 48))
        event_("transfer", "received", "transferred", min(at, decided), {"unit": lead_code})
    outside = authority is not None or (row.status == "transferred" and r.random() < 0.5)
    if outside:
        scope = "in_province" if r.random() < 0.55 else "out_of_province"
        authority = r.choice(IN_PROVINCE if scope == "in_province" else OUT_OF_PROVINCE)
        event_("transfer", "received", "transferred", decided, {"authority": authority, "scope": scope})
    elif row.status == "transferred" and lead_code:
        event_("transfer", "received", "transferred", decided, {"unit": lead_code})
    if row.resolved_at is not None:
        event_("resolve", "in_progress", "resolved", row.resolved_at, {"outcome": row.outcome})

    # messages that are not the official reply
    if not row.anonymous and r.random() < 0.3:
        message("in", r.choice(MESSAGES_IN), row.received_at + timedelta(hours=r.randrange(1, 24 * 10)))
    if r.random() < 0.1:
        message("out", r.choice(MESSAGES_OUT), row.received_at + timedelta(hours=r.randrange(1, 24 * 3)), True)

    if not closed and not outside:
        return
    filed = fine = confiscation = takedowns = accounts = sites = None
    referral = False
    survey_due = rated_at = score = duplicate_of = None
    if closed:
        if row.outcome == "case_filed":
            filed = True
            if r.random() < 0.7:
                fine = int(min(r.lognormvariate(8.5, 1.3), 2_000_000)) * 100  # yuan → fen; median ~5,000 元
            if r.random() < 0.25:
                confiscation = int(min(r.lognormvariate(7.5, 1.4), 500_000)) * 100
            referral = r.random() < 0.03
        elif row.outcome == "not_filed":
            filed = False
        if row.platform:
            if r.random() < 0.25:
                takedowns = r.randrange(1, 21)
            if r.random() < 0.05:
                accounts = r.randrange(1, 4)
            if r.random() < 0.005:
                sites = 1
        if row.kind == "complaint" and not row.anonymous:
            closed_on = row.closed_at.astimezone(tz).date()
            survey_due = closed_on + timedelta(days=1)
            if r.random() < 0.45:
                rated_at = row.closed_at + timedelta(hours=r.randrange(20, 96))
                if rated_at < now:
                    score = r.choices(*SCORES)[0]
                else:
                    rated_at = None
        if row.outcome == "duplicate" and row.id > 1:
            duplicate_of = row.id - r.randrange(1, min(row.id, 3000))
    if (filed is None and fine is None and confiscation is None and not referral and takedowns is None
            and accounts is None and sites is None and survey_due is None and duplicate_of is None and not outside):
        return
    facts.append((row.id, filed, fine, confiscation, referral, takedowns, accounts, sites, survey_due, score,
                  rated_at, duplicate_of, authority, scope))


async def _insert(conn: AsyncConnection, name: str, columns: list[str], rows: list[tuple]) -> None:
    if not rows:
        return
    if conn.dialect.name == "postgresql":  # COPY takes json as text
        rows = [tuple(json.dumps(v, ensure_ascii=False) if isinstance(v, dict) else v for v in r) for r in rows]
        raw = (await conn.get_raw_connection()).driver_connection
        await raw.copy_records_to_table(name, records=rows, columns=columns)
    else:
        await conn.execute(insert(Base.metadata.tables[name]), [dict(zip(columns, r, strict=True)) for r in rows])


async def _update_facts(conn: AsyncConnection, facts: list[tuple]) -> None:
    if not facts:
        return
    assigned = [c for c in FACT_COLUMNS if c != "id"]
    if conn.dialect.name == "postgresql":
        await conn.exec_driver_sql(
            "CREATE TEMP TABLE bench_case_facts (id bigint PRIMARY KEY, filed boolean, fine_fen bigint, "
            "confiscation_fen bigint, judicial_referral boolean, takedowns integer, accounts_disposed integer, "
            "sites_closed integer, survey_due_on date, satisfaction integer, rated_at timestamptz, "
            "duplicate_of_id bigint, transfer_authority varchar(200), transfer_scope varchar(20)) ON COMMIT DROP")
        await _insert(conn, "bench_case_facts", FACT_COLUMNS, facts)
        await conn.exec_driver_sql(
            "UPDATE cases AS c SET " + ", ".join(f"{c} = f.{c}" for c in assigned)
            + " FROM bench_case_facts AS f WHERE c.id = f.id")
    else:  # typed binds, so the dates and times are stored as the application stores them
        statement = (update(Case).where(Case.id == bindparam("b_id"))
                     .values({c: bindparam(f"b_{c}") for c in assigned}))
        await conn.execute(statement, [{f"b_{c}": v for c, v in zip(FACT_COLUMNS, row, strict=True)} for row in facts])


async def coverage(container: Container, campaign_start: date) -> dict[str, Any]:
    """How the seeded cases fall around the campaign start; the month of the latest ones."""
    tz = container.settings.tz
    async with container.engine.connect() as conn:
        first, last = (await conn.execute(select(func.min(Case.received_at), func.max(Case.received_at)))).one()
        transfers = await conn.scalar(select(func.count()).select_from(CaseEvent).where(CaseEvent.action == "transfer"))
        replies = await conn.scalar(text("SELECT count(*) FROM case_messages WHERE is_reply"))
        facts = (await conn.execute(select(
            func.count(Case.filed), func.count(Case.fine_fen), func.count(Case.takedowns),
            func.count(Case.rated_at), func.count(Case.duplicate_of_id)))).one()
        since = await conn.scalar(select(func.count()).select_from(Case).where(
            Case.received_at >= datetime.combine(campaign_start, datetime.min.time(), tzinfo=tz)))
    first_local, last_local = first.astimezone(tz).date(), last.astimezone(tz).date()
    start_month = max(first_local, campaign_start).replace(day=1)
    months = (last_local.year - start_month.year) * 12 + last_local.month - start_month.month + 1
    return {"first_received": first_local.isoformat(), "last_received": last_local.isoformat(),
            "campaign_start": campaign_start.isoformat(), "months_since_start_with_cases": months,
            "cases_since_start": since, "transfer_events": transfers, "replies": replies,
            "closed_with_filed": facts[0], "with_fine": facts[1], "with_takedowns": facts[2], "rated": facts[3],
            "duplicates": facts[4], "latest_month": last_local.strftime("%Y-%m")}


# -- measuring -----------------------------------------------------------------------------------------------


async def repeat(n: int, action, warm: int = 1) -> dict[str, float]:
    times = []
    for i in range(warm + n):
        started = time.perf_counter()
        await action()
        if i >= warm:
            times.append((time.perf_counter() - started) * 1000)
    return summary(times) if len(times) > 1 else {"p50_ms": round(times[0], 1), "n": 1}


class Breakdown:
    """Times each private coroutine of reports/figures.py by wrapping it (compute_figures looks them up
    as module globals), and every SQL statement run under it, by the innermost part running."""

    def __init__(self, engine: AsyncEngine, period: Period) -> None:
        self.engine = engine
        self.period = period
        self.stack: list[str] = []
        self.parts: dict[str, float] = defaultdict(float)
        self.statements: list[dict[str, Any]] = []
        self._originals: dict[str, Any] = {}

    def label(self, name: str, args: tuple) -> str:
        label = name.lstrip("_")
        spans = [a for a in args if isinstance(a, Period)]
        if name == "_case_counts" and spans:
            label += "[month]" if spans[0] == self.period else "[cumulative]"
        return label

    def wrap(self, name: str, function):
        async def timed(*args, **kwargs):
            label = self.label(name, args)
            path = "/".join([*self.stack, label])
            self.stack.append(label)
            started = time.perf_counter()
            try:
                return await function(*args, **kwargs)
            finally:
                self.parts[path] += (time.perf_counter() - started) * 1000
                self.stack.pop()

        return timed

    def _before(self, conn, cursor, statement, parameters, context, executemany) -> None:
        context._bench_started = time.perf_counter()

    def _after(self, conn, cursor, statement, parameters, context, executemany) -> None:
        ms = (time.perf_counter() - context._bench_started) * 1000
        self.statements.append({"part": "/".join(self.stack), "sql": statement, "params": parameters, "ms": ms})

    def __enter__(self) -> Breakdown:
        for name, function in vars(figures_module).items():
            if name.startswith("_") and inspect.iscoroutinefunction(function):
                self._originals[name] = function
                setattr(figures_module, name, self.wrap(name, function))
        event.listen(self.engine.sync_engine, "before_cursor_execute", self._before)
        event.listen(self.engine.sync_engine, "after_cursor_execute", self._after)
        return self

    def __exit__(self, *exc) -> None:
        for name, function in self._originals.items():
            setattr(figures_module, name, function)
        event.remove(self.engine.sync_engine, "before_cursor_execute", self._before)
        event.remove(self.engine.sync_engine, "after_cursor_execute", self._after)


async def breakdown(container: Container, scope: ReportScope, period: Period, runs: int
                    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Median ms per part of compute_figures (nested parts as a/b), and the statements of the last run."""
    per_part: dict[str, list[float]] = defaultdict(list)
    queries: dict[str, list[float]] = defaultdict(list)
    statements: list[dict[str, Any]] = []
    await container.reports.figures(scope, period)  # warm
    for _ in range(runs):
        with Breakdown(container.engine, period) as probe:
            started = time.perf_counter()
            await container.reports.figures(scope, period)
            per_part["total"].append((time.perf_counter() - started) * 1000)
        for path, ms in probe.parts.items():
            per_part[path].append(ms)
        counted: dict[str, float] = defaultdict(float)
        for s in probe.statements:
            counted[s["part"]] += s["ms"]
        for path, ms in counted.items():
            queries[path].append(ms)
        statements = probe.statements
    parts = {path: round(statistics.median(ms), 1) for path, ms in per_part.items()}
    sql = {path: round(statistics.median(ms), 1) for path, ms in queries.items()}
    slowest = sorted(statements, key=lambda s: -s["ms"])
    return {"ms": parts, "sql_ms": sql, "statements": len(statements),
            "slowest": [{"part": s["part"], "ms": round(s["ms"], 1)} for s in slowest[:8]]}, slowest


async def explain(container: Container, statements: list[dict[str, Any]], scope_name: str, top: int) -> dict:
    plans = {}
    seen = set()
    for s in statements:
        if len(plans) >= top:
            break
        if s["part"] in seen:
            continue
        seen.add(s["part"])
        async with container.engine.connect() as conn:
            rows = (await conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + s["sql"], s["params"])).all()
        lines = [row[0] for row in rows]
        sql = s["sql"] if len(s["sql"]) <= 3000 else f"{s['sql'][:1500]} ... {s['sql'][-1000:]}"
        params = repr(s["params"])
        params = params if len(params) <= 400 else f"{params[:400]}... ({len(s['params'])} parameters)"
        print(f"\n-- {scope_name} {s['part']} ({s['ms']:.0f} ms in the run)\n{sql}\n-- {params}\n"
              + "\n".join(lines), file=sys.stderr)
        key = [line.strip() for line in lines if KEY_LINE.search(line) and "Buffers" not in line
               and "Execution Time" not in line][:16]
        plans[s["part"]] = key + [line.strip() for line in lines if "Execution Time" in line]
    return plans


async def measure_service(container: Container, scopes: dict[str, ReportScope], period: Period, n: int,
                          breakdown_runs: int, staff_id: int, explain_top: int | None) -> dict[str, Any]:
    reports: ReportService = container.reports
    out: dict[str, Any] = {"figures": {}, "breakdown": {}}
    slow: dict[str, list] = {}
    for name, scope in scopes.items():
        out["figures"][name] = await repeat(n, lambda scope=scope: reports.figures(scope, period))
    for name, scope in scopes.items():
        out["breakdown"][name], slow[name] = await breakdown(container, scope, period, breakdown_runs)
    bureau = ReportScope()
    violations = await reports.check(bureau, period)
    reason = "bench/reports.py: 基准测试导出" if violations else None
    sizes = {}

    async def stats():
        sizes["stats"] = len((await reports.export_stats(bureau, period, staff_id)).content)

    async def monthly():
        sizes["monthly"] = len((await reports.export_monthly(bureau, period, staff_id, override_reason=reason)).content)

    out["export"] = {"stats": await repeat(n, stats), "monthly": await repeat(n, monthly),
                     "monthly_rules_broken": len(violations), "xlsx_bytes": sizes}
    if explain_top and container.engine.dialect.name == "postgresql":
        out["plans"] = {name: await explain(container, slow[name], name, explain_top) for name in scopes}
    return out


async def measure_console(container: Container, users: dict[str, dict], period: Period, n: int) -> dict[str, Any]:
    app = create_app(container, with_bot=False)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = "http://127.0.0.1:%d" % runner.addresses[0][1]
    auth = Authenticator(container.uow, container.clock)
    query = f"?period={period.key}"
    results: dict[str, Any] = {}
    try:
        async with aiohttp.ClientSession(base) as client:
            async def page(url: str, cookie: dict[str, str]):
                async with client.get(url, headers=cookie, allow_redirects=False) as response:
                    body = await response.read()
                    if response.status != 200:
                        raise SystemExit(f"GET {url}: {response.status} {body[:300]!r}")

            for username, role, urls in ((TRIAGE_USER, "triage", ("/dashboard", "/reports")),
                                         (HANDLER_USER, "handler", ("/dashboard",))):
                session_token, _principal = await auth.login(username, users[username]["password"])
                cookie = {"Cookie": f"{SESSION_COOKIE}={session_token}"}
                results[role] = {url.strip("/"): await repeat(n, lambda url=url: page(url + query, cookie))
                                 for url in urls}
    finally:
        await runner.cleanup()  # disposes the container's engine too
    return results


# -- main ------------------------------------------------------------------------------------------------


async def run(args) -> None:
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="qinglang-bench-") as tmp:
        settings = settings_for(args, Path(tmp) / "data",
                                **({"campaign_start": args.campaign_start} if args.campaign_start else {}))
        campaign_start = settings.reports.campaign_start
        await ensure_database(settings.database_url)
        container = build_container(settings)
        try:
            await migrate.upgrade(container.engine)
            if args.reset:
                await reset(container.engine)
            await sync_units(container.uow, container.directory)
            for code in (args.station, args.branch):
                if not container.directory.has_unit(code):
                    raise SystemExit(f"no unit {code!r}; see routing/data/units.yaml")
            users = await ensure_staff(container, args.station)
            writer = Writer(container.engine)
            subjects = await ensure_subjects(container, writer, rng)
            staff_ids = [u["id"] for u in users.values()]
        finally:
            await container.close()
        scopes = {"bureau": ReportScope(), f"station:{args.station}": ReportScope(args.station),
                  f"branch:{args.branch}": ReportScope(args.branch)}
        for size in sorted(set(args.cases)):
            container = build_container(settings)
            try:
                writer = Writer(container.engine)
                seeded = await seed_to(container, writer, size, rng, staff_ids, subjects)
                enriched = await enrich(container, writer, args.seed, staff_ids)
                counts = await row_counts(container.engine)
                covered = await coverage(container, campaign_start)
            finally:
                await container.close()
            if covered["months_since_start_with_cases"] < 3:
                print(f"warning: the cases cover only {covered['months_since_start_with_cases']} month(s) after "
                      f"the campaign start {campaign_start}; pass an earlier --campaign-start", file=sys.stderr)
            period = Period.month(args.period or covered["latest_month"])
            container = build_container(settings)
            try:
                service = await measure_service(container, scopes, period, args.requests, args.breakdown_runs,
                                                users[TRIAGE_USER]["id"], args.explain_top if args.explain else None)
            finally:
                await container.close()
            container = build_container(settings)  # the app's own; disposed when the app stops
            console = await measure_console(container, users, period, args.requests) if not args.no_console else None
            result = {"cases": size, "database": container.engine.dialect.name, "period": period.key,
                      "requests": args.requests, "seed": seeded, "enrich": enriched, "coverage": covered,
                      "rows": counts, **service, "console": console}
            print(json.dumps(result, ensure_ascii=False), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    database_arguments(parser, "bench_reports")
    parser.add_argument("--cases", type=int, action="append",
                        help="database size to measure at (default 100000); repeat for several (each tops up "
                             "the last; a database already holding that many is reused)")
    parser.add_argument("--requests", type=int, default=20, help="timed runs of each measure (default 20)")
    parser.add_argument("--breakdown-runs", type=int, default=3,
                        help="runs of compute_figures timed part by part (median; default 3)")
    parser.add_argument("--period", help="the month measured, YYYY-MM (default: the month of the latest cases)")
    parser.add_argument("--campaign-start", type=date.fromisoformat,
                        help="override QINGLANG_CAMPAIGN_START (default: the setting, 2024-05-14 unless set)")
    parser.add_argument("--station", default="suo_yongzhong", help="the station measured (and the handler's unit)")
    parser.add_argument("--branch", default="xiaobao", help="the branch measured (default xiaobao, 消保分局)")
    parser.add_argument("--explain", action="store_true",
                        help="EXPLAIN ANALYZE the slowest statements of compute_figures per scope (PostgreSQL)")
    parser.add_argument("--explain-top", type=int, default=5, help="statements explained per scope (default 5)")
    parser.add_argument("--no-console", action="store_true", help="skip GET /dashboard and /reports")
    asyncio.run(run(parse_database_arguments(parser)))

if __name__ == "__main__":
    main()
