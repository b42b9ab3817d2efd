"""The console's case list as a CSV file (GET /export.csv), for Excel.

- The queue's filters, parsed by the queue's own code; a value the queue would ignore (and say so) makes
  the export refuse (400) instead: a file that silently holds more than was asked for is worse than none.
- The queue's scope: a handler exports only its unit's cases (web.access.case_scope).
- Every matching case, not one page, in the order they came in: read a batch at a time
  (CaseQueries.export_batches) and written as it comes, so memory holds one batch whatever the count.
- No personal data: no names, phones or e-mails; the description only as the queue's excerpt.
- UTF-8 with a BOM and CRLF line ends, which Excel opens as they are; the header row in the console's
  language. Complaint text is untrusted: a cell a spreadsheet would take for a formula (starting with
  = + - @, a tab or a CR) is prefixed with ' (CSV injection).
- Every export is in the audit log: action export_cases, case_id NULL, the filter, the rows sent and
  whether the file was sent complete (a download broken off is recorded too).
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from aiohttp import web

from db.models import Unit
from intake.queries import CaseFilter, ExportRow
from intake.status import OUTCOMES, Status
from qinglang.i18n import N_
from web.access import case_scope
from web.console.render import format_day, format_local, request_language
from web.console.routes import (
    FACT_LABELS,
    STORE,
    YES_NO,
    _common,
    _error,
    _filters,
    _query_without,
    _require,
    _tr,
    _unit_name,
)
from web.keys import QUERIES
from web.security import Principal

log = logging.getLogger("qinglang.console")

BOM = "\ufeff"
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def register(app: web.Application) -> None:
    # no HEAD: it would run (and audit) a whole export for nothing
    app.router.add_get("/export.csv", export_csv, allow_head=False)


@dataclass(frozen=True)
class Names:
    """What the cells say, in the console's language."""

    kind: Callable[[str], str]
    category: dict[str, str]
    status: Callable[[str], str]
    channel: Callable[[str], str]
    outcome: dict[str, str]
    unit: dict[str, str]
    answer: dict[str, str]  # YES_NO, translated
    tz: ZoneInfo

    def yes_no(self, value: bool | None) -> str:
        return "" if value is None else self.answer["yes" if value else "no"]

    def moment(self, value: datetime | None) -> str:
        return format_local(value, self.tz)


def _yuan(fen: int | None) -> str:
    """Plain yuan with two decimals (a number to Excel); blank when not stated."""
    return "" if fen is None else f"{fen // 100}.{fen % 100:02d}"


def _penalties(row: ExportRow) -> int | None:
    """罚没款: fine and confiscation together; not stated when neither is."""
    if row.fine_fen is None and row.confiscation_fen is None:
        return None
    return (row.fine_fen or 0) + (row.confiscation_fen or 0)


def _at_close(value: Callable[[ExportRow, Names], object]) -> Callable[[ExportRow, Names], object]:
    """A fact recorded at close, shown for a closed case only (a reopened case keeps its old facts)."""
    return lambda row, names: value(row, names) if row.status == Status.CLOSED else None


COLUMNS: tuple[tuple[str, Callable[[ExportRow, Names], object]], ...] = (
    (N_("编号"), lambda r, n: r.number),
    (N_("类型"), lambda r, n: n.kind(r.kind)),
    (N_("类别"), lambda r, n: n.category.get(r.category, r.category)),
    (N_("状态"), lambda r, n: n.status(r.status)),
    (N_("渠道"), lambda r, n: n.channel(r.channel)),
    (N_("接收时间"), lambda r, n: n.moment(r.received_at)),
    (N_("平台"), lambda r, n: r.platform),
    (N_("直播间"), lambda r, n: r.live_room),
    (N_("主播"), lambda r, n: r.streamer),
    (N_("商品"), lambda r, n: r.product),
    (N_("金额（元）"), lambda r, n: _yuan(r.amount_fen)),
    (N_("承办单位"), lambda r, n: n.unit.get(r.lead_unit, r.lead_unit) if r.lead_unit else None),
    (N_("下一期限"), lambda r, n: format_day(r.next_due_on)),
    (N_("超期"), lambda r, n: n.yes_no(r.overdue)),
    (N_("答复时间"), lambda r, n: n.moment(r.replied_at)),
    (N_("结案时间"), lambda r, n: n.moment(r.closed_at)),
    (N_("办理结果"), lambda r, n: n.outcome.get(r.outcome, r.outcome) if r.outcome else None),
    (FACT_LABELS["filed"], _at_close(lambda r, n: n.yes_no(r.filed))),
    (N_("罚没款（元）"), _at_close(lambda r, n: _yuan(_penalties(r)))),
    (FACT_LABELS["fine_yuan"], _at_close(lambda r, n: _yuan(r.fine_fen))),
    (FACT_LABELS["confiscation_yuan"], _at_close(lambda r, n: _yuan(r.confiscation_fen))),
    (FACT_LABELS["judicial_referral"], _at_close(lambda r, n: n.yes_no(r.judicial_referral))),
    (FACT_LABELS["takedowns"], _at_close(lambda r, n: r.takedowns)),
    (FACT_LABELS["accounts_disposed"], _at_close(lambda r, n: r.accounts_disposed)),
    (FACT_LABELS["sites_closed"], _at_close(lambda r, n: r.sites_closed)),
    (N_("摘要"), lambda r, n: r.excerpt),
)


def safe_cell(value: object) -> str:
    """The cell's text, with ' before a start a spreadsheet would read as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def csv_lines(rows: Iterable[Iterable[object]]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows([safe_cell(v) for v in row] for row in rows)
    return buffer.getvalue().encode("utf-8")


def _names(request: web.Request, principal: Principal, units: dict[str, Unit]) -> Names:
    _ = _tr(request)
    language = request_language(request)
    common = _common(request, principal)
    return Names(
        kind=common["kind_name"], category=common["category_names"], status=common["status_name"],
        channel=common["channel_name"], outcome={k: _(v) for k, v in OUTCOMES.items()},
        unit={code: _unit_name(unit, language) for code, unit in units.items()},
        answer={k: _(v) for k, v in YES_NO.items()}, tz=common["tz"],
    )


def filter_record(filters: CaseFilter) -> dict[str, object]:
    """The filter as the audit event keeps it: the conditions given, dates as YYYY-MM-DD."""
    given = {name: value for name, value in asdict(filters).items() if value not in (None, ())}
    return {name: value.isoformat() if isinstance(value, date) else
            list(value) if isinstance(value, tuple) else value for name, value in given.items()}


def _headers(today: date) -> dict[str, str]:
    return {
        "Content-Type": "text/csv; charset=utf-8",
        "Content-Disposition": f'attachment; filename="qinglang-cases-{today.isoformat()}.csv"',
        "Cache-Control": "no-store",
        # set here: the security-headers middleware runs after a streamed body has gone
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; sandbox",
    }


async def export_csv(request: web.Request) -> web.StreamResponse:
    principal = _require(request)
    _ = _tr(request)
    store, queries = request.app[STORE], request.app[QUERIES]
    units = {unit.code: unit for unit in await store.units()}
    filters, problems = _filters(request, set(units), invalid=N_("筛选条件无效：{name}"))
    if problems:
        return _error(request, principal, 400, _("未导出：筛选条件有误"), "；".join(problems),
                      back="/" + _query_without(request))
    names = _names(request, principal, units)
    response = web.StreamResponse(headers=_headers(queries.today()))
    await response.prepare(request)
    rows, complete = 0, False
    try:
        await response.write(BOM.encode("utf-8") + csv_lines([[_(label) for label, _value in COLUMNS]]))
        async for batch in queries.export_batches(case_scope(principal), filters):
            await response.write(csv_lines([value(row, names) for _label, value in COLUMNS] for row in batch))
            rows += len(batch)
        complete = True
    except ConnectionResetError:  # the download was broken off; what was sent is still recorded
        log.info("console export by %s broken off after %d rows", principal.username, rows)
    finally:
        await store.audit_export(principal.id, {"filter": filter_record(filters), "rows": rows, "complete": complete})
    # the file ends only once its export is in the audit log: a client holding the whole file can rely on it
    if complete:
        await response.write_eof()
    return response
