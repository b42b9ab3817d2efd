"""附件1 浙江省网络直播营销违法违规行为专项治理工作情况统计表 as .xlsx, laid out like the seed's form.

Six columns: A the section label 工作情况 (merged down its rows), B the sub-section label 主体名录 (merged
down its four rows; elsewhere B and C hold the row's label together), C the label, D the value, E and F
the second label and value where the form pairs two figures on one row (直播间运营机构|直播营销人员,
省级派发线索|立案件数, 属地监测检查|立案, 处置消费投诉|办结, 其他渠道(具体方式)|条/件数). A single value
spans D:F. 其他类型(具体类型) shows the entered types' text in D:E and the count in F.

`STATS_CELLS` names the value cell of every field key; the workbook also defines each key as a name.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from openpyxl import Workbook
from openpyxl.styles import Alignment
from openpyxl.utils import absolute_coordinate, quote_sheetname
from openpyxl.workbook.defined_name import DefinedName
from openpyxl.worksheet.worksheet import Worksheet

from reports.fields import STATS_DATA_FIELDS, STATS_MANUAL_FIELDS, FormField
from reports.xlsx_style import (
    BODY_SIZE,
    LEFT,
    VERTICAL,
    fit_row_height,
    font,
    new_sheet,
    put_text,
    put_value,
    refuse_bad_value,
    set_column_widths,
    set_up_printing,
    title_row,
    unit_and_date_row,
    workbook_bytes,
)

TITLE = "浙江省网络直播营销违法违规行为专项治理工作情况统计表"
SHEET_TITLE = "工作情况统计表"
SECTION_LABEL = "工作情况"
SUBJECTS_LABEL = "主体名录"
STATS_FIELDS: dict[str, FormField] = {f.key: f for f in (*STATS_DATA_FIELDS, *STATS_MANUAL_FIELDS)}

COLUMN_WIDTHS = (5.0, 5.0, 33.0, 24.0, 21.0, 12.0)  # A..F
LAST_COLUMN = "F"
TITLE_ROW, UNIT_ROW, FIRST_TABLE_ROW = 1, 2, 3
ROW_HEIGHT = 24.0
# the breakdown rows under 行政违法案件总数: indented, the types further than the first "其中:" row
INDENTS = {"cases_over_10k": 1, **{f.key: (1 if f.label.startswith("其中") else 2)
                                   for f in STATS_DATA_FIELDS if f.key.startswith("filed_")}}


# --- the rows of the table -------------------------------------------------------------------------

@dataclass(frozen=True)
class Single:
    """A label and its value across D:F."""

    key: str

    def value_cells(self, row: int) -> dict[str, str]:
        return {self.key: f"D{row}"}

    def draw(self, ws: Worksheet, row: int, label_range: str, values: Mapping[str, object]) -> list[tuple[str, str]]:
        field = STATS_FIELDS[self.key]
        draw_label(ws, label_range, field)
        put_value(ws, f"D{row}:F{row}", field.type, values.get(self.key))
        return [(label_range, field.label), (f"D{row}:F{row}", text_of(field, values))]


@dataclass(frozen=True)
class Pair:
    """Two figures on one row: label|value|label|value."""

    left: str
    right: str

    def value_cells(self, row: int) -> dict[str, str]:
        return {self.left: f"D{row}", self.right: f"F{row}"}

    def draw(self, ws: Worksheet, row: int, label_range: str, values: Mapping[str, object]) -> list[tuple[str, str]]:
        left, right = STATS_FIELDS[self.left], STATS_FIELDS[self.right]
        draw_label(ws, label_range, left)
        put_value(ws, f"D{row}", left.type, values.get(self.left))
        draw_label(ws, f"E{row}", right)
        put_value(ws, f"F{row}", right.type, values.get(self.right))
        return [(label_range, left.label), (f"D{row}", text_of(left, values)), (f"E{row}", right.label)]


@dataclass(frozen=True)
class CountWithTypes:
    """其他类型(具体类型): the count's label, the entered types' text (D:E) and the count (F)."""

    count: str
    types: str

    def value_cells(self, row: int) -> dict[str, str]:
        return {self.types: f"D{row}", self.count: f"F{row}"}

    def draw(self, ws: Worksheet, row: int, label_range: str, values: Mapping[str, object]) -> list[tuple[str, str]]:
        count, types = STATS_FIELDS[self.count], STATS_FIELDS[self.types]
        draw_label(ws, label_range, count)
        put_value(ws, f"D{row}:E{row}", types.type, values.get(self.types))
        put_value(ws, f"F{row}", count.type, values.get(self.count))
        return [(label_range, count.label), (f"D{row}:E{row}", text_of(types, values))]


Line = Single | Pair | CountWithTypes


@dataclass(frozen=True)
class Block:
    """Rows under one sub-section label in column B (主体名录), or under none (label None)."""

    label: str | None
    lines: tuple[Line, ...]


SECTIONS: tuple[tuple[str, tuple[Block, ...]], ...] = (
    (SECTION_LABEL, (
        Block(SUBJECTS_LABEL, (
            Single("subjects_platform"),
            Pair("subjects_operator", "subjects_streamer"),
            Single("subjects_service_agency"),
            Single("subjects_influential_streamers"),
        )),
        Block(None, (
            Single("administrative_guidance"),
            Pair("province_clues", "province_clues_filed"),
            Single("monitoring_methods"),
            Single("monitored_sites"),
            Pair("monitoring_checks", "monitoring_filed"),
            Pair("complaints_handled", "complaints_closed"),
            Pair("other_channel_description", "other_channel_count"),
            Single("long_term_mechanisms"),
        )),
    )),
    (SECTION_LABEL, (
        Block(None, (
            Single("accounts_disposed"),
            Single("sites_closed"),
            Single("takedowns"),
            Single("criminal_cases"),
            Single("administrative_cases"),
            Single("cases_over_10k"),
            Single("penalties_wan"),
            *(Single(f.key) for f in STATS_DATA_FIELDS if f.key.startswith("filed_") and f.key != "filed_other"),
            CountWithTypes("filed_other", "other_violation_types"),
            Single("joint_inspections"),
            Single("judicial_referrals"),
            Single("out_of_province_transfers"),
            Single("publicity_items"),
            Single("other_publicity"),
        )),
    )),
)


@dataclass(frozen=True)
class PlacedLine:
    row: int
    line: Line
    label_range: str  # C alone under a sub-section label, else B:C


def placed_lines() -> Iterator[PlacedLine]:
    row = FIRST_TABLE_ROW
    for _, blocks in SECTIONS:
        for block in blocks:
            for line in block.lines:
                yield PlacedLine(row, line, f"C{row}" if block.label else f"B{row}:C{row}")
                row += 1


def label_spans() -> Iterator[tuple[str, str]]:
    """(cell range, label) of the merged section labels (column A) and sub-section labels (column B)."""
    row = FIRST_TABLE_ROW
    for section_label, blocks in SECTIONS:
        section_start = row
        for block in blocks:
            if block.label:
                yield f"B{row}:B{row + len(block.lines) - 1}", block.label
            row += len(block.lines)
        yield f"A{section_start}:A{row - 1}", section_label


def _value_cells() -> dict[str, str]:
    cells: dict[str, str] = {}
    for placed in placed_lines():
        cells.update(placed.line.value_cells(placed.row))
    return cells


STATS_CELLS: dict[str, str] = _value_cells()  # field key -> its value cell, e.g. "subjects_platform" -> "D3"
LAST_ROW = max(placed.row for placed in placed_lines())


# --- drawing ------------------------------------------------------------------------------------------

def draw_label(ws: Worksheet, cell_range: str, field: FormField) -> None:
    indent = INDENTS.get(field.key, 0)
    alignment = Alignment(horizontal="left", vertical="center", wrap_text=True, indent=indent) if indent else LEFT
    put_text(ws, cell_range, field.label, alignment=alignment)


def text_of(field: FormField, values: Mapping[str, object]) -> str:
    value = values.get(field.key)
    return value if field.type == "text" and isinstance(value, str) else ""


def draw_section_labels(ws: Worksheet) -> None:
    for cell_range, label in label_spans():
        put_text(ws, cell_range, label, alignment=VERTICAL, cell_font=font(BODY_SIZE, bold=True))


def draw_table(ws: Worksheet, values: Mapping[str, object]) -> None:
    for placed in placed_lines():
        texts = placed.line.draw(ws, placed.row, placed.label_range, values)
        fit_row_height(ws, placed.row, ROW_HEIGHT, texts)
    draw_section_labels(ws)


def define_names(workbook: Workbook, ws: Worksheet) -> None:
    for key, coordinate in STATS_CELLS.items():
        workbook.defined_names[key] = DefinedName(
            key, attr_text=f"{quote_sheetname(ws.title)}!{absolute_coordinate(coordinate)}")


def check_values(values: Mapping[str, object]) -> None:
    unknown = sorted(set(values) - set(STATS_FIELDS))
    if unknown:
        raise ValueError(f"附件1没有这些项目：{', '.join(unknown)}")
    for key, value in values.items():
        field = STATS_FIELDS[key]
        refuse_bad_value(field.label, field.type, value)


def build_stats_workbook(values: Mapping[str, int | Decimal | str | None], *, reporting_unit: str,
                         report_date: date) -> Workbook:
    """附件1 filled with `values` (field key -> value; a missing key or None is a blank cell).

    Raises ValueError for a key the form does not have, a count that is not an integer >= 0, an
    amount that is not an int or Decimal >= 0, or a text that is not a string."""
    check_values(values)
    workbook, ws = new_sheet(SHEET_TITLE)
    set_column_widths(ws, COLUMN_WIDTHS)
    title_row(ws, f"A{TITLE_ROW}:{LAST_COLUMN}{TITLE_ROW}", TITLE)
    unit_and_date_row(ws, f"A{UNIT_ROW}:D{UNIT_ROW}", f"E{UNIT_ROW}:{LAST_COLUMN}{UNIT_ROW}", reporting_unit,
                      report_date)
    draw_table(ws, values)
    set_up_printing(ws, landscape=False, repeat_rows=f"{TITLE_ROW}:{UNIT_ROW}", last_column=LAST_COLUMN,
                    last_row=LAST_ROW)
    define_names(workbook, ws)
    return workbook


def stats_workbook_bytes(workbook: Workbook) -> bytes:
    """The .xlsx file of a workbook from build_stats_workbook."""
    return workbook_bytes(workbook)
