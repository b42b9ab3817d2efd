"""The two statistics forms as they print: each .xlsx converted to PDF by LibreOffice, its text read back
with poppler's pdftotext, and its pages rendered to PNG for a person to look at.

Needs `soffice` (Debian: libreoffice-calc-nogui), `pdftotext` and `pdftoppm` (poppler-utils);
scripts/test.sh installs them when it runs as root. Without them these tests skip locally and FAIL in
CI (CI=true). Each conversion uses its own LibreOffice profile, so parallel runs do not collide.

Pages: test-output/reports/stats-form-<page>.png and monthly-form-<page>.png at the repository root.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from reports.fields import DEFAULT_OTHER_CHANNEL, FOCUS_AREA_TITLES
from reports.monthly_form import MonthlyRow, build_monthly_workbook, monthly_workbook_bytes
from reports.stats_form import build_stats_workbook, stats_workbook_bytes

ROOT = Path(__file__).resolve().parents[2]
PAGES = ROOT / "test-output" / "reports"
TOOLS = ("soffice", "pdftotext", "pdftoppm")
CONVERT_TIMEOUT = 180  # seconds: LibreOffice's first start with a new profile is slow on a busy machine
UNIT = "温州市瓯海区市场监督管理局"
DAY = date(2026, 11, 30)

STATS_VALUES: dict[str, int | Decimal | str | None] = {
    "subjects_platform": 3, "subjects_operator": 18, "subjects_streamer": 246, "subjects_service_agency": 7,
    "subjects_influential_streamers": 12,
    "administrative_guidance": "2026年9月12日召开直播电商行政指导会，辖区18家直播间运营机构、32名主播参加，签订合规承诺书18份；"
                               "10月抽查整改率100%。",
    "province_clues": 9, "province_clues_filed": 2,
    "monitoring_methods": "网上巡查、投诉举报分析、监督抽检",
    "monitored_sites": 137, "monitoring_checks": 41, "monitoring_filed": 3,
    "complaints_handled": 328, "complaints_closed": 311,
    "other_channel_description": DEFAULT_OTHER_CHANNEL, "other_channel_count": 57,
    "long_term_mechanisms": "制定《直播营销投诉举报处置规程》《直播间合规指引》2项",
    "accounts_disposed": 4, "sites_closed": 0, "takedowns": 63, "criminal_cases": 1, "administrative_cases": 23,
    "cases_over_10k": 6, "penalties_wan": Decimal("38.75"),
    "filed_orientation": 1, "filed_tax": 0, "filed_platform_duty": 2, "filed_product_quality": 5,
    "filed_food_safety": 4, "filed_price": 3, "filed_advertising": 4, "filed_ip_infringement": 1,
    "filed_unfair_competition": 1, "filed_consumer_rights": 1, "filed_other": 1,
    "other_violation_types": "虚构交易、刷单炒信",
    "joint_inspections": 5, "judicial_referrals": 1, "out_of_province_transfers": 2,
    "publicity_items": 16, "other_publicity": 4,
}


def monthly_rows() -> list[MonthlyRow]:
    rows = []
    for number, title in FOCUS_AREA_TITLES.items():
        values: dict[str, int | str | None] = {
            "goal_schedule": "11月底前完成辖区直播间全覆盖检查" if number % 4 == 1 else None,
            "inspections": 10 + number, "found": 3 + number % 5, "solved": 2 + number % 5,
            "notices_issued": number % 3, "notices_completed": number % 3, "misconduct_found": 0,
            "persons_educated": number % 2, "persons_disciplined": 0, "rules_made": 1 if number == 8 else 0,
            "digital_platforms": 1 if number == 8 else 0, "exposure_batches": 1, "exposure_cases": 2 + number % 4,
            "published_batches": 1, "published_items": 3,
        }
        if number == 3:
            values.update(results="1.检查直播间26家次；\n2.督促下架假冒商品41件；\n3.立案查处5件。",
                          problems="跨区域直播主体取证难。", next_steps="联合网监分局开展夜间直播专项巡查。",
                          typical_cases="某直播间销售假冒运动鞋案，罚没款3.2万元。")
        rows.append(MonthlyRow(number, title, values))
    return rows


MONTHLY_FORM = {"preparer": "潘可可", "contact": "0577-85626228", "remarks": "发现问题数含清朗平台受理的投诉举报57件。"}


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture
def tools() -> None:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if not missing:
        return
    message = f"rendering the forms needs {', '.join(missing)}"
    if in_ci():
        pytest.fail(message + " (CI=true: failing instead of skipping; scripts/test.sh installs "
                              "libreoffice-calc-nogui and poppler-utils with apt-get when it runs as root)",
                    pytrace=False)
    pytest.skip(message + " (install with: apt-get install libreoffice-calc-nogui poppler-utils)")


def run(command: list[str], timeout: float) -> subprocess.CompletedProcess[bytes]:
    """Run `command` in its own process group; on timeout kill the whole group (soffice starts children)."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail(f"{command[0]} took longer than {timeout} s")
    result = subprocess.CompletedProcess(command, process.returncode, out, err)
    assert result.returncode == 0, f"{command[0]} failed: {err.decode(errors='replace')}"
    return result


def to_pdf(xlsx: Path, workdir: Path) -> Path:
    profile = workdir / "libreoffice-profile"
    run(["soffice", f"-env:UserInstallation={profile.as_uri()}", "--headless", "--norestore", "--convert-to", "pdf",
         "--outdir", str(workdir), str(xlsx)], CONVERT_TIMEOUT)
    pdf = workdir / f"{xlsx.stem}.pdf"
    assert pdf.is_file(), f"LibreOffice made no {pdf.name}"
    assert pdf.read_bytes().startswith(b"%PDF-")
    return pdf


def pdf_text(pdf: Path) -> str:
    """The PDF's text without any white space: a wrapped cell breaks its text over lines."""
    return "".join(run(["pdftotext", "-enc", "UTF-8", str(pdf), "-"], 60).stdout.decode().split())


def assert_shows(text: str, expected: tuple[str, ...]) -> None:
    for words in expected:
        assert "".join(words.split()) in text, words


def render_pages(pdf: Path, name: str) -> list[Path]:
    """The PDF's pages as test-output/reports/<name>-<page>.png (earlier renders of `name` replaced)."""
    PAGES.mkdir(parents=True, exist_ok=True)
    for old in PAGES.glob(f"{name}-*.png"):
        old.unlink()
    run(["pdftoppm", "-png", "-r", "150", str(pdf), str(PAGES / name)], 60)
    pages = sorted(PAGES.glob(f"{name}-*.png"))
    assert pages and all(page.read_bytes().startswith(b"\x89PNG") for page in pages)
    return pages


STATS_SHOWS = ("浙江省网络直播营销违法违规行为专项治理工作情况统计表", f"填报单位: {UNIT}", "时间: 2026年11月30日",
               "直播平台(家)", "直播营销人员(人)", "处置消费投诉(件)", "办结(件)", "罚没款总额(万元)", "38.75", "328",
               "311", "246", "其他类型(具体类型)", "虚构交易、刷单炒信", "其他形式宣传活动(条/次)")
MONTHLY_SHOWS = ("网络直播营销违法违规行为专项治理工作月报表", "序号", "通报曝光", "公布成果", "项目数/个",
                 "典型事例或典型案例", "严厉打击销售假冒伪劣产品", "督促下架假冒商品41件", "填表人: 潘可可",
                 "联系方式: 0577-85626228", "7.表中的所有数据均为该项目全省各级职能部门工作数据",
                 "有关数据说明: 发现问题数含清朗平台受理的投诉举报57件。")


def test_stats_form_prints(tools: None, tmp_path: Path) -> None:
    xlsx = tmp_path / "stats-form.xlsx"
    xlsx.write_bytes(stats_workbook_bytes(build_stats_workbook(STATS_VALUES, reporting_unit=UNIT, report_date=DAY)))
    pdf = to_pdf(xlsx, tmp_path)
    assert_shows(pdf_text(pdf), STATS_SHOWS)
    assert render_pages(pdf, "stats-form")


def test_monthly_form_prints(tools: None, tmp_path: Path) -> None:
    xlsx = tmp_path / "monthly-form.xlsx"
    workbook = build_monthly_workbook(monthly_rows(), MONTHLY_FORM, reporting_unit=UNIT, report_date=DAY)
    xlsx.write_bytes(monthly_workbook_bytes(workbook))
    pdf = to_pdf(xlsx, tmp_path)
    assert_shows(pdf_text(pdf), MONTHLY_SHOWS)
    assert render_pages(pdf, "monthly-form")
