"""The dashboard in a real browser, over the report-figures story (tests/integration/test_report_figures.py:
October and November 2026, the campaign starting 2026-10-01, today 2026-11-20). A triage officer logs in
through the login form, opens the dashboard of November 2026 and the statistics-form page, and exports
附件1 by clicking its link. What the dashboard shows equals the report's figures for the same period:
the numbers of 附件1 equal the exported workbook's cells, the headline figures equal
`container.reports.figures(...)`, the SVG charts are drawn, and choosing 价竞分局 in the unit selector
shows that unit's figures.

Screenshots: test-output/screenshots/dashboard.png (the whole bureau), dashboard-jiajing.png (价竞分局)
and reports.png (the statistics-form page).
"""

from __future__ import annotations

import io
import re
from decimal import Decimal

import openpyxl
import pytest

from reports.period import Period, ReportScope
from reports.stats_form import STATS_CELLS
from tests.integration.test_report_figures import CAMPAIGN_START, story  # noqa: F401 - the fixture

from .conftest import expect, serve

NOVEMBER = Period.month("2026-11")


@pytest.fixture
def settings(tmp_path, database_url, nlu_cache_dir):
    from qinglang.settings import load_settings

    return load_settings(env_file=None, data_dir=tmp_path / "data", database_url=database_url,
                         nlu_cache_dir=nlu_cache_dir, campaign_start=CAMPAIGN_START)


@pytest.fixture
def quiet_nlu(container, monkeypatch):
    # the dashboard never classifies text: training the classifier at start-up would only cost time
    monkeypatch.setattr(container.nlu, "warm_up", lambda: None)


def pct(rate) -> str:
    return "—" if rate is None else f"{rate * 100:.1f}%"


async def shown(page, attribute: str) -> dict[str, str]:
    """The figures the page shows, by the value of their data attribute (`data-figure`, `data-stats-field`).
    A figure shown twice (period.received in a KPI tile and in the table) must show the same both times."""
    pairs = [(key, text) for key, text in await page.locator(f"[{attribute}]").evaluate_all(
        f"nodes => nodes.map(n => [n.getAttribute('{attribute}'), n.textContent.trim()])")]
    values = dict(pairs)
    assert sorted(set(pairs)) == sorted(values.items()), f"a {attribute} shown twice, differently: {pairs}"
    return values


def number(value) -> Decimal:
    return Decimal(str(value).replace(",", ""))


async def test_the_dashboard_shows_the_reports_figures(container, quiet_nlu, story, page, screenshots):
    officer = await container.accounts.create_user("li.triage", "xiaobao", "triage", display_name="李分流")
    figures = await container.reports.figures(ReportScope(), NOVEMBER)
    jiajing = await container.reports.figures(ReportScope("jiajing"), NOVEMBER)

    async with serve(container) as site:
        # -- log in through the form
        await page.goto(site.url("/dashboard?period=2026-11"))
        await expect(page).to_have_url(re.compile(r"/login\?next="))
        await page.get_by_label("用户名").fill("li.triage")
        await page.get_by_label("密码").fill(officer.password)
        await page.get_by_role("button", name="登录").click()
        await expect(page).to_have_url(site.url("/dashboard?period=2026-11"))

        # -- the dashboard of November, for the whole bureau
        await expect(page.locator("h1")).to_contain_text("统计看板")
        await expect(page.locator("header.top .who")).to_contain_text("李分流")
        await expect(page.locator('.kpis [data-figure="period.received"]')).to_be_visible()
        await page.screenshot(path=screenshots / "dashboard.png", full_page=True)

        values = await shown(page, "data-figure")
        assert values["period.received"] == str(figures.period.received.total) == "10"
        assert values["period.closed"] == str(figures.period.closings.total) == "8"
        assert values["cumulative.received"] == str(figures.cumulative.received.total) == "15"
        assert values["period.reply_rate"] == pct(figures.period.replies.rate) == "62.5%"
        assert values["overdue.cases"] == str(figures.overdue.cases) == "2"
        stats_shown = await shown(page, "data-stats-field")
        assert set(stats_shown) == set(figures.stats_form_values())

        # -- the SVG charts are drawn, with a size
        charts = page.locator("svg.chart")
        count = await charts.count()
        assert count >= 4, f"{count} charts"
        for index in range(count):
            chart = charts.nth(index)
            await chart.scroll_into_view_if_needed()
            await expect(chart).to_be_visible()
            box = await chart.bounding_box()
            assert box is not None and box["width"] > 0 and box["height"] > 0, (index, box)

        # -- the statistics-form page of the same period, and 附件1 exported from it
        await page.get_by_role("link", name="统计报表（附件1、附件2）").click()
        await expect(page).to_have_url(site.url("/reports?period=2026-11"))
        await expect(page.locator("h1")).to_contain_text("统计报表")
        await page.screenshot(path=screenshots / "reports.png", full_page=True)
        async with page.expect_download() as download_info:
            await page.get_by_role("link", name="导出附件1（.xlsx）").click()
        download = await download_info.value
        assert download.suggested_filename == "附件1_统计表_bureau_2026-11.xlsx"
        # Playwright keeps the file under a name without an extension, which openpyxl refuses
        sheet = openpyxl.load_workbook(io.BytesIO((await download.path()).read_bytes())).active
        exported = {key: sheet[STATS_CELLS[key]].value for key in stats_shown}
        assert {key: number(text) for key, text in stats_shown.items()} == \
            {key: number(value) for key, value in exported.items()}
        assert exported["complaints_handled"] == 5

        # -- back to the dashboard, and 价竞分局 chosen in the unit selector
        await page.goto(site.url("/dashboard?period=2026-11"))
        selection = page.locator("form#selection")
        await selection.get_by_label("填报单位").select_option(label="价竞分局")
        await selection.get_by_role("button", name="查看").click()
        await expect(page).to_have_url(site.url("/dashboard?period=2026-11&unit=jiajing"))
        await expect(page.locator("h1 small")).to_contain_text("价竞分局")
        await expect(page.locator('[data-figure="period.received"]')).to_have_text(["1", "1"])  # tile, table
        await expect(page.locator('[data-figure="cumulative.received"]')).to_have_text("3")
        assert (jiajing.period.received.total, jiajing.cumulative.received.total) == (1, 3)
        await expect(selection.get_by_label("填报单位")).to_have_value("jiajing")
        await page.screenshot(path=screenshots / "dashboard-jiajing.png", full_page=True)
