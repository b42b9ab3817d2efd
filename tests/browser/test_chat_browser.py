"""The web chat in a real browser: a citizen files a complaint at /chat, typing and pressing the offered
buttons, uploads a photo of the order with the file picker, consents and submits; the page shows the
case number and the access code, and the status page finds the case with them. chat.js is on, so every
form goes by fetch and the conversation is swapped in place, as it does for a real visitor.

After each step: what the page shows; at the end, what the database holds (the case, the complainant,
the evidence row with the PNG's sha256, the file in the evidence store).

Screenshots: test-output/screenshots/chat-evidence.png (after the upload), chat-receipt.png (the case
number and access code) and chat-status.png (the status page).

The clock is fixed at Monday 2026-11-16 10:00 Shanghai (tests/conftest.py), so "昨天" is 2026-11-15 and
the acceptance decision is due seven working days later, on 2026-11-25.
"""

from __future__ import annotations

import hashlib
import re

from sqlalchemy import select

from db.models import Case, Complainant, Evidence

from tests.fakes.images import png

from .conftest import Page, expect, serve

CASHMERE = "我昨天在抖音「好物严选」直播间花了399元买了一件羊绒衫，收到后送检根本不含羊绒，以假充真，我要投诉退款"
NUMBER = "LW-2026-000001"
CODE = re.compile(r"^[A-HJKMNP-Z2-9]{5}-[A-HJKMNP-Z2-9]{5}$")


class Citizen:
    """One person at the chat page, doing what a person does: type, press, pick a file."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.bot = page.locator("#chat li.msg.bot p.text")
        self.mine = page.locator("#chat li.msg.me p.text")

    async def hears(self, text: str, *, exact: bool = True) -> None:
        """The bot's latest line (waits for chat.js to swap in the answer)."""
        if exact:
            await expect(self.bot.last).to_have_text(text)
        else:
            await expect(self.bot.last).to_contain_text(text)

    async def _sends(self, act) -> None:
        """Do `act` and wait until chat.js has swapped in the server's answer (a fresh #chat)."""
        await self.page.locator("#chat").evaluate("chat => chat.setAttribute('data-stale', '')")
        await act()
        await expect(self.page.locator("#chat:not([data-stale])")).to_have_count(1)

    async def types(self, text: str) -> None:
        await self.page.get_by_label("输入消息").fill(text)
        await self._sends(self.page.locator("form.compose").get_by_role("button", name="发送").click)
        await expect(self.mine.last).to_have_text(text)

    async def presses(self, label: str) -> None:
        await self._sends(self.page.locator("form.choices").get_by_role("button", name=label, exact=True).click)
        await expect(self.mine.last).to_have_text(label)

    async def uploads(self, content: bytes, name: str, mime: str, caption: str) -> None:
        form = self.page.locator("form.upload")
        await form.get_by_placeholder("说明（可不填）").fill(caption)
        picker = self.page.locator("#chat-file")
        await picker.set_input_files(files=[{"name": name, "mimeType": mime, "buffer": content}])
        await self._sends(form.get_by_role("button", name="上传").click)
        await expect(self.mine.last).to_contain_text(f"📎 {name}")


async def test_citizen_files_a_complaint_with_a_photo(container, page, screenshots):
    photo = png(seed=42, width=240, height=160)
    digest = hashlib.sha256(photo).hexdigest()

    async with serve(container) as site:  # its start-up trains the real classifier (about 2 s)
        await page.goto(site.url("/chat"))
        await expect(page).to_have_title(re.compile("网络直播消费投诉举报"))
        await expect(page.locator("#chat li.welcome")).to_contain_text("您好！这里是龙湾区市场监督管理局")
        citizen = Citizen(page)

        # -- the story, understood by the classifier; then the questions the case still needs
        await citizen.types(CASHMERE)
        await citizen.hears("我理解的情况是：", exact=False)
        for line in ("问题类别：产品质量违法", "平台：抖音", "直播间/主播：好物严选", "商品：羊绒衫", "金额：399 元",
                     "购买日期：2026年11月15日"):
            await expect(citizen.bot.last).to_contain_text(line)
        await citizen.presses("对，继续")
        await citizen.hears("订单号是多少？（在订单详情页可以复制）")
        await citizen.types("DY2026111500123")
        await citizen.hears("商家（发货或经营地）在龙湾区吗？这决定由哪个部门处理。")
        await citizen.presses("在龙湾区")
        await citizen.hears("商家在龙湾区哪个街道？")
        await citizen.presses("永中街道")
        await citizen.hears("请发送相关证据", exact=False)

        # -- the photo, through the file picker
        await citizen.uploads(photo, "订单截图.png", "image/png", "商品页")
        await expect(citizen.mine.last).to_contain_text("商品页")
        await citizen.hears("已收到 1 个文件", exact=False)
        await page.screenshot(path=screenshots / "chat-evidence.png", full_page=True)
        await citizen.presses("发送完毕")

        # -- who is complaining, consent, the summary, submit
        await citizen.hears("请输入您的姓名：", exact=False)
        await citizen.types("张三")
        await citizen.hears("请输入您的手机号：")
        await citizen.types("13812345678")
        await citizen.hears("隐私说明：", exact=False)
        await citizen.presses("同意")
        await citizen.hears("请核对登记内容：", exact=False)
        await citizen.presses("✅ 提交")

        # -- the receipt: the case number, the unit and an access code shown this once
        await citizen.hears(f"✅ 已登记，编号 {NUMBER}。", exact=False)
        receipt = page.locator("section.receipt")
        await expect(receipt.locator("h2")).to_have_text("登记成功")
        await expect(receipt.locator(".number")).to_have_text(NUMBER)
        await expect(receipt.locator(".unit")).to_have_text("永中市场监督管理所")
        await expect(receipt).to_contain_text("2026年11月25日 前告知您是否受理")
        await expect(receipt.locator(".code")).to_have_text(CODE)
        code = (await receipt.locator(".code").inner_text()).strip()
        await receipt.scroll_into_view_if_needed()
        await page.screenshot(path=screenshots / "chat-receipt.png", full_page=True)

        # -- the status page finds it with the number and the code
        await receipt.get_by_role("link", name="进度查询").click()
        await expect(page).to_have_url(site.url("/chat/status"))
        await page.get_by_label("编号").fill(NUMBER)
        await page.get_by_label("查询码").fill(code)
        await page.get_by_role("button", name="查询").click()
        await expect(page.locator("section.case h2")).to_have_text(NUMBER)
        await expect(page.locator("section.case .state")).to_have_text("已接收")
        await expect(page.locator("section.case .category")).to_have_text("产品质量违法")
        await page.screenshot(path=screenshots / "chat-status.png", full_page=True)

    async with container.uow() as uow:
        case = await uow.session.scalar(select(Case).where(Case.number == NUMBER))
        assert case is not None, "the case the page showed is not in the database"
        person = await uow.session.get(Complainant, case.complainant_id)
        evidence = list(await uow.session.scalars(select(Evidence).where(Evidence.case_id == case.id)))
    assert (case.channel, case.kind, case.category, case.status) == ("web", "complaint", "product_quality", "received")
    assert (case.platform, case.product, case.amount_fen) == ("抖音", "羊绒衫", 39_900)
    assert (case.order_number, case.merchant_street) == ("DY2026111500123", "永中街道")
    assert (person.name, person.phone) == ("张三", "13812345678")
    assert [(e.sha256, e.size, e.mime, e.original_name, e.source) for e in evidence] == [
        (digest, len(photo), "image/png", "订单截图.png", "web")]
    assert container.evidence.exists(digest)
    assert container.evidence.path_for(digest).read_bytes() == photo
    assert case.access_code_hash and code.replace("-", "") not in case.access_code_hash
