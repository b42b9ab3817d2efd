"""A co-unit's handler sees the case without the complainant's identity (issue 14, finding 10).

A handler of a co-unit may not act on a case (web/access.py), yet got the real-name informant's full name
and phone on the case page and in the API, against the rule that identity is shown only to those who act.
Now name, phone and e-mail are shown to triage and the lead unit's handlers only, everywhere: the case page,
the queue's masked phone, the call list (/followup) and GET /api/v1/cases/{number}; and since nothing was
shown, no "view_personal_data" event is written for the co-unit's views.
"""

from __future__ import annotations

from sqlalchemy import select

from db.models import CaseEvent, OutboxMessage
from intake.status import Status
from tests.integration.test_console import case_at, console, events_of  # noqa: F401 - the fixture

NAME, PHONE, MASKED = "李四", "13912345678", "139****5678"


async def _undeliverable(container, case_id: int) -> None:
    async with container.uow() as uow:
        notice = await uow.session.scalar(select(OutboxMessage).where(OutboxMessage.case_id == case_id,
                                                                      OutboxMessage.audience == "complainant"))
        notice.status, notice.last_error = "undeliverable", "no channel: call the complainant"
        await uow.commit()


async def test_a_co_units_handler_never_sees_who_sent_the_case(console):
    container = console.container
    people = await console.everyone()
    case_id, number = await case_at(container, Status.ACCEPTED)  # lead 价竞分局, co-unit 网监分局
    await _undeliverable(container, case_id)
    co = people["co"]

    status, page = await co.get(f"/cases/{number}")
    assert status == 200 and number in page
    assert NAME not in page and PHONE not in page and MASKED not in page
    assert "投诉举报人身份仅受理和承办人员可见" in page
    status, queue = await co.get("/")
    assert status == 200 and number in queue and "5678" not in queue
    status, calls = await co.get("/followup")
    assert status == 200 and PHONE not in calls and NAME not in calls

    created = await container.accounts.create_user("co-api", "wangjian", "handler", with_api_token=True)
    answer = await co.client.get(f"/api/v1/cases/{number}",
                                 headers={"Authorization": f"Bearer {created.api_token}"})
    body = await answer.text()
    assert answer.status == 200 and number in body
    assert NAME not in body and PHONE not in body
    assert await events_of(container, case_id, "view_personal_data") == []


async def test_those_who_act_still_see_it_and_each_view_is_audited(console):
    container = console.container
    people = await console.everyone()
    case_id, number = await case_at(container, Status.ACCEPTED)
    await _undeliverable(container, case_id)
    for who in ("triage", "lead"):
        status, page = await people[who].get(f"/cases/{number}")
        assert status == 200 and NAME in page and PHONE in page, who
        status, queue = await people[who].get("/")
        assert MASKED in queue and PHONE not in queue, who
        status, calls = await people[who].get("/followup")
        assert PHONE in calls, who
    async with container.uow() as uow:
        viewers = list(await uow.session.scalars(select(CaseEvent.actor_id).where(
            CaseEvent.case_id == case_id, CaseEvent.action == "view_personal_data")))
    assert set(viewers) == {people["triage"].id, people["lead"].id}
