"""The statistics forms as staff export them: figures from the cases of the report-figures story (October
and November 2026, the campaign starting 2026-10-01) beside the figures staff entered, the monthly
form's logic rules before export, the override with a recorded reason, and the command line."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from datetime import date
from decimal import Decimal

import openpyxl
import pytest
from sqlalchemy import select

from db.models import CaseEvent, Subject
from reports.inputs import InputError, parse_monthly
from reports.monthly_form import monthly_cell
from reports.period import Period, ReportScope
from reports.service import RulesViolated
from reports.stats_form import STATS_CELLS
from tests.integration.test_report_figures import CAMPAIGN_START, story  # noqa: F401 - the fixture

NOVEMBER = Period.month("2026-11")
BUREAU = ReportScope()
REPORT_DAY = date(2026, 12, 10)


@pytest.fixture
def settings(tmp_path, database_url, nlu_cache_dir):
    from qinglang.settings import load_settings

    return load_settings(env_file=None, data_dir=tmp_path / "data", database_url=database_url,
                         nlu_cache_dir=nlu_cache_dir, campaign_start=CAMPAIGN_START)


def sheet(content: bytes):
    return openpyxl.load_workbook(io.BytesIO(content)).active


def row_of(focus_area: int) -> int:
    return focus_area - 1  # the monthly form lists the focus areas 1-14 in order


async def events(container, action: str) -> list[CaseEvent]:
    async with container.uow() as uow:
        return list((await uow.session.scalars(
            select(CaseEvent).where(CaseEvent.action == action).order_by(CaseEvent.id))).all())


async def test_the_stats_form_holds_the_case_figures_and_the_entered_ones(container, story):
    reports = container.reports
    await reports.inputs.save_stats("2026-11", "bureau", {
        "province_clues": "9", "province_clues_filed": "2", "monitoring_methods": "网上巡查、投诉举报分析",
        "other_violation_types": "虚构交易", "joint_inspections": 5, "publicity_items": "16",
    }, staff_id=None)
    export = await reports.export_stats(BUREAU, NOVEMBER, staff_id=None, report_date=REPORT_DAY)
    assert export.filename == "附件1_统计表_bureau_2026-11.xlsx"
    cells = sheet(export.content)

    def cell(key: str):
        return cells[STATS_CELLS[key]].value

    # from the cases since 2026-10-01 (see the story in test_report_figures)
    assert (cell("complaints_handled"), cell("complaints_closed"), cell("other_channel_count")) == (5, 3, 9)
    assert (cell("administrative_cases"), cell("cases_over_10k"), cell("criminal_cases")) == (2, 1, 1)
    assert Decimal(str(cell("penalties_wan"))) == Decimal("1.60")
    assert cells[STATS_CELLS["penalties_wan"]].number_format == "0.00"
    assert (cell("filed_price"), cell("filed_ip_infringement"), cell("filed_food_safety")) == (1, 1, 0)
    assert (cell("takedowns"), cell("accounts_disposed"), cell("sites_closed")) == (3, 1, 2)
    assert (cell("out_of_province_transfers"), cell("judicial_referrals")) == (1, 1)
    assert (cell("subjects_operator"), cell("subjects_service_agency"), cell("subjects_streamer")) == (1, 1, 1)
    # entered by staff
    assert (cell("province_clues"), cell("province_clues_filed"), cell("joint_inspections")) == (9, 2, 5)
    assert (cell("monitoring_methods"), cell("publicity_items")) == ("网上巡查、投诉举报分析", 16)
    assert cell("other_channel_description").startswith("清朗投诉举报平台")  # the default description
    assert cell("monitored_sites") is None  # not entered: blank, not 0
    texts = [str(c.value) for row in cells.iter_rows() for c in row if c.value is not None]
    assert any("温州市龙湾区市场监督管理局" in t for t in texts)
    assert any("2026年12月10日" in t for t in texts)
    (event,) = await events(container, "report_export")
    assert event.data == {"form": "stats", "period": "2026-11", "unit": "bureau"}


async def test_a_unit_reports_the_cases_it_leads(container, story):
    export = await container.reports.export_stats(ReportScope("jiajing"), NOVEMBER, staff_id=None)
    cells = sheet(export.content)
    assert cells[STATS_CELLS["administrative_cases"]].value == 1  # c2, the price case 价竞分局 filed
    assert cells[STATS_CELLS["filed_ip_infringement"]].value == 0
    assert any("填报单位" in str(c.value) and "价竞分局" in str(c.value)
               for row in cells.iter_rows() for c in row if c.value)


async def test_the_monthly_form_adds_what_staff_found_elsewhere_to_the_cases(container, story):
    reports = container.reports
    entered = parse_monthly(
        {"3": {"inspections": "4", "found_extra": "2", "solved_extra": "1", "notices_issued": "3",
               "notices_completed": "2", "persons_educated": "3", "persons_disciplined": "1",
               "exposure_batches": "1", "exposure_cases": "5", "published_batches": "1", "published_items": "3",
               "results": "1.检查直播间26家次；\n2.下架假冒商品41件。", "goal_schedule": "=年底前全覆盖"}},
        {"preparer": "潘可可", "contact": "0577-85626228"},
    )
    await reports.inputs.save_monthly("2026-11", "bureau", entered, staff_id=None)
    assert await reports.check(BUREAU, NOVEMBER) == []
    export = await reports.export_monthly(BUREAU, NOVEMBER, staff_id=None, report_date=REPORT_DAY)
    cells = sheet(export.content)

    def cell(focus_area: int, key: str):
        return cells[monthly_cell(row_of(focus_area), key)].value

    assert (cell(3, "number"), cell(3, "title")) == (3, "严厉打击销售假冒伪劣产品")
    # found: c5 (product quality) + 2 entered; solved: 0 closed + 1 entered
    assert (cell(3, "found"), cell(3, "solved")) == (3, 1)
    assert (cell(10, "found"), cell(10, "solved")) == (4, 2)  # consumer rights, from the cases alone
    assert (cell(3, "inspections"), cell(3, "notices_issued"), cell(3, "exposure_cases")) == (4, 3, 5)
    assert cell(3, "results") == "1.检查直播间26家次；\n2.下架假冒商品41件。"
    assert cell(3, "goal_schedule") == "=年底前全覆盖"
    assert cells[monthly_cell(row_of(3), "goal_schedule")].data_type == "s"  # text, never a formula
    assert cell(4, "inspections") is None
    texts = " ".join(str(c.value) for row in cells.iter_rows() for c in row if c.value is not None)
    assert "潘可可" in texts and "0577-85626228" in texts


async def test_a_broken_rule_refuses_the_export_until_a_reason_is_given(container, story):
    reports = container.reports
    entered = parse_monthly({"3": {"persons_educated": "3", "persons_disciplined": "5"},
                             "10": {"solved_extra": "3"}}, {})
    await reports.inputs.save_monthly("2026-11", "bureau", entered, staff_id=None)
    with pytest.raises(RulesViolated) as refused:
        await reports.export_monthly(BUREAU, NOVEMBER, staff_id=None)
    messages = [v.message for v in refused.value.violations]
    assert messages == [
        "第3行（严厉打击销售假冒伪劣产品）：党纪政务处分人数（5）大于批评教育帮助和处理人数（3）",
        "第10行（压实消费维权经营主体责任）：推动解决群众急难愁盼问题数（5）大于发现群众急难愁盼问题数（4）",
    ]
    assert await events(container, "report_export") == []  # nothing was exported

    with pytest.raises(RulesViolated):
        await reports.export_monthly(BUREAU, NOVEMBER, staff_id=None, override_reason="   ")
    export = await reports.export_monthly(BUREAU, NOVEMBER, staff_id=None,
                                          override_reason="处分含上月移交的人员，已向省局说明")
    assert sheet(export.content)[monthly_cell(row_of(3), "persons_disciplined")].value == 5
    (event,) = await events(container, "report_export")
    assert event.note == "处分含上月移交的人员，已向省局说明"
    assert event.data == {"form": "monthly", "period": "2026-11", "unit": "bureau", "violations": messages,
                          "override_reason": "处分含上月移交的人员，已向省局说明"}

    fixed = parse_monthly({"3": {"persons_educated": "5", "persons_disciplined": "5"}}, {})
    await reports.inputs.save_monthly("2026-11", "bureau", fixed, staff_id=None)
    assert await reports.check(BUREAU, NOVEMBER) == []  # equal is within the rule


async def test_entered_figures_are_kept_per_period_and_unit_and_every_change_is_audited(container, story):
    inputs = container.reports.inputs
    triage = await container.accounts.create_user("t-report", "xiaobao", "triage")
    await inputs.save_stats("2026-11", "bureau", {"province_clues": 9}, staff_id=triage.id)
    await inputs.save_stats("2026-11", "bureau", {"province_clues": 9, "joint_inspections": 2}, staff_id=triage.id)
    await inputs.save_stats("2026-11", "jiajing", {"province_clues": 1}, staff_id=triage.id)
    assert await inputs.stats("2026-11", "bureau") == {"province_clues": 9, "joint_inspections": 2}
    assert await inputs.stats("2026-10", "bureau") == {}
    assert await inputs.stats("2026-11", "jiajing") == {"province_clues": 1}
    changes = [(e.actor_id, e.data) for e in await events(container, "report_inputs")]
    assert changes == [
        (triage.id, {"form": "stats", "period": "2026-11", "unit": "bureau", "changed": ["province_clues"]}),
        (triage.id, {"form": "stats", "period": "2026-11", "unit": "bureau", "changed": ["joint_inspections"]}),
        (triage.id, {"form": "stats", "period": "2026-11", "unit": "jiajing", "changed": ["province_clues"]}),
    ]
    with pytest.raises(InputError):
        await inputs.save_stats("2026-11", "bureau", {"province_clues": -1}, staff_id=triage.id)
    assert await inputs.stats("2026-11", "bureau") == {"province_clues": 9, "joint_inspections": 2}


# -- the command line --------------------------------------------------------------------------------


@pytest.fixture
def cli_env(tmp_path, database_url, nlu_cache_dir):
    env = {k: v for k, v in os.environ.items() if not k.startswith("QINGLANG_")}
    env.update(HOME=str(tmp_path), QINGLANG_DATA_DIR=str(tmp_path / "data"), QINGLANG_DATABASE_URL=database_url,
               QINGLANG_NLU_CACHE_DIR=str(nlu_cache_dir), QINGLANG_CAMPAIGN_START=CAMPAIGN_START.isoformat())
    return env


def qinglang(env, *args):
    return subprocess.run([sys.executable, "-m", "qinglang.cli", *args], env=env, capture_output=True, text=True,
                          timeout=180, cwd=env["HOME"])


async def test_the_command_line_writes_both_forms(container, story, cli_env, tmp_path):
    inputs = tmp_path / "monthly.yaml"
    inputs.write_text("rows:\n  3:\n    inspections: 4\n    found_extra: 2\nform:\n  preparer: 潘可可\n",
                      encoding="utf-8")
    out = tmp_path / "monthly.xlsx"
    result = qinglang(cli_env, "report", "monthly", "--period", "2026-11", "--inputs", str(inputs),
                      "--out", str(out), "--date", "2026-12-10")
    assert result.returncode == 0, result.stderr
    cells = sheet(out.read_bytes())
    assert (cells[monthly_cell(row_of(3), "found")].value, cells[monthly_cell(row_of(3), "inspections")].value) \
        == (3, 4)

    stats = tmp_path / "stats.xlsx"
    result = qinglang(cli_env, "report", "stats", "--period", "2026-11", "--out", str(stats))
    assert result.returncode == 0, result.stderr
    assert sheet(stats.read_bytes())[STATS_CELLS["complaints_handled"]].value == 5


async def test_the_command_line_names_what_is_wrong(container, story, cli_env, tmp_path):
    out = tmp_path / "never.xlsx"
    broken = tmp_path / "broken.yaml"
    broken.write_text("rows:\n  3:\n    persons_educated: 1\n    persons_disciplined: 2\n", encoding="utf-8")
    result = qinglang(cli_env, "report", "monthly", "--period", "2026-11", "--inputs", str(broken), "--out", str(out))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "logic rules" in result.stderr and "党纪政务处分人数（2）大于批评教育帮助和处理人数（1）" in result.stderr
    assert not out.exists()
    result = qinglang(cli_env, "report", "monthly", "--period", "2026-11", "--out", str(out),
                      "--override-reason", "已说明")
    assert result.returncode == 0, result.stderr
    assert out.exists()

    for args, fragment in [
        (["--period", "2026-13"], "YYYY-MM"),
        (["--period", "2026-11", "--unit", "nowhere"], "unknown unit 'nowhere'"),
    ]:
        result = qinglang(cli_env, "report", "stats", *args, "--out", str(tmp_path / "x.xlsx"))
        assert result.returncode == 2 and fragment in result.stderr and "Traceback" not in result.stderr
    bad_inputs = tmp_path / "bad.yaml"
    bad_inputs.write_text("province_clues: -3\n", encoding="utf-8")
    result = qinglang(cli_env, "report", "stats", "--period", "2026-11", "--inputs", str(bad_inputs),
                      "--out", str(tmp_path / "x.xlsx"))
    assert result.returncode == 2 and "省级派发线索(条)：应在0到1000000000之间" in result.stderr
    not_yaml = tmp_path / "list.yaml"
    not_yaml.write_text("- 1\n- 2\n", encoding="utf-8")
    result = qinglang(cli_env, "report", "stats", "--inputs", str(not_yaml), "--out", str(tmp_path / "x.xlsx"))
    assert result.returncode == 2 and "expected a mapping" in result.stderr
    assert not (tmp_path / "x.xlsx").exists()


async def test_a_station_reports_the_registry_of_its_streets_and_a_section_none(container, story):
    async with container.uow() as uow:
        now = container.clock.now()
        for type_, name, street in (("operator", "永中某传媒", "永中街道"), ("streamer", "永中主播", "永中街道"),
                                    ("operator", "海滨某传媒", "海滨街道")):
            uow.session.add(Subject(type=type_, name=name, platform="", in_district=True, street=street,
                                    created_at=now))
        await uow.commit()
    station = sheet((await container.reports.export_stats(ReportScope("suo_yongzhong"), NOVEMBER, None)).content)
    assert (station[STATS_CELLS["subjects_operator"]].value, station[STATS_CELLS["subjects_streamer"]].value) == (1, 1)
    assert station[STATS_CELLS["subjects_platform"]].value == 0
    bureau = sheet((await container.reports.export_stats(BUREAU, NOVEMBER, None)).content)
    assert bureau[STATS_CELLS["subjects_operator"]].value == 3  # the story's one and these two
    section = sheet((await container.reports.export_stats(ReportScope("jiajing"), NOVEMBER, None)).content)
    assert all(section[STATS_CELLS[key]].value is None for key in (
        "subjects_platform", "subjects_operator", "subjects_streamer", "subjects_service_agency"))
