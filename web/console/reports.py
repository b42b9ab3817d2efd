"""The dashboard and the statistics forms in the console.

- /dashboard: the figures of a month and since the campaign began, for the whole bureau or one unit,
  with charts (server-rendered SVG), the weekly trend, the overdue list, hotspots and the registry.
- /reports: the two forms of the seed (附件1, 附件2): the figures from the cases beside the ones staff
  enter once per period, the monthly form's logic rules, and the .xlsx exports. A monthly form that
  breaks a rule is exported only with a reason, which is recorded.

Who: everyone reads the bureau's figures except a handler, who sees (and reports for) its own unit
only; triage (消保分局) enters figures for any reporting unit, a handler for its own; leaders and
administrators read and export.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import date, timedelta
from urllib.parse import quote, urlencode

from aiohttp import web

from intake.status import OUTCOMES
from nlu.taxonomy import CATEGORIES
from reports.charts import bar_chart, column_pairs
from reports.fields import (
    FOCUS_AREA_TITLES,
    MONTHLY_FORM_INPUTS,
    MONTHLY_ROW_INPUTS,
    STATS_DATA_FIELDS,
    STATS_MANUAL_FIELDS,
)
from reports.form_rules import check_monthly
from reports.monthly_form import GROUP_OF
from reports.inputs import BUREAU, InputError, parse_monthly, parse_stats
from reports.period import Period, ReportScope
from reports.service import RulesViolated
from web.accounts import Role
from web.console.render import redirect_with_flash, request_language
from web.console.routes import CHANNEL_NAMES, KIND_NAMES, _clock_name, _error, _field, _page, _require, _tr
from web.keys import CONTAINER
from web.security import Principal

TOP = 10


@dataclass(frozen=True)
class Selection:
    """The period and reporting unit a page shows, as chosen in its query string."""

    period: Period
    scope: ReportScope

    @property
    def unit_key(self) -> str:
        return self.scope.unit_code or BUREAU

    def query(self, **extra: str) -> str:
        params = {"period": self.period.key, **({"unit": self.scope.unit_code} if self.scope.unit_code else {})}
        return urlencode({**params, **extra})


def register(app: web.Application) -> None:
    router = app.router
    router.add_get("/dashboard", dashboard)
    router.add_get("/reports", forms_page)
    router.add_post("/reports/stats", save_stats)
    router.add_post("/reports/monthly", save_monthly)
    router.add_get("/reports/stats.xlsx", export_stats)
    router.add_post("/reports/monthly.xlsx", export_monthly)


# -- who and what -----------------------------------------------------------------------------------


def _may_edit(principal: Principal, scope: ReportScope) -> bool:
    if principal.role == Role.TRIAGE:
        return True
    return principal.role == Role.HANDLER and scope.unit_code == principal.unit_code


def _selection(request: web.Request, principal: Principal, source=None) -> Selection:
    """The period (YYYY-MM, default this month) and unit (default the bureau; a handler's own unit);
    anything else ends the request with a 400 page saying what is wrong."""
    source = request.query if source is None else source
    reports = request.app[CONTAINER].reports
    _ = _tr(request)
    text = source.get("period") or reports.today().strftime("%Y-%m")
    try:
        period = Period.month(text)
    except ValueError:
        raise _refuse(request, principal, _("统计月份应写成“年-月”，例如 2026-11。")) from None
    unit = source.get("unit") or None
    if principal.role == Role.HANDLER:
        if unit not in (None, principal.unit_code):
            raise _refuse(request, principal, _("承办人员只能查看本单位的统计。"))
        unit = principal.unit_code
    directory = request.app[CONTAINER].directory
    if unit is not None and not directory.has_unit(unit):
        raise _refuse(request, principal, _("没有这个单位。"))
    start = request.app[CONTAINER].settings.reports.campaign_start
    if period.end < start:
        raise _refuse(request, principal, _("专项治理自 {day} 开始，请选择之后的月份。").format(day=start.isoformat()))
    return Selection(period, ReportScope(unit))


def _unit_choices(request: web.Request, principal: Principal) -> list[tuple[str, str]]:
    language = request_language(request)
    directory = request.app[CONTAINER].directory
    units = [u for u in directory.units if principal.role != Role.HANDLER or u.code == principal.unit_code]
    return [(u.code, (u.name_en or u.name) if language == "en" else u.name) for u in units]


def _refuse(request: web.Request, principal: Principal, message: str) -> web.HTTPBadRequest:
    back = "/dashboard" if request.path == "/dashboard" else "/reports"
    page = _error(request, principal, 400, _tr(request)("参数无效"), message, back=back)
    return web.HTTPBadRequest(text=page.text, content_type="text/html")


# -- the dashboard ------------------------------------------------------------------------------------


async def dashboard(request: web.Request) -> web.Response:
    principal = _require(request)
    selection = _selection(request, principal)
    container = request.app[CONTAINER]
    reports = container.reports
    figures = await reports.figures(selection.scope, selection.period)
    charts = _charts(request, figures, container.settings.reports.campaign_start)
    return _page(request, principal, "dashboard.html", figures=figures, selection=selection,
                 units=_unit_choices(request, principal), charts=charts,
                 kind_names=_names(request, KIND_NAMES), channel_names=_names(request, CHANNEL_NAMES),
                 outcome_names=_names(request, OUTCOMES), clock_name=functools.partial(_clock_name, request),
                 stats_fields=STATS_DATA_FIELDS, stats_values=reports.form_values(figures),
                 own_registry=reports.registry_is_the_units(selection.scope),
                 unit_name=_unit_namer(request), subject_types=_subject_type_names(request),
                 reporting_unit=reports.reporting_unit_name(selection.scope))


def _charts(request: web.Request, figures, campaign_start: date) -> dict[str, object]:
    """The weekly trend starts with the campaign's first week and ends with this one."""
    _ = _tr(request)
    language = request_language(request)
    received = figures.period.received
    category_names = {c.id: (c.en if language == "en" else c.zh) for c in CATEGORIES}
    unit_name = _unit_namer(request)
    first_week = campaign_start - timedelta(days=campaign_start.weekday())
    weeks = [w for w in figures.weekly if first_week <= w.start <= figures.today]
    return {
        "weekly": column_pairs(
            [(f"{w.start.month}/{w.start.day}", w.received, w.closed) for w in weeks],
            title=_("每周收到与办结"), names=(_("收到"), _("办结"))),
        "category": bar_chart([(category_names[c], n) for c, n in received.by_category.items()],
                              title=_("按类别")),
        "channel": bar_chart([(_(CHANNEL_NAMES.get(ch, ch)), n) for ch, n in sorted(received.by_channel.items())],
                             title=_("按渠道")),
        "unit": bar_chart(sorted(((unit_name(code), n) for code, n in received.by_unit.items()),
                                 key=lambda item: -item[1])[:TOP], title=_("按承办单位")),
        "platform": bar_chart([(h.name, h.cases) for h in figures.hotspots.platforms], title=_("按平台")),
    }


def _names(request: web.Request, names: dict) -> dict[str, str]:
    _ = _tr(request)
    return {str(key): _(value) for key, value in names.items()}


def _unit_namer(request: web.Request):
    directory = request.app[CONTAINER].directory
    language = request_language(request)
    _ = _tr(request)

    def name(code: str | None) -> str:
        if code is None:
            return _("未分派")
        if not directory.has_unit(code):
            return code
        unit = directory.unit(code)
        return (unit.name_en or unit.name) if language == "en" else unit.name

    return name


def _subject_type_names(request: web.Request) -> dict[str, str]:
    from web.console.subjects import TYPE_NAMES

    return _names(request, TYPE_NAMES)


# -- the forms ------------------------------------------------------------------------------------------


async def forms_page(request: web.Request, *, selection: Selection | None = None, problems: list[str] | None = None,
                     problems_title: str = "", entered: dict | None = None, violations=None,
                     status: int = 200) -> web.Response:
    principal = _require(request)
    if selection is None:
        selection = _selection(request, principal)
    reports = request.app[CONTAINER].reports
    figures = await reports.figures(selection.scope, selection.period)
    stats = await reports.stats_values(selection.scope, selection.period, figures)
    rows, monthly = await reports.monthly_rows(selection.scope, selection.period, figures)
    return _page(
        request, principal, "reports.html", status=status, selection=selection,
        units=_unit_choices(request, principal), may_edit=_may_edit(principal, selection.scope),
        reporting_unit=reports.reporting_unit_name(selection.scope), stats=stats, stats_data=STATS_DATA_FIELDS,
        stats_manual=STATS_MANUAL_FIELDS, rows=rows, monthly=monthly, row_inputs=MONTHLY_ROW_INPUTS,
        form_inputs=MONTHLY_FORM_INPUTS, focus_titles=FOCUS_AREA_TITLES,
        row_labels={f.key: GROUP_OF.get(f.key, "") + f.label for f in MONTHLY_ROW_INPUTS},
        violations=violations if violations is not None else check_monthly(rows),
        problems=problems or [], problems_title=problems_title, entered=entered or {},
    )


async def save_stats(request: web.Request) -> web.StreamResponse:
    return await _save(request, "stats")


async def save_monthly(request: web.Request) -> web.StreamResponse:
    return await _save(request, "monthly")


async def _save(request: web.Request, form: str) -> web.StreamResponse:
    principal = _require(request)
    _ = _tr(request)
    post = await request.post()
    selection = _selection(request, principal, post)
    if not _may_edit(principal, selection.scope):
        return _error(request, principal, 403, _("无权操作"), _("只有消保分局和本单位承办人员可以填写统计数据。"),
                      back=f"/reports?{selection.query()}")
    inputs = request.app[CONTAINER].reports.inputs
    try:
        if form == "stats":
            values = parse_stats({f.key: _field(post, f.key) for f in STATS_MANUAL_FIELDS})
            await inputs.save_stats(selection.period.key, selection.unit_key, values, principal.id)
        else:
            rows = {number: {f.key: _field(post, f"row{number}_{f.key}") for f in MONTHLY_ROW_INPUTS}
                    for number in FOCUS_AREA_TITLES}
            form_values = {f.key: _field(post, f.key) for f in MONTHLY_FORM_INPUTS}
            await inputs.save_monthly(selection.period.key, selection.unit_key, parse_monthly(rows, form_values),
                                      principal.id)
    except InputError as exc:
        # nothing was stored: the page comes back with what was typed and every problem named
        return await forms_page(request, selection=selection, problems=exc.texts(_), entered=dict(post),
                                problems_title=_("未保存，请改正："), status=400)
    anchor = "#stats" if form == "stats" else "#monthly"
    raise redirect_with_flash(request, f"/reports?{selection.query()}{anchor}", _("已保存。"))


async def export_stats(request: web.Request) -> web.StreamResponse:
    principal = _require(request)
    selection = _selection(request, principal)
    export = await request.app[CONTAINER].reports.export_stats(selection.scope, selection.period, principal.id)
    return _xlsx(export)


async def export_monthly(request: web.Request) -> web.StreamResponse:
    principal = _require(request)
    post = await request.post()
    selection = _selection(request, principal, post)
    reason = _field(post, "override_reason", 2000) or None
    try:
        export = await request.app[CONTAINER].reports.export_monthly(selection.scope, selection.period,
                                                                     principal.id, override_reason=reason)
    except RulesViolated as exc:
        _ = _tr(request)
        return await forms_page(request, selection=selection, violations=exc.violations, status=409,
                                problems_title=_("未导出："),
                                problems=[_("月报表不符合表内逻辑关系，请修改后再导出，或写明理由后导出。")])
    return _xlsx(export)


def _xlsx(export) -> web.Response:
    disposition = f"attachment; filename=\"report.xlsx\"; filename*=UTF-8''{quote(export.filename)}"
    return web.Response(body=export.content, headers={
        "Content-Type": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "Content-Disposition": disposition, "Cache-Control": "no-store",
    })

