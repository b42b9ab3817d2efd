"""The in-process scheduler: daily jobs that make "every tip gets a reply" true without staff memory.

Each job runs once per local day, at or after the configured time. A run is claimed by inserting a
`scheduled_runs` row (unique per job and day), so restarts and several workers never run it twice;
a run whose worker died is taken over after its lease; a failed run is retried at the next tick.
Every job is a scan of "as of today" facts with idempotency keys, so a missed day is caught up.

Jobs:
- reminders: the lead unit's group chat, `reminder_days` working days before each due date;
- escalation: unmet deadlines past due are recorded (table escalations, the record 督查考绩科 uses) and
  a daily digest goes to the escalation unit (消保分局), flagging cases with no complainant-facing reply;
- halfway: "still in progress" to the complainant when a long clock passes its halfway point;
- surveys: the satisfaction follow-up (回访), one working day after close;
- consultations: an answered consultation is closed `consultation_autoclose_days` working days after the answer;
- rate_counters: the web chat's limit counters whose window has ended are deleted (intake/counters.py);
- evidence_sweep (when the scheduler is given one): evidence uploads no case and no draft refers to, past the
  grace period, and the leftovers of interrupted uploads are removed (intake/evidence_sweep.py); the run
  records how many files and bytes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from db.models import Case, CaseDeadline, CaseUnit, Complainant, Escalation, OutboxMessage, ScheduledRun, Unit
from db.uow import UnitOfWork, UnitOfWorkFactory
from intake.calendar import WorkingCalendar
from intake.cases import Actor, CaseService
from intake.clock import Clock
from intake.counters import RateCounters
from intake.deadlines import DeadlinePolicy
from intake.evidence_sweep import EvidenceSweep
from intake.notices import Template, notify_complainant, notify_unit
from intake.status import DomainError, Status

log = logging.getLogger(__name__)

OPEN = [s.value for s in Status if s != Status.CLOSED]
LONG_CLOCK_DAYS = 14  # a clock this long (calendar days) earns a "still in progress" notice halfway
RUN_LEASE = timedelta(minutes=30)
MAX_RUN_ATTEMPTS = 5


@dataclass(frozen=True)
class ScheduleConfig:
    at: time = time(8, 30)
    reminder_days: int = 2
    consultation_autoclose_days: int = 3
    escalation_unit: str = "xiaobao"
    poll_seconds: float = 60.0


class Scheduler:
    def __init__(self, uow: UnitOfWorkFactory, clock: Clock, tz: ZoneInfo, cases: CaseService,
                 policy: DeadlinePolicy, config: ScheduleConfig | None = None, *, worker_id: str = "scheduler",
                 on_queued: Callable[[], None] | None = None,
                 on_job: Callable[[str, str], None] | None = None,
                 evidence_sweep: EvidenceSweep | None = None) -> None:
        """`on_queued` hears that notices were queued; `on_job(name, "done" | "failed")` of each job run."""
        self._uow = uow
        self._clock = clock
        self._tz = tz
        self._cases = cases
        self._policy = policy
        self._config = config or ScheduleConfig()
        self._worker_id = worker_id
        self._on_queued = on_queued or (lambda: None)
        self._on_job = on_job or (lambda name, outcome: None)
        self.jobs: dict[str, Callable[[date], Awaitable[dict]]] = {
            "reminders": self.reminders,
            "escalation": self.escalation,
            "halfway": self.halfway,
            "surveys": self.surveys,
            "consultations": self.consultations,
            "rate_counters": self.rate_counters,
        }
        self._evidence_sweep = evidence_sweep
        if evidence_sweep is not None:
            self.jobs["evidence_sweep"] = self.sweep_evidence

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.tick()
            except (OperationalError, DBAPIError, OSError) as exc:
                log.warning("scheduler: database unavailable (%s); retrying", type(exc).__name__)
            try:
                await asyncio.wait_for(stop.wait(), timeout=self._config.poll_seconds)
            except TimeoutError:
                pass

    async def tick(self) -> list[str]:
        """Run every job that is due today and has not run; the names of those that ran."""
        local = self._clock.now().astimezone(self._tz)
        if local.time() < self._config.at:
            return []
        today = local.date()
        ran = []
        for name, job in self.jobs.items():
            if not await self._claim(name, today.isoformat()):
                continue
            try:
                result = await job(today)
            except Exception as exc:  # recorded, retried at the next tick
                log.exception("scheduler: job %s of %s failed", name, today)
                await self._finish(name, today.isoformat(), "failed", error=f"{type(exc).__name__}: {exc}"[:2000])
                self._on_job(name, "failed")
                continue
            await self._finish(name, today.isoformat(), "done", result=result)
            self._on_job(name, "done")
            ran.append(name)
        if ran:
            self._on_queued()
        return ran

    # -- run bookkeeping ------------------------------------------------------------------------------

    async def _claim(self, job: str, key: str) -> bool:
        now = self._clock.now()
        async with self._uow() as uow:
            row = await uow.session.scalar(
                select(ScheduledRun).where(ScheduledRun.job == job, ScheduledRun.run_key == key).with_for_update())
            if row is None:
                uow.session.add(ScheduledRun(job=job, run_key=key, status="running", attempts=1,
                                             lease_until=now + RUN_LEASE, started_at=now))
            elif row.status == "done" or row.attempts >= MAX_RUN_ATTEMPTS:
                return False
            elif row.status == "running" and row.lease_until > now:
                return False  # another worker is on it
            else:  # failed, or its worker died
                row.status, row.attempts, row.lease_until, row.started_at = "running", row.attempts + 1, now + RUN_LEASE, now
            try:
                await uow.commit()
            except IntegrityError:  # another worker inserted the same run first
                return False
        return True

    async def _finish(self, job: str, key: str, status: str, *, result: dict | None = None, error: str | None = None) -> None:
        async with self._uow() as uow:
            row = await uow.session.scalar(
                select(ScheduledRun).where(ScheduledRun.job == job, ScheduledRun.run_key == key).with_for_update())
            row.status, row.result, row.error, row.finished_at = status, result, error, self._clock.now()
            await uow.commit()

    # -- the jobs -------------------------------------------------------------------------------------

    async def reminders(self, today: date) -> dict:
        async with self._uow() as uow:
            calendar = await _calendar(uow)
            if not calendar.is_workday(today):
                return {"skipped": "not a working day"}
            horizon = calendar.add_working_days(today, self._config.reminder_days).on
            rows = (await uow.session.execute(
                select(CaseDeadline, Case, Unit)
                .join(Case, Case.id == CaseDeadline.case_id)
                .join(CaseUnit, (CaseUnit.case_id == Case.id) & CaseUnit.active.is_(True) & (CaseUnit.role == "lead"))
                .join(Unit, Unit.id == CaseUnit.unit_id)
                .where(CaseDeadline.met_at.is_(None), CaseDeadline.due_on >= today, CaseDeadline.due_on <= horizon,
                       Case.status.in_(OPEN), Unit.telegram_chat_id.is_not(None))
            )).all()
            keys = {f"reminder:{d.id}:{d.due_on.isoformat()}": (d, case, unit) for d, case, unit in rows}
            fresh = await _new_keys(uow, keys)
            for key in fresh:
                deadline, case, unit = keys[key]
                notify_unit(uow.session, unit, Template.UNIT_REMINDER, self._clock.now(), key=key, case=case,
                            clock=deadline.clock, clock_name=self._clock_name(deadline.clock),
                            due_on=deadline.due_on.isoformat())
            await uow.commit()
        return {"reminders": len(fresh)}

    async def escalation(self, today: date) -> dict:
        """Record every missed deadline; the digest lists all cases overdue today (the daily check)."""
        async with self._uow() as uow:
            calendar = await _calendar(uow)
            rows = (await uow.session.execute(
                select(CaseDeadline, Case, CaseUnit.unit_id, Unit.code)
                .join(Case, Case.id == CaseDeadline.case_id)
                .outerjoin(CaseUnit, (CaseUnit.case_id == Case.id) & CaseUnit.active.is_(True) & (CaseUnit.role == "lead"))
                .outerjoin(Unit, Unit.id == CaseUnit.unit_id)
                .where(CaseDeadline.met_at.is_(None), CaseDeadline.due_on < today, Case.status.in_(OPEN))
                .order_by(CaseDeadline.due_on, Case.id)
            )).all()
            known = set((await uow.session.execute(
                select(Escalation.case_id, Escalation.clock, Escalation.due_on)
                .where(Escalation.case_id.in_({case.id for _, case, _, _ in rows} or {-1}))
            )).all())
            overdue, new = [], 0
            for deadline, case, unit_id, unit_code in rows:
                replied = case.replied_at is not None
                if (case.id, deadline.clock, deadline.due_on) not in known:
                    uow.session.add(Escalation(case_id=case.id, clock=deadline.clock, due_on=deadline.due_on,
                                               unit_id=unit_id, escalated_on=today, replied=replied))
                    new += 1
                overdue.append({"number": case.number, "unit": unit_code, "clock": deadline.clock,
                                "clock_name": self._clock_name(deadline.clock), "due_on": deadline.due_on.isoformat(),
                                "replied": replied})
            unreplied = sorted({item["number"] for item in overdue if not item["replied"]})
            if overdue and calendar.is_workday(today):
                unit = await uow.units.by_code(self._config.escalation_unit)
                if unit is not None:
                    key = f"digest:{today.isoformat()}"
                    if await _new_keys(uow, {key: None}):
                        notify_unit(uow.session, unit, Template.OVERDUE_DIGEST, self._clock.now(), key=key,
                                    day=today.isoformat(), overdue=overdue)
            await uow.commit()
        return {"overdue": len(overdue), "new_escalations": new, "without_reply": unreplied}

    async def halfway(self, today: date) -> dict:
        async with self._uow() as uow:
            rows = (await uow.session.execute(
                select(CaseDeadline, Case)
                .join(Case, Case.id == CaseDeadline.case_id)
                .where(CaseDeadline.met_at.is_(None), CaseDeadline.due_on >= today, Case.status.in_(OPEN),
                       Case.anonymous.is_(False), Case.complainant_id.is_not(None))
            )).all()
            keys = {}
            for deadline, case in rows:
                length = (deadline.due_on - deadline.started_on).days
                if length >= LONG_CLOCK_DAYS and 2 * (today - deadline.started_on).days >= length:
                    keys[f"halfway:{deadline.id}:{deadline.due_on.isoformat()}"] = (deadline, case)
            fresh = await _new_keys(uow, keys)
            people = await _people(uow, [keys[k][1] for k in fresh])
            for key in fresh:
                deadline, case = keys[key]
                notify_complainant(uow.session, case, people.get(case.complainant_id), Template.STILL_IN_PROGRESS,
                                   self._clock.now(), key=key, due_on=deadline.due_on.isoformat())
            await uow.commit()
        return {"notices": len(fresh)}

    async def surveys(self, today: date) -> dict:
        async with self._uow() as uow:
            cases = (await uow.session.scalars(
                select(Case).where(Case.survey_due_on.is_not(None), Case.survey_due_on <= today)
            )).all()
            people = await _people(uow, cases)
            sent = 0
            for case in cases:
                case.survey_due_on = None
                if case.status != Status.CLOSED or case.rated_at is not None:
                    continue  # reopened or rated meanwhile
                key = f"survey:{case.id}:{case.closed_at.isoformat() if case.closed_at else ''}"
                if await _new_keys(uow, {key: None}):
                    if notify_complainant(uow.session, case, people.get(case.complainant_id), Template.SURVEY,
                                          self._clock.now(), key=key):
                        sent += 1
            await uow.commit()
        return {"surveys": sent}

    async def consultations(self, today: date) -> dict:
        async with self._uow() as uow:
            calendar = await _calendar(uow)
            candidates = (await uow.session.execute(
                select(Case.id, Case.replied_at).where(
                    Case.kind == "consultation", Case.status == Status.RESOLVED.value, Case.replied_at.is_not(None))
            )).all()
        closed = []
        for case_id, replied_at in candidates:
            answered_on = replied_at.astimezone(self._tz).date()
            if calendar.working_days_between(answered_on, today) < self._config.consultation_autoclose_days:
                continue
            try:
                view = await self._cases.close(case_id, Actor.system(), "咨询已答复，自动办结")
            except DomainError as exc:
                log.info("scheduler: consultation %s not closed: %s", case_id, exc)
                continue
            closed.append(view.number)
        return {"closed": closed}

    async def rate_counters(self, today: date) -> dict:
        return {"deleted": await RateCounters(self._uow, self._clock).purge_expired()}

    async def sweep_evidence(self, today: date) -> dict:
        return (await self._evidence_sweep.run()).as_dict()

    def _clock_name(self, clock_id: str) -> str:
        try:
            return self._policy.clock(clock_id).label_zh
        except KeyError:
            return clock_id


async def _calendar(uow: UnitOfWork) -> WorkingCalendar:
    return WorkingCalendar(await uow.holidays.as_mapping())


async def _new_keys(uow: UnitOfWork, keys: dict) -> list[str]:
    """The keys with no outbox row yet (a job's notices are idempotent by key)."""
    if not keys:
        return []
    taken: set[str] = set()
    wanted = list(keys)
    for start in range(0, len(wanted), 500):
        chunk = wanted[start:start + 500]
        taken |= set((await uow.session.scalars(
            select(OutboxMessage.idempotency_key).where(OutboxMessage.idempotency_key.in_(chunk)))).all())
    return [k for k in wanted if k not in taken]


async def _people(uow: UnitOfWork, cases) -> dict[int, Complainant]:
    ids = {c.complainant_id for c in cases if c.complainant_id}
    if not ids:
        return {}
    rows = await uow.session.scalars(select(Complainant).where(Complainant.id.in_(ids)))
    return {p.id: p for p in rows}


def parse_time(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


