"""The figures and texts staff enter for a statistics form, once per period and reporting unit.

Input comes from the console form (strings), from a YAML file given to the CLI, or from stored JSON;
`parse_stats` and `parse_monthly` turn any of them into checked values or say, field by field, what is
wrong. Nothing is stored unless every field is right.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select

from db.models import CaseEvent, ReportInput
from db.uow import UnitOfWorkFactory
from intake.clock import Clock
from qinglang.errors import QinglangError
from qinglang.i18n import N_
from reports.fields import (
    FOCUS_AREA_TITLES,
    MONTHLY_FORM_INPUTS,
    MONTHLY_ROW_INPUTS,
    STATS_MANUAL_FIELDS,
    FormField,
)

STATS = "stats"  # 附件1
MONTHLY = "monthly"  # 附件2
FORMS = (STATS, MONTHLY)
MAX_COUNT = 10**9
MAX_TEXT = 5000
BUREAU = "bureau"  # the reporting unit "the whole bureau"

Value = int | str | None


@dataclass(frozen=True)
class Problem:
    """What is wrong with one entry: a message template (translated where shown) and its facts."""

    template: str
    params: Mapping[str, Any]
    row: int | None = None  # the 附件2 row (focus area number) the field belongs to

    def text(self, gettext: Callable[[str], str] = str) -> str:
        params = dict(self.params)
        if self.row is not None and "field" in params:
            params["field"] = gettext(N_("第{row}行（{title}）{field}")).format(
                row=self.row, title=FOCUS_AREA_TITLES[self.row], field=params["field"])
        return gettext(self.template).format(**params)


class InputError(QinglangError):
    """Entered figures that cannot be stored; `problems` names each field and what is wrong."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(p.text() for p in problems))
        self.problems = problems

    def texts(self, gettext: Callable[[str], str] = str) -> list[str]:
        return [p.text(gettext) for p in self.problems]


@dataclass(frozen=True)
class MonthlyInputs:
    rows: dict[int, dict[str, Value]] = field(default_factory=dict)  # focus area number -> row entries
    form: dict[str, Value] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"rows": {str(n): r for n, r in sorted(self.rows.items())}, "form": self.form}


def parse_stats(raw: Mapping[str, Any]) -> dict[str, Value]:
    """附件1's staff-entered fields from `raw` (strings or typed values); raises InputError."""
    problems: list[Problem] = []
    values = _parse_fields(STATS_MANUAL_FIELDS, raw, problems)
    _refuse_unknown(raw, {f.key for f in STATS_MANUAL_FIELDS}, problems)
    if problems:
        raise InputError(problems)
    return values


def parse_monthly(raw_rows: Mapping[Any, Mapping[str, Any]], raw_form: Mapping[str, Any]) -> MonthlyInputs:
    """附件2's staff-entered rows (keyed by focus area number 1-14) and form-level entries."""
    problems: list[Problem] = []
    rows: dict[int, dict[str, Value]] = {}
    for key, raw in raw_rows.items():
        number = _row_number(key)
        if number is None:
            problems.append(Problem(N_("第{row}行：不是1到{last}之间的序号"),
                                    {"row": str(key)[:20], "last": len(FOCUS_AREA_TITLES)}))
            continue
        if not isinstance(raw, Mapping):
            problems.append(Problem(N_("第{row}行：应为字段与数值的对应表"), {"row": number}))
            continue
        values = _parse_fields(MONTHLY_ROW_INPUTS, raw, problems, row=number)
        if values:
            rows[number] = values
        _refuse_unknown(raw, {f.key for f in MONTHLY_ROW_INPUTS}, problems, row=number)
    form = _parse_fields(MONTHLY_FORM_INPUTS, raw_form, problems)
    _refuse_unknown(raw_form, {f.key for f in MONTHLY_FORM_INPUTS}, problems)
    if problems:
        raise InputError(problems)
    return MonthlyInputs(rows, form)


def parse_monthly_json(data: Mapping[str, Any]) -> MonthlyInputs:
    rows = data.get("rows") or {}
    form = data.get("form") or {}
    if not isinstance(rows, Mapping) or not isinstance(form, Mapping):
        raise InputError([Problem(N_("附件2的录入应含 rows 和 form 两个对应表"), {})])
    return parse_monthly(rows, form)


class ReportInputService:
    """Loads and stores the entered figures; every change is an audit event with the keys it changed."""

    def __init__(self, uow: UnitOfWorkFactory, clock: Clock) -> None:
        self._uow = uow
        self._clock = clock

    async def stats(self, period: str, unit_code: str) -> dict[str, Value]:
        data = await self._load(STATS, period, unit_code)
        return parse_stats(data) if data else {}

    async def monthly(self, period: str, unit_code: str) -> MonthlyInputs:
        data = await self._load(MONTHLY, period, unit_code)
        return parse_monthly_json(data) if data else MonthlyInputs()

    async def save_stats(self, period: str, unit_code: str, values: dict[str, Value], staff_id: int | None) -> None:
        await self._save(STATS, period, unit_code, parse_stats(values), staff_id)

    async def save_monthly(self, period: str, unit_code: str, inputs: MonthlyInputs, staff_id: int | None) -> None:
        await self._save(MONTHLY, period, unit_code, inputs.as_json(), staff_id)

    async def _load(self, form: str, period: str, unit_code: str) -> dict[str, Any] | None:
        async with self._uow() as uow:
            row = await uow.session.scalar(_select(form, period, unit_code))
            return dict(row.data) if row is not None else None

    async def _save(self, form: str, period: str, unit_code: str, data: dict[str, Any], staff_id: int | None) -> None:
        now = self._clock.now()
        async with self._uow() as uow:
            row = await uow.session.scalar(_select(form, period, unit_code).with_for_update())
            before = dict(row.data) if row is not None else {}
            if row is None:
                row = ReportInput(form=form, period=period, unit_code=unit_code, data=data, updated_at=now)
                uow.session.add(row)
            row.data, row.updated_by, row.updated_at = data, staff_id, now
            uow.session.add(_audit(form, period, unit_code, sorted(_changed(before, data)), staff_id, now))
            await uow.commit()


def _select(form: str, period: str, unit_code: str):
    return select(ReportInput).where(
        ReportInput.form == form, ReportInput.period == period, ReportInput.unit_code == unit_code
    )


def _audit(form: str, period: str, unit_code: str, changed: list[str], staff_id: int | None,
           now: datetime) -> CaseEvent:
    return CaseEvent(case_id=None, actor_type="staff" if staff_id else "system", actor_id=staff_id,
                     action="report_inputs", note=None, created_at=now,
                     data={"form": form, "period": period, "unit": unit_code, "changed": changed})


def _changed(before: Mapping[str, Any], after: Mapping[str, Any], prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for key in set(before) | set(after):
        old, new = before.get(key), after.get(key)
        if isinstance(old, Mapping) or isinstance(new, Mapping):
            keys |= _changed(old or {}, new or {}, f"{prefix}{key}.")
        elif old != new:
            keys.add(prefix + key)
    return keys


def _parse_fields(fields: tuple[FormField, ...], raw: Mapping[str, Any], problems: list[Problem], *,
                  row: int | None = None) -> dict[str, Value]:
    values: dict[str, Value] = {}
    for f in fields:
        if f.key not in raw:
            continue
        try:
            value = _parse_text(raw[f.key]) if f.type == "text" else _parse_count(raw[f.key])
        except _Bad as bad:
            problems.append(Problem(bad.template, {"field": f.label, **bad.params}, row))
            continue
        if value is not None:
            values[f.key] = value
    return values


class _Bad(Exception):
    def __init__(self, template: str, **params: Any) -> None:
        self.template, self.params = template, params


def _parse_count(raw: Any) -> int | None:
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise _Bad(N_("{field}：应为整数"))
    if isinstance(raw, int):
        number = raw
    else:
        text = unicodedata.normalize("NFKC", raw).strip().replace(",", "")
        if not text:
            return None
        if not text.isascii() or not text.isdigit():
            raise _Bad(N_("{field}：应为不小于0的整数，收到“{got}”"), got=raw.strip()[:20])
        number = int(text)
    if not 0 <= number <= MAX_COUNT:
        raise _Bad(N_("{field}：应在0到{limit}之间"), limit=MAX_COUNT)
    return number


def _parse_text(raw: Any) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise _Bad(N_("{field}：应为文字"))
    text = raw.replace("\r\n", "\n").strip()
    if len(text) > MAX_TEXT:
        raise _Bad(N_("{field}：不能超过{limit}字"), limit=MAX_TEXT)
    if any(unicodedata.category(ch) in ("Cc", "Cs") and ch not in "\n\t" for ch in text):
        raise _Bad(N_("{field}：含有控制字符"))
    return text or None


def _refuse_unknown(raw: Mapping[str, Any], known: set[str], problems: list[Problem], *,
                    row: int | None = None) -> None:
    for key in raw:
        if key not in known:
            problems.append(Problem(N_("{field}：不是可以填写的项目"), {"field": str(key)[:40]}, row))


def _row_number(key: Any) -> int | None:
    try:
        number = int(key)
    except (TypeError, ValueError):
        return None
    return number if number in FOCUS_AREA_TITLES and str(number) == str(key).strip() else None
