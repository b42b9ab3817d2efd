"""The seed's two statistics forms as .xlsx (附件1, 附件2) and the monthly form's logic rules (附件2 note 6).

Every workbook is saved to bytes and loaded again with openpyxl, so the tests see what a reader sees.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from datetime import date
from decimal import Decimal
from io import BytesIO

import pytest
from openpyxl import load_workbook
from openpyxl.worksheet.worksheet import Worksheet

from reports.fields import FOCUS_AREA_TITLES, MONTHLY_COLUMNS, STATS_DATA_FIELDS, STATS_MANUAL_FIELDS
from reports.form_rules import RULES, RuleViolation, check_monthly
from reports.monthly_form import NOTES, MonthlyRow, build_monthly_workbook, monthly_cell, monthly_workbook_bytes
from reports.stats_form import STATS_CELLS, build_stats_workbook, stats_workbook_bytes

UNIT = "温州市瓯海区市场监督管理局"
DAY = date(2026, 11, 30)
FORMULA_LIKE = ("=1+1", "@SUM(A1:A3)", "+cmd|' /C calc'!A0", "-2+3")


# --- helpers ----------------------------------------------------------------------------------------

def stats_sheet(values: Mapping[str, object]) -> Worksheet:
    workbook = build_stats_workbook(values, reporting_unit=UNIT, report_date=DAY)
    return load_workbook(BytesIO(stats_workbook_bytes(workbook))).active


def monthly_bytes(rows: list[MonthlyRow], form: Mapping[str, str | None] | None = None) -> bytes:
    workbook = build_monthly_workbook(rows, form or {}, reporting_unit=UNIT, report_date=DAY)
    return monthly_workbook_bytes(workbook)


def monthly_sheet(rows: list[MonthlyRow], form: Mapping[str, str | None] | None = None) -> Worksheet:
    return load_workbook(BytesIO(monthly_bytes(rows, form))).active


def merged(ws: Worksheet) -> set[str]:
    return {str(r) for r in ws.merged_cells.ranges}


def row(number: int = 3, **values: int | str | None) -> MonthlyRow:
    return MonthlyRow(number, FOCUS_AREA_TITLES[number], values)


def all_stats_values() -> dict[str, object]:
    values: dict[str, object] = {f.key: n for n, f in enumerate((*STATS_DATA_FIELDS, *STATS_MANUAL_FIELDS), start=1)
                                 if f.type == "int"}
    values.update(penalties_wan=Decimal("12.5"), administrative_guidance="9月12日召开行政指导会，18家机构参加",
                  monitoring_methods="网上巡查、监督抽检", other_channel_description="清朗平台受理的举报线索",
                  long_term_mechanisms="制定处置规程1项", other_violation_types="虚构交易、刷单炒信")
    return values


# --- 附件1 ------------------------------------------------------------------------------------------

def test_stats_every_field_has_its_own_value_cell() -> None:
    keys = {f.key for f in (*STATS_DATA_FIELDS, *STATS_MANUAL_FIELDS)}
    assert set(STATS_CELLS) == keys
    assert len(set(STATS_CELLS.values())) == len(keys)


def test_stats_named_cells_hold_the_values() -> None:
    values = all_stats_values()
    ws = stats_sheet(values)
    for key, value in values.items():
        got = ws[STATS_CELLS[key]].value
        assert (Decimal(str(got)) if key == "penalties_wan" else got) == value, key
    assert ws[STATS_CELLS["subjects_platform"]].value == 1
    assert ws[STATS_CELLS["other_violation_types"]].value == "虚构交易、刷单炒信"


def test_stats_paired_rows_sit_side_by_side_like_the_seed() -> None:
    ws = stats_sheet({})
    for left, right in (("subjects_operator", "subjects_streamer"), ("province_clues", "province_clues_filed"),
                        ("monitoring_checks", "monitoring_filed"), ("complaints_handled", "complaints_closed"),
                        ("other_channel_description", "other_channel_count")):
        left_cell, right_cell = ws[STATS_CELLS[left]], ws[STATS_CELLS[right]]
        assert left_cell.row == right_cell.row
        assert ws.cell(right_cell.row, right_cell.column - 1).value in {f.label for f in STATS_MANUAL_FIELDS} | {
            f.label for f in STATS_DATA_FIELDS}
    row_of = ws[STATS_CELLS["complaints_handled"]].row
    assert [ws.cell(row_of, c).value for c in (2, 5)] == ["处置消费投诉(件)", "办结(件)"]
    other = ws[STATS_CELLS["filed_other"]]
    assert ws.cell(other.row, 2).value == "其他类型(具体类型)"
    assert ws[STATS_CELLS["other_violation_types"]].row == other.row


def test_stats_title_unit_date_and_merged_labels() -> None:
    ws = stats_sheet({})
    assert ws["A1"].value == "浙江省网络直播营销违法违规行为专项治理工作情况统计表"
    assert ws["A2"].value == f"填报单位: {UNIT}"
    assert ws["E2"].value == "时间: 2026年11月30日"
    first, last = ws[STATS_CELLS["subjects_platform"]].row, ws[STATS_CELLS["subjects_influential_streamers"]].row
    assert last - first == 3
    assert ws[f"B{first}"].value == "主体名录"
    assert {"A1:F1", f"B{first}:B{last}", f"A{first}:A{STATS_CELLS['long_term_mechanisms'][1:]}",
            f"A{int(STATS_CELLS['long_term_mechanisms'][1:]) + 1}:A{STATS_CELLS['other_publicity'][1:]}",
            f"D{first}:F{first}"} <= merged(ws)
    sections = [ws.cell(r, 1).value for r in range(3, ws.max_row + 1) if ws.cell(r, 1).value]
    assert sections == ["工作情况", "工作情况"]


def test_stats_penalties_show_two_decimals() -> None:
    ws = stats_sheet({"penalties_wan": Decimal("3.5")})
    cell = ws[STATS_CELLS["penalties_wan"]]
    assert cell.number_format == "0.00"
    assert cell.value == 3.5
    assert ws[STATS_CELLS["criminal_cases"]].number_format == "0"


def test_stats_blank_values_are_blank_cells() -> None:
    ws = stats_sheet({"subjects_platform": None})
    assert ws[STATS_CELLS["subjects_platform"]].value is None
    assert ws[STATS_CELLS["long_term_mechanisms"]].value is None


def test_stats_defined_names_point_at_the_value_cells() -> None:
    workbook = load_workbook(BytesIO(stats_workbook_bytes(
        build_stats_workbook({}, reporting_unit=UNIT, report_date=DAY))))
    destinations = dict(workbook.defined_names["penalties_wan"].destinations)
    assert destinations == {"工作情况统计表": "$" + STATS_CELLS["penalties_wan"][0] + "$"
                            + STATS_CELLS["penalties_wan"][1:]}


def test_stats_print_setup() -> None:
    ws = stats_sheet({})
    assert ws.page_setup.orientation == "portrait"
    assert str(ws.page_setup.paperSize) == ws.PAPERSIZE_A4
    assert ws.sheet_properties.pageSetUpPr.fitToPage
    assert (ws.page_setup.fitToWidth, ws.page_setup.fitToHeight) == (1, 0)
    assert ws.print_title_rows == "$1:$2"


@pytest.mark.parametrize("values", [
    {"subjects_platform": -1},
    {"subjects_platform": 1.5},
    {"subjects_platform": "3"},
    {"subjects_platform": True},
    {"penalties_wan": Decimal("-0.01")},
    {"penalties_wan": Decimal("NaN")},
    {"administrative_guidance": 5},
    {"no_such_field": 1},
])
def test_stats_refuses_bad_values(values: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        build_stats_workbook(values, reporting_unit=UNIT, report_date=DAY)


# --- text never becomes a formula ---------------------------------------------------------------

@pytest.mark.parametrize("text", FORMULA_LIKE)
def test_stats_formula_like_text_stays_text(text: str) -> None:
    ws = stats_sheet({"administrative_guidance": text, "other_violation_types": text})
    for key in ("administrative_guidance", "other_violation_types"):
        cell = ws[STATS_CELLS[key]]
        assert (cell.value, cell.data_type) == (text, "s")
        assert cell.quotePrefix


@pytest.mark.parametrize("text", FORMULA_LIKE)
def test_monthly_formula_like_text_stays_text(text: str) -> None:
    content = monthly_bytes([MonthlyRow(1, text, {"results": text, "goal_schedule": text})],
                            {"preparer": text, "remarks": text})
    ws = load_workbook(BytesIO(content)).active
    for key in ("title", "results", "goal_schedule"):
        assert (ws[monthly_cell(0, key)].value, ws[monthly_cell(0, key)].data_type) == (text, "s")
    sheet_xml = zipfile.ZipFile(BytesIO(content)).read("xl/worksheets/sheet1.xml").decode()
    assert "<f>" not in sheet_xml and "<f " not in sheet_xml


def test_stats_workbook_holds_no_formula() -> None:
    workbook = build_stats_workbook({"monitoring_methods": "=1+1"}, reporting_unit="=HYPERLINK(\"x\")",
                                    report_date=DAY)
    sheet_xml = zipfile.ZipFile(BytesIO(stats_workbook_bytes(workbook))).read("xl/worksheets/sheet1.xml").decode()
    assert "<f>" not in sheet_xml and "<f " not in sheet_xml


def test_control_characters_are_dropped() -> None:
    ws = stats_sheet({"monitoring_methods": "网上\x00巡查\x07\n抽检"})
    assert ws[STATS_CELLS["monitoring_methods"]].value == "网上巡查\n抽检"


# --- 附件2 ------------------------------------------------------------------------------------------

def full_row(number: int) -> MonthlyRow:
    values: dict[str, int | str | None] = {c.key: (number * 100 + i if c.type == "int" else f"{c.key}-{number}")
                                           for i, c in enumerate(MONTHLY_COLUMNS)}
    return row(number, **values)


def test_monthly_cells_hold_the_values() -> None:
    rows = [full_row(1), full_row(2)]
    ws = monthly_sheet(rows, {"preparer": "潘可可", "contact": "0577-85626228"})
    for index, monthly_row in enumerate(rows):
        assert ws[monthly_cell(index, "number")].value == monthly_row.number
        assert ws[monthly_cell(index, "title")].value == monthly_row.title
        for key, value in monthly_row.values.items():
            assert ws[monthly_cell(index, key)].value == value, key
    assert monthly_cell(0, "number") == "A5"
    assert monthly_cell(1, "typical_cases") == "U6"
    assert ws[monthly_cell(1, "exposure_cases")].value == 212  # 2 * 100 + its place among the columns


def test_monthly_two_row_header_as_the_seed() -> None:
    ws = monthly_sheet([full_row(1)])
    header = {c.value for c in ws[3] if c.value} | {c.value for c in ws[4] if c.value}
    assert {"序号", "治理的重点问题", "治理目标及进度安排", "通报曝光", "公布成果", "工作成效", "存在的问题",
            "下一步工作计划", "典型事例或典型案例"} <= header
    assert [ws[c].value for c in ("N3", "P3", "N4", "O4", "P4", "Q4")] == [
        "通报曝光", "公布成果", "批次数/批", "案件数/件", "批次数/批", "项目数/个"]
    assert {"A1:U1", "A3:A4", "B3:B4", "M3:M4", "N3:O3", "P3:Q3", "R3:R4", "U3:U4"} <= merged(ws)
    assert not {"N3:N4", "O3:O4", "P3:P4", "Q3:Q4"} & merged(ws)
    assert ws["A1"].value == "网络直播营销违法违规行为专项治理工作月报表"
    assert ws["A2"].value == f"填报单位: {UNIT}"
    assert ws.max_column == 21


def test_monthly_footer_notes_and_remarks() -> None:
    ws = monthly_sheet([full_row(1)], {"preparer": "潘可可", "contact": "0577-85626228", "remarks": "含平台数据"})
    texts = [c.value for c in ws["A"] if isinstance(c.value, str)]
    below = texts[texts.index("填表人: 潘可可"):]
    assert below == ["填表人: 潘可可", "备注:", *NOTES, "有关数据说明: 含平台数据"]
    assert "联系方式: 0577-85626228" in [c.value for c in ws[6]]
    assert NOTES[5].endswith("(5)公布的“栏目数”≧“批次数”;")
    assert len(NOTES) == 7


def test_monthly_without_remarks_ends_with_note_7() -> None:
    ws = monthly_sheet([full_row(1)])
    texts = [c.value for c in ws["A"] if isinstance(c.value, str)]
    assert texts[-1] == NOTES[-1]
    assert "填表人: " in texts


def test_monthly_print_setup() -> None:
    ws = monthly_sheet([full_row(n) for n in FOCUS_AREA_TITLES])
    assert ws.page_setup.orientation == "landscape"
    assert str(ws.page_setup.paperSize) == ws.PAPERSIZE_A4
    assert (ws.page_setup.fitToWidth, ws.page_setup.fitToHeight) == (1, 0)
    assert ws.print_title_rows == "$3:$4"
    assert ws[monthly_cell(0, "results")].alignment.wrap_text


@pytest.mark.parametrize("values", [{"inspections": -1}, {"inspections": 2.5}, {"inspections": "2"},
                                    {"results": 3}, {"no_such_column": 1}])
def test_monthly_refuses_bad_values(values: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        monthly_bytes([row(3, **values)])


def test_monthly_refuses_unknown_form_entries() -> None:
    with pytest.raises(ValueError):
        monthly_bytes([full_row(1)], {"signature": "x"})


# --- 附件2 note 6: the logic rules ----------------------------------------------------------------

# rule -> (the column that must not exceed, the column it must not exceed)
SMALLER_LARGER = {rule.number: ((rule.left, rule.right) if rule.relation == "<=" else (rule.right, rule.left))
                  for rule in RULES}


def test_five_rules_as_note_6() -> None:
    assert SMALLER_LARGER == {
        1: ("persons_disciplined", "persons_educated"),
        2: ("solved", "found"),
        3: ("notices_completed", "notices_issued"),
        4: ("exposure_batches", "exposure_cases"),
        5: ("published_batches", "published_items"),
    }


@pytest.mark.parametrize("rule", range(1, 6))
def test_rule_broken(rule: int) -> None:
    smaller, larger = SMALLER_LARGER[rule]
    violations = check_monthly([row(3, **{smaller: 5, larger: 3})])
    assert [(v.rule, v.row_number, v.row_title) for v in violations] == [(rule, 3, "严厉打击销售假冒伪劣产品")]
    assert "（5）" in violations[0].message and "（3）" in violations[0].message


@pytest.mark.parametrize("rule", range(1, 6))
@pytest.mark.parametrize(("small", "large"), [(3, 5), (4, 4), (0, 0), (None, None), (None, 2)])
def test_rule_kept(rule: int, small: int | None, large: int | None) -> None:
    smaller, larger = SMALLER_LARGER[rule]
    assert check_monthly([row(3, **{smaller: small, larger: large})]) == []


@pytest.mark.parametrize("rule", range(1, 6))
def test_blank_counts_as_zero(rule: int) -> None:
    smaller, larger = SMALLER_LARGER[rule]
    [violation] = check_monthly([row(3, **{smaller: 1, larger: None})])
    assert "（0）" in violation.message


def test_violation_messages_name_row_columns_and_values() -> None:
    violations = check_monthly([row(3, persons_disciplined=5, persons_educated=3, notices_issued=1,
                                    notices_completed=2),
                                row(8, exposure_batches=4, exposure_cases=2, published_batches=3, published_items=1,
                                    found=1, solved=9)])
    assert violations == [
        RuleViolation(1, 3, "严厉打击销售假冒伪劣产品",
                      "第3行（严厉打击销售假冒伪劣产品）：党纪政务处分人数（5）大于批评教育帮助和处理人数（3）"),
        RuleViolation(3, 3, "严厉打击销售假冒伪劣产品",
                      "第3行（严厉打击销售假冒伪劣产品）：制发整改通知书数（1）小于整改通知书整改完成数（2）"),
        RuleViolation(2, 8, "健全投诉举报回应机制",
                      "第8行（健全投诉举报回应机制）：推动解决群众急难愁盼问题数（9）大于发现群众急难愁盼问题数（1）"),
        RuleViolation(4, 8, "健全投诉举报回应机制",
                      "第8行（健全投诉举报回应机制）：通报曝光案件数（2）小于通报曝光批次数（4）"),
        RuleViolation(5, 8, "健全投诉举报回应机制",
                      "第8行（健全投诉举报回应机制）：公布成果项目数（1）小于公布成果批次数（3）"),
    ]


@pytest.mark.parametrize("value", [-1, 1.5, "3", True, Decimal("2")])
def test_rules_refuse_values_that_are_no_counts(value: object) -> None:
    with pytest.raises(ValueError, match="第3行（严厉打击销售假冒伪劣产品）：党纪政务处分人数"):
        check_monthly([row(3, persons_disciplined=value)])


def test_a_full_clean_form_has_no_violations() -> None:
    rows = [row(n, found=5, solved=5, persons_educated=2, persons_disciplined=1, notices_issued=3,
                notices_completed=2, exposure_batches=1, exposure_cases=4, published_batches=2, published_items=2)
            for n in FOCUS_AREA_TITLES]
    assert check_monthly(rows) == []


def test_monthly_without_rows_still_has_header_and_notes() -> None:
    ws = monthly_sheet([])
    assert ws["A5"].value == "填表人: "
    assert ws["A6"].value == "备注:"


def test_long_text_rows_grow_but_stay_within_what_a_row_can_be() -> None:
    ws = monthly_sheet([row(3, results="检查直播间。" * 30)], {"remarks": "说明" * 5000})
    assert ws.row_dimensions[5].height > 36
    assert max(d.height or 0 for d in ws.row_dimensions.values()) <= 409
