"""The case page's tools for working a case, over real HTTP: messages that are not the answer, requests
for more information, closing a case as the duplicate of another, setting the lead and co-units, linking
and unlinking subjects of the registry, recording the satisfaction rating of the follow-up call.

Who may do what is in test_console.test_access_matrix; here: what each action does and shows, what the
page refuses (409, with nothing changed and the refusal logged), and untrusted text escaped.
The clock is fixed at Monday 2026-11-16 10:00 in Shanghai; the tip-offs (price, merchant in 永中街道) have
价竞分局 (jiajing) as lead with 网监分局 and 综合执法队 as co-units, the complaints 永中所 (suo_yongzhong).
"""

from __future__ import annotations

import logging
import re

from sqlalchemy import select

from db.models import Case, CaseMessage, OutboxMessage, Subject
from intake.cases import ComplainantInfo
from intake.status import Status
from tests.integration.test_console import (  # noqa: F401  (console is a fixture)
    IMG,
    IMG_ESCAPED,
    SCRIPT,
    SCRIPT_ESCAPED,
    assert_flash,
    case_at,
    complaint,
    console,
    events_of,
    find_form,
    forms_in,
    snapshot,
    tipoff,
)


def thread(html: str) -> list[tuple[str, str]]:
    """(the classes of the message, its meta line) for each message of the thread, in order."""
    items = re.findall(r'<li class="msg ([^"]+)">\s*<div class="meta">(.*?)</div>', html, re.S)
    return [(classes, re.sub(r"<[^>]+>", "", meta)) for classes, meta in items]


async def messages_of(container, case_id: int) -> list[CaseMessage]:
    async with container.uow() as uow:
        return list((await uow.session.scalars(
            select(CaseMessage).where(CaseMessage.case_id == case_id).order_by(CaseMessage.id))).all())


async def subject_named(container, name: str) -> Subject:
    async with container.uow() as uow:
        return await uow.session.scalar(select(Subject).where(Subject.name == name))


# -- messages and requests for information ---------------------------------------------------------------


async def test_message_and_information_request_in_the_thread(console):
    container = console.container
    handler = await console.person("handler", "jiajing", "handler")
    case_id, number = await case_at(container, Status.ACCEPTED)
    page, act = f"/cases/{number}", f"/cases/{number}/actions/"

    html = await assert_flash(handler, await handler.submit(page, act + "message", {"body": "已联系商家，正在核实。"}),
                              page, "消息已发送。")
    html = await assert_flash(handler, await handler.submit(page, act + "request_info",
                                                            {"question": "请补充订单截图和付款记录。"}),
                              page, "已要求投诉举报人补充材料。")
    rows = thread(html)
    assert len(rows) == 2
    assert "msg-info-request" not in rows[0][0] and "正式答复" not in rows[0][1] and "要求补充材料" not in rows[0][1]
    assert "msg-info-request" in rows[1][0] and "要求补充材料" in rows[1][1] and "正式答复" not in rows[1][1]
    assert "请补充订单截图和付款记录。" in html

    stored = await messages_of(container, case_id)
    assert [(m.direction, m.is_reply, m.info_request, m.staff_user_id) for m in stored] == [
        ("out", False, False, handler.id), ("out", False, True, handler.id)]
    (asked,) = await events_of(container, case_id, "request_info")
    assert asked.note == "请补充订单截图和付款记录。" and asked.actor_id == handler.id
    assert len(await events_of(container, case_id, "message")) == 1
    # neither is the answer: the case cannot be closed on them, and its status stayed
    async with container.uow() as uow:
        case = await uow.session.get(Case, case_id)
        assert case.replied_at is None and case.status == Status.ACCEPTED
        notices = (await uow.session.scalars(select(OutboxMessage.template).where(
            OutboxMessage.case_id == case_id).order_by(OutboxMessage.id))).all()
    assert notices[-2:] == ["staff_message", "info_requested"]


async def test_an_anonymous_informant_cannot_be_asked(console, caplog):
    container = console.container
    triage = await console.person("triage", "xiaobao", "triage")
    case_id, number = await case_at(container, Status.RECEIVED, tipoff(anonymous=True, complainant=None))
    page, act = f"/cases/{number}", f"/cases/{number}/actions/"
    status, html = await triage.get(page)
    assert find_form(html, act + "request_info") is None
    assert find_form(html, act + "message") is not None
    before = await snapshot(container, case_id)
    with caplog.at_level(logging.WARNING, logger="qinglang.console"):
        response = await triage.post(act + "request_info", {"question": "您是谁？"})
    assert response.status == 409 and "匿名举报人无法联系" in await response.text()
    assert await snapshot(container, case_id) == before
    assert any(f"console refused request_info {number} -> 409" in r.getMessage() for r in caplog.records)


async def test_closed_case_takes_no_message(console):
    container = console.container
    triage = await console.person("triage", "xiaobao", "triage")
    case_id, number = await case_at(container, Status.CLOSED)
    act = f"/cases/{number}/actions/"
    status, html = await triage.get(f"/cases/{number}")
    for action in ("message", "request_info", "reassign", "duplicate", "reply"):
        assert find_form(html, act + action) is None, action
    before = await snapshot(container, case_id)
    for action, values in (("message", {"body": "x"}), ("request_info", {"question": "x"}),
                           ("reassign", {"lead": "zhiliang"}), ("duplicate", {"original": number, "reply": "x"})):
        response = await triage.post(act + action, values)
        assert response.status == 409, action
    assert await snapshot(container, case_id) == before


# -- duplicates -----------------------------------------------------------------------------------------


async def test_duplicate_links_both_ways_and_only_to_visible_cases(console):
    container = console.container
    triage = await console.person("triage", "xiaobao", "triage")
    lead = await console.person("lead", "jiajing", "handler")  # lead of the tip-offs, no part in the complaints
    original_id, original = await case_at(container, Status.ACCEPTED)
    tip_id, tip = await case_at(container, Status.RECEIVED)
    other = await container.cases.create(complaint())  # 永中所 leads: 价竞分局 cannot see it

    for case_number in (tip, other.number):
        page = f"/cases/{case_number}"
        status, html = await triage.get(page)
        form = find_form(html, page + "/actions/duplicate")
        assert form is not None and {"original", "reply"} <= form.names
        assert form.attrs.get("data-confirm")
        response = await triage.send(form, {"original": original.lower(), "reply": f"与 {original} 为同一事项，已并案办理。"})
        html = await assert_flash(triage, response, page, "已作为重复件关闭。")
        assert f'为以下案件的重复件：<a href="/cases/{original}">{original}</a>' in html
        assert "重复件，已并案处理" in html  # the outcome
    for case_id in (tip_id, other.id):
        after = await snapshot(container, case_id)
        assert (after.status, after.duplicate_of) == (Status.CLOSED, original_id)
        (event,) = await events_of(container, case_id, "duplicate")
        assert event.data == {"original": original} and event.actor_id == triage.id

    # the original lists its duplicates: all of them for triage, only the visible ones for the handler
    status, html = await triage.get(f"/cases/{original}")
    assert re.search(rf'以下案件已作为本案的重复件关闭：<a href="/cases/{tip}">{tip}</a>、<a href="/cases/{other.number}">', html)
    status, html = await lead.get(f"/cases/{original}")
    assert f'<a href="/cases/{tip}">{tip}</a>' in html and other.number not in html
    # a handler who cannot see the original still sees its number on the duplicate, but not as a link
    handler = await console.person("suo", "suo_yongzhong", "handler")
    status, html = await handler.get(f"/cases/{other.number}")
    assert status == 200 and f"为以下案件的重复件：{original}" in html and f'href="/cases/{original}"' not in html

    # reopening ends the reference
    page = f"/cases/{tip}"
    await assert_flash(triage, await triage.submit(page, page + "/actions/reopen", {"reason": "并案有误"}),
                       page, "案件已重新打开。")
    assert (await snapshot(container, tip_id)).duplicate_of is None
    status, html = await triage.get(f"/cases/{original}")
    assert f'href="/cases/{tip}"' not in html


async def test_duplicate_refusals_change_nothing(console):
    container = console.container
    triage = await console.person("triage", "xiaobao", "triage")
    case_id, number = await case_at(container, Status.RECEIVED)
    page, act = f"/cases/{number}", f"/cases/{number}/actions/duplicate"
    before = await snapshot(container, case_id)
    for values, text in (({"original": "LW-2026-999999", "reply": "x"}, "没有案件 LW-2026-999999"),
                         ({"original": number, "reply": "x"}, "itself"),
                         ({"original": "", "reply": "x"}, "请填写原案件编号"),
                         ({"original": number, "reply": "  "}, "操作未完成")):
        response = await triage.post(act, values)
        await assert_flash(triage, response, page, text)
        assert await snapshot(container, case_id) == before, values
    # a handler of the lead unit may not (triage only): 403 and no form
    lead = await console.person("lead", "jiajing", "handler")
    status, html = await lead.get(page)
    assert find_form(html, act) is None
    assert (await lead.post(act, {"original": "LW-2026-999999", "reply": "x"})).status == 403
    assert await snapshot(container, case_id) == before


# -- units ------------------------------------------------------------------------------------------------


async def test_reassign_preselects_the_current_units_and_moves_the_case(console):
    container = console.container
    triage = await console.person("triage", "xiaobao", "triage")
    old_lead = await console.person("lead", "jiajing", "handler")
    new_lead = await console.person("quality", "zhiliang", "handler")
    case_id, number = await case_at(container, Status.RECEIVED)
    page, act = f"/cases/{number}", f"/cases/{number}/actions/reassign"
    assert (await new_lead.get(page))[0] == 404

    status, html = await triage.get(page)
    form = find_form(html, act)
    assert form is not None
    assert form.selected["lead"] == "jiajing"
    assert sorted(form.checked["co_units"]) == ["wangjian", "zongzhi"]
    assert {"xiaobao", "zhiliang", "suo_yongzhong"} <= set(form.options["co_units"])
    # nothing changed: said so, nothing recorded
    before = await snapshot(container, case_id)
    await assert_flash(triage, await triage.send(form), page, "操作未完成")
    assert await snapshot(container, case_id) == before

    response = await triage.submit(page, act, {"lead": "zhiliang", "co_units": ["wangjian", "zhiliang"],
                                               "note": "主要涉及产品质量"})
    html = await assert_flash(triage, response, page, "承办单位已调整。")
    after = await snapshot(container, case_id)
    assert (after.lead, after.co_units, after.status) == ("zhiliang", ("wangjian",), Status.RECEIVED)
    (event,) = await events_of(container, case_id, "reassign")
    assert event.data == {"from": {"lead": "jiajing", "co_units": ["wangjian", "zongzhi"]},
                          "to": {"lead": "zhiliang", "co_units": ["wangjian"]}}
    assert event.note == "主要涉及产品质量"
    assert "lead=jiajing; co_units=wangjian、zongzhi" in html  # the timeline shows the change readably
    # visibility follows the units at once
    assert (await old_lead.get(page))[0] == 404
    status, html = await new_lead.get(page)
    assert status == 200 and find_form(html, f"/cases/{number}/actions/accept") is not None
    assert find_form(html, act) is None  # triage only

    for values in ({"lead": "nowhere"}, {"lead": "zhiliang", "co_units": ["nowhere"]}, {"lead": ""}):
        before = await snapshot(container, case_id)
        await assert_flash(triage, await triage.post(act, values), page, "操作未完成")
        assert await snapshot(container, case_id) == before


# -- subjects ---------------------------------------------------------------------------------------------


async def test_link_subjects_by_search_or_platform_and_unlink(console):
    container = console.container
    handler = await console.person("lead", "jiajing", "handler")
    await container.cases.create(tipoff(live_room="山海好物直播间", streamer="主播小甲"))
    await container.cases.create(tipoff(platform="快手", live_room="快手山海店"))
    case_id, number = await case_at(container, Status.ACCEPTED, tipoff(live_room="别的直播间"))
    page, act = f"/cases/{number}", f"/cases/{number}/actions/"
    mountain = await subject_named(container, "山海好物直播间")
    streamer = await subject_named(container, "主播小甲")
    kuaishou = await subject_named(container, "快手山海店")
    own = await subject_named(container, "别的直播间")

    # the same platform's subjects, not yet linked, in a select
    status, html = await handler.get(page)
    (by_platform,) = [f for f in forms_in(html) if f.action == act + "link_subject"]
    assert by_platform.attrs["data-source"] == "platform"
    assert str(mountain.id) in by_platform.options["subject_id"] and str(streamer.id) in by_platform.options["subject_id"]
    assert str(kuaishou.id) not in by_platform.options["subject_id"] and str(own.id) not in by_platform.options["subject_id"]
    html = await assert_flash(handler, await handler.send(by_platform, {"subject_id": str(streamer.id)}),
                              page, "已关联主体。")
    assert f'<a href="/subjects/{streamer.id}">主播小甲</a>' in html

    # a search by name, across platforms
    status, html = await handler.get(page + "?subject_q=山海")
    (search,) = [f for f in forms_in(html) if f.action == act + "link_subject" and f.attrs.get("data-source") == "search"]
    assert set(search.options["subject_id"]) == {str(mountain.id), str(kuaishou.id)}
    await assert_flash(handler, await handler.send(search, {"subject_id": str(kuaishou.id)}), page, "已关联主体。")
    status, html = await handler.get(page + "?subject_q=没有这个")
    assert "没有找到名称含“没有这个”的未关联主体。" in html
    status, html = await handler.get(page + "?subject_q=%25")  # LIKE wildcards are searched as text
    assert "没有找到名称含“%”的未关联主体。" in html

    linked = (await snapshot(container, case_id)).subjects
    assert streamer.id in linked and kuaishou.id in linked
    events = await events_of(container, case_id, "link_subject")
    assert [e.data["subject"] for e in events] == [streamer.id, kuaishou.id]

    # unlink: a button beside each linked subject
    status, html = await handler.get(page)
    form = find_form(html, act + "unlink_subject", subject_id=str(own.id))
    assert form is not None and form.attrs.get("data-confirm")
    html = await assert_flash(handler, await handler.send(form), page, "已取消关联主体。")
    assert f'href="/subjects/{own.id}"' not in html
    assert own.id not in (await snapshot(container, case_id)).subjects
    (event,) = await events_of(container, case_id, "unlink_subject")
    assert event.data == {"subject": own.id, "name": "别的直播间"}

    # refusals: nothing linked twice, nothing unlinked that is not linked, no made-up ids
    before = await snapshot(container, case_id)
    for action, subject in (("link_subject", str(streamer.id)), ("unlink_subject", str(own.id)),
                            ("link_subject", "999999"), ("link_subject", "abc"), ("link_subject", "9" * 20),
                            ("unlink_subject", "-1")):
        await assert_flash(handler, await handler.post(act + action, {"subject_id": subject}), page, "操作未完成")
    assert await snapshot(container, case_id) == before

    # a co-unit's handler sees the subjects but no buttons, and is refused
    co = await console.person("co", "wangjian", "handler")
    status, html = await co.get(page + "?subject_q=山海")
    assert f'<a href="/subjects/{streamer.id}">' in html
    assert not [f for f in forms_in(html) if "subject" in f.action]
    assert (await co.post(act + "unlink_subject", {"subject_id": str(streamer.id)})).status == 403
    assert await snapshot(container, case_id) == before


# -- satisfaction -------------------------------------------------------------------------------------------


async def test_rating_after_close_once(console, caplog):
    container = console.container
    handler = await console.person("lead", "jiajing", "handler")
    open_id, open_number = await case_at(container, Status.RESOLVED)
    status, html = await handler.get(f"/cases/{open_number}")
    assert find_form(html, f"/cases/{open_number}/actions/rate") is None
    assert (await handler.post(f"/cases/{open_number}/actions/rate", {"score": "5"})).status == 409

    case_id, number = await case_at(container, Status.CLOSED)
    page, act = f"/cases/{number}", f"/cases/{number}/actions/rate"
    status, html = await handler.get(page)
    assert "满意度回访" in html and "尚未评价" in html  # the follow-up is planned
    form = find_form(html, act)
    assert form is not None and form.options["score"] == ["", "1", "2", "3", "4", "5"]
    for bad in ("", "6", "0", "x", "٣"):
        await assert_flash(handler, await handler.post(act, {"score": bad}), page, "请选择 1 到 5 分")
    assert (await snapshot(container, case_id)).satisfaction is None
    html = await assert_flash(handler, await handler.send(form, {"score": "4", "comment": "处理很及时，谢谢。"}),
                              page, "满意度评价已记录。")
    assert '<b class="score">4 / 5</b> 满意' in html and "处理很及时，谢谢。" in html
    assert find_form(html, act) is None
    after = await snapshot(container, case_id)
    assert (after.satisfaction, after.status) == (4, Status.CLOSED)
    (event,) = await events_of(container, case_id, "rate")
    assert event.data == {"score": 4} and event.actor_id == handler.id

    # once: the second attempt is refused, logged, and changes nothing
    with caplog.at_level(logging.WARNING, logger="qinglang.console"):
        response = await handler.post(act, {"score": "1", "comment": "不满意"})
    assert response.status == 409 and "已有满意度评价" in await response.text()
    assert await snapshot(container, case_id) == after
    assert any(f"console refused rate {number} -> 409" in r.getMessage() for r in caplog.records)


async def test_a_low_rating_reopens_the_case(console):
    container = console.container
    triage = await console.person("triage", "xiaobao", "triage")
    case_id, number = await case_at(container, Status.CLOSED)
    page = f"/cases/{number}"
    html = await assert_flash(triage, await triage.submit(page, page + "/actions/rate", {"score": "2"}),
                              page, "满意度评价已记录。")
    assert (await snapshot(container, case_id)).status == Status.IN_PROGRESS
    assert '<b class="score">2 / 5</b> 不满意' in html
    assert find_form(html, page + "/actions/rate") is None
    reopened = await events_of(container, case_id, "reopen")
    assert reopened and reopened[-1].actor_type == "system"
    # closed again after a new answer: already rated, so no second rating
    await container.cases.resolve(case_id, await _triage_actor(container, triage), "not_filed", "复核后维持原结论。")
    await container.cases.close(case_id, await _triage_actor(container, triage))
    status, html = await triage.get(page)
    assert find_form(html, page + "/actions/rate") is None


async def _triage_actor(container, person):
    from intake.cases import Actor

    return Actor("staff", person.id)


# -- untrusted text ---------------------------------------------------------------------------------------


async def test_new_texts_are_escaped(console):
    container = console.container
    triage = await console.person("triage", "xiaobao", "triage")
    evil = f"{SCRIPT}{IMG}"
    _, original = await case_at(container, Status.RECEIVED)
    view = await container.cases.create(complaint(
        live_room=evil, complainant=ComplainantInfo(channel_user_id="9", name="王五", phone="13700000000")))
    page, act = f"/cases/{view.number}", f"/cases/{view.number}/actions/"
    await triage.submit(page, act + "message", {"body": f"消息 {evil}"})
    await triage.submit(page, act + "request_info", {"question": f"问题 {evil}"})
    await triage.submit(page, act + "reassign", {"lead": "suo_yongzhong", "co_units": ["wangjian"], "note": evil})
    await triage.submit(page, act + "duplicate", {"original": original, "reply": f"并案 {evil}"})
    _, closed = await case_at(container, Status.CLOSED)  # a duplicate has no rating: another case is rated
    await triage.submit(f"/cases/{closed}", f"/cases/{closed}/actions/rate", {"score": "3", "comment": f"意见 {evil}"})
    html_search = (await triage.get(page.replace(view.number, original) + f"?subject_q={IMG}"))[1]
    rated_html = (await triage.get(f"/cases/{closed}"))[1]
    for html in ((await triage.get(page))[1], html_search, rated_html):
        assert SCRIPT not in html and IMG not in html and "<img src=x" not in html
    status, html = await triage.get(page)
    for text in ("消息 ", "问题 ", "并案 "):
        assert text + SCRIPT_ESCAPED + IMG_ESCAPED in html, text
    assert "意见 " + SCRIPT_ESCAPED + IMG_ESCAPED in rated_html
    assert html.count(SCRIPT_ESCAPED) >= 5  # three texts, the live room subject, the reassign note
    assert '<b class="score">3 / 5</b>' in rated_html
    assert IMG_ESCAPED in html_search
