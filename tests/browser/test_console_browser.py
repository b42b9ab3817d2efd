"""The staff console in a real browser: a triage officer logs in, opens the queue, opens a case, accepts
it, replies to the complainant, records the outcome and closes it, through the pages' own forms (with
their CSRF tokens, console.js and its confirmation dialog). After each step: what the page shows, and
what the database holds.

Screenshots: test-output/screenshots/console-queue.png, console-case.png (just opened) and
console-case-closed.png.
"""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from db.models import Case, CaseEvent, CaseMessage
from intake.cases import ComplainantInfo, EvidenceItem, NewCase
from nlu.taxonomy import Kind
from routing.rules import MerchantLocation

from tests.fakes.images import png

from .conftest import expect, serve

DESCRIPTION = "直播间买的羽绒服七天无理由退货，商家一直不给退款，客服也不回复"
REPLY = "您好，我们已联系商家，商家同意在三个工作日内退款，请留意。"
RESOLUTION = "经调解，商家已同意全额退款399元。"


async def db_case(container, number: str) -> Case:
    async with container.uow() as uow:
        return await uow.session.scalar(select(Case).where(Case.number == number))


async def db_messages(container, case_id: int) -> list[CaseMessage]:
    async with container.uow() as uow:
        return list(await uow.session.scalars(
            select(CaseMessage).where(CaseMessage.case_id == case_id).order_by(CaseMessage.id)))


async def db_actions(container, case_id: int) -> list[str]:
    async with container.uow() as uow:
        return list(await uow.session.scalars(
            select(CaseEvent.action).where(CaseEvent.case_id == case_id).order_by(CaseEvent.id)))


@pytest.fixture
def quiet_nlu(container, monkeypatch):
    # the console never classifies text: training the classifier at start-up would only cost time
    monkeypatch.setattr(container.nlu, "warm_up", lambda: None)


async def test_triage_accepts_replies_and_closes_a_case(container, quiet_nlu, page, screenshots):
    officer = await container.accounts.create_user("wang.triage", "xiaobao", "triage", display_name="王分流")
    photo = await container.evidence.put(png(seed=7, width=48, height=32), original_name="upload.bin")
    created = await container.cases.create(NewCase(
        kind=Kind.COMPLAINT, category="consumer_rights", channel="web", description=DESCRIPTION,
        complainant=ComplainantInfo(name="张三", phone="13800138000"),
        merchant=MerchantLocation(in_district=True, street="永中街道", province="浙江省"),
        platform="快手", live_room="好物直播间", product="羽绒服", amount_fen=39_900,
        evidence=(EvidenceItem(photo.sha256, photo.size, photo.mime, "订单截图.png", "upload"),),
    ))
    other = await container.cases.create(NewCase(
        kind=Kind.TIPOFF, category="price", channel="telegram", anonymous=True,
        description="主播说原价999现在99，其实平时一直卖99，虚假折扣",
        merchant=MerchantLocation(in_district=True, street="永中街道", province="浙江省"), platform="抖音",
    ))
    number = created.number

    async with serve(container) as site:
        # -- log in: the queue asks for it first
        await page.goto(site.url("/"))
        await expect(page).to_have_url(re.compile(r"/login\?next=(/|%2F)$"))
        await expect(page.locator("h1")).to_have_text("工作人员登录")
        await page.get_by_label("用户名").fill("wang.triage")
        await page.get_by_label("密码").fill(officer.password)
        await page.get_by_role("button", name="登录").click()

        # -- the queue: both cases, with their status
        await expect(page).to_have_url(site.url("/"))
        await expect(page.locator("header.top .who")).to_contain_text("王分流")
        rows = page.locator("table.queue tbody tr")
        await expect(rows).to_have_count(2)
        row = rows.filter(has=page.get_by_role("link", name=number, exact=True))
        await expect(row.locator(".status")).to_have_text("已接收")
        await expect(page.locator("table.queue")).to_contain_text(other.number)
        await page.screenshot(path=screenshots / "console-queue.png", full_page=True)

        # -- the case page
        await row.get_by_role("link", name=number, exact=True).click()
        await expect(page).to_have_url(site.url(f"/cases/{number}"))
        await expect(page.locator("h1 .status")).to_have_text("已接收")
        await expect(page.locator(".description")).to_have_text(DESCRIPTION)
        await expect(page.locator(".gallery figcaption")).to_contain_text("订单截图.png")
        image = page.locator(".gallery img")
        await expect(image).to_have_count(1)
        await image.scroll_into_view_if_needed()
        width = await image.evaluate("""img => img.complete ? img.naturalWidth : new Promise(done => {
            img.addEventListener("load", () => done(img.naturalWidth));
            img.addEventListener("error", () => done(0));
        })""")
        assert width == 48  # the evidence file was served to the browser and decoded as the PNG
        await expect(page.get_by_text("13800138000")).to_be_visible()  # triage sees the identity (audited)
        await page.evaluate("window.scrollTo(0, 0)")
        await page.screenshot(path=screenshots / "console-case.png", full_page=True)
        assert "view_personal_data" in await db_actions(container, created.id)

        # -- accept
        await page.locator("section.action-accept").get_by_label("说明（可选）").fill("属本所管辖，予以受理")
        await page.locator("section.action-accept").get_by_role("button", name="受理").click()
        await expect(page.locator(".flash")).to_have_text("已受理。")
        await expect(page.locator("h1 .status")).to_have_text("已受理")
        assert (await db_case(container, number)).status == "accepted"

        # -- reply to the complainant
        reply = page.locator("section.action-reply")
        await reply.get_by_label("消息内容").fill(REPLY)
        await reply.get_by_role("button", name="答复投诉人").click()
        await expect(page.locator(".flash")).to_have_text("答复已记录。")
        await expect(page.locator("ol.thread .msg-out .body")).to_have_text([REPLY])
        (message,) = await db_messages(container, created.id)
        assert (message.direction, message.body, message.staff_user_id) == ("out", REPLY, officer.id)

        # -- record the outcome (an accepted case is closed once it is resolved)
        resolve = page.locator("section.action-resolve")
        await resolve.get_by_label("办理结果").select_option("mediated")
        await resolve.get_by_label("给投诉举报人的答复").fill(RESOLUTION)
        await resolve.get_by_role("button", name="办结").click()
        await expect(page.locator(".flash")).to_have_text("已办结，答复已记录。")
        await expect(page.locator("h1 .status")).to_have_text("已办结")
        assert (await db_case(container, number)).status == "resolved"

        # -- close: console.js asks once more; the officer confirms
        questions: list[str] = []

        async def confirm(dialog) -> None:
            questions.append(dialog.message)
            await dialog.accept()
        page.on("dialog", confirm)
        await page.locator("section.action-close").get_by_role("button", name="关闭").click()
        await expect(page.locator(".flash")).to_have_text("案件已关闭。")
        await expect(page.locator("h1 .status")).to_have_text("已关闭")
        assert questions == ["确定执行此操作吗？"]
        await expect(page.locator("section.action-reopen")).to_be_visible()
        await expect(page.locator("section.action-close")).to_have_count(0)
        await expect(page.locator("table.timeline")).to_contain_text("已办结 → 已关闭")
        await page.screenshot(path=screenshots / "console-case-closed.png", full_page=True)

        # back in the queue it is no longer open; the tab of closed cases lists it
        await page.locator("p.crumbs").get_by_role("link", name="待办队列").click()
        await expect(page).to_have_url(site.url("/"))
        await expect(page.locator("table.queue tbody tr")).to_have_count(1)
        await expect(page.locator("table.queue")).not_to_contain_text(number)
        await page.locator("nav.tabs").get_by_role("link", name="已关闭").click()
        row = page.locator("table.queue tbody tr").filter(has=page.get_by_role("link", name=number, exact=True))
        await expect(row.locator(".status")).to_have_text("已关闭")

    case = await db_case(container, number)
    assert (case.status, case.outcome) == ("closed", "mediated") and case.closed_at is not None
    messages = await db_messages(container, created.id)
    assert [(m.direction, m.body, m.is_reply, m.staff_user_id) for m in messages] == [
        ("out", REPLY, True, officer.id), ("out", RESOLUTION, True, officer.id)]
    actions = await db_actions(container, created.id)
    assert [a for a in actions if a in ("create", "accept", "reply", "resolve", "close")] == [
        "create", "accept", "reply", "resolve", "close"]
