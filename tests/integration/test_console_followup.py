"""The call list of undeliverable notices and the overdue record, with their access rules."""

from __future__ import annotations

from datetime import date

from sqlalchemy import select

from db.models import CaseEvent, Escalation, OutboxMessage
from intake.cases import Actor
from tests.integration.test_console import complaint, console  # noqa: F401 - the fixture

STATION = ("suo_yongzhong", "handler")  # lead unit of the complaint below (merchant in 永中街道)


async def undeliverable_case(container) -> tuple[int, str, int]:
    triage = await container.accounts.create_user("setup", "xiaobao", "triage")
    view = await container.cases.create(complaint(description="<script>alert(1)</script>直播间羽绒服不退款"))
    await container.cases.accept(view.id, Actor("staff", triage.id))
    async with container.uow() as uow:
        notice = await uow.session.scalar(select(OutboxMessage).where(OutboxMessage.case_id == view.id))
        notice.status, notice.last_error = "undeliverable", "TelegramForbiddenError: bot was blocked by the user"
        await uow.commit()
        return view.id, view.number, notice.id


async def test_the_call_list_shows_the_phone_to_those_who_act_and_audits_it(console):
    case_id, number, _ = await undeliverable_case(console.container)
    triage = await console.person("t1", "xiaobao", "triage")
    status, html = await triage.get("/followup")
    assert status == 200 and number in html and "13800138000" in html and "bot was blocked" in html
    async with console.container.uow() as uow:
        views = (await uow.session.scalars(select(CaseEvent).where(
            CaseEvent.case_id == case_id, CaseEvent.action == "view_personal_data"))).all()
    assert [v.data for v in views] == [{"fields": ["name", "phone"], "page": "followup"}]

    leader = await console.person("boss", "bangongshi", "leader")
    status, html = await leader.get("/followup")
    assert status == 200 and number in html and "13800138000" not in html

    other = await console.person("h-other", "zhiliang", "handler")
    status, html = await other.get("/followup")
    assert status == 200 and number not in html

    lead = await console.person("h-lead", *STATION)
    status, html = await lead.get("/followup")
    assert number in html and "13800138000" in html


async def test_marking_a_call_done_needs_the_right_person_a_note_and_csrf(console):
    case_id, number, notice_id = await undeliverable_case(console.container)
    path = f"/followup/{notice_id}/handled"
    other = await console.person("h-other", "zhiliang", "handler")
    assert (await other.post(path, {"note": "已电话告知"})).status == 404
    leader = await console.person("boss", "bangongshi", "leader")
    assert (await leader.post(path, {"note": "已电话告知"})).status == 403
    lead = await console.person("h-lead", *STATION)
    assert (await lead.post(path, {"note": "已电话告知"}, csrf=None)).status == 403
    assert (await lead.post(path, {"note": "已电话告知"}, csrf="forged")).status == 403
    response = await lead.post(path, {"note": "  "})
    assert response.status == 303
    async with console.container.uow() as uow:
        assert (await uow.session.get(OutboxMessage, notice_id)).handled_at is None

    response = await lead.post(path, {"note": "已电话告知受理情况"})
    assert response.status == 303
    async with console.container.uow() as uow:
        notice = await uow.session.get(OutboxMessage, notice_id)
        event = await uow.session.scalar(select(CaseEvent).where(
            CaseEvent.case_id == case_id, CaseEvent.action == "contacted"))
    assert (notice.handled_by, notice.handled_note) == (lead.id, "已电话告知受理情况")
    assert (event.actor_id, event.note) == (lead.id, "已电话告知受理情况")
    status, html = await lead.get("/followup")
    assert f'href="/cases/{number}"' not in html and "没有需要电话联系的通知" in html
    response = await lead.post(path, {"note": "again"})
    assert response.status == 303  # already handled: a flash, nothing changed
    async with console.container.uow() as uow:
        assert (await uow.session.get(OutboxMessage, notice_id)).handled_note == "已电话告知受理情况"


async def test_the_overdue_record_follows_the_access_scope(console):
    container = console.container
    view = await container.cases.create(complaint())
    async with container.uow() as uow:
        station = await uow.units.by_code(STATION[0])
        uow.session.add(Escalation(case_id=view.id, clock="complaint_acceptance", due_on=date(2026, 11, 10),
                                   unit_id=station.id, escalated_on=container.clock.now().date(), replied=False))
        await uow.commit()
    triage = await console.person("t1", "xiaobao", "triage")
    status, html = await triage.get("/overdue")
    assert status == 200 and view.number in html and "尚未答复" in html
    assert (await triage.get("/overdue?days=abc"))[0] == 400
    assert (await triage.get("/overdue?days=1000"))[0] == 400
    other = await console.person("h-other", "zhiliang", "handler")
    status, html = await other.get("/overdue")
    assert status == 200 and view.number not in html
    stranger = await console.person("anon", "xiaobao", "triage", login=False)
    assert (await stranger.get("/overdue"))[0] == 303
