"""The reports as the console and the CLI ask for them: figures for a period and reporting unit, the
two statistics forms filled from the cases and the entered figures, and the export of the forms with
the monthly form's logic rules checked first (a refused export can be overridden with a reason)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from zoneinfo import ZoneInfo

from db.models import CaseEvent
from db.uow import UnitOfWorkFactory
from intake.clock import Clock
from qinglang.errors import QinglangError
from reports.fields import DEFAULT_OTHER_CHANNEL, FOCUS_AREA_TITLES, MONTHLY_COLUMNS
from reports.figures import Figures, compute_figures
from reports.form_rules import RuleViolation, check_monthly
from reports.inputs import BUREAU, MONTHLY, STATS, MonthlyInputs, ReportInputService
from reports.monthly_form import MonthlyRow, build_monthly_workbook, monthly_workbook_bytes
from reports.period import Period, ReportScope
from reports.stats_form import build_stats_workbook, stats_workbook_bytes
from routing.directory import UnitDirectory

MAX_OVERRIDE_REASON = 2000
SUBJECT_FIELDS = ("subjects_platform", "subjects_operator", "subjects_streamer", "subjects_service_agency")


class RulesViolated(QinglangError):
    """The monthly form breaks its own logic rules; export needs a fix or an override with a reason."""

    def __init__(self, violations: list[RuleViolation]) -> None:
        super().__init__("; ".join(v.message for v in violations))
        self.violations = violations


@dataclass(frozen=True)
class Export:
    filename: str
    content: bytes


class ReportService:
    def __init__(self, uow: UnitOfWorkFactory, clock: Clock, tz: ZoneInfo, campaign_start: date,
                 directory: UnitDirectory) -> None:
        self._uow = uow
        self._clock = clock
        self._tz = tz
        self._campaign_start = campaign_start
        self._directory = directory
        self.inputs = ReportInputService(uow, clock)

    def today(self) -> date:
        return self._clock.now().astimezone(self._tz).date()

    def reporting_unit_name(self, scope: ReportScope) -> str:
        district = self._directory.district
        bureau = f"{district.city}{district.name}市场监督管理局"
        return bureau if scope.unit_code is None else self._directory.unit(scope.unit_code).name

    async def figures(self, scope: ReportScope, period: Period) -> Figures:
        async with self._uow() as uow:
            if uow.session.bind.dialect.name == "postgresql":
                # one snapshot for all the queries, so the figures agree with each other under writes
                await uow.session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            return await compute_figures(uow.session, scope=scope, period=period, campaign_start=self._campaign_start,
                                         tz=self._tz, today=self.today(), subject_streets=self._registry_streets(scope))

    def registry_is_the_units(self, scope: ReportScope) -> bool:
        """The subject registry (主体名录) is kept by street: the bureau's whole, or a 市监所's own streets;
        other units have no registry of their own."""
        return scope.unit_code is None or self._directory.unit(scope.unit_code).is_station

    def _registry_streets(self, scope: ReportScope) -> tuple[str, ...] | None:
        if scope.unit_code is None or not self.registry_is_the_units(scope):
            return None
        return tuple(self._directory.unit(scope.unit_code).streets)

    async def stats_values(self, scope: ReportScope, period: Period,
                           figures: Figures | None = None) -> dict[str, object]:
        """附件1: the figures from the cases and the entered ones, by field key (`figures`: already computed
        for the same scope and period)."""
        figures = figures or await self.figures(scope, period)
        entered = await self.inputs.stats(period.key, _unit_key(scope))
        return {"other_channel_description": DEFAULT_OTHER_CHANNEL, **entered, **self.form_values(figures)}

    def form_values(self, figures: Figures) -> dict[str, object]:
        """附件1's figures from the cases; a unit without a registry of its own leaves 主体名录 blank, so
        that adding up the units' forms does not count the bureau's registry again."""
        values: dict[str, object] = dict(figures.stats_form_values())
        if not self.registry_is_the_units(figures.scope):
            values.update(dict.fromkeys(SUBJECT_FIELDS))
        return values

    async def monthly_rows(self, scope: ReportScope, period: Period,
                           figures: Figures | None = None) -> tuple[list[MonthlyRow], MonthlyInputs]:
        """附件2: one row per focus area; found and solved are the cases' plus what staff added."""
        figures = figures or await self.figures(scope, period)
        entered = await self.inputs.monthly(period.key, _unit_key(scope))
        counted = {row.focus_area: row for row in figures.focus_rows}
        rows = []
        for number, title in FOCUS_AREA_TITLES.items():
            own = entered.rows.get(number, {})
            values = {c.key: own.get(c.key) for c in MONTHLY_COLUMNS}
            values["found"] = counted[number].found + int(own.get("found_extra") or 0)
            values["solved"] = counted[number].solved + int(own.get("solved_extra") or 0)
            rows.append(MonthlyRow(number, title, values))
        return rows, entered

    async def check(self, scope: ReportScope, period: Period) -> list[RuleViolation]:
        rows, _ = await self.monthly_rows(scope, period)
        return check_monthly(rows)

    async def export_stats(self, scope: ReportScope, period: Period, staff_id: int | None,
                           report_date: date | None = None) -> Export:
        values = await self.stats_values(scope, period)
        workbook = build_stats_workbook(values, reporting_unit=self.reporting_unit_name(scope),
                                        report_date=report_date or self.today())
        await self._record_export(STATS, scope, period, staff_id, violations=[], reason=None)
        return Export(f"附件1_统计表_{_unit_key(scope)}_{period.key}.xlsx", stats_workbook_bytes(workbook))

    async def export_monthly(self, scope: ReportScope, period: Period, staff_id: int | None,
                             report_date: date | None = None, override_reason: str | None = None) -> Export:
        """Refused (RulesViolated) while a logic rule is broken, unless overridden with a reason."""
        rows, entered = await self.monthly_rows(scope, period)
        violations = check_monthly(rows)
        reason = (override_reason or "").strip()[:MAX_OVERRIDE_REASON] or None
        if violations and reason is None:
            raise RulesViolated(violations)
        workbook = build_monthly_workbook(rows, entered.form, reporting_unit=self.reporting_unit_name(scope),
                                          report_date=report_date or self.today())
        await self._record_export(MONTHLY, scope, period, staff_id, violations=violations,
                                  reason=reason if violations else None)
        return Export(f"附件2_月报表_{_unit_key(scope)}_{period.key}.xlsx", monthly_workbook_bytes(workbook))

    async def _record_export(self, form: str, scope: ReportScope, period: Period, staff_id: int | None, *,
                             violations: list[RuleViolation], reason: str | None) -> None:
        data: dict[str, object] = {"form": form, "period": period.key, "unit": _unit_key(scope)}
        if violations:
            data["violations"] = [v.message for v in violations]
            data["override_reason"] = reason
        async with self._uow() as uow:
            uow.session.add(CaseEvent(case_id=None, actor_type="staff" if staff_id else "system", actor_id=staff_id,
                                      action="report_export", note=reason, data=data, created_at=self._clock.now()))
            await uow.commit()

def _unit_key(scope: ReportScope) -> str:
    return scope.unit_code or BUREAU
