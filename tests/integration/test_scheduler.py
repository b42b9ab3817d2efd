"""The scheduler on a fixed clock, across weekends and the 2026 National Day holiday: each daily job
runs once per day however often it ticks or restarts, and its notices are queued once."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
from sqlalchemy import func, select

from db.models import Case, Escalation, OutboxMessage, RateCounter, ScheduledRun
from intake.calendar import WorkingCalendar
from intake.cases import Actor, ComplainantInfo, NewCase
from intake.counters import Count, Limit, RateCounters
from intake.scheduler import ScheduleConfig, Scheduler
from nlu.taxonomy import Kind
from routing.rules import MerchantLocation

STAFF = Actor("staff", 1)
LEAD_CHAT, TRIAGE_CHAT = "-100111", "-100999"


@pytest.fixture(autouse=True)
async def staff_and_chats(container):
    await container.accounts.create_user("triage1", "xiaobao", "triage")
    async with container.uow() as uow:
        (await uow.units.by_code("suo_yongzhong")).telegram_chat_id = LEAD_CHAT
        (await uow.units.by_code("xiaobao")).telegram_chat_id = TRIAGE_CHAT
        await uow.commit()


def at(day: date, hour: int = 9) -> datetime:
    """`hour` o'clock in Beijing on `day`, as the aware UTC time the clock holds."""
    return datetime.combine(day, time(hour), UTC) - timedelta(hours=8)


def scheduler(container) -> Scheduler:
    return Scheduler(container.uow, container.clock, container.settings.tz, container.cases, container.policy,
                     ScheduleConfig(at=time(8, 30)))


def complaint(**overrides) -> NewCase:
    values = dict(
        kind=Kind.COMPLAINT, category="consumer_rights", channel="telegram",
        description="直播间买的羽绒服七天无理由退货，商家一直不给退款",
        complainant=ComplainantInfo(channel_user_id="42", name="张三", phone="13800138000"),
        merchant=MerchantLocation(in_district=True, street="永中街道", province="浙江省"),
    )
    return NewCase(**(values | overrides))


async def outbox(container, template: str | None = None) -> list[OutboxMessage]:
    async with container.uow() as uow:
        query = select(OutboxMessage).order_by(OutboxMessage.id)
        if template:
            query = query.where(OutboxMessage.template == template)
        return list((await uow.session.scalars(query)).all())


async def test_each_job_runs_once_a_day_across_ticks_and_restarts(container):
    container.clock.at = at(date(2026, 11, 16), hour=8)  # before 08:30
    assert await scheduler(container).tick() == []
    container.clock.at = at(date(2026, 11, 16), hour=9)
    jobs = ["reminders", "escalation", "halfway", "surveys", "consultations", "rate_counters"]
    assert await scheduler(container).tick() == jobs
    assert await scheduler(container).tick() == []  # a restart the same day
    container.clock.at = at(date(2026, 11, 17))
    assert await scheduler(container).tick() == jobs
    async with container.uow() as uow:
        runs = (await uow.session.execute(select(ScheduledRun.job, ScheduledRun.run_key, ScheduledRun.status))).all()
    assert sorted(runs) == sorted((job, day, "done") for job in jobs for day in ("2026-11-16", "2026-11-17"))


async def test_a_run_whose_worker_died_is_taken_over_after_its_lease(container):
    container.clock.at = at(date(2026, 11, 16))
    async with container.uow() as uow:
        uow.session.add(ScheduledRun(job="surveys", run_key="2026-11-16", status="running", attempts=1,
                                     lease_until=container.clock.now() + timedelta(minutes=10),
                                     started_at=container.clock.now()))
        await uow.commit()
    assert "surveys" not in await scheduler(container).tick()
    container.clock.advance(minutes=11)
    assert await scheduler(container).tick() == ["surveys"]


async def test_a_failed_job_is_retried_at_the_next_tick(container):
    container.clock.at = at(date(2026, 11, 16))
    flaky = scheduler(container)
    real, calls = flaky.jobs["surveys"], []

    async def failing_once(today):
        calls.append(today)
        if len(calls) == 1:
            raise RuntimeError("database hiccup")
        return await real(today)

    flaky.jobs["surveys"] = failing_once
    assert "surveys" not in await flaky.tick()
    async with container.uow() as uow:
        run = await uow.session.scalar(select(ScheduledRun).where(ScheduledRun.job == "surveys"))
    assert (run.status, run.error) == ("failed", "RuntimeError: database hiccup")
    assert await flaky.tick() == ["surveys"]


async def test_reminder_two_working_days_before_the_due_date_over_a_weekend(container):
    container.clock.at = at(date(2026, 11, 16))  # Monday
    view = await container.cases.create(complaint())
    due = view.deadline("complaint_acceptance").due_on
    calendar = WorkingCalendar()
    remind_on = next(d for d in (due - timedelta(days=n) for n in range(1, 10))
                     if calendar.add_working_days(d, 2).on == due)
    day = date(2026, 11, 16)
    while day <= due:
        container.clock.at = at(day)
        await scheduler(container).tick()
        reminders = await outbox(container, "unit_reminder")
        assert len(reminders) == (0 if day < remind_on else 1), day
        day += timedelta(days=1)
    [reminder] = reminders
    assert (reminder.recipient, reminder.audience, reminder.payload["clock"]) == (LEAD_CHAT, "unit", "complaint_acceptance")
    assert reminder.created_at == at(remind_on)


async def test_no_reminders_on_a_national_day_holiday(container):
    container.clock.at = at(date(2026, 9, 28))
    await container.cases.create(complaint())
    container.clock.at = at(date(2026, 10, 3))  # 国庆 holiday
    await scheduler(container).tick()
    async with container.uow() as uow:
        run = await uow.session.scalar(select(ScheduledRun).where(ScheduledRun.job == "reminders"))
    assert run.result == {"skipped": "not a working day"}
    assert await outbox(container, "unit_reminder") == []


async def test_overdue_cases_are_escalated_with_a_daily_digest(container):
    container.clock.at = at(date(2026, 11, 2))
    late = await container.cases.create(complaint())
    answered = await container.cases.create(complaint(complainant=ComplainantInfo(channel_user_id="43", name="李四")))
    await container.cases.reply(answered.id, STAFF, "已联系商家，正在核实")
    due = late.deadline("complaint_acceptance").due_on
    container.clock.at = at(due)  # due today: not overdue yet
    await scheduler(container).tick()
    assert await outbox(container, "overdue_digest") == []
    day_after = due + timedelta(days=1)
    container.clock.at = at(day_after)
    await scheduler(container).tick()
    [digest] = await outbox(container, "overdue_digest")
    assert digest.recipient == TRIAGE_CHAT
    by_number = {item["number"]: item for item in digest.payload["overdue"]}
    assert by_number[late.number]["replied"] is False and by_number[answered.number]["replied"] is True
    async with container.uow() as uow:
        run = await uow.session.scalar(select(ScheduledRun).where(
            ScheduledRun.job == "escalation", ScheduledRun.run_key == day_after.isoformat()))
        escalations = (await uow.session.scalars(select(Escalation))).all()
    assert run.result["without_reply"] == [late.number]
    assert {(e.case_id, e.clock, e.escalated_on) for e in escalations} >= {(late.id, "complaint_acceptance", day_after)}
    container.clock.at = at(day_after + timedelta(days=1))
    await scheduler(container).tick()
    async with container.uow() as uow:
        assert await uow.session.scalar(select(func.count()).select_from(Escalation)) == len(escalations)
    assert len(await outbox(container, "overdue_digest")) == 2  # one digest per working day


async def test_survey_one_working_day_after_close_skips_the_weekend(container):
    container.clock.at = at(date(2026, 11, 16))
    view = await container.cases.create(complaint())
    await container.cases.accept(view.id, STAFF)
    await container.cases.resolve(view.id, STAFF, "mediated", "商家同意退款")
    container.clock.at = at(date(2026, 11, 20), hour=16)  # Friday afternoon
    await container.cases.close(view.id, STAFF)
    for day, expected in ((date(2026, 11, 21), 0), (date(2026, 11, 22), 0), (date(2026, 11, 23), 1),
                          (date(2026, 11, 24), 1)):
        container.clock.at = at(day)
        await scheduler(container).tick()
        assert len(await outbox(container, "survey")) == expected, day
    [survey] = await outbox(container, "survey")
    assert survey.recipient == "42" and survey.payload["number"] == view.number


async def test_no_survey_for_a_duplicate(container):
    container.clock.at = at(date(2026, 11, 16))
    original = await container.cases.create(complaint())
    copy = await container.cases.create(complaint())
    await container.cases.mark_duplicate(copy.id, STAFF, original.number, "与另一件为同一事项，已合并办理")
    container.clock.at = at(date(2026, 11, 18))
    await scheduler(container).tick()
    assert await outbox(container, "survey") == []


async def test_answered_consultations_close_by_themselves(container):
    container.clock.at = at(date(2026, 11, 16))
    view = await container.cases.create(complaint(kind=Kind.CONSULTATION, category="other",
                                                  description="直播间买的东西怎么申请退货？"))
    await container.cases.accept(view.id, STAFF)
    await container.cases.resolve(view.id, STAFF, "answered", "可在平台订单页申请七天无理由退货")
    container.clock.at = at(date(2026, 11, 18))  # two working days after the answer
    await scheduler(container).tick()
    assert (await container.cases.get(view.id)).status == "resolved"
    container.clock.at = at(date(2026, 11, 19))  # three
    await scheduler(container).tick()
    assert (await container.cases.get(view.id)).status == "closed"


async def test_still_in_progress_once_when_a_long_clock_passes_halfway(container):
    container.clock.at = at(date(2026, 11, 2))
    view = await container.cases.create(NewCase(
        kind=Kind.TIPOFF, category="price", channel="telegram", description="主播虚构原价，先涨后降",
        complainant=ComplainantInfo(channel_user_id="55", name="王五", phone="13700000000"),
        merchant=MerchantLocation(in_district=True, street="永中街道", province="浙江省")))
    check = view.deadline("tipoff_check")
    half = check.due_on - (check.due_on - date(2026, 11, 2)) / 2
    day = date(2026, 11, 3)
    while day <= check.due_on:
        container.clock.at = at(day)
        await scheduler(container).tick()
        notices = await outbox(container, "still_in_progress")
        assert len(notices) == (1 if day >= half else 0), day
        day += timedelta(days=1)
    assert notices[0].recipient == "55" and notices[0].payload["due_on"] == check.due_on.isoformat()


async def test_a_low_rating_reopens_for_review(container):
    container.clock.at = at(date(2026, 11, 16))
    view = await container.cases.create(complaint())
    await container.cases.accept(view.id, STAFF)
    await container.cases.resolve(view.id, STAFF, "mediation_failed", "商家不同意退款，调解终止")
    await container.cases.close(view.id, STAFF)
    reopened = await container.cases.rate(view.id, Actor("complainant"), 1, "没有解决问题")
    assert reopened.status == "in_progress"
    async with container.uow() as uow:
        case = await uow.session.get(Case, view.id)
    assert (case.satisfaction, case.satisfaction_comment) == (1, "没有解决问题")
    assert [r.template for r in await outbox(container)][-1] == "reopened"


async def test_the_evidence_sweep_runs_daily_and_a_failed_run_is_retried(container):
    from intake.evidence import SweepResult

    class FlakySweep:
        def __init__(self) -> None:
            self.calls = 0

        async def run(self) -> SweepResult:
            self.calls += 1
            if self.calls == 1:
                raise OSError("the evidence disk is not mounted")
            return SweepResult(files=2, bytes=2048)

    sweep = FlakySweep()

    def with_sweep() -> Scheduler:
        return Scheduler(container.uow, container.clock, container.settings.tz, container.cases, container.policy,
                         ScheduleConfig(at=time(8, 30)), evidence_sweep=sweep)

    container.clock.at = at(date(2026, 11, 16))
    assert "evidence_sweep" not in await with_sweep().tick()  # failed: recorded, tried again next tick
    assert await with_sweep().tick() == ["evidence_sweep"]
    assert await with_sweep().tick() == []
    async with container.uow() as uow:
        run = await uow.session.scalar(select(ScheduledRun).where(ScheduledRun.job == "evidence_sweep"))
    assert (run.status, run.attempts, run.result["files"], run.result["bytes"]) == ("done", 2, 2, 2048)


async def test_the_daily_job_deletes_the_web_chats_ended_limit_counters(container):
    counters = RateCounters(container.uow, container.clock)
    container.clock.at = at(date(2026, 11, 16), hour=7)
    await counters.take(Count(Limit("lookup-ip", 10, timedelta(minutes=10)), "ip:198.51.100.7"),
                        Count(Limit("upload-bytes", 10**9, timedelta(days=7)), "chat:abc", 1000))
    container.clock.at = at(date(2026, 11, 16), hour=9)
    assert "rate_counters" in await scheduler(container).tick()
    async with container.uow() as uow:
        left = (await uow.session.execute(select(RateCounter.count))).scalars().all()
        run = await uow.session.scalar(select(ScheduledRun).where(ScheduledRun.job == "rate_counters"))
    assert left == [1000]  # the ten-minute window ended two hours ago; the week's has not
    assert run.result == {"deleted": 1}
