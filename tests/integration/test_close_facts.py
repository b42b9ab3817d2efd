"""Closing a case records the facts of the statistics forms (附件1: 立案, 罚款, 没收违法所得, 移送司法机关,
the platform measures), in the console's close form and in the API's close transition.

The console takes amounts in yuan as people type them ("1,200.50", full-width digits) and stores fen; the
API takes whole fen. Bad input is refused with a clear message and nothing is written. The price tip-offs
here have 价竞分局 (jiajing) as lead (tests/integration/test_console.py); SQLite always, PostgreSQL with
TEST_DATABASE_URL.
"""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from db.models import Case
from intake.status import Status
from tests.integration.test_api import Api, api, assert_error, trained_nlu  # noqa: F401  (fixtures)
from tests.integration.test_console import (  # noqa: F401  (console is a fixture)
    assert_flash,
    console,
    events_of,
    find_form,
    snapshot,
    system_actor,
    tipoff,
)

FACTS = ("filed", "fine_fen", "confiscation_fen", "judicial_referral", "takedowns", "accounts_disposed",
         "sites_closed")


async def resolved(container, outcome: str = "case_filed", new=None) -> tuple[int, str]:
    """A tip-off (lead 价竞分局) accepted and resolved with `outcome`, ready to close."""
    cases, actor = container.cases, await system_actor(container)
    view = await cases.create(new or tipoff())
    await cases.accept(view.id, actor)
    await cases.resolve(view.id, actor, outcome, "经核查，处理如下。")
    return view.id, view.number


async def facts_of(container, case_id: int) -> dict:
    async with container.uow() as uow:
        case = await uow.session.scalar(select(Case).where(Case.id == case_id))
        return {name: getattr(case, name) for name in FACTS}


def re_items(html: str, tag: str) -> list[str]:
    return re.findall(rf"<{tag}>(.*?)</{tag}>", html, re.S)


NOTHING = dict(filed=None, fine_fen=None, confiscation_fen=None, judicial_referral=False, takedowns=None,
               accounts_disposed=None, sites_closed=None)


# -- the console ------------------------------------------------------------------------------------------


async def test_close_form_records_the_facts_and_the_case_page_shows_them(console):
    container = console.container
    handler = await console.person("lead", "jiajing", "handler")
    case_id, number = await resolved(container, "case_filed")
    page, act = f"/cases/{number}", f"/cases/{number}/actions/close"

    status, html = await handler.get(page)
    form = find_form(html, act)
    assert form is not None
    assert {"filed", "fine_yuan", "confiscation_yuan", "judicial_referral", "takedowns", "accounts_disposed",
            "sites_closed", "note"} <= form.names
    assert form.options["filed"] == ["", "yes", "no"] and form.selected["filed"] == "yes"  # from the outcome
    assert "结案信息" not in html.split('<aside class="case-actions">')[0]  # not closed yet: no block

    response = await handler.send(form, {"fine_yuan": "1,200.50", "confiscation_yuan": "３，０００", "judicial_referral": "1",
                                         "takedowns": "12", "accounts_disposed": "３", "note": "罚没款已缴清"})
    html = await assert_flash(handler, response, page, "案件已关闭。")
    assert await facts_of(container, case_id) == dict(
        filed=True, fine_fen=120050, confiscation_fen=300000, judicial_referral=True, takedowns=12,
        accounts_disposed=3, sites_closed=None)
    (event,) = await events_of(container, case_id, "close")
    assert event.data == {"filed": True, "fine_fen": 120050, "confiscation_fen": 300000, "judicial_referral": True,
                          "takedowns": 12, "accounts_disposed": 3}
    assert event.note == "罚没款已缴清" and event.actor_id == handler.id

    block = html.split('<section class="card closing-facts">')[1].split("</section>")[0]
    assert "结案信息" in block
    shown = dict(zip(*(re_items(block, tag) for tag in ("dt", "dd")), strict=True))
    assert shown == {"立案": "是", "罚款（元）": "¥1,200.50", "没收违法所得（元）": "¥3,000.00", "移送司法机关": "是",
                     "督促平台删除违规信息/下架商品（条/个）": "12", "处置发布违规内容账号（个）": "3",
                     "关闭违法违规问题网站（个）": "未填"}


@pytest.mark.parametrize(("typed", "fen"), [
    ("1200", 120000), ("1,200.50", 120050), ("１２００．５", 120050), ("¥1,200元", 120000), ("￥ 0.05", 5),
    ("  88.8 ", 8880), ("0", 0), ("12,345,678.90", 1234567890),
])
async def test_amounts_typed_in_yuan_are_stored_in_fen(console, typed, fen):
    container = console.container
    triage = await console.person("triage", "xiaobao", "triage")
    case_id, number = await resolved(container)
    page = f"/cases/{number}"
    await assert_flash(triage, await triage.submit(page, page + "/actions/close", {"fine_yuan": typed}),
                       page, "案件已关闭。")
    assert (await facts_of(container, case_id))["fine_fen"] == fen


@pytest.mark.parametrize(("values", "message"), [
    ({"fine_yuan": "abc"}, "罚款（元）应为金额"),
    ({"fine_yuan": "-5"}, "罚款（元）不能为负数"),
    ({"fine_yuan": "1.234"}, "罚款（元）最多两位小数"),
    ({"confiscation_yuan": "1,20"}, "没收违法所得（元）应为金额"),
    ({"confiscation_yuan": "1."}, "没收违法所得（元）应为金额"),
    ({"confiscation_yuan": "1" + " " * 40 + "x"}, "没收违法所得（元）应为金额"),
    ({"fine_yuan": "99999999999"}, "罚款（元）超出可记录的范围"),
    ({"takedowns": "1.5"}, "督促平台删除违规信息/下架商品（条/个）应为 0 到 100000 之间的整数"),
    ({"accounts_disposed": "-1"}, "处置发布违规内容账号（个）应为 0 到 100000 之间的整数"),
    ({"sites_closed": "100001"}, "关闭违法违规问题网站（个）应为 0 到 100000 之间的整数"),
    ({"filed": "maybe"}, "请选择是否立案"),
])
async def test_bad_facts_are_refused_and_nothing_is_written(console, values, message):
    container = console.container
    triage = await console.person("triage", "xiaobao", "triage")
    case_id, number = await resolved(container)
    page, act = f"/cases/{number}", f"/cases/{number}/actions/close"
    before, facts = await snapshot(container, case_id), await facts_of(container, case_id)
    response = await triage.post(act, {"filed": "yes", "fine_yuan": "100", **values})
    html = await assert_flash(triage, response, page, "操作未完成")
    assert message in html
    assert await snapshot(container, case_id) == before
    assert await facts_of(container, case_id) == facts == NOTHING
    assert await events_of(container, case_id, "close") == []


async def test_a_penalty_needs_a_filed_case(console):
    container = console.container
    handler = await console.person("lead", "jiajing", "handler")
    case_id, number = await resolved(container, "not_filed")
    page, act = f"/cases/{number}", f"/cases/{number}/actions/close"
    status, html = await handler.get(page)
    assert find_form(html, act).selected["filed"] == "no"
    before = await snapshot(container, case_id)
    for values in ({"fine_yuan": "500"}, {"filed": "", "confiscation_yuan": "500"}, {"filed": "yes"}):
        html = await assert_flash(handler, await handler.submit(page, act, values), page, "操作未完成")
        assert "立案" in html
        assert await snapshot(container, case_id) == before
        assert await facts_of(container, case_id) == NOTHING
    # measures without a penalty are fine for a case not filed
    await assert_flash(handler, await handler.submit(page, act, {"takedowns": "4", "sites_closed": "0"}),
                       page, "案件已关闭。")
    assert await facts_of(container, case_id) == {**NOTHING, "filed": False, "takedowns": 4, "sites_closed": 0}
    (event,) = await events_of(container, case_id, "close")
    assert event.data == {"filed": False, "takedowns": 4, "sites_closed": 0}


async def test_the_outcome_decides_the_preselected_answer(console):
    container = console.container
    triage = await console.person("triage", "xiaobao", "triage")
    for outcome, expected in (("case_filed", "yes"), ("not_filed", "no"), ("other", "")):
        _case_id, number = await resolved(container, outcome)
        status, html = await triage.get(f"/cases/{number}")
        assert find_form(html, f"/cases/{number}/actions/close").selected["filed"] == expected, outcome


async def test_a_closed_case_without_facts_says_not_stated(console):
    container = console.container
    triage = await console.person("triage", "xiaobao", "triage")
    case_id, number = await resolved(container, "other")
    page = f"/cases/{number}"
    html = await assert_flash(triage, await triage.submit(page, page + "/actions/close"), page, "案件已关闭。")
    assert await facts_of(container, case_id) == NOTHING
    block = html.split('<section class="card closing-facts">')[1].split("</section>")[0]
    assert re_items(block, "dd") == ["未填", "未填", "未填", "否", "未填", "未填", "未填"]
    assert (await events_of(container, case_id, "close"))[0].data is None


# -- the API ----------------------------------------------------------------------------------------------


async def api_resolved(api: Api, outcome: str = "case_filed") -> str:
    number = (await api.create(platform="抖音"))["number"]
    for body in ({"action": "accept"}, {"action": "resolve", "outcome": outcome, "reply": "经核查，处理如下。"}):
        response, data = await api.call("POST", f"/cases/{number}/transitions", json=body)
        assert response.status == 200, data
    return number


async def api_case_id(api: Api, number: str) -> int:
    async with api.container.uow() as uow:
        return await uow.session.scalar(select(Case.id).where(Case.number == number))


async def test_api_close_with_facts(api):
    number = await api_resolved(api)
    _, case = await api.call("GET", f"/cases/{number}")
    assert case["closing"] is None  # not closed yet
    facts = {"filed": True, "fine_fen": 120050, "confiscation_fen": 0, "judicial_referral": True, "takedowns": 12,
             "accounts_disposed": 3, "sites_closed": None}
    response, data = await api.call("POST", f"/cases/{number}/transitions",
                                    json={"action": "close", "note": "罚没款已缴清", **facts})
    assert response.status == 200, data
    assert data["status"] == "closed"
    _, case = await api.call("GET", f"/cases/{number}")
    assert case["closing"] == facts
    case_id = await api_case_id(api, number)
    assert await facts_of(api.container, case_id) == facts
    (event,) = await events_of(api.container, case_id, "close")
    assert event.data == {"filed": True, "fine_fen": 120050, "confiscation_fen": 0, "judicial_referral": True,
                          "takedowns": 12, "accounts_disposed": 3}  # a stated 0 is recorded

    # without facts: 立案 follows the outcome, the rest is not stated
    number = await api_resolved(api, "not_filed")
    response, data = await api.call("POST", f"/cases/{number}/transitions", json={"action": "close"})
    assert response.status == 200, data
    _, case = await api.call("GET", f"/cases/{number}")
    assert case["closing"] == {**NOTHING, "filed": False}

    # reopened: no closing facts until the case is closed again
    response, data = await api.call("POST", f"/cases/{number}/transitions", json={"action": "reopen", "reason": "再查"})
    assert response.status == 200, data
    _, case = await api.call("GET", f"/cases/{number}")
    assert case["closing"] is None


@pytest.mark.parametrize(("outcome", "body", "status", "code", "field"), [
    ("case_filed", {"fine_fen": -1}, 400, "validation_error", "fine_fen"),
    ("case_filed", {"fine_fen": 12.5}, 400, "validation_error", "fine_fen"),
    ("case_filed", {"fine_fen": "1200"}, 400, "validation_error", "fine_fen"),
    ("case_filed", {"confiscation_fen": 10**12 + 1}, 400, "validation_error", "confiscation_fen"),
    ("case_filed", {"takedowns": -3}, 400, "validation_error", "takedowns"),
    ("case_filed", {"accounts_disposed": 100_001}, 400, "validation_error", "accounts_disposed"),
    ("case_filed", {"sites_closed": True}, 400, "validation_error", "sites_closed"),
    ("case_filed", {"filed": "yes"}, 400, "validation_error", "filed"),
    ("case_filed", {"judicial_referral": None}, 400, "validation_error", "judicial_referral"),
    ("case_filed", {"fine_yuan": "1200.50"}, 400, "unknown_field", "fine_yuan"),
    ("not_filed", {"fine_fen": 50000}, 422, "domain_error", "fine_fen"),
    ("mediated", {"confiscation_fen": 100}, 422, "domain_error", "confiscation_fen"),
    ("case_filed", {"filed": False, "fine_fen": 100}, 422, "domain_error", "filed"),
    ("not_filed", {"filed": True}, 422, "domain_error", "filed"),
])
async def test_api_bad_facts_are_refused_and_change_nothing(api, outcome, body, status, code, field):
    number = await api_resolved(api, outcome)
    case_id = await api_case_id(api, number)
    before = await snapshot(api.container, case_id)
    assert before.status == Status.RESOLVED
    response, data = await api.call("POST", f"/cases/{number}/transitions", json={"action": "close", **body})
    assert_error(response, data, status, code, field)
    assert await snapshot(api.container, case_id) == before
    assert await facts_of(api.container, case_id) == NOTHING
