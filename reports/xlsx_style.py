"""What the two statistics forms share as .xlsx: the government-form look (宋体, thin borders, wrapped
text), writing checked values into cells, row heights for wrapped text, and print setup.

Every text goes through `write_text`: complaint-derived and staff-entered texts are stored as text,
never as a formula (openpyxl would store "=1+1" as one), and characters that .xlsx cannot hold are
dropped. Counts must be integers >= 0; amounts (万元) numbers >= 0 shown with two decimals.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from io import BytesIO

from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE, Cell
from openpyxl.styles import Alignment, Border, Font, Side
from openpyxl.utils import column_index_from_string, get_column_letter, range_boundaries
from openpyxl.worksheet.page import PageMargins
from openpyxl.worksheet.properties import PageSetupProperties
from openpyxl.worksheet.worksheet import Worksheet

FONT_NAME = "宋体"  # SimSun, the font of printed government forms; LibreOffice falls back to an installed CJK font
GB2312 = 134  # the font charset Excel expects for 宋体
BODY_SIZE = 11.0
TITLE_SIZE = 18.0
MAX_CELL_TEXT = 32_767  # what one .xlsx cell holds
FORMULA_STARTS = ("=", "+", "-", "@")  # what a spreadsheet program might read as a formula when the cell is edited
AMOUNT_FORMAT = "0.00"

THIN = Side(style="thin", color="000000")
BOX = Border(left=THIN, right=THIN, top=THIN, bottom=THIN)
NO_BORDER = Border()
CENTRE = Alignment(horizontal="center", vertical="center", wrap_text=True)
LEFT = Alignment(horizontal="left", vertical="center", wrap_text=True)
RIGHT = Alignment(horizontal="right", vertical="center", wrap_text=True)
VERTICAL = Alignment(horizontal="center", vertical="center", text_rotation=255)  # characters stacked top to bottom

# row heights: a column width unit is about 7 px (the default font's digit); a full-width (CJK)
# character is one em wide; the CJK fonts' lines are about 1.4 em high
PX_PER_WIDTH_UNIT = 7.0
CELL_PADDING_PX = 6.0
LINE_HEIGHT_EM = 1.4
ROW_PADDING_PT = 6.0
MAX_ROW_HEIGHT = 409.0  # points: the most a spreadsheet row can be


def font(size: float = BODY_SIZE, *, bold: bool = False) -> Font:
    return Font(name=FONT_NAME, charset=GB2312, size=size, bold=bold)


# --- values ---------------------------------------------------------------------------------------

def count_problem(value: object) -> str | None:
    """Why `value` cannot stand in a count cell (an integer >= 0, or None for blank), or None if it can."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        return "不是整数"
    return "是负数" if value < 0 else None


def amount_problem(value: object) -> str | None:
    """Why `value` cannot stand in an amount cell (an int or Decimal >= 0, or None), or None if it can."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        return "不是数值"
    if isinstance(value, Decimal) and not value.is_finite():
        return "不是数值"
    return "是负数" if value < 0 else None


def text_problem(value: object) -> str | None:
    return None if value is None or isinstance(value, str) else "不是文字"


VALUE_PROBLEMS = {"int": count_problem, "wan": amount_problem, "text": text_problem}


def value_problem(field_type: str, value: object) -> str | None:
    """Why `value` cannot fill a cell of `field_type` (reports.fields.FieldType), or None if it can."""
    return VALUE_PROBLEMS[field_type](value)


def refuse_bad_value(label: str, field_type: str, value: object) -> None:
    problem = value_problem(field_type, value)
    if problem is not None:
        raise ValueError(f"{label}：{value!r}{problem}")


def clean_text(text: str) -> str:
    """`text` as one .xlsx cell can hold it: no control characters but line breaks and tabs, not too long."""
    text = ILLEGAL_CHARACTERS_RE.sub("", text.replace("\r\n", "\n"))
    return text if len(text) <= MAX_CELL_TEXT else text[: MAX_CELL_TEXT - 1] + "…"


def report_date_text(day: date) -> str:
    return f"{day.year}年{day.month}月{day.day}日"


# --- cells ----------------------------------------------------------------------------------------

def write_text(cell: Cell, text: str | None) -> None:
    """Text stays text: never a formula, also when someone edits the cell later (quote prefix)."""
    if text is None:
        cell.value = None
        return
    text = clean_text(text)
    cell.value = text
    cell.data_type = "s"  # openpyxl takes a string starting with "=" for a formula
    if text.startswith(FORMULA_STARTS):
        cell.quotePrefix = True


def write_number(cell: Cell, value: int | Decimal | None, *, number_format: str = "0") -> None:
    cell.value = value
    cell.number_format = number_format


def as_range(cell_range: str) -> str:
    """"D5" as "D5:D5"; a range as it is."""
    return cell_range if ":" in cell_range else f"{cell_range}:{cell_range}"


def style_range(ws: Worksheet, cell_range: str, *, alignment: Alignment = CENTRE, cell_font: Font | None = None,
                border: Border = BOX) -> None:
    """Style every cell of `cell_range`, so the borders of merged cells print all round."""
    for row in ws[as_range(cell_range)]:
        for cell in row:
            cell.border = border
            cell.alignment = alignment
            cell.font = cell_font or font()


def place(ws: Worksheet, cell_range: str, *, alignment: Alignment = CENTRE, cell_font: Font | None = None,
          border: Border = BOX) -> Cell:
    """Merge `cell_range` (when it spans more than one cell), style it, and return its first cell."""
    first, last = as_range(cell_range).split(":")
    if first != last:
        ws.merge_cells(f"{first}:{last}")
    style_range(ws, cell_range, alignment=alignment, cell_font=cell_font, border=border)
    return ws[first]


def put_text(ws: Worksheet, cell_range: str, text: str | None, **style) -> Cell:
    cell = place(ws, cell_range, **style)
    write_text(cell, text)
    return cell


def put_number(ws: Worksheet, cell_range: str, value: int | Decimal | None, *, number_format: str = "0",
               **style) -> Cell:
    cell = place(ws, cell_range, **style)
    write_number(cell, value, number_format=number_format)
    return cell


def put_value(ws: Worksheet, cell_range: str, field_type: str, value: int | Decimal | str | None, *,
              cell_font: Font | None = None) -> Cell:
    """A form's value cell: text left-aligned and wrapped, counts centred, amounts with two decimals."""
    if field_type == "text":
        return put_text(ws, cell_range, value, alignment=LEFT, cell_font=cell_font)
    return put_number(ws, cell_range, value, number_format=AMOUNT_FORMAT if field_type == "wan" else "0",
                      cell_font=cell_font)


# --- sizes ----------------------------------------------------------------------------------------

def set_column_widths(ws: Worksheet, widths: Sequence[float]) -> None:
    for index, width in enumerate(widths, start=1):
        ws.column_dimensions[get_column_letter(index)].width = width


def range_width(ws: Worksheet, cell_range: str) -> float:
    """The width of `cell_range`'s columns together, in column width units."""
    first_col, _, last_col, _ = range_boundaries(as_range(cell_range))
    return sum(ws.column_dimensions[get_column_letter(c)].width or 8.43 for c in range(first_col, last_col + 1))


def display_width(text: str) -> float:
    """In ems: full-width (CJK) characters count one, others half of one."""
    return sum(1.0 if unicodedata.east_asian_width(ch) in "WF" else 0.5 for ch in text)


def line_count(text: str | None, width_units: float, size: float = BODY_SIZE) -> int:
    """How many lines `text` wraps to in a cell `width_units` wide."""
    if not text:
        return 1
    room_em = max((width_units * PX_PER_WIDTH_UNIT - CELL_PADDING_PX) / (size * 4 / 3), 1.0)
    return sum(max(1, math.ceil(display_width(line) / room_em)) for line in str(text).split("\n"))


def text_height(text: str | None, width_units: float, size: float = BODY_SIZE) -> float:
    """The row height (points) `text` needs in a cell `width_units` wide."""
    return line_count(text, width_units, size) * size * LINE_HEIGHT_EM + ROW_PADDING_PT


def fit_row_height(ws: Worksheet, row: int, minimum: float, texts: Sequence[tuple[str, str | None]],
                   size: float = BODY_SIZE) -> None:
    """Make `row` tall enough for each (cell range, text) in it; merged cells never grow by themselves."""
    needed = [text_height(text, range_width(ws, cell_range), size) for cell_range, text in texts]
    ws.row_dimensions[row].height = min(max([minimum, *needed]), MAX_ROW_HEIGHT)


# --- sheet and print ------------------------------------------------------------------------------

def title_row(ws: Worksheet, cell_range: str, title: str, height: float = 40.0) -> None:
    put_text(ws, cell_range, title, cell_font=font(TITLE_SIZE, bold=True), border=NO_BORDER)
    ws.row_dimensions[range_first_row(cell_range)].height = height


def unit_and_date_row(ws: Worksheet, unit_range: str, date_range: str, reporting_unit: str,
                      report_date: date, height: float = 26.0) -> None:
    """"填报单位: X" on the left and "时间: 2026年11月30日" on the right, above the table."""
    put_text(ws, unit_range, f"填报单位: {reporting_unit}", alignment=LEFT, border=NO_BORDER)
    put_text(ws, date_range, f"时间: {report_date_text(report_date)}", alignment=RIGHT, border=NO_BORDER)
    ws.row_dimensions[range_first_row(unit_range)].height = height


def range_first_row(cell_range: str) -> int:
    return range_boundaries(as_range(cell_range))[1]


def set_up_printing(ws: Worksheet, *, landscape: bool, repeat_rows: str, last_column: str, last_row: int) -> None:
    """A4, one page wide (as many pages down as needed), `repeat_rows` on every page, page numbers."""
    ws.page_setup.paperSize = ws.PAPERSIZE_A4
    ws.page_setup.orientation = "landscape" if landscape else "portrait"
    ws.sheet_properties.pageSetUpPr = PageSetupProperties(fitToPage=True)
    ws.page_setup.fitToWidth = 1
    ws.page_setup.fitToHeight = 0
    ws.print_options.horizontalCentered = True
    ws.page_margins = PageMargins(left=0.4, right=0.4, top=0.6, bottom=0.6, header=0.3, footer=0.3)
    ws.print_title_rows = repeat_rows
    ws.print_area = f"A1:{last_column}{last_row}"
    ws.oddFooter.center.text = "第 &P 页，共 &N 页"
    ws.oddFooter.center.size = 9
    ws.sheet_view.showGridLines = False


def new_sheet(title: str) -> tuple[Workbook, Worksheet]:
    workbook = Workbook()
    sheet = workbook.active
    sheet.title = title
    return workbook, sheet


def column_letters(first: str, count: int) -> list[str]:
    start = column_index_from_string(first)
    return [get_column_letter(start + i) for i in range(count)]


def workbook_bytes(workbook: Workbook) -> bytes:
    buffer = BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()
