"""Complete conversations through the fake Telegram Bot API over real HTTP, with long polling.

Every test drives the real aiogram dispatcher (`TelegramChannel`) against `tests.fakes.telegram`, and
checks what the person saw (the exact messages) and what was stored (case, evidence, deadlines).

The clock is fixed at Monday 2026-11-16 10:00 Shanghai (tests/conftest.py). Due dates below are
counted by hand in the 2026 official calendar: November and December 2026 have no public holiday and no
make-up working day (National Day ended on 10-07; New Year's Day is 2027-01-01), so the working days
after Mon 11-16 are Tue 11-17 ... Fri 11-20, Mon 11-23 ... Fri 11-27, Mon 11-30 ... Fri 12-04, Mon 12-07:
  7 working days  (complaint_acceptance, transfer) -> Wed 2026-11-25
  15 working days (tipoff_check)                   -> Mon 2026-12-07

Per-user throttling allows 20 updates in 10 s, so each person sends fewer than 20 updates per test.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import io
import shutil
import zipfile
from collections.abc import AsyncIterator
from datetime import date

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from bot.polling import Poller
from bot.runner import TelegramChannel
from db.models import Case, Complainant, Evidence
from intake.cases import Actor, CaseView, ComplainantInfo, NewCase
from nlu.taxonomy import Kind
from qinglang.errors import ConfigError
from qinglang.settings import load_settings
from routing.rules import MerchantLocation
from tests.fakes.images import png
from tests.fakes.telegram import FakeTelegram, FakeUser
from tests.integration.bot_driver import Person, inbox_row, inbox_rows

# -- what the person reads (intake/conversation.py, bot/handlers/*.py, bot/middlewares.py) ---------

WELCOME = ("您好！这里是龙湾区市场监督管理局网络直播消费投诉举报平台。\n"
           "请用几句话告诉我：在哪个直播间、买了什么、遇到了什么问题。")
LIVE_ROOM_Q = "直播间或主播叫什么名字？（可以复制直播间名称或主播昵称）"
PRODUCT_Q = "买的是什么商品？"
ORDER_Q = "订单号是多少？（在订单详情页可以复制）"
DATE_Q = "是哪天买的？例如 11月3日、昨天。"
AMOUNT_Q = "实际付了多少钱？"
PLATFORM_Q = "是在哪个平台的直播间？"
MERCHANT_Q = "商家（发货或经营地）在龙湾区吗？这决定由哪个部门处理。"
STREET_Q = "商家在龙湾区哪个街道？"
PROVINCE_Q = "商家在哪个省、市？例如：广东省广州市。"
EVIDENCE_Q = "请发送相关证据：商品或订单截图、聊天记录、直播录屏、照片，或直播间/商品链接。全部发完请点“发送完毕”。"
IDENTITY_Q = ("您希望实名举报还是匿名举报？\n实名举报：我们会在作出是否立案的决定后告知您结果。\n"
              "匿名举报：不需要留下姓名和电话，但我们无法告知您核查结果。举报人身份在任何情况下都依法保密。")
NAME_Q = "请输入您的姓名："
COMPLAINT_NAME_Q = "投诉需要您的真实姓名和联系电话，以便调解和告知结果。\n" + NAME_Q
PHONE_Q = "请输入您的手机号："
PRIVACY = ("隐私说明：您提供的信息只用于处理本次投诉举报，仅承办人员可以查看；举报人身份依法保密，不会告知被举报方。"
           "手机号等个人信息只向承办人员显示，每一次查看都有记录。")
CONSENT_Q = PRIVACY + "\n同意后我们会把您的信息用于处理本次投诉举报。"
CANCEL_Q = "确定要取消本次登记吗？已填写的内容将被删除。"
CANCELLED = "已取消，本次填写的内容已删除。需要时随时发消息给我。"
NO_CASES = "您还没有登记过投诉举报。直接描述遇到的问题即可开始。"
RECEIPT_END = "处理进展会在这里通知您。查询进度请发送 /status。"
NO_WORDS = "我没看到文字内容。请用文字描述您遇到的问题，例如：在哪个直播间买了什么，出了什么问题。"
TOO_LONG = "消息太长，我保存了前 4096 个字。更多内容可以分几条发送，或以文件形式发送。"
UNKNOWN_COMMAND = "没有这个命令。可用命令：/new 新登记，/status 查询进度，/help 帮助。"
STICKER = "收到表情了 🙂 请用文字描述您遇到的问题，或发送截图、视频作为证据。"
VOICE = "暂时不能识别语音。请用文字描述；如果这段录音是证据，请以文件形式发送。"
LOCATION = "收到位置。请用文字告诉我商家所在的区县和街道，例如：龙湾区永中街道。"
CONTACT = "为保护个人信息，请不要发送联系人名片。需要联系电话时我会单独询问。"
POLL = "这里不能使用投票。请直接描述您遇到的问题。"
EDITED = "您修改了之前的消息，修改不会自动生效。如需更正，请在核对登记内容时点击对应的“改”按钮，或直接发送更正后的内容。"
FORWARDED = "（这是一条转发的消息，我把它当作您提供的说明。）"
TOO_BIG = "这个文件超过了 20 MB，无法通过 Telegram 接收。请压缩或截取关键部分后再发送，或者在网页版登记时上传。"
ACCEPTED_TYPES = "JPEG、PNG、GIF、WebP、HEIC、MP4、MOV、MP3、OGG、M4A、PDF、TXT、Word (DOCX)、Excel (XLSX)"
APOLOGY = "抱歉，系统暂时出了点问题。您发送的内容已经保存，我们会尽快处理，不需要重新发送。"
BUTTON_BROKEN = "这个按钮已经失效了。"
BUTTON_NOT_YOURS = "这不是您的登记，无法操作。"
BUTTON_STALE = "这个按钮已经过期了，请按最新的提示操作。"
STORE_DOWN = "文件暂时无法保存，请稍后再试。您的对话和已填写的内容都还在。"

ACCEPTANCE_DUE = date(2026, 11, 25)  # 7 working days after Mon 2026-11-16
TIPOFF_CHECK_DUE = date(2026, 12, 7)  # 15 working days after Mon 2026-11-16

# A complaint that names platform, live room, product, amount and date (yesterday, 2026-11-15).
CASHMERE = "我昨天在抖音「好物严选」直播间花了399元买了一件羊绒衫，收到后送检根本不含羊绒，以假充真，我要投诉退款"
CASHMERE_CONFIRM = ("我理解的情况是：\n问题类别：产品质量违法\n平台：抖音\n直播间/主播：好物严选\n商品：羊绒衫\n金额：399 元\n"
                    "购买日期：2026年11月15日\n诉求：投诉（要求退款、赔偿等）\n对吗？")
ELECTRIC_BLANKET = "我要举报快手「阿强百货」直播间卖的电热毯没有3C认证，质量不合格，存在安全隐患"
PRICE_TIPOFF = "我要举报抖音「百货优选」直播间虚构原价，标原价999元实际一直卖199元，价格欺诈"




def sha(content: bytes | str) -> str:
    return hashlib.sha256(content.encode() if isinstance(content, str) else content).hexdigest()


def receipt(number: str, *lines: str) -> str:
    return "\n".join([f"✅ 已登记，编号 {number}。", *lines, RECEIPT_END])


# -- running the bot ---------------------------------------------------------------------------------

@contextlib.asynccontextmanager
async def polling(container, fake: FakeTelegram) -> AsyncIterator[TelegramChannel]:
    """A TelegramChannel (its own Bot and Dispatcher) long-polling the fake with the product's Poller (store
    each update, then move the offset) until the block ends."""
    await asyncio.to_thread(container.nlu.warm_up)  # as `serve` does before the first update
    bot = fake.make_bot()
    channel = TelegramChannel(container, bot=bot)
    stop = asyncio.Event()
    task = asyncio.create_task(Poller(channel.flow, timeout=1).run(stop))
    try:
        yield channel
    finally:
        stop.set()
        async with asyncio.timeout(10):
            await task
        await bot.session.close()
        await channel.storage.close()


@pytest.fixture
async def fake():
    async with FakeTelegram() as server:
        yield server


@pytest.fixture
async def channel(container, fake):
    async with polling(container, fake) as running:
        yield running


def person(fake, channel, container, user_id: int, name: str, language_code: str = "zh-hans") -> Person:
    async def deliver(update):
        fake.push(update)
    return Person(fake, FakeUser(user_id, name, language_code=language_code), deliver,
                  storage=channel.storage, uow=container.uow)


@pytest.fixture
def alice(fake, channel, container):
    return person(fake, channel, container, 1001, "Alice")


@pytest.fixture
def bob(fake, channel, container):
    return person(fake, channel, container, 1002, "Bob")


# -- reading what was stored ------------------------------------------------------------------------

@dataclasses.dataclass
class Stored:
    row: Case
    complainant: Complainant | None
    evidence: list[Evidence]
    view: CaseView  # lead unit, co-units, deadlines

    @property
    def deadlines(self) -> dict[str, date]:
        return {d.clock: d.due_on for d in self.view.deadlines}

    @property
    def file_hashes(self) -> set[str]:
        return {e.sha256 for e in self.evidence if e.source != "link"}

    @property
    def link_hashes(self) -> set[str]:
        return {e.sha256 for e in self.evidence if e.source == "link"}


async def stored_cases(container) -> list[Stored]:
    async with container.uow() as uow:
        rows = list(await uow.session.scalars(select(Case).order_by(Case.number)))
        result = []
        for row in rows:
            complainant = await uow.session.get(Complainant, row.complainant_id) if row.complainant_id else None
            evidence = list(await uow.session.scalars(select(Evidence).where(Evidence.case_id == row.id)))
            result.append((row, complainant, evidence))
    return [Stored(row, who, evidence, await container.cases.get(row.id)) for row, who, evidence in result]


def stored_files(container) -> list[str]:
    """Every file in the evidence store (the store's scratch directory excluded)."""
    root = container.evidence.root
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and ".incoming" not in p.parts)


def without_rev(draft: dict | None) -> dict | None:
    return None if draft is None else {k: v for k, v in draft.items() if k != "rev"}


async def reach_merchant_step(someone: Person) -> None:
    """The cashmere complaint up to 'is the merchant in Longwan?' (3 updates)."""
    assert await someone.send(CASHMERE) == [CASHMERE_CONFIRM]
    assert await someone.press("对，继续") == [ORDER_Q]
    assert await someone.send("DY2026111500123") == [MERCHANT_Q]


async def reach_complaint_summary(someone: Person) -> str:
    """The cashmere complaint, merchant on 永中街道, no evidence, up to the summary (9 updates)."""
    await reach_merchant_step(someone)
    assert await someone.press("在龙湾区") == [STREET_Q]
    assert await someone.press("永中街道") == [EVIDENCE_Q]
    assert await someone.press("没有证据") == [COMPLAINT_NAME_Q]
    assert await someone.send("张三") == [PHONE_Q]
    assert await someone.send("13812345678") == [CONSENT_Q]
    (summary,) = await someone.press("同意")
    return summary


CASHMERE_SUMMARY = ("请核对登记内容：\n问题类别：产品质量违法\n诉求：投诉（要求退款、赔偿等）\n平台：抖音\n直播间/主播：好物严选\n"
                    "商品：羊绒衫\n金额：399 元\n订单号：DY2026111500123\n购买日期：2026年11月15日\n商家所在地：龙湾区永中街道\n"
                    "证据：0 个文件\n联系方式：张三 138****5678\n情况描述：" + CASHMERE)


# -- complete conversations ---------------------------------------------------------------------------

async def test_complaint_with_photos_and_album(fake, channel, alice, container):
    replies = await alice.send(CASHMERE)
    assert replies == [CASHMERE_CONFIRM]
    assert (await alice.press("对，继续")) == [ORDER_Q]
    assert (await alice.send("DY2026111500123")) == [MERCHANT_Q]
    assert (await alice.press("在龙湾区")) == [STREET_Q]
    assert (await alice.press("永中街道")) == [EVIDENCE_Q]
    photo_1, photo_2, photo_3 = png(1), png(2), png(3)
    assert (await alice.send(photo=photo_1))[0].startswith("已收到 1 个文件")
    await alice.send(photo=photo_2, media_group_id="album-1")
    assert (await alice.send(photo=photo_3, media_group_id="album-1", caption="三张都是商品页"))[0].startswith("已收到 3 个文件")
    assert (await alice.press("发送完毕")) == [COMPLAINT_NAME_Q]
    assert await alice.send("张三") == [PHONE_Q]
    assert (await alice.send("13812345678")) == [CONSENT_Q]
    summary = (await alice.press("同意"))[0]
    assert "订单号：DY2026111500123" in summary and "证据：3 个文件" in summary
    assert await alice.press("✅ 提交") == [receipt("LW-2026-000001", "承办单位：永中市场监督管理所。",
                                                  "· 2026年11月25日 前告知您是否受理")]
    (case,) = await stored_cases(container)
    assert (case.row.kind, case.row.category, case.row.order_number) == ("complaint", "product_quality", "DY2026111500123")
    assert case.view.lead_unit == "suo_yongzhong"
    assert case.deadlines == {"complaint_acceptance": ACCEPTANCE_DUE}
    assert case.file_hashes == {sha(p) for p in (photo_1, photo_2, photo_3)}
    for digest in case.file_hashes:
        assert container.evidence.exists(digest)


async def test_anonymous_tipoff_starting_with_a_photo(fake, channel, alice, container):
    photo = png(7)
    # a photo without a caption at the first step: kept as evidence, and the person is asked for words
    assert await alice.send(photo=photo) == [
        "已收到 1 个文件，共 1 KB。\n请再用文字简单描述一下遇到的问题：在哪个直播间、买了什么、出了什么问题。"]
    draft = await alice.draft()
    assert (draft["step"], draft["description"]) == ("describe", "")
    assert [e["sha256"] for e in draft["evidence"]] == [sha(photo)]

    assert await alice.send(ELECTRIC_BLANKET) == [
        "我理解的情况是：\n问题类别：产品质量违法\n平台：快手\n直播间/主播：阿强百货\n诉求：举报（请求查处违法行为）\n对吗？"]
    assert await alice.press("对，继续") == [PRODUCT_Q]
    assert await alice.send("电热毯") == [DATE_Q]
    assert await alice.send("11月10日") == [MERCHANT_Q]
    assert await alice.press("在龙湾区") == [STREET_Q]
    assert await alice.press("永中街道") == [EVIDENCE_Q]
    link = "https://v.kuaishou.com/abc123"
    assert await alice.send(link) == ["已记录 1 个链接。还有其他证据可以继续发送，全部发完请点“发送完毕”。"]
    assert await alice.press("发送完毕") == [IDENTITY_Q]
    assert await alice.press("匿名举报") == [CONSENT_Q]
    assert await alice.press("同意") == [
        "请核对登记内容：\n问题类别：产品质量违法\n诉求：举报（请求查处违法行为）\n平台：快手\n直播间/主播：阿强百货\n"
        "商品：电热毯\n购买日期：2026年11月10日\n商家所在地：龙湾区永中街道\n证据：1 个文件，1 个链接\n联系方式：匿名\n"
        "情况描述：" + ELECTRIC_BLANKET]
    assert await alice.press("✅ 提交") == [
        "✅ 已登记，编号 LW-2026-000001。\n承办单位：质量监管科。\n· 2026年12月7日 前完成核查并决定是否立案\n"
        "匿名举报不告知核查结果；处理状态可以随时发送 /status 查询。"]
    assert await alice.draft() is None

    (case,) = await stored_cases(container)
    assert (case.row.kind, case.row.category, case.row.anonymous) == ("tipoff", "product_quality", True)
    assert (case.row.platform, case.row.live_room, case.row.product) == ("快手", "阿强百货", "电热毯")
    assert case.row.purchase_date == date(2026, 11, 10)
    assert (case.row.merchant_in_district, case.row.merchant_street) == (True, "永中街道")
    assert case.view.lead_unit == "zhiliang"
    assert case.view.co_units == ("jiajing", "wangjian", "zongzhi")
    # anonymous: only the check clock; no informant notice is owed to an anonymous informant
    assert case.deadlines == {"tipoff_check": TIPOFF_CHECK_DUE}
    assert case.row.next_due_on == TIPOFF_CHECK_DUE
    assert case.file_hashes == {sha(photo)} and case.link_hashes == {sha(link)}
    assert container.evidence.exists(sha(photo))
    assert (case.complainant.name, case.complainant.phone) == (None, None)


async def test_consultation(fake, channel, alice, container):
    text = "想咨询一下，直播间买的衣服，七天无理由退货是怎么规定的"
    assert await alice.send(text) == [
        "我理解的情况是：\n问题类别：侵犯消费者权益\n商品：衣服\n诉求：咨询（了解政策或维权方法）\n对吗？"]
    assert await alice.press("对，继续") == [PLATFORM_Q]
    assert await alice.press("抖音") == [CONSENT_Q]  # a consultation asks for no evidence and no identity
    assert await alice.press("同意") == [
        "请核对登记内容：\n问题类别：侵犯消费者权益\n诉求：咨询（了解政策或维权方法）\n平台：抖音\n商品：衣服\n"
        "情况描述：" + text]
    assert set(alice.last_buttons()) == {"改问题类别", "改诉求", "改平台", "改商品", "✅ 提交", "取消"}
    assert await alice.press("✅ 提交") == [receipt("LW-2026-000001", "承办单位：消保分局。")]
    (case,) = await stored_cases(container)
    assert (case.row.kind, case.row.category, case.row.platform, case.row.product) == (
        "consultation", "consumer_rights", "抖音", "衣服")
    assert case.view.lead_unit == "xiaobao" and case.row.routing_rule == "consultation"
    assert case.deadlines == {} and case.row.next_due_on is None  # no legal clock runs for a consultation
    assert case.evidence == []


async def test_editing_two_fields_from_the_summary(fake, channel, alice, container):
    assert await reach_complaint_summary(alice) == CASHMERE_SUMMARY
    assert await alice.press("改金额") == [AMOUNT_Q]
    after_amount = CASHMERE_SUMMARY.replace("金额：399 元", "金额：459 元")
    assert await alice.send("459元") == [after_amount]  # straight back to the summary
    assert await alice.press("改商家所在地") == [MERCHANT_Q]
    assert await alice.press("不在龙湾区") == [PROVINCE_Q]
    assert await alice.send("广东省广州市") == [after_amount.replace("商家所在地：龙湾区永中街道", "商家所在地：广东省广州市")]
    assert await alice.press("✅ 提交") == [receipt(
        "LW-2026-000001", "商家不在本局管辖范围内，我们将把您的材料移送至：商户所在地市场监督管理部门。",
        "· 2026年11月25日 前移送有管辖权的部门并告知您")]
    (case,) = await stored_cases(container)
    assert (case.row.kind, case.row.category, case.row.amount_fen) == ("complaint", "product_quality", 45900)
    assert (case.row.merchant_in_district, case.row.merchant_street, case.row.merchant_province) == (
        False, None, "广东省广州市")
    assert (case.row.routing_rule, case.view.lead_unit) == ("out_of_district", "xiaobao")
    assert case.deadlines == {"transfer": ACCEPTANCE_DUE}  # only the transfer clock: 7 working days
    assert (case.complainant.name, case.complainant.phone) == ("张三", "13812345678")
    assert case.evidence == []


async def test_cancel_midway(fake, channel, alice, container):
    assert await alice.send(CASHMERE) == [CASHMERE_CONFIRM]
    assert await alice.press("对，继续") == [ORDER_Q]
    assert await alice.send("/cancel") == [CANCEL_Q]
    assert set(alice.last_buttons()) == {"确定取消", "继续填写"}
    assert await alice.press("继续填写") == [ORDER_Q]  # back where the person was
    assert (await alice.draft())["step"] == "order_number"
    assert await alice.send("取消") == [CANCEL_Q]
    assert await alice.press("确定取消") == [CANCELLED]
    assert await alice.draft() is None
    assert await alice.send("/status") == [NO_CASES]
    assert await stored_cases(container) == []


async def test_two_users_interleaved(fake, channel, alice, bob, container):
    # both describe at the same moment
    await alice.deliver(fake.message(alice.user, CASHMERE), expect=0)
    await bob.deliver(fake.message(bob.user, PRICE_TIPOFF), expect=0)
    assert await alice.wait() == [CASHMERE_CONFIRM]
    assert await bob.wait() == [
        "我理解的情况是：\n问题类别：价格违法\n平台：抖音\n直播间/主播：百货优选\n金额：199 元\n诉求：举报（请求查处违法行为）\n对吗？"]
    assert await alice.press("对，继续") == [ORDER_Q]
    assert await bob.press("对，继续") == [PRODUCT_Q]
    assert await alice.send("DY2026111500123") == [MERCHANT_Q]
    assert await bob.send("空气炸锅") == [DATE_Q]
    assert await alice.press("在龙湾区") == [STREET_Q]
    assert await bob.send("11月12日") == [MERCHANT_Q]
    assert await alice.press("永中街道") == [EVIDENCE_Q]
    assert await bob.press("在龙湾区") == [STREET_Q]
    assert await alice.press("没有证据") == [COMPLAINT_NAME_Q]
    assert await bob.press("海滨街道") == [EVIDENCE_Q]
    assert await alice.send("张三") == [PHONE_Q]
    assert await bob.press("发送完毕") == [IDENTITY_Q]
    assert await alice.send("13812345678") == [CONSENT_Q]
    assert await bob.press("实名举报") == [NAME_Q]
    assert await alice.press("同意") == [CASHMERE_SUMMARY]
    assert await bob.send("李四") == [PHONE_Q]
    alice_draft, bob_draft = await alice.draft(), await bob.draft()
    assert (alice_draft["kind"], alice_draft["step"], alice_draft["name"]) == ("complaint", "summary", "张三")
    assert (bob_draft["kind"], bob_draft["step"], bob_draft["name"]) == ("tipoff", "phone", "李四")
    assert await bob.send("13912345678") == [CONSENT_Q]
    assert (await bob.press("同意"))[0].startswith("请核对登记内容：\n问题类别：价格违法\n诉求：举报（请求查处违法行为）")

    # both submit at the same moment
    await alice.deliver(fake.callback(alice.user, alice.last_buttons()["✅ 提交"]), expect=0)
    await bob.deliver(fake.callback(bob.user, bob.last_buttons()["✅ 提交"]), expect=0)
    (alice_receipt,), (bob_receipt,) = await alice.wait(), await bob.wait()
    cases = {c.complainant.name: c for c in await stored_cases(container)}
    assert set(cases) == {"张三", "李四"}
    alice_case, bob_case = cases["张三"], cases["李四"]
    assert {alice_case.row.number, bob_case.row.number} == {"LW-2026-000001", "LW-2026-000002"}
    assert alice_receipt == receipt(alice_case.row.number, "承办单位：永中市场监督管理所。", "· 2026年11月25日 前告知您是否受理")
    assert bob_receipt == receipt(bob_case.row.number, "承办单位：价竞分局。", "· 2026年12月7日 前完成核查并决定是否立案")
    assert (alice_case.row.kind, alice_case.row.category, alice_case.view.lead_unit) == (
        "complaint", "product_quality", "suo_yongzhong")
    assert (bob_case.row.kind, bob_case.row.category, bob_case.view.lead_unit) == ("tipoff", "price", "jiajing")
    assert (bob_case.row.anonymous, bob_case.complainant.phone) == (False, "13912345678")
    assert alice_case.deadlines == {"complaint_acceptance": ACCEPTANCE_DUE}
    # real-name informant: the informant-notice clock starts only when the case is decided
    assert bob_case.deadlines == {"tipoff_check": TIPOFF_CHECK_DUE}
    assert alice_case.complainant.channel_user_id == str(alice.user.id)
    assert bob_case.complainant.channel_user_id == str(bob.user.id)
    assert await alice.draft() is None and await bob.draft() is None


async def test_restart_in_the_middle_resumes_the_draft(fake, container):
    async with polling(container, fake) as first:
        alice = person(fake, first, container, 1001, "Alice")
        await reach_merchant_step(alice)
        before = await alice.draft()
        assert before["step"] == "merchant"
    # the process is gone; a new one starts on the same database
    async with polling(container, fake) as second:
        assert second.dispatcher is not first.dispatcher and second.storage is not first.storage
        alice.storage = second.storage
        assert await alice.draft() == before
        # the buttons sent before the restart still work: the draft (and its turn number) survived
        assert await alice.press("在龙湾区") == [STREET_Q]
        assert await alice.press("永中街道") == [EVIDENCE_Q]
        assert await alice.press("没有证据") == [COMPLAINT_NAME_Q]
        assert await alice.send("张三") == [PHONE_Q]
        assert await alice.send("13812345678") == [CONSENT_Q]
        assert await alice.press("同意") == [CASHMERE_SUMMARY]
        assert await alice.press("✅ 提交") == [receipt("LW-2026-000001", "承办单位：永中市场监督管理所。",
                                                      "· 2026年11月25日 前告知您是否受理")]
    (case,) = await stored_cases(container)
    assert (case.row.kind, case.row.order_number, case.view.lead_unit) == ("complaint", "DY2026111500123", "suo_yongzhong")
    assert case.deadlines == {"complaint_acceptance": ACCEPTANCE_DUE}
    # every update was handled exactly once, although the last one before the restart may have been redelivered
    rows = await inbox_rows(container.uow)
    assert len(rows) == 10 and all(r.processed_at is not None and r.error is None for r in rows)


async def test_same_update_twice_creates_one_case_message(fake, channel, alice, container):
    update = fake.message(alice.user, "/start")
    await alice.deliver(update)
    fake.push(update)  # Telegram delivers the same update again
    await asyncio.sleep(0.5)
    assert len(fake.messages_to(alice.chat_id)) == 1


async def test_submit_delivered_twice_creates_one_case(fake, channel, alice, container):
    assert await reach_complaint_summary(alice) == CASHMERE_SUMMARY
    submit = fake.callback(alice.user, alice.last_buttons()["✅ 提交"])
    sent_before = len(fake.sent)
    # Telegram delivers the final press twice at once (e.g. a retry while the first is still being handled)
    feed = channel.dispatcher.feed_raw_update
    await asyncio.gather(feed(channel.bot, submit), feed(channel.bot, submit))
    assert await alice.wait() == [receipt("LW-2026-000001", "承办单位：永中市场监督管理所。",
                                         "· 2026年11月25日 前告知您是否受理")]
    assert [c.method for c in fake.sent[sent_before:]] == ["answerCallbackQuery", "sendMessage"]
    await alice.handled(submit)
    # ... and once more later, after it was handled: nothing at all is sent
    sent_before = len(fake.sent)
    await feed(channel.bot, submit)
    assert fake.sent[sent_before:] == []
    assert len(await stored_cases(container)) == 1
    row = await inbox_row(container.uow, submit["update_id"])
    assert row.processed_at is not None and row.attempts == 0
    assert await alice.draft() is None


# -- what cannot be used --------------------------------------------------------------------------------

async def test_unusable_messages_get_a_friendly_reply_and_change_nothing(fake, channel, alice, bob, container):
    await reach_merchant_step(alice)
    before = await alice.draft()
    other = FakeUser(2002, "Carol")
    for kwargs, answer in [
        ({"sticker": "😂"}, STICKER),
        ({"voice": b"OggS fake voice"}, VOICE),
        ({"location": (27.98, 120.75)}, LOCATION),
        ({"contact": {"phone_number": "+8613700000000", "first_name": "Carol", "user_id": other.id}}, CONTACT),
        ({"poll": "买不买？"}, POLL),
    ]:
        assert await alice.send(**kwargs) == [answer], kwargs
        assert await alice.draft() == before, kwargs
    assert await alice.deliver(fake.edited_message(alice.user, "DY2026111500999")) == [EDITED]
    assert await alice.draft() == before
    assert stored_files(container) == []  # the voice message was not kept as evidence
    # the conversation goes on where it was
    assert await alice.press("在龙湾区") == [STREET_Q]


async def test_own_contact_answers_the_phone_step(fake, channel, alice, container):
    await reach_merchant_step(alice)
    assert await alice.press("在龙湾区") == [STREET_Q]
    assert await alice.press("永中街道") == [EVIDENCE_Q]
    assert await alice.press("没有证据") == [COMPLAINT_NAME_Q]
    assert await alice.send("张三") == [PHONE_Q]
    before = await alice.draft()
    # someone else's card at the phone step is still refused
    carol = {"phone_number": "+8613700000000", "first_name": "Carol", "user_id": 2002}
    assert await alice.send(contact=carol) == [CONTACT]
    assert await alice.draft() == before
    # the person's own card is the answer: +86 138 0013 8000
    assert await alice.send(contact="+8613800138000") == [CONSENT_Q]
    assert (await alice.draft())["phone"] == "13800138000"
    assert (await alice.press("同意"))[0] == CASHMERE_SUMMARY.replace("138****5678", "138****8000")
    await alice.press("✅ 提交")
    (case,) = await stored_cases(container)
    assert (case.complainant.name, case.complainant.phone) == ("张三", "13800138000")


async def test_forwarded_text_counts_as_the_persons_words(fake, channel, alice, container):
    forwarded = fake.message(alice.user, CASHMERE, forward_from=FakeUser(3003, "Dora"))
    assert await alice.deliver(forwarded, expect=2) == [FORWARDED, CASHMERE_CONFIRM]
    draft = await alice.draft()
    assert (draft["step"], draft["description"]) == ("confirm_category", CASHMERE)


async def test_wall_of_text_is_truncated_with_a_notice(fake, channel, alice, container):
    wall = CASHMERE + "。" + "直播间里主播一直说是百分百羊绒，" * 300
    assert len(wall) > 4096
    replies = await alice.send(wall, expect=2)
    assert replies[0] == TOO_LONG
    assert replies[1].startswith("我理解的情况是：\n问题类别：产品质量违法\n")
    draft = await alice.draft()
    assert draft["description"] == wall[:4096]
    # nothing the bot sends may exceed Telegram's limit
    assert all(c.ok for c in fake.calls("sendMessage"))


async def test_emoji_only_at_the_first_step(fake, channel, alice, container):
    assert await alice.send("😀😀😀") == [NO_WORDS]
    assert await alice.draft() is None
    assert await alice.send(CASHMERE) == [CASHMERE_CONFIRM]


async def test_emoji_only_in_the_middle_changes_nothing(fake, channel, alice, container):
    await alice.send(ELECTRIC_BLANKET)
    assert await alice.press("对，继续") == [PRODUCT_Q]
    before = await alice.draft()
    answer, question = await alice.send("🙏", expect=2)
    draft = await alice.draft()
    assert (draft["step"], "product" in draft["slots"]) == ("product", False), answer
    assert without_rev(draft) == without_rev(before)
    assert answer == "我没看到文字内容。请用文字回答，或点击下面的按钮。"
    assert question == PRODUCT_Q  # the same question again, its buttons still valid


async def test_buttons_that_cannot_be_used(fake, channel, alice, bob, container):
    assert await alice.send(CASHMERE) == [CASHMERE_CONFIRM]
    confirm_message = alice.last_message_with_buttons()
    ok_data = alice.last_buttons()["对，继续"]
    assert await alice.press("对，继续") == [ORDER_Q]
    alice_before = await alice.draft()
    sent_before = len(fake.sent)

    # a stale button of an older message (its turn number is old): a short notice, nothing else
    stale, _ = await alice.press_data(ok_data, message_id=confirm_message, expect=0)
    await alice.handled(stale)
    assert alice.answer_to(stale).params.get("text") == BUTTON_STALE
    assert not alice.answer_to(stale).params.get("show_alert")

    # callback data that does not parse
    for data in ("garbage", "q|not-a-number|1|ok", "q|1001"):
        broken, _ = await alice.press_data(data, expect=0)
        await alice.handled(broken)
        answer = alice.answer_to(broken).params
        assert (answer.get("text"), answer.get("show_alert")) == (BUTTON_BROKEN, True), data

    # Bob presses a button of Alice's draft
    foreign, _ = await bob.press_data(alice.last_buttons()["跳过/不清楚"], expect=0)
    await bob.handled(foreign)
    answer = bob.answer_to(foreign).params
    assert (answer.get("text"), answer.get("show_alert")) == (BUTTON_NOT_YOURS, True)

    # nobody got a message, and no draft changed
    assert [c.method for c in fake.sent[sent_before:]] == ["answerCallbackQuery"] * 5
    assert await alice.draft() == alice_before
    assert await bob.draft() is None
    assert await alice.send("DY2026111500123") == [MERCHANT_Q]


async def test_unknown_command_and_someone_elses_case(fake, channel, alice, bob, container):
    bobs = await container.cases.create(NewCase(
        kind=Kind.COMPLAINT, category="product_quality", description="鲍勃的投诉：买到假货", channel="telegram",
        complainant=ComplainantInfo(channel_user_id=str(bob.user.id), name="鲍勃", phone="13912345678"),
        merchant=MerchantLocation(True, "永中街道", None)), Actor("complainant"))
    await reach_merchant_step(alice)
    before = await alice.draft()
    assert await alice.send("/foo") == [UNKNOWN_COMMAND]
    assert without_rev(await alice.draft()) == without_rev(before)
    assert await alice.send(f"/case {bobs.number}") == [
        f"没有找到您名下编号为 {bobs.number} 的登记。请检查编号，或发送 /status 查看您的全部登记。"]
    assert without_rev(await alice.draft()) == without_rev(before)
    # a number that does not exist reads the same: no way to probe for other people's cases
    assert await alice.send("/case LW-2026-999999") == [
        "没有找到您名下编号为 LW-2026-999999 的登记。请检查编号，或发送 /status 查看您的全部登记。"]
    assert without_rev(await alice.draft()) == without_rev(before)
    # Bob can see it
    (shown,) = await bob.send(f"/case {bobs.number}")
    assert shown.startswith(f"{bobs.number}\n问题类别：产品质量违法\n状态：已接收")


async def test_unknown_command_leaves_the_current_buttons_working(fake, channel, alice, container):
    await reach_merchant_step(alice)
    assert await alice.send("/foo") == [UNKNOWN_COMMAND]
    # the merchant question is still the latest prompt; its buttons must still work
    press, _ = await alice.press_data(alice.last_buttons()["在龙湾区"], expect=0)
    await alice.handled(press)
    assert alice.answer_to(press).params.get("text") is None  # actual: BUTTON_STALE
    assert alice.unseen() == [STREET_Q]


# -- files that cannot be kept ------------------------------------------------------------------------

async def test_document_over_telegrams_20_mb_limit(fake, channel, alice, container):
    await reach_merchant_step(alice)
    assert await alice.press("在龙湾区") == [STREET_Q]
    assert await alice.press("永中街道") == [EVIDENCE_Q]
    before = await alice.draft()
    pdf = b"%PDF-1.4\n" + b"0" * 1000 + b"\n%%EOF\n"
    # the size Telegram announces is over the limit: refused without downloading
    assert await alice.send(document=pdf, size=21 * 1024 * 1024, file_name="录屏.pdf") == [TOO_BIG]
    # no size announced: getFile says "file is too big"
    update = fake.message(alice.user, document=pdf, size=25 * 1024 * 1024, file_name="录屏2.pdf")
    del update["message"]["document"]["file_size"]
    assert await alice.deliver(update) == [TOO_BIG]
    assert [c.ok for c in fake.calls("getFile")] == [False]
    assert await alice.draft() == before
    assert stored_files(container) == []


async def test_unsupported_file_type_is_refused(fake, channel, alice, container):
    await reach_merchant_step(alice)
    assert await alice.press("在龙湾区") == [STREET_Q]
    assert await alice.press("永中街道") == [EVIDENCE_Q]
    before = await alice.draft()
    elf = b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 8 + b"\x02\x00\x3e\x00" + b"\x00" * 200
    assert await alice.send(document=elf, file_name="证据.pdf", mime_type="application/pdf") == [
        f"不支持的文件类型：检测到 可执行程序（application/x-executable）；可接受的类型：{ACCEPTED_TYPES} (file type not accepted)"]
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("截图.txt", "很多截图")
    assert await alice.send(document=archive.getvalue(), file_name="截图.zip", mime_type="application/zip") == [
        f"不支持的文件类型：检测到 ZIP 压缩包（application/zip）；可接受的类型：{ACCEPTED_TYPES} (file type not accepted)"]
    assert await alice.draft() == before
    assert stored_files(container) == []
    # a proper file still goes in
    assert (await alice.send(photo=png(3)))[0].startswith("已收到 1 个文件")
    assert stored_files(container) != []



async def test_a_file_the_store_cannot_take_now_gets_a_friendly_reply_and_is_not_replayed(fake, channel, alice,
                                                                                           container):
    await reach_merchant_step(alice)
    assert await alice.press("在龙湾区") == [STREET_Q]
    assert await alice.press("永中街道") == [EVIDENCE_Q]
    before = await alice.draft()
    incoming = container.evidence.root / ".incoming"  # where every upload is written first
    shutil.rmtree(incoming)
    incoming.write_bytes(b"not a directory")  # writes fail there, as on a disk gone full or read-only
    update = fake.message(alice.user, photo=png(5), caption="直播间截图")
    assert await alice.deliver(update) == [STORE_DOWN]
    row = await alice.handled(update)
    assert (row.processed_at is not None, row.error, row.payload) == (True, None, None)  # handled, not kept
    assert await channel.replay() == 0  # so no second answer later
    assert await alice.draft() == before and stored_files(container) == []
    assert alice.unseen() == []

    incoming.unlink()
    incoming.mkdir()
    assert (await alice.send(photo=png(5)))[0].startswith("已收到 1 个文件")  # sent again, it goes in
    assert [e["sha256"] for e in (await alice.draft())["evidence"]] == [sha(png(5))]

# -- the inbox ------------------------------------------------------------------------------------------

async def test_handler_failure_is_kept_and_replayed_once(fake, channel, alice, container, monkeypatch):
    assert await alice.send(CASHMERE) == [CASHMERE_CONFIRM]
    assert await alice.press("对，继续") == [ORDER_Q]
    before = await alice.draft()
    engine = container.conversation
    real_handle = engine.handle
    failures = []

    async def handle_failing_once(event, draft, who):
        if not failures:
            failures.append(event)
            raise RuntimeError("database went away")
        return await real_handle(event, draft, who)

    monkeypatch.setattr(engine, "handle", handle_failing_once)
    update = fake.message(alice.user, "DY2026111500123")
    assert await alice.deliver(update) == [APOLOGY]
    row = await alice.handled(update)
    assert (row.processed_at, row.attempts, row.error) == (None, 1, "RuntimeError: database went away")
    assert await alice.draft() == before

    assert await channel.replay() == 1
    assert alice.unseen() == [MERCHANT_Q]
    await alice.wait()
    draft = await alice.draft()
    assert (draft["step"], draft["slots"]["order_number"], draft["rev"]) == (
        "merchant", "DY2026111500123", before["rev"] + 1)  # advanced exactly once
    row = await inbox_row(container.uow, update["update_id"])
    assert row.processed_at is not None and row.error is None
    assert await channel.replay() == 0  # nothing left
    assert alice.unseen() == []


async def test_failed_reply_is_replayed_without_applying_the_answer_twice(fake, channel, alice, container):
    assert await alice.send(CASHMERE) == [CASHMERE_CONFIRM]
    assert await alice.press("对，继续") == [ORDER_Q]
    fake.fail_next("sendMessage", 500)
    update = fake.message(alice.user, "DY2026111500123")
    assert await alice.deliver(update) == [APOLOGY]
    row = await alice.handled(update)
    assert row.processed_at is None and row.error.startswith("TelegramServerError")

    assert await channel.replay() == 1
    assert alice.unseen() == [MERCHANT_Q]
    draft = await alice.draft()
    assert draft["step"] == "merchant" and "merchant" not in draft["slots"], draft


async def test_failed_receipt_is_delivered_on_replay(fake, channel, alice, container):
    assert await reach_complaint_summary(alice) == CASHMERE_SUMMARY
    fake.fail_next("sendMessage", 500)
    submit = fake.callback(alice.user, alice.last_buttons()["✅ 提交"])
    assert await alice.deliver(submit) == [APOLOGY]
    row = await alice.handled(submit)
    assert row.processed_at is None and row.error.startswith("TelegramServerError")

    assert await channel.replay() == 1
    assert len(await stored_cases(container)) == 1
    assert alice.unseen() == [receipt("LW-2026-000001", "承办单位：永中市场监督管理所。", "· 2026年11月25日 前告知您是否受理")]


# -- the webhook ----------------------------------------------------------------------------------------

WEBHOOK_SECRET = "s3cret-token-for-tests_0123456789"


async def test_webhook_checks_the_secret_token(fake, container):
    settings = load_settings(env_file=None, data_dir=container.settings.storage.data_dir,
                             database_url=container.settings.database_url,
                             bot_mode="webhook", webhook_secret=WEBHOOK_SECRET)
    webhook_container = dataclasses.replace(container, settings=settings)
    app = web.Application()
    TelegramChannel(webhook_container, bot=fake.make_bot()).attach(app)
    user = FakeUser(1001, "Alice")
    path = settings.bot.webhook_path
    async with TestClient(TestServer(app)) as client:
        assert fake.webhook is None and fake.commands  # started: commands registered, no getUpdates
        for headers in ({"X-Telegram-Bot-Api-Secret-Token": "wrong-" + WEBHOOK_SECRET}, {}):
            refused = fake.message(user, "/start")
            response = await client.post(path, json=refused, headers=headers)
            assert response.status == 401
            assert await inbox_row(container.uow, refused["update_id"]) is None
        assert fake.messages_to(user.id) == []

        update = fake.message(user, "/start")
        response = await client.post(path, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": WEBHOOK_SECRET})
        assert response.status == 200
        assert fake.messages_to(user.id) == [WELCOME]
        row = await inbox_row(container.uow, update["update_id"])
        assert row.processed_at is not None

        response = await client.post(path, json=fake.message(user, CASHMERE),
                                     headers={"X-Telegram-Bot-Api-Secret-Token": WEBHOOK_SECRET})
        assert response.status == 200
        assert fake.messages_to(user.id) == [WELCOME, CASHMERE_CONFIRM]
    assert fake.get_updates_calls == 0
    assert len(await inbox_rows(container.uow)) == 2


async def test_webhook_without_a_secret_is_not_open_to_anyone(fake, container):
    try:
        settings = load_settings(env_file=None, data_dir=container.settings.storage.data_dir,
                                 database_url=container.settings.database_url, bot_mode="webhook")
        app = web.Application()
        TelegramChannel(dataclasses.replace(container, settings=settings), bot=fake.make_bot()).attach(app)
    except ConfigError:
        return  # refusing to run an unauthenticated webhook is a right answer too
    user = FakeUser(1001, "Alice")
    async with TestClient(TestServer(app)) as client:
        forged = fake.message(user, "/status")
        response = await client.post(settings.bot.webhook_path, json=forged)  # no secret token at all
        assert (response.status, fake.messages_to(user.id)) == (401, [])
        assert await inbox_row(container.uow, forged["update_id"]) is None


# -- the person's cases ---------------------------------------------------------------------------------

async def test_status_case_and_withdraw(fake, channel, alice, container):
    assert await alice.send("/status") == [NO_CASES]
    await reach_complaint_summary(alice)
    await alice.press("✅ 提交")
    assert await alice.send("/status") == ["您的登记：\nLW-2026-000001 · 产品质量违法 · 已接收，下一期限 2026年11月25日"]
    assert list(alice.last_buttons()) == ["LW-2026-000001"]
    status_message, open_case = alice.last_message_with_buttons(), alice.last_buttons()["LW-2026-000001"]
    assert await alice.press("LW-2026-000001") == [
        "LW-2026-000001\n问题类别：产品质量违法\n状态：已接收\n承办单位：永中市场监督管理所\n下一期限：2026年11月25日"]
    assert list(alice.last_buttons()) == ["补充材料", "撤回"]
    assert await alice.send("/case LW-2026-000001") == [
        "LW-2026-000001\n问题类别：产品质量违法\n状态：已接收\n承办单位：永中市场监督管理所\n下一期限：2026年11月25日"]
    assert list(alice.last_buttons()) == ["补充材料", "撤回"]
    assert await alice.press("撤回") == ["确定撤回 LW-2026-000001 吗？撤回后本件将不再处理。"]
    assert list(alice.last_buttons()) == ["确定撤回", "不撤回"]
    assert await alice.press("确定撤回") == ["已撤回 LW-2026-000001。"]
    (case,) = await stored_cases(container)
    assert (case.row.status, case.row.outcome) == ("closed", "withdrawn")
    assert case.row.closed_at is not None and case.row.next_due_on is None
    assert all(d.met for d in case.view.deadlines)
    assert await alice.send("/status") == ["您的登记：\nLW-2026-000001 · 产品质量违法 · 已关闭"]
    # the case button of the older /status message still opens the case (case buttons do not expire);
    # a closed case offers neither "add" nor "withdraw"
    _, shown = await alice.press_data(open_case, message_id=status_message)
    assert shown == ["LW-2026-000001\n问题类别：产品质量违法\n状态：已关闭\n承办单位：永中市场监督管理所"]
    assert fake.calls("sendMessage")[-1].params.get("reply_markup") is None


# -- the satisfaction survey ------------------------------------------------------------------------------
# The notifier sends the survey with buttons whose callback data is Choice(uid=<the person>, rev=0,
# value="rate:<number>:<1-5>") (bot/keyboards.py); a press goes through the same handler as any button.

def survey_button(user_id: int, value: str) -> str:
    from bot.callbacks import Choice

    return Choice(uid=user_id, rev=0, value=value).pack()


async def closed_case_of(container, someone: Person) -> CaseView:
    view = await container.cases.create(NewCase(
        kind=Kind.COMPLAINT, category="product_quality", description="直播间买的羊绒衫是假货，要求退款", channel="telegram",
        complainant=ComplainantInfo(channel_user_id=str(someone.user.id), name="张三", phone="13812345678"),
        merchant=MerchantLocation(True, "永中街道", None)), Actor("complainant"))
    staff = Actor.system()
    await container.cases.accept(view.id, staff)
    await container.cases.resolve(view.id, staff, "mediated", "经调解，商家同意退款。")
    await container.cases.close(view.id, staff)
    return view


async def test_rating_from_the_survey_buttons(fake, channel, alice, bob, container):
    view = await closed_case_of(container, alice)
    number = view.number
    await reach_merchant_step(alice)  # an unfinished report: its rev is past the notice's rev 0

    press, replies = await alice.press_data(survey_button(alice.user.id, f"rate:{number}:4"))
    assert replies == [f"感谢您的评价：4 分（满意）。\n"
                       "如果愿意，可以直接发送一段文字，写下您的意见或建议；不需要请点“不用了”。"]
    assert alice.answer_to(press).params.get("text") is None  # the spinner stops, no alert
    assert list(alice.last_buttons()) == ["不用了"]
    assert await alice.send("调解很及时，谢谢", expect=2) == ["已收到您的留言，谢谢！我们会认真对待您的意见。", MERCHANT_Q]
    (case,) = await stored_cases(container)
    assert (case.row.satisfaction, case.row.satisfaction_comment, case.row.status) == (4, "调解很及时，谢谢", "closed")
    assert await alice.press("在龙湾区") == [STREET_Q]  # the report goes on where it was

    # the same survey button again: refused, nothing changed
    _, again = await alice.press_data(survey_button(alice.user.id, f"rate:{number}:1"))
    assert again == [f"{number} 已经评价过了，每件登记只能评价一次。谢谢您！"]

    # Bob presses a button of Alice's survey: not his
    foreign, _ = await bob.press_data(survey_button(alice.user.id, f"rate:{number}:1"), expect=0)
    await bob.handled(foreign)
    answer = bob.answer_to(foreign).params
    assert (answer.get("text"), answer.get("show_alert")) == (BUTTON_NOT_YOURS, True)
    # a button made out for Bob about Alice's case, and forged values: refused politely
    _, replies = await bob.press_data(survey_button(bob.user.id, f"rate:{number}:1"))
    assert replies == [f"没有找到您名下编号为 {number} 的登记。请检查编号，或发送 /status 查看您的全部登记。"]
    for value in (f"rate:{number}:9", "rate:XYZ:9", f"rate:{number}:abc"):
        _, replies = await bob.press_data(survey_button(bob.user.id, value))
        assert replies == ["这个评价按钮无效。请点击通知里的评分按钮，或发送 /status 查看您的登记。"], value
    (case,) = await stored_cases(container)
    assert (case.row.satisfaction, case.row.status) == (4, "closed")
    assert await bob.draft() is None


async def test_low_rating_from_the_survey_reopens_and_the_comment_can_be_skipped(fake, channel, alice, container):
    view = await closed_case_of(container, alice)
    _, replies = await alice.press_data(survey_button(alice.user.id, f"rate:{view.number}:2"))
    assert replies == [f"感谢您的评价：2 分（不满意）。很抱歉没能让您满意，{view.number} 已重新打开，由消保分局复核。\n"
                       "可以直接发送一段文字，说说不满意的地方，复核时会参考；不需要请点“不用了”。"]
    assert await alice.press("不用了") == ["好的，谢谢您的评价！"]
    (case,) = await stored_cases(container)
    assert (case.row.satisfaction, case.row.satisfaction_comment, case.row.status) == (2, None, "in_progress")
    assert await alice.draft() is None


async def test_answering_an_information_request_from_its_notice(fake, channel, alice, container):
    view = await container.cases.create(NewCase(
        kind=Kind.COMPLAINT, category="product_quality", description="直播间买的羊绒衫是假货，要求退款", channel="telegram",
        complainant=ComplainantInfo(channel_user_id=str(alice.user.id), name="张三", phone="13812345678"),
        merchant=MerchantLocation(True, "永中街道", None)), Actor("complainant"))
    await container.cases.accept(view.id, Actor.system())
    await container.cases.request_information(view.id, Actor.system(), "请提供付款截图")
    await reach_merchant_step(alice)
    # the notice's "补充材料" button: Choice(uid, rev=0, "add:<number>")
    _, replies = await alice.press_data(survey_button(alice.user.id, f"add:{view.number}"))
    assert replies == [f"请发送要补充的文字、截图或视频，我会附到 {view.number} 中。"]
    assert await alice.send("付款截图稍后补上，订单号 DY2026111500123") == [
        f"已附到 {view.number}。还可以继续发送，完成后点“补充完毕”。"]
    assert await alice.send(photo=png(4), expect=1) == [f"已附到 {view.number}。还可以继续发送，完成后点“补充完毕”。"]
    assert await alice.press("补充完毕", expect=2) == ["好的。有新情况随时告诉我。", MERCHANT_Q]  # back to the report
    async with container.uow() as uow:
        messages = [(m.direction, m.body) for m in await uow.cases.messages(view.id)]
        evidence = [(e.sha256, e.source) for e in await uow.cases.evidence(view.id)]
    assert messages[-1] == ("in", "付款截图稍后补上，订单号 DY2026111500123")
    assert evidence == [(sha(png(4)), "telegram")]
