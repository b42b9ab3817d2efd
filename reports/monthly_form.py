"""附件2 网络直播营销违法违规行为专项治理工作月报表 as .xlsx, laid out like the seed's form.

21 columns: 序号, 治理的重点问题 and the MONTHLY_COLUMNS in the form's order; a two-row header where
通报曝光 and 公布成果 each span their two columns (批次数/批 + 案件数/件, 批次数/批 + 项目数/个) and every
other heading spans both rows; one row per MonthlyRow; 填表人/联系方式 under the table, then the
form's 备注 1-7 verbatim and the staff's 有关数据说明 (remarks) when given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date

from openpyxl import Workbook
from openpyxl.worksheet.worksheet import Worksheet

from reports.fields import MONTHLY_COLUMNS, MONTHLY_FORM_INPUTS, FormField
from reports.xlsx_style import (
    LEFT,
    NO_BORDER,
    column_letters,
    fit_row_height,
    font,
    new_sheet,
    put_text,
    put_value,
    range_width,
    set_column_widths,
    set_up_printing,
    text_height,
    title_row,
    unit_and_date_row,
    value_problem,
    workbook_bytes,
)

TITLE = "网络直播营销违法违规行为专项治理工作月报表"
SHEET_TITLE = "工作月报表"
SIZE = 10.0  # 21 columns on a landscape page
NUMBER_KEY, TITLE_KEY = "number", "title"
MONTHLY_FIELDS: dict[str, FormField] = {
    NUMBER_KEY: FormField(NUMBER_KEY, "序号"),
    TITLE_KEY: FormField(TITLE_KEY, "治理的重点问题", "text"),
    **{c.key: c for c in MONTHLY_COLUMNS},
}
COLUMN_KEYS: tuple[str, ...] = tuple(MONTHLY_FIELDS)
COLUMNS: dict[str, str] = dict(zip(COLUMN_KEYS, column_letters("A", len(COLUMN_KEYS)), strict=True))
FIRST_COLUMN, LAST_COLUMN = COLUMNS[NUMBER_KEY], COLUMNS[COLUMN_KEYS[-1]]
# the headings that span two columns over their own sub-headings
GROUPS: dict[str, tuple[str, str]] = {
    "通报曝光": ("exposure_batches", "exposure_cases"),
    "公布成果": ("published_batches", "published_items"),
}
GROUP_OF: dict[str, str] = {key: group for group, keys in GROUPS.items() for key in keys}
TEXT_WIDTHS = {TITLE_KEY: 16.0, "goal_schedule": 22.0, "results": 26.0, "problems": 20.0, "next_steps": 20.0,
               "typical_cases": 26.0}
NUMBER_WIDTH, COUNT_WIDTH = 5.0, 7.5
TITLE_ROW, UNIT_ROW, HEADER_ROW, SUBHEADER_ROW = 1, 2, 3, 4
FIRST_DATA_ROW = 5
DATA_ROW_HEIGHT = 36.0
FORM_KEYS = {f.key for f in MONTHLY_FORM_INPUTS}
ROW_KEYS = frozenset(c.key for c in MONTHLY_COLUMNS)

NOTES = (
    "1.填写2024年专项治理工作开展以来累计数据,可对表中“有关数据”进行具体说明;",
    "2.条目式填写工作成效,如整改了哪些问题、完善了哪些制度、为群众具体解决了哪些急难愁盼问题;",
    "3.存在问题栏主要填写治理工作面临的困难,需要上级协调解决的问题,开展治理中发现的表现在基层、根子上面的问题;",
    "4.只填写新梳理发现的问题,已报过的不重复填报;",
    "5.可引用民意调查、群众评价等作为例证,对整治工作的群众获得感进行说明;",
    "6.表内逻辑关系:(1)“处分人数”≦“批评教育帮助和处理人数”;(2)“推动解决群众急难愁盼问题数”≦“发现群众急难愁盼问题数”;"
    "(3)“制发整改通知书数”≧“整改通知书整改完成数”;(4)通报栏的“案件数”≧“批次数”;(5)公布的“栏目数”≧“批次数”;",
    "7.表中的所有数据均为该项目全省各级职能部门工作数据,不含纪检监察机关工作数据。",
)


@dataclass(frozen=True)
class MonthlyRow:
    """One row of 附件2: its 序号, its 治理的重点问题, and its values by MONTHLY_COLUMNS key (found and
    solved already the totals); a missing key or None is a blank cell."""

    number: int
    title: str
    values: Mapping[str, int | str | None]


def monthly_cell(row_index: int, key: str) -> str:
    """The coordinate of column `key` ("number", "title" or a MONTHLY_COLUMNS key) in the `row_index`-th
    (from 0) row of the table."""
    return f"{COLUMNS[key]}{FIRST_DATA_ROW + row_index}"


def monthly_column_name(key: str) -> str:
    """A column's name in words, without its unit: "党纪政务处分人数", "通报曝光案件数"."""
    return GROUP_OF.get(key, "") + MONTHLY_FIELDS[key].label.split("/")[0]


def row_name(row: MonthlyRow) -> str:
    return f"第{row.number}行（{row.title}）"


# --- values -----------------------------------------------------------------------------------------

def row_value_problems(row: MonthlyRow) -> list[str]:
    """What in `row` cannot stand in its cell, in words; empty when all is well."""
    problems = []
    if value_problem("int", row.number) or value_problem("text", row.title):
        problems.append(f"{row_name(row)}：序号应为不小于0的整数，标题应为文字")
    for key, value in row.values.items():
        if key not in ROW_KEYS:
            problems.append(f"{row_name(row)}：没有“{key}”这一栏")
        elif problem := value_problem(MONTHLY_FIELDS[key].type, value):
            problems.append(f"{row_name(row)}：{monthly_column_name(key)}（{value!r}）{problem}")
    return problems


def check_row_values(rows: Sequence[MonthlyRow]) -> None:
    """Raise ValueError naming every value that cannot stand in its cell: a count that is not an
    integer >= 0, a text that is not a string, a column the form does not have."""
    problems = [problem for row in rows for problem in row_value_problems(row)]
    if problems:
        raise ValueError("；".join(problems))


def check_form_entries(form: Mapping[str, str | None]) -> None:
    unknown = sorted(set(form) - FORM_KEYS)
    bad = [key for key in FORM_KEYS & set(form) if value_problem("text", form[key])]
    if unknown or bad:
        raise ValueError(f"附件2的填表项不对：{', '.join(unknown + sorted(bad))}")


# --- drawing ------------------------------------------------------------------------------------------

def column_widths() -> list[float]:
    def width(key: str) -> float:
        if key == NUMBER_KEY:
            return NUMBER_WIDTH
        return TEXT_WIDTHS.get(key, COUNT_WIDTH if MONTHLY_FIELDS[key].type == "int" else 20.0)

    return [width(key) for key in COLUMN_KEYS]


def draw_header(ws: Worksheet) -> None:
    heading = font(SIZE, bold=True)
    spanning: list[tuple[str, str]] = []  # (cell range, text) of the headings over both header rows
    below: list[tuple[str, str]] = []  # the sub-headings under 通报曝光 and 公布成果
    for key in COLUMN_KEYS:
        column, label = COLUMNS[key], MONTHLY_FIELDS[key].label
        cell_range = f"{column}{SUBHEADER_ROW}" if key in GROUP_OF else f"{column}{HEADER_ROW}:{column}{SUBHEADER_ROW}"
        put_text(ws, cell_range, label, cell_font=heading)
        (below if key in GROUP_OF else spanning).append((f"{column}{HEADER_ROW}", label))
    for group, (first, last) in GROUPS.items():
        put_text(ws, f"{COLUMNS[first]}{HEADER_ROW}:{COLUMNS[last]}{HEADER_ROW}", group, cell_font=heading)
    fit_header_heights(ws, spanning, below)


def fit_header_heights(ws: Worksheet, spanning: list[tuple[str, str]], below: list[tuple[str, str]]) -> None:
    """The two header rows together as tall as the tallest spanning heading, the lower one as the sub-headings."""
    def tallest(texts: list[tuple[str, str]]) -> float:
        return max(text_height(text, range_width(ws, cell_range), SIZE) for cell_range, text in texts)

    ws.row_dimensions[SUBHEADER_ROW].height = tallest(below)
    group_heading = text_height(next(iter(GROUPS)), 2 * COUNT_WIDTH, SIZE)
    ws.row_dimensions[HEADER_ROW].height = max(tallest(spanning) - tallest(below), group_heading)


def draw_row(ws: Worksheet, row_index: int, row: MonthlyRow) -> None:
    values = {NUMBER_KEY: row.number, TITLE_KEY: row.title, **row.values}
    texts: list[tuple[str, str | None]] = []
    for key, field in MONTHLY_FIELDS.items():
        coordinate = monthly_cell(row_index, key)
        put_value(ws, coordinate, field.type, values.get(key), cell_font=font(SIZE))
        if field.type == "text":
            texts.append((coordinate, values.get(key)))
    fit_row_height(ws, FIRST_DATA_ROW + row_index, DATA_ROW_HEIGHT, texts, SIZE)


def full_width(row: int) -> str:
    return f"{FIRST_COLUMN}{row}:{LAST_COLUMN}{row}"


def draw_signature(ws: Worksheet, row: int, form: Mapping[str, str | None]) -> None:
    """填表人 and 联系方式 under the table, as the seed's line."""
    texts = [(f"A{row}:{COLUMNS['inspections']}{row}", f"填表人: {form.get('preparer') or ''}"),
             (f"{COLUMNS['notices_issued']}{row}:{COLUMNS['digital_platforms']}{row}",
              f"联系方式: {form.get('contact') or ''}")]
    for cell_range, text in texts:
        put_text(ws, cell_range, text, alignment=LEFT, cell_font=font(SIZE), border=NO_BORDER)
    fit_row_height(ws, row, 28.0, texts, SIZE)


def draw_notes(ws: Worksheet, row: int, remarks: str | None) -> int:
    """备注 and its notes 1-7 from `row` on, then the staff's 有关数据说明 if any; returns the last row."""
    lines = ["备注:", *NOTES, *([f"有关数据说明: {remarks}"] if remarks else [])]
    for offset, text in enumerate(lines):
        put_text(ws, full_width(row + offset), text, alignment=LEFT, cell_font=font(SIZE), border=NO_BORDER)
        fit_row_height(ws, row + offset, 20.0, [(full_width(row + offset), text)], SIZE)
    return row + len(lines) - 1


def build_monthly_workbook(rows: Sequence[MonthlyRow], form: Mapping[str, str | None], *, reporting_unit: str,
                           report_date: date) -> Workbook:
    """附件2 with one table row per MonthlyRow; `form` holds MONTHLY_FORM_INPUTS keys (preparer,
    contact, remarks), missing or None for blank.

    Raises ValueError for a value that cannot stand in its cell (check_row_values) or an unknown or
    non-text form entry. The logic rules of note 6 are reports.form_rules' business, not checked here."""
    check_row_values(rows)
    check_form_entries(form)
    workbook, ws = new_sheet(SHEET_TITLE)
    set_column_widths(ws, column_widths())
    title_row(ws, full_width(TITLE_ROW), TITLE)
    unit_and_date_row(ws, f"A{UNIT_ROW}:{COLUMNS['digital_platforms']}{UNIT_ROW}",
                      f"{COLUMNS['exposure_batches']}{UNIT_ROW}:{LAST_COLUMN}{UNIT_ROW}", reporting_unit, report_date)
    draw_header(ws)
    for index, row in enumerate(rows):
        draw_row(ws, index, row)
    signature_row = FIRST_DATA_ROW + len(rows)
    draw_signature(ws, signature_row, form)
    last_row = draw_notes(ws, signature_row + 1, form.get("remarks"))
    ws.freeze_panes = f"{COLUMNS['goal_schedule']}{FIRST_DATA_ROW}"
    set_up_printing(ws, landscape=True, repeat_rows=f"{HEADER_ROW}:{SUBHEADER_ROW}", last_column=LAST_COLUMN,
                    last_row=last_row)
    return workbook


def monthly_workbook_bytes(workbook: Workbook) -> bytes:
    """The .xlsx file of a workbook from build_monthly_workbook."""
    return workbook_bytes(workbook)
