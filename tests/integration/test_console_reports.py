"""The dashboard and the statistics-form pages of the console, over the report-figures story (October and
November 2026; today 2026-11-20): the numbers shown equal the report's, who may see and enter what,
bad input, and the exports."""

from __future__ import annotations

import html as html_lib
import io
import re

import openpyxl
import pytest
from sqlalchemy import select

from db.models import CaseEvent, ReportInput
from reports.monthly_form import monthly_cell
from reports.period import Period, ReportScope
from reports.stats_form import STATS_CELLS
from tests.integration.test_console import complaint, console  # noqa: F401 - the fixture
from tests.integration.test_report_figures import CAMPAIGN_START, story  # noqa: F401 - the fixture

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
NOVEMBER = Period.month("2026-11")
FIGURE = re.compile(r'data-(figure|stats-field|monthly)="([^"]+)">([^<]*)<')


@pytest.fixture
def settings(tmp_path, database_url, nlu_cache_dir):
    from qinglang.settings import load_settings

    return load_settings(env_file=None, data_dir=tmp_path / "data", database_url=database_url,
                         nlu_cache_dir=nlu_cache_dir, campaign_start=CAMPAIGN_START)


def shown(page: str) -> dict[str, str]:
    """The figures a page shows, by their data attribute."""
    return {f"{kind}:{key}": html_lib.unescape(value).strip() for kind, key, value in FIGURE.findall(page)}


async def test_the_dashboard_shows_the_reports_figures(console, story):
    triage = await console.person("t1", "xiaobao", "triage")
    status, page = await triage.get("/dashboard?period=2026-11")
    assert status == 200
    figures = await console.container.reports.figures(ReportScope(), NOVEMBER)
    values = shown(page)
    assert values["figure:period.received"] == "10" == str(figures.period.received.total)
    assert values["figure:period.closed"] == "8"
    assert values["figure:cumulative.received"] == "15"
    assert values["figure:period.reply_rate"] == "62.5%"  # 5 of 8 (see the story)
    assert values["figure:overdue.cases"] == "2"
    assert values["figure:period.penalties_yuan"] == "16,000.00"
    assert values["figure:period.clock.complaint_acceptance.rate"] == "50.0%"
    assert values["figure:period.category.consumer_rights"] == "3"
    for key, value in figures.stats_form_values().items():
        assert values[f"stats-field:{key}"] == str(value), key
    assert "B直播间" in page and "主播甲" in page and story.numbers["c14"] in page
    assert page.count("<svg") >= 4  # weekly trend, categories, channels, units, platforms


async def test_complaint_text_on_the_dashboard_is_escaped(console, story):
    await console.container.cases.create(complaint(live_room="<img src=x onerror=alert(1)>", platform="<b>平台</b>"))
    triage = await console.person("t1", "xiaobao", "triage")
    status, page = await triage.get("/dashboard")
    assert status == 200
    assert "<img src=x" not in page and "<b>平台" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page


async def test_a_handler_sees_its_own_unit_only(console, story):
    handler = await console.person("h1", "jiajing", "handler")
    status, page = await handler.get("/dashboard?period=2026-11")
    assert status == 200
    assert shown(page)["figure:period.received"] == "1" and shown(page)["figure:cumulative.received"] == "3"
    assert story.numbers["c5"] not in page  # overdue, but 永中所's
    status, _ = await handler.get("/dashboard?period=2026-11&unit=zhiliang")
    assert status == 400
    leader = await console.person("boss", "bangongshi", "leader")
    status, page = await leader.get("/dashboard?period=2026-11&unit=zhiliang")
    assert status == 200 and shown(page)["figure:period.received"] == "1"


@pytest.mark.parametrize("query", ["period=2026-13", "period=11-2026", "period=2026-09", "unit=nowhere",
                                   "period=%3Cscript%3E"])
async def test_bad_selections_are_refused(console, query):
    triage = await console.person("t1", "xiaobao", "triage")
    for path in ("/dashboard", "/reports", "/reports/stats.xlsx"):
        response = await triage.client.get(f"{path}?{query}", allow_redirects=False)
        page = await response.text()
        assert response.status == 400, (path, query)
        assert "<script>" not in page and "参数无效" in page
        assert "default-src 'self'" in response.headers["Content-Security-Policy"]


async def test_the_pages_need_a_login(console):
    client = await console.browser()
    for path in ("/dashboard", "/reports", "/reports/stats.xlsx"):
        response = await client.get(path, allow_redirects=False)
        assert response.status == 303 and response.headers["Location"].startswith("/login")


async def test_entering_the_stats_figures(console, story):
    triage = await console.person("t1", "xiaobao", "triage")
    response = await triage.post("/reports/stats", {"period": "2026-11", "unit": "", "province_clues": "９",
                                                   "monitoring_methods": "网上巡查", "joint_inspections": ""})
    assert response.status == 303
    assert await console.container.reports.inputs.stats("2026-11", "bureau") == {
        "province_clues": 9, "monitoring_methods": "网上巡查"}
    status, page = await triage.get("/reports?period=2026-11")
    assert status == 200 and 'value="9"' in page and "网上巡查" in page

    response = await triage.post("/reports/stats", {"period": "2026-11", "province_clues": "-1",
                                                   "monitored_sites": "很多", "monitoring_methods": "<b>改</b>"})
    assert response.status == 400
    page = await response.text()
    assert "省级派发线索(条)：应为不小于0的整数，收到“-1”" in html_lib.unescape(page)
    assert "监测检查网站、网店(个次)：应为不小于0的整数" in html_lib.unescape(page)
    assert "&lt;b&gt;改&lt;/b&gt;" in page  # what was typed comes back, escaped
    assert await console.container.reports.inputs.stats("2026-11", "bureau") == {
        "province_clues": 9, "monitoring_methods": "网上巡查"}  # nothing stored

    assert (await triage.post("/reports/stats", {"period": "2026-11", "province_clues": "1"}, csrf=None)).status \
        == 403
    (event, *_) = [e for e in await audit(console.container, "report_inputs")]
    assert event.actor_id == triage.id and event.data["changed"] == ["monitoring_methods", "province_clues"]


async def test_who_may_enter_figures(console, story):
    leader = await console.person("boss", "bangongshi", "leader")
    assert (await leader.post("/reports/stats", {"period": "2026-11", "province_clues": "1"})).status == 403
    handler = await console.person("h1", "jiajing", "handler")
    response = await handler.post("/reports/monthly", {"period": "2026-11", "row7_inspections": "2"})
    assert response.status == 303  # for its own unit
    assert (await console.container.reports.inputs.monthly("2026-11", "jiajing")).rows == {7: {"inspections": 2}}
    assert (await handler.post("/reports/monthly", {"period": "2026-11", "unit": "zhiliang",
                                                    "row7_inspections": "2"})).status == 400
    async with console.container.uow() as uow:
        stored = (await uow.session.scalars(select(ReportInput))).all()
    assert [(r.form, r.unit_code) for r in stored] == [("monthly", "jiajing")]


async def test_exports_and_the_logic_rules(console, story):
    triage = await console.person("t1", "xiaobao", "triage")
    response = await triage.client.get("/reports/stats.xlsx?period=2026-11")
    assert response.status == 200 and response.headers["Content-Type"] == XLSX
    assert "attachment" in response.headers["Content-Disposition"]
    stats = openpyxl.load_workbook(io.BytesIO(await response.read())).active
    assert stats[STATS_CELLS["complaints_handled"]].value == 5

    response = await triage.post("/reports/monthly", {
        "period": "2026-11", "row3_persons_educated": "1", "row3_persons_disciplined": "2"})
    assert response.status == 303
    status, page = await triage.get("/reports?period=2026-11")
    assert "党纪政务处分人数（2）大于批评教育帮助和处理人数（1）" in html_lib.unescape(page)
    response = await triage.post("/reports/monthly.xlsx", {"period": "2026-11"})
    assert response.status == 409
    assert "党纪政务处分人数（2）大于批评教育帮助和处理人数（1）" in html_lib.unescape(await response.text())
    response = await triage.post("/reports/monthly.xlsx", {"period": "2026-11", "override_reason": "含上月人员"})
    assert response.status == 200 and response.headers["Content-Type"] == XLSX
    monthly = openpyxl.load_workbook(io.BytesIO(await response.read())).active
    assert monthly[monthly_cell(2, "persons_disciplined")].value == 2
    exports = [(e.actor_id, e.data["form"], e.note) for e in await audit(console.container, "report_export")]
    assert exports == [(triage.id, "stats", None), (triage.id, "monthly", "含上月人员")]


async def audit(container, action: str) -> list[CaseEvent]:
    async with container.uow() as uow:
        return list((await uow.session.scalars(
            select(CaseEvent).where(CaseEvent.action == action).order_by(CaseEvent.id))).all())

