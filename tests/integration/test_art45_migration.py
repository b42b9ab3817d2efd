"""Migration 0015: open clocks computed before Order 121 Art 45 was applied end on the next working day.

A complaint accepted on 2026-08-02 had its 60-day mediation due 2026-10-01, in the National Day holiday;
Art 45 makes it 2026-10-08 (DESIGN.md). The migration moves every open clock ending on a rest day or a
holiday, with the bureau's holiday table, and the case's next due date; a met clock keeps its date.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy import select

from db import migrate
from db.models import Case, CaseDeadline, HolidayOverride
from intake.cases import Actor
from tests.integration.test_case_lifecycle import complaint

ACCEPTED = datetime(2026, 8, 2, 2, 0, tzinfo=UTC)


async def _deadline(container, case_id: int, clock: str) -> CaseDeadline:
    async with container.uow() as uow:
        return await uow.session.scalar(select(CaseDeadline).where(CaseDeadline.case_id == case_id,
                                                                   CaseDeadline.clock == clock))


async def test_open_clocks_ending_on_a_holiday_move_to_the_next_working_day(container, clock):
    triage = await container.accounts.create_user("setup", "xiaobao", "triage")
    clock.at = ACCEPTED
    cases = []
    for _ in range(3):
        view = await container.cases.create(complaint())
        await container.cases.accept(view.id, Actor("staff", triage.id))
        cases.append(view.id)
    assert (await _deadline(container, cases[0], "complaint_mediation")).due_on == date(2026, 10, 8)  # new cases
    # as the code before Art 45 stored them: 10-01 (National Day), 06-19 met already, 2026-11-21 (a Saturday the
    # bureau's holiday table opens)
    old = {cases[0]: (date(2026, 10, 1), None), cases[1]: (date(2026, 10, 1), ACCEPTED),
           cases[2]: (date(2026, 11, 21), None)}
    async with container.uow() as uow:
        uow.session.add(HolidayOverride(day=date(2026, 11, 21), is_workday=True, note="调休"))
        for case_id, (due_on, met_at) in old.items():
            row = await uow.session.scalar(select(CaseDeadline).where(CaseDeadline.case_id == case_id,
                                                                      CaseDeadline.clock == "complaint_mediation"))
            row.due_on, row.met_at = due_on, met_at
            case = await uow.session.get(Case, case_id)
            case.next_due_on = min(d for d in (due_on, case.next_due_on) if d)
        await uow.commit()

    await migrate.downgrade(container.engine, "0014")
    await migrate.upgrade(container.engine)

    assert (await _deadline(container, cases[0], "complaint_mediation")).due_on == date(2026, 10, 8)
    assert (await _deadline(container, cases[1], "complaint_mediation")).due_on == date(2026, 10, 1)  # met: kept
    assert (await _deadline(container, cases[2], "complaint_mediation")).due_on == date(2026, 11, 21)  # a working day
    async with container.uow() as uow:
        first = await uow.session.get(Case, cases[0])
        due = await uow.session.scalars(select(CaseDeadline.due_on).where(CaseDeadline.case_id == cases[0],
                                                                          CaseDeadline.met_at.is_(None)))
        assert first.next_due_on == min(due)
