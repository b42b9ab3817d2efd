"""Crisis signals end to end: the conversation's help lines, the urgent case, the duty group's notice at once,
the API's JSON, the console's banner and its acknowledgement. SQLite and PostgreSQL."""

from __future__ import annotations

import re

import json

import pytest
from sqlalchemy import select

from db.models import Case, CaseEvent, OutboxMessage
from intake.cases import CaseService
from intake.conversation import ConversationEngine, Person
from intake.notice_templates import NoticeRenderer
from nlu.classifier import EmbeddedBackend
from tests.integration.chat_driver import ChatDriver
from tests.integration.test_console import complaint, console, csrf_in, find_form, tipoff  # noqa: F401
from tests.integration.test_conversation import NOW, RICH, reach_summary

HELP_LINES = "如果您或身边的人有危险，请立即拨打 110；需要心理援助可拨打全国心理援助热线 12356。我们会优先处理您反映的问题。"
ISSUE_MESSAGE = "我在直播间买的保健品吃了没用，钱也要不回来，我现在真的不想活了"
QUOTED = "主播说‘不想活了’是口头禅"
DUTY_CHAT = "-100777"


@pytest.fixture(scope="module")
def nlu(tmp_path_factory) -> EmbeddedBackend:
    backend = EmbeddedBackend(cache_dir=tmp_path_factory.mktemp("nlu"), progress=False)
    backend.warm_up()
    return backend


@pytest.fixture
async def duty_group(container) -> str:
    async with container.uow() as uow:
        unit = await uow.units.by_code("xiaobao")
        unit.telegram_chat_id = DUTY_CHAT
        await uow.commit()
    return DUTY_CHAT


@pytest.fixture
def chat(container, nlu):
    engine = ConversationEngine(nlu, container.cases, container.directory, container.settings.tz)
    return lambda user_id="42": ChatDriver(engine, Person("telegram", user_id, "zh"), NOW)


async def case_row(container, number: str) -> Case:
    async with container.uow() as uow:
        return await uow.session.scalar(select(Case).where(Case.number == number))


async def urgent_notices(container) -> list[OutboxMessage]:
    async with container.uow() as uow:
        return list((await uow.session.scalars(
            select(OutboxMessage).where(OutboxMessage.template == "unit_urgent_case"))).all())


async def events(container, case_id: int, action: str) -> list[CaseEvent]:
    async with container.uow() as uow:
        return list((await uow.session.scalars(
            select(CaseEvent).where(CaseEvent.case_id == case_id, CaseEvent.action == action))).all())


# -- the conversation --------------------------------------------------------------------------------


async def test_the_issue_message_gets_the_help_lines_and_the_conversation_goes_on(chat):
    c = chat()
    await c.send(ISSUE_MESSAGE)
    assert c.texts[0] == HELP_LINES
    assert len(c.texts) >= 2 and HELP_LINES not in c.texts[1:]  # then the usual question
    assert c.draft is not None and c.draft.urgent and c.draft.description == ISSUE_MESSAGE
    await c.press("ok")
    assert HELP_LINES not in c.texts  # said once, not at every step


async def test_a_crisis_said_in_the_conversation_files_an_urgent_case_and_alerts_the_duty_group(
        container, chat, duty_group):
    c = chat()
    await reach_summary(c, text=RICH + "。钱也要不回来，我现在真的不想活了")
    await c.press("submit")
    assert c.case is not None and c.case.urgent and c.case.flags == ("crisis",)
    case = await case_row(container, c.case.number)
    assert case.urgent is True and case.flags == ["crisis"] and case.urgent_acknowledged_at is None
    [notice] = await urgent_notices(container)
    assert (notice.case_id, notice.audience, notice.channel) == (case.id, "unit", "telegram")
    assert notice.recipient == DUTY_CHAT
    assert notice.status == "pending" and notice.next_attempt_at <= container.clock.now()  # now, not at a digest
    text = NoticeRenderer(container.directory).render(notice.template, notice.payload, "zh").text
    assert case.number in text and "紧急件" in text
    [event] = await events(container, case.id, "urgent")
    assert event.data == {"flags": ["crisis"], "duty_unit": "xiaobao", "alerted": True}


async def test_a_crisis_word_sent_at_a_later_step_marks_the_draft(container, chat, duty_group):
    c = chat()
    await c.send(RICH)
    await c.press("ok")
    await c.send("真的不想活了")  # typed where the order number is asked
    assert c.texts[0] == HELP_LINES and c.draft.urgent


async def test_a_quoted_catchphrase_is_no_crisis(container, chat, duty_group):
    c = chat()
    await reach_summary(c, text=RICH + "。" + QUOTED)
    assert all(HELP_LINES not in t for t in c.texts)
    await c.press("submit")
    case = await case_row(container, c.case.number)
    assert case.urgent is False and case.flags == []
    assert await urgent_notices(container) == []
    assert await events(container, case.id, "urgent") == []


async def test_a_case_from_another_channel_is_read_too(container, duty_group):
    view = await container.cases.create(tipoff(description="主播卖假药，我们五十多个受害者准备集体上访"))
    assert view.urgent and view.flags == ("crisis",)
    [notice] = await urgent_notices(container)
    assert notice.case_id == view.id


async def test_the_duty_unit_is_the_escalation_unit_of_the_settings(container, duty_group):
    """QINGLANG_ESCALATION_UNIT names the unit on duty: it gets the overdue digest and urgent cases."""
    async with container.uow() as uow:
        (await uow.units.by_code("bangongshi")).telegram_chat_id = "-100888"
        await uow.commit()
    cases = CaseService(container.uow, container.routing, container.policy, container.clock, container.settings.tz,
                        duty_unit="bangongshi")
    view = await cases.create(tipoff(description="主播卖假药害死了我爸，我一定要报复"))
    [notice] = await urgent_notices(container)  # to the unit on duty only, not to 消保分局's group as well
    assert notice.case_id == view.id and notice.recipient == "-100888"
    [event] = await events(container, view.id, "urgent")
    assert event.data["duty_unit"] == "bangongshi" and event.data["alerted"] is True


async def test_without_a_duty_chat_the_case_is_still_urgent_and_the_event_says_so(container):
    view = await container.cases.create(tipoff(description="主播卖假药害死了我爸，我一定要报复"))
    assert view.urgent
    assert await urgent_notices(container) == []
    [event] = await events(container, view.id, "urgent")
    assert event.data["alerted"] is False


# -- the API -------------------------------------------------------------------------------------------


async def test_api_case_json_carries_urgent_and_flags(container, nlu):
    from aiohttp.test_utils import TestClient, TestServer

    from web.app import create_app

    container.nlu = nlu
    user = await container.accounts.create_user("hotline", "xiaobao", "triage", with_api_token=True)
    headers = {"Authorization": f"Bearer {user.api_token}"}
    body = {"channel": "12345", "kind": "tipoff", "category": "price",
            "merchant_location": {"in_district": True, "street": "永中街道", "province": "浙江省"}}
    async with TestClient(TestServer(create_app(container, with_bot=False))) as client:
        urgent = await client.post("/api/v1/cases", headers=headers, json={
            **body, "description": "主播虚假宣传骗了我两万，再不退钱我就跟他同归于尽"})
        calm = await client.post("/api/v1/cases", headers=headers, json={
            **body, "description": "主播说原价999现在99，其实平时一直卖99，虚假折扣"})
        assert urgent.status == calm.status == 201
        created, plain = await urgent.json(), await calm.json()
        assert (created["urgent"], created["flags"]) == (True, ["crisis"])
        assert (plain["urgent"], plain["flags"]) == (False, [])
        fetched = await (await client.get(f"/api/v1/cases/{created['number']}", headers=headers)).json()
        assert (fetched["urgent"], fetched["flags"]) == (True, ["crisis"])
        doc = await (await client.get("/api/v1/openapi.json")).json()
        assert {"urgent", "flags"} <= set(doc["components"]["schemas"]["CaseOut"]["required"])


# -- the console ------------------------------------------------------------------------------------


async def test_console_banner_until_acknowledged(console):  # noqa: F811
    container = console.container
    view = await container.cases.create(tipoff(description="主播卖假药害死了我爸，我要去他们公司泼硫酸"))
    calm = await container.cases.create(tipoff())
    triage = await console.person("triage", "xiaobao", "triage")
    other = await console.person("other", "zhiliang", "handler")
    action = f"/cases/{view.number}/urgent/acknowledge"
    for page in ("/", "/overdue", f"/cases/{calm.number}"):
        status, html = await triage.get(page)
        assert status == 200 and "紧急件待知悉" in html and find_form(html, action) is not None, page
    status, html = await other.get("/")  # not a case of their unit: no banner
    assert status == 200 and "紧急件待知悉" not in html
    status, html = await triage.get(f"/cases/{view.number}")
    assert "紧急：危机信号" in html
    status, html = await triage.get(f"/cases/{calm.number}")
    assert "紧急：危机信号" not in html

    refused = await triage.client.post(action, data={"csrf_token": "wrong"}, allow_redirects=False)
    assert refused.status == 403
    assert (await case_row(container, view.number)).urgent_acknowledged_at is None
    guessed = await other.post(action)
    assert guessed.status == 404
    assert (await case_row(container, view.number)).urgent_acknowledged_at is None

    _, html = await triage.get("/")
    response = await triage.send(find_form(html, action))
    assert response.status == 303 and response.headers["Location"] == f"/cases/{view.number}"
    case = await case_row(container, view.number)
    assert case.urgent_acknowledged_at is not None and case.urgent_acknowledged_by == triage.id
    assert case.urgent is True and case.flags == ["crisis"]  # the flag stays
    [event] = await events(container, view.id, "acknowledge_urgent")
    assert (event.actor_type, event.actor_id) == ("staff", triage.id)
    status, html = await triage.get("/")
    assert status == 200 and "紧急件待知悉" not in html
    # the queue keeps marking it among the others, acknowledged or not
    rows = {m.group(1): m.group(2) for m in re.finditer(r'<a href="/cases/(LW-[\d-]+)">[^<]*</a>(.*?)</td>', html)}
    assert "紧急" in rows[view.number] and "紧急" not in rows[calm.number]


# -- the CLI ----------------------------------------------------------------------------------------------


def test_cli_classify_says_urgent_and_evaluate_gives_crisis_figures(tmp_path):
    from tests.integration.test_nlu_cli import run

    urgent = run(["classify", ISSUE_MESSAGE], tmp_path)
    quoted = run(["classify", QUOTED], tmp_path)
    assert urgent.returncode == quoted.returncode == 0, urgent.stderr + quoted.stderr
    assert json.loads(urgent.stdout)["urgent"] is True and json.loads(quoted.stdout)["urgent"] is False
    data = tmp_path / "rows.jsonl"
    data.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in [
        {"text": ISSUE_MESSAGE, "crisis": True},
        {"text": QUOTED, "crisis": False},
        {"text": "直播间买的零食过期了还吃坏了肚子", "category": "food_safety", "crisis": False},
    ]) + "\n", encoding="utf-8")
    result = run(["evaluate", "--data", str(data)], tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["crisis_recall"], report["crisis_false"], report["crisis_n"], report["n"]) == (1.0, 0.0, 3, 1)
