"""The JSON API's tools for working a case, end to end through aiohttp's test client: the duplicate
transition, messages of three kinds, the assignment of units, linking subjects, the satisfaction rating,
and the originating system's callback URL. Each with its access matrix (role x unit), refusals with
stable codes that change nothing and are logged, and untrusted text coming back inert.

The cases are price tip-offs in 永中街道 on 抖音: 价竞分局 (jiajing) leads, 网监分局 and 综合执法队 are
co-units (tests/integration/test_api.py). SQLite always, PostgreSQL with TEST_DATABASE_URL.
"""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import select

from db.models import Case, OutboxMessage, Subject
from tests.integration.test_api import (  # noqa: F401  (api and trained_nlu are fixtures)
    XSS,
    Api,
    api,
    assert_error,
    trained_nlu,
)
from tests.integration.test_console import Snapshot, snapshot

HOTLINE = "https://hotline.example.gov.cn/api/notices?token=abc"


async def create(api: Api, **fields) -> dict:
    return await api.create(platform="抖音", **fields)


async def case_id(api: Api, number: str) -> int:
    async with api.container.uow() as uow:
        return await uow.session.scalar(select(Case.id).where(Case.number == number))


async def state(api: Api, number: str) -> Snapshot:
    return await snapshot(api.container, await case_id(api, number))


async def subject(api: Api, name: str) -> int:
    async with api.container.uow() as uow:
        found = await uow.session.scalar(select(Subject.id).where(Subject.name == name))
    assert found is not None, name
    return found


async def closed(api: Api, **fields) -> str:
    number = (await create(api, **fields))["number"]
    for body in ({"action": "reject", "ground": "no_clue", "reply": "线索不具体，无法核查。"}, {"action": "close"}):
        response, data = await api.call("POST", f"/cases/{number}/transitions", json=body)
        assert response.status == 200, data
    return number


async def transition(api: Api, number: str, who: str = "triage", **body):
    return await api.call("POST", f"/cases/{number}/transitions", who, json=body)


# -- duplicate -------------------------------------------------------------------------------------------


async def test_duplicate_closes_with_a_reference(api):
    original = (await create(api))["number"]
    number = (await create(api))["number"]
    response, data = await transition(api, number, action="duplicate", original=original.lower(),
                                      reply=f"与 {original} 为同一事项，已并案办理。")
    assert response.status == 200, data
    assert data["status"] == "closed" and data["duplicate_of"] == original
    assert data["allowed_actions"] == ["reopen"]
    response, case = await api.call("GET", f"/cases/{number}")
    assert case["duplicate_of"] == original and case["outcome"] == "duplicate"
    assert case["messages"][-1]["is_reply"] is True and original in case["messages"][-1]["body"]
    assert [e["action"] for e in case["events"] if e["action"] != "view_personal_data"][-1] == "duplicate"
    _, first = await api.call("GET", f"/cases/{original}")
    assert first["duplicate_of"] is None

    # a duplicate of the duplicate names the original itself
    third = (await create(api))["number"]
    response, data = await transition(api, third, action="duplicate", original=number, reply="同一事项。")
    assert response.status == 200 and data["duplicate_of"] == original

    # reopening ends the reference
    response, data = await transition(api, number, action="reopen", reason="并案有误")
    assert response.status == 200 and data["duplicate_of"] is None
    _, case = await api.call("GET", f"/cases/{number}")
    assert case["duplicate_of"] is None


@pytest.mark.parametrize(("body", "status", "code", "field"), [
    ({"action": "duplicate", "reply": "x"}, 400, "validation_error", "original"),
    ({"action": "duplicate", "original": "LW 2026", "reply": "x"}, 400, "validation_error", "original"),
    ({"action": "duplicate", "original": "{other}"}, 400, "validation_error", "reply"),
    ({"action": "duplicate", "original": "{other}", "reply": "  "}, 400, "validation_error", "reply"),
    ({"action": "duplicate", "original": "{other}", "reply": "x", "note": "y"}, 400, "unknown_field", "note"),
    ({"action": "duplicate", "original": "LW-2026-999999", "reply": "x"}, 422, "unknown_original", "original"),
    ({"action": "duplicate", "original": "{self}", "reply": "x"}, 422, "domain_error", "original"),
])
async def test_duplicate_refusals_change_nothing(api, caplog, body, status, code, field):
    other = (await create(api))["number"]
    number = (await create(api))["number"]
    body = {k: {"{other}": other, "{self}": number}.get(v, v) for k, v in body.items()}
    before = await state(api, number)
    with caplog.at_level(logging.WARNING, logger="qinglang.api"):
        response, data = await transition(api, number, **body)
    assert_error(response, data, status, code, field)
    assert await state(api, number) == before
    assert any(code in r.getMessage() and "triage" in r.getMessage() for r in caplog.records)


async def test_duplicate_of_a_closed_case_is_an_illegal_transition(api):
    original = (await create(api))["number"]
    number = await closed(api)
    before = await state(api, number)
    # the status is checked before the original it names
    for named in (original, "LW-2026-999999"):
        response, data = await transition(api, number, action="duplicate", original=named, reply="x")
        assert_error(response, data, 409, "illegal_transition", "action")
    assert await state(api, number) == before


# -- messages ---------------------------------------------------------------------------------------------


async def test_three_kinds_of_message(api):
    number = (await create(api))["number"]
    for kind, text in (("message", "正在核查，请耐心等待。"), ("info_request", "请补充订单截图。"), ("reply", "已核实。")):
        response, data = await api.call("POST", f"/cases/{number}/messages", json={"text": text, "kind": kind})
        assert response.status == 201, data
        assert data["message"] == {**data["message"], "body": text, "direction": "out",
                                   "is_reply": kind == "reply", "info_request": kind == "info_request"}
    _, case = await api.call("GET", f"/cases/{number}")
    assert [(m["body"], m["is_reply"], m["info_request"]) for m in case["messages"]] == [
        ("正在核查，请耐心等待。", False, False), ("请补充订单截图。", False, True), ("已核实。", True, False)]
    assert [e["action"] for e in case["events"] if e["action"] in ("message", "request_info", "reply")] == [
        "message", "request_info", "reply"]
    # the default is still the official reply
    response, data = await api.call("POST", f"/cases/{number}/messages", json={"text": "补充答复"})
    assert response.status == 201 and data["message"]["is_reply"] is True


async def test_message_refusals(api):
    anonymous = await api.call("POST", "/cases", json={"description": "抖音直播间虚假折扣", "channel": "12345",
                                                        "anonymous": True})
    number = anonymous[1]["number"]
    before = await state(api, number)
    response, data = await api.call("POST", f"/cases/{number}/messages", json={"text": "您是谁？", "kind": "info_request"})
    assert_error(response, data, 422, "no_contact", "kind")
    for body, code, field in (({"text": "x", "kind": "answer"}, "validation_error", "kind"),
                              ({"text": "x", "kind": None}, "validation_error", "kind"),
                              ({"text": "x", "kind": "message", "urgent": True}, "unknown_field", "urgent")):
        response, data = await api.call("POST", f"/cases/{number}/messages", json=body)
        assert_error(response, data, 400, code, field)
    assert await state(api, number) == before
    # a message (not the answer) is still possible for the anonymous case; nothing goes out to anybody
    response, data = await api.call("POST", f"/cases/{number}/messages", json={"text": "内部记录", "kind": "message"})
    assert response.status == 201

    number = await closed(api)
    before = await state(api, number)
    for kind in ("message", "info_request", "reply"):
        response, data = await api.call("POST", f"/cases/{number}/messages", json={"text": "x", "kind": kind})
        assert_error(response, data, 409, "case_closed")
    assert await state(api, number) == before


# -- units ------------------------------------------------------------------------------------------------


async def test_assignment_sets_lead_and_co_units(api):
    case = await create(api)
    number = case["number"]
    assert case["lead_unit"]["code"] == "jiajing"
    await api.user("quality", "zhiliang", "handler")
    await api.user("old", "jiajing", "handler")
    assert (await api.call("GET", f"/cases/{number}", "quality"))[0].status == 404

    response, data = await api.call("POST", f"/cases/{number}/assignment",
                                    json={"lead": "zhiliang", "co_units": ["wangjian", "zhiliang", "wangjian"],
                                          "note": "主要涉及产品质量"})
    assert response.status == 200, data
    assert data["lead_unit"] == {"code": "zhiliang", "name": "质量监管科"}
    assert data["co_units"] == [{"code": "wangjian", "name": "网监分局"}]
    assert data["status"] == "received"
    events = await api.events("reassign")
    assert len(events) == 1 and events[0].note == "主要涉及产品质量" and events[0].actor_id == api.ids["triage"]
    assert events[0].data["to"] == {"lead": "zhiliang", "co_units": ["wangjian"]}
    # visibility follows at once
    assert (await api.call("GET", f"/cases/{number}", "quality"))[0].status == 200
    assert (await api.call("GET", f"/cases/{number}", "old"))[0].status == 404

    # the same units again (in any order): 200, nothing recorded
    before = await state(api, number)
    response, data = await api.call("POST", f"/cases/{number}/assignment",
                                    json={"lead": "zhiliang", "co_units": ["wangjian"]})
    assert response.status == 200 and data["lead_unit"]["code"] == "zhiliang"
    assert await state(api, number) == before
    # no co-units at all
    response, data = await api.call("POST", f"/cases/{number}/assignment", json={"lead": "zhiliang"})
    assert response.status == 200 and data["co_units"] == []


@pytest.mark.parametrize(("body", "status", "code", "field"), [
    ({"lead": "nowhere"}, 422, "unknown_unit", "lead"),
    ({"lead": "zhiliang", "co_units": ["wangjian", "nowhere"]}, 422, "unknown_unit", "co_units.1"),
    ({"lead": "tax"}, 422, "unknown_unit", "lead"),  # an outside authority is not a unit: transfer to it
    ({"lead": "ZHILIANG"}, 400, "validation_error", "lead"),
    ({"co_units": ["wangjian"]}, 400, "validation_error", "lead"),
    ({"lead": "zhiliang", "co_units": "wangjian"}, 400, "validation_error", "co_units"),
    ({"lead": "zhiliang", "co_units": ["wangjian"] * 51}, 400, "validation_error", "co_units"),
    ({"lead": "zhiliang", "extra": 1}, 400, "unknown_field", "extra"),
])
async def test_assignment_refusals_change_nothing(api, caplog, body, status, code, field):
    number = (await create(api))["number"]
    before = await state(api, number)
    with caplog.at_level(logging.WARNING, logger="qinglang.api"):
        response, data = await api.call("POST", f"/cases/{number}/assignment", json=body)
    assert_error(response, data, status, code, field)
    assert await state(api, number) == before
    assert any(code in r.getMessage() for r in caplog.records)


async def test_assignment_of_a_closed_case_is_refused(api):
    number = await closed(api)
    before = await state(api, number)
    response, data = await api.call("POST", f"/cases/{number}/assignment", json={"lead": "zhiliang"})
    assert_error(response, data, 409, "case_closed")
    assert await state(api, number) == before


# -- subjects ---------------------------------------------------------------------------------------------


async def test_link_and_unlink_subjects(api):
    await create(api, live_room="山海好物直播间")
    number = (await create(api))["number"]
    mountain, douyin = await subject(api, "山海好物直播间"), await subject(api, "抖音")
    _, case = await api.call("GET", f"/cases/{number}")
    assert {"id": douyin, "type": "platform", "name": "抖音", "platform": ""} in case["subjects"]
    first = {s["id"] for s in case["subjects"]}
    assert mountain not in first

    response, data = await api.call("POST", f"/cases/{number}/subjects", json={"subject_id": mountain})
    assert response.status == 201, data
    assert data["number"] == number
    assert {s["id"] for s in data["subjects"]} == first | {mountain}
    assert {"id": mountain, "type": "live_room", "name": "山海好物直播间", "platform": "抖音"} in data["subjects"]
    before = await state(api, number)
    response, data = await api.call("POST", f"/cases/{number}/subjects", json={"subject_id": mountain})
    assert_error(response, data, 409, "already_linked", "subject_id")
    for bad, status, code in ((999_999, 422, "unknown_subject"), (0, 400, "validation_error"),
                              ("1", 400, "validation_error"), (2**63, 400, "validation_error"),
                              (True, 400, "validation_error")):
        response, data = await api.call("POST", f"/cases/{number}/subjects", json={"subject_id": bad})
        assert_error(response, data, status, code, "subject_id")
    assert await state(api, number) == before

    response, data = await api.call("DELETE", f"/cases/{number}/subjects/{douyin}")
    assert response.status == 200, data
    assert {s["id"] for s in data["subjects"]} == (first | {mountain}) - {douyin}
    before = await state(api, number)
    for path in (f"/cases/{number}/subjects/{douyin}", f"/cases/{number}/subjects/9223372036854775807",
                 f"/cases/{number}/subjects/9999999999999999999", f"/cases/{number}/subjects/abc",
                 f"/cases/{number}/subjects/-1", "/cases/LW-2026-999999/subjects/1"):
        response, data = await api.call("DELETE", path)
        assert response.status == 404 and data["error"]["code"] in ("not_linked", "not_found"), (path, data)
    assert await state(api, number) == before
    actions = [e.action for e in await api.events("link_subject")] + [e.action for e in await api.events("unlink_subject")]
    assert actions == ["link_subject", "unlink_subject"]


# -- satisfaction --------------------------------------------------------------------------------------------


async def test_rating_once_after_close(api):
    number = (await create(api))["number"]
    before = await state(api, number)
    response, data = await api.call("POST", f"/cases/{number}/rating", json={"score": 5})
    assert_error(response, data, 409, "case_not_closed")
    assert await state(api, number) == before

    number = await closed(api)
    _, case = await api.call("GET", f"/cases/{number}")
    assert case["satisfaction"] is None
    for body, code, field in (({"score": 6}, "validation_error", "score"), ({"score": 0}, "validation_error", "score"),
                              ({"score": "5"}, "validation_error", "score"), ({"score": 4.5}, "validation_error", "score"),
                              ({"score": True}, "validation_error", "score"), ({}, "validation_error", "score"),
                              ({"score": 4, "by": "phone"}, "unknown_field", "by")):
        response, data = await api.call("POST", f"/cases/{number}/rating", json=body)
        assert_error(response, data, 400, code, field)
    response, data = await api.call("POST", f"/cases/{number}/rating", json={"score": 4, "comment": "处理及时"})
    assert response.status == 201, data
    assert data["satisfaction"] == {"score": 4, "comment": "处理及时", "rated_at": "2026-11-16T02:00:00Z"}
    assert (data["status"], data["reopened"]) == ("closed", False)
    _, case = await api.call("GET", f"/cases/{number}")
    assert case["satisfaction"] == data["satisfaction"]
    before = await state(api, number)
    response, data = await api.call("POST", f"/cases/{number}/rating", json={"score": 1, "comment": "改主意了"})
    assert_error(response, data, 409, "already_rated")
    assert await state(api, number) == before


async def test_a_low_rating_reopens(api):
    number = await closed(api)
    response, data = await api.call("POST", f"/cases/{number}/rating", json={"score": 1})
    assert response.status == 201, data
    assert data["reopened"] is True and data["status"] == "received"  # never accepted: back to triage
    assert data["satisfaction"]["score"] == 1 and data["satisfaction"]["comment"] is None
    response, data = await api.call("POST", f"/cases/{number}/rating", json={"score": 5})
    assert_error(response, data, 409, "already_rated")


# -- the originating system's callback URL ------------------------------------------------------------------


async def test_callback_url_is_stored_and_told_of_every_step(api):
    case = await create(api, channel="12345", callback_url=HOTLINE)
    number = case["number"]
    assert "callback_url" not in case and HOTLINE not in str(case)  # never echoed (it may carry a secret)
    async with api.container.uow() as uow:
        assert (await uow.session.scalar(select(Case.callback_url).where(Case.number == number))) == HOTLINE
    await transition(api, number, action="accept")
    await api.call("POST", f"/cases/{number}/messages", json={"text": "请补充订单截图。", "kind": "info_request"})
    async with api.container.uow() as uow:
        sent = (await uow.session.execute(select(OutboxMessage.template, OutboxMessage.channel, OutboxMessage.recipient)
                                          .where(OutboxMessage.audience == "complainant")
                                          .order_by(OutboxMessage.id))).all()
    assert [t for t, _, _ in sent] == ["received", "accepted", "info_requested"]
    assert {(channel, recipient) for _, channel, recipient in sent} == {("callback", HOTLINE)}


@pytest.mark.parametrize("url", [
    "ftp://hotline.example/x", "javascript:alert(1)", "https://", "hotline.example/notices",
    "https://hotline.example/" + "x" * 480, "https://hotline.example/a b", "https://hotline.example:99999/",
])
async def test_bad_callback_urls_are_refused(api, url):
    response, data = await api.call("POST", "/cases", json={"description": "抖音直播间虚假折扣", "channel": "12345",
                                                            "callback_url": url})
    assert_error(response, data, 400, "validation_error", "callback_url")
    assert await api.count(Case) == 0


# -- access ---------------------------------------------------------------------------------------------------

# operation -> who -> the status it answers; lead/co/other are handlers of the case's lead unit, of a
# co-unit, of a unit with no part in it
OPERATIONS = {
    "duplicate": {"triage": 200, "lead": 403, "co": 403, "other": 404, "leader": 403, "admin": 403},
    "message": {"triage": 201, "lead": 201, "co": 403, "other": 404, "leader": 403, "admin": 403},
    "info_request": {"triage": 201, "lead": 201, "co": 403, "other": 404, "leader": 403, "admin": 403},
    "assignment": {"triage": 200, "lead": 403, "co": 403, "other": 404, "leader": 403, "admin": 403},
    "link_subject": {"triage": 201, "lead": 201, "co": 403, "other": 404, "leader": 403, "admin": 403},
    "unlink_subject": {"triage": 200, "lead": 200, "co": 403, "other": 404, "leader": 403, "admin": 403},
    "rating": {"triage": 201, "lead": 201, "co": 403, "other": 404, "leader": 403, "admin": 403},
}
EVENTS = {"duplicate": "duplicate", "message": "message", "info_request": "request_info", "assignment": "reassign",
          "link_subject": "link_subject", "unlink_subject": "unlink_subject", "rating": "rate"}


@pytest.mark.parametrize("who", ["triage", "lead", "co", "other", "leader", "admin"])
async def test_access_matrix_of_the_new_operations(api, caplog, who):
    template = await create(api, live_room="另一个直播间")
    lead, co = template["lead_unit"]["code"], template["co_units"][0]["code"]
    unit = {"lead": lead, "co": co, "other": "zhiliang"}.get(who, "bangongshi")
    if who != "triage":
        await api.user(who, unit, {"leader": "leader", "admin": "admin"}.get(who, "handler"))
    original = template["number"]
    other_room, douyin = await subject(api, "另一个直播间"), await subject(api, "抖音")
    requests = {
        "duplicate": ("POST", "transitions", {"action": "duplicate", "original": original, "reply": "同一事项，已并案。"}),
        "message": ("POST", "messages", {"text": "正在核查。", "kind": "message"}),
        "info_request": ("POST", "messages", {"text": "请补充截图。", "kind": "info_request"}),
        "assignment": ("POST", "assignment", {"lead": "hetong", "co_units": ["wangjian"]}),
        "link_subject": ("POST", "subjects", {"subject_id": other_room}),
        "unlink_subject": ("DELETE", f"subjects/{douyin}", None),
        "rating": ("POST", "rating", {"score": 4, "comment": "满意"}),
    }
    for operation, expected in OPERATIONS.items():
        number = await closed(api) if operation == "rating" else (await create(api))["number"]
        method, path, body = requests[operation]
        before = await state(api, number)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="qinglang.api"):
            response, data = await api.call(method, f"/cases/{number}/{path}", who,
                                            **({"json": body} if body is not None else {}))
        status = expected[who]
        assert response.status == status, (who, operation, data)
        if status < 400:
            after = await state(api, number)
            assert after != before, (who, operation)
            events = await api.events(EVENTS[operation])
            assert events[-1].actor_id == api.ids[who] and events[-1].case_id == await case_id(api, number)
        else:
            assert data["error"]["code"] == {403: "forbidden", 404: "not_found"}[status]
            assert await state(api, number) == before, (who, operation)
            refusals = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
            assert any(f"-> {status} {data['error']['code']}" in m and who in m for m in refusals), refusals


# -- untrusted text -------------------------------------------------------------------------------------------


async def test_new_texts_come_back_inert(api):
    await create(api, live_room=XSS[:200])
    number = (await create(api))["number"]
    await api.call("POST", f"/cases/{number}/messages", json={"text": XSS, "kind": "info_request"})
    await api.call("POST", f"/cases/{number}/subjects", json={"subject_id": await subject(api, XSS[:200].strip())})
    await transition(api, number, action="reject", ground="no_clue", reply=XSS)
    await transition(api, number, action="close")
    response, data = await api.call("POST", f"/cases/{number}/rating", json={"score": 3, "comment": XSS})
    assert response.status == 201
    response = await api.client.get(f"/api/v1/cases/{number}", headers=api.headers("triage"))
    raw = await response.read()
    assert b"<" not in raw and b">" not in raw and "\u2028".encode() not in raw
    _, case = await api.call("GET", f"/cases/{number}")
    assert case["satisfaction"]["comment"] == XSS.strip()
    assert any(m["body"] == XSS and m["info_request"] for m in case["messages"])
    assert any(s["name"] == XSS[:200].strip() for s in case["subjects"])
