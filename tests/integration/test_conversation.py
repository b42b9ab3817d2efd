"""The complaint conversation end to end: the real embedded NLU, the real case service, a real database.

A `ChatDriver` plays the channel: it sends texts, presses buttons, runs commands and sends files, and
keeps the draft between events (as JSON, like the FSM storage). The texts asserted here are copied
from intake/conversation.py; the due dates are counted by hand on the 2026 calendar.

Receipt: Monday 2026-11-16 10:00 in Shanghai (the `clock` fixture). Working days after it:
11-17 Tue (1), 11-18 (2), 11-19 (3), 11-20 Fri (4), 11-23 Mon (5), 11-24 (6), 11-25 Wed (7), 11-26 (8),
11-27 (9), 11-30 (10), 12-01 (11), 12-02 (12), 12-03 (13), 12-04 (14), 12-07 Mon (15). No holidays fall
in between, so 7 working days end on 2026-11-25 and 15 on 2026-12-07.
"""

from __future__ import annotations

import copy
import hashlib
from datetime import UTC, date, datetime
from types import SimpleNamespace

import pytest
from sqlalchemy import inspect, select

from db.models import Case, CaseMessage, Complainant, Evidence
from intake.cases import Actor
from intake.conversation import MAX_TEXT, Attachment, ConversationEngine, Person
from intake.draft import Step
from intake.status import Status
from nlu.classifier import EmbeddedBackend
from nlu.taxonomy import CATEGORIES
from tests.integration.chat_driver import ChatDriver

NOW = datetime(2026, 11, 16, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai, a Monday: the `clock` fixture's time
ACCEPTANCE_DUE = date(2026, 11, 25)  # 7 working days after Mon 11-16
TRANSFER_DUE = date(2026, 11, 25)  # 7 working days after Mon 11-16
TIPOFF_CHECK_DUE = date(2026, 12, 7)  # 15 working days after Mon 11-16

# -- what the person sees (copied from intake/conversation.py) ------------------------------------

WELCOME = "您好！这里是龙湾区市场监督管理局网络直播消费投诉举报平台。\n请用几句话告诉我：在哪个直播间、买了什么、遇到了什么问题。"
RESUME = "您有一份尚未提交的登记，我们继续吧。输入 /new 可以重新开始。"
ASK_WANTS = "您希望我们做什么？"
ASK_PLATFORM = "是在哪个平台的直播间？"
ASK_LIVE_ROOM = "直播间或主播叫什么名字？（可以复制直播间名称或主播昵称）"
ASK_PRODUCT = "买的是什么商品？"
ASK_AMOUNT = "实际付了多少钱？"
ASK_ORDER = "订单号是多少？（在订单详情页可以复制）"
ASK_DATE = "是哪天买的？例如 11月3日、昨天。"
ASK_MERCHANT = "商家（发货或经营地）在龙湾区吗？这决定由哪个部门处理。"
ASK_STREET = "商家在龙湾区哪个街道？"
ASK_PROVINCE = "商家在哪个省、市？例如：广东省广州市。"
ASK_EVIDENCE = "请发送相关证据：商品或订单截图、聊天记录、直播录屏、照片，或直播间/商品链接。全部发完请点“发送完毕”。"
ASK_IDENTITY = (
    "您希望实名举报还是匿名举报？\n实名举报：我们会在作出是否立案的决定后告知您结果。\n"
    "匿名举报：不需要留下姓名和电话，但我们无法告知您核查结果。举报人身份在任何情况下都依法保密。"
)
ASK_NAME_COMPLAINT = "投诉需要您的真实姓名和联系电话，以便调解和告知结果。\n请输入您的姓名："
ASK_PHONE = "请输入您的手机号："
PRIVACY = (
    "隐私说明：您提供的信息只用于处理本次投诉举报，仅承办人员可以查看；举报人身份依法保密，不会告知被举报方。"
    "手机号等个人信息只向承办人员显示，每一次查看都有记录。"
)
ASK_CONSENT = PRIVACY + "\n同意后我们会把您的信息用于处理本次投诉举报。"
MORE_EVIDENCE = "\n还有其他证据可以继续发送，全部发完请点“发送完毕”。"
ONE_LINK = "已记录 1 个链接。还有其他证据可以继续发送，全部发完请点“发送完毕”。"
LOW_CONFIDENCE = "我还不能确定这属于哪一类问题，请选择最接近的一项："
ALL_CATEGORIES = "请选择问题类别："
REDESCRIBE = "好的，请重新描述您遇到的问题。"
CONFIRM_CANCEL = "确定要取消本次登记吗？已填写的内容将被删除。"
CANCELLED = "已取消，本次填写的内容已删除。需要时随时发消息给我。"
NOTHING_TO_CANCEL = "目前没有正在填写的登记。需要时随时发消息给我。"
FIRST_STEP = "已经是第一步了。"
NO_TEXT = "我没看到文字内容。请用文字描述您遇到的问题，例如：在哪个直播间买了什么，出了什么问题。"
ASK_WORDS = "\n请再用文字简单描述一下遇到的问题：在哪个直播间、买了什么、出了什么问题。"
TOO_LONG = "消息太长，我保存了前 4096 个字。更多内容可以分几条发送，或以文件形式发送。"
STALE_AT_START = "这个按钮已经过期了。请直接描述您遇到的问题。"
STALE = "这个按钮已经过期了，请按最新的提示操作。"
UNKNOWN_COMMAND = "没有这个命令。可用命令：/new 新登记，/status 查询进度，/help 帮助。"
BAD_AMOUNT = "没看懂金额，请输入数字，例如 399 或 三百九十九元。"
BAD_ORDER = "订单号一般是一串字母或数字，请复制订单详情页中的订单号发给我。"
BAD_DATE = "没看懂日期，请输入例如 11月3日、昨天 或 2026-11-03。"
BAD_NAME = "请输入您的真实姓名（2 到 30 个字）。"
BAD_PHONE = "手机号格式不对，请输入 11 位手机号，例如 13812345678。"
NO_CONSENT = "没有您的同意，我们无法登记本次投诉举报。您可以点击“同意”继续，或取消本次登记。"
CLICK_A_BUTTON = "请点击上面的按钮选择。"
NO_CASES = "您还没有登记过投诉举报。直接描述遇到的问题即可开始。"
CASE_NUMBER_NEEDED = "请在命令后写上编号，例如：/case LW-2026-000123"
ADD_DONE = "好的。有新情况随时告诉我。"
WITHDRAW_KEPT = "好的，没有撤回。"
AFTER_SUBMIT = "处理进展会在这里通知您。查询进度请发送 /status。"
AFTER_ANONYMOUS_SUBMIT = "匿名举报不告知核查结果；处理状态可以随时发送 /status 查询。"


def not_found(number: str) -> str:
    return f"没有找到您名下编号为 {number} 的登记。请检查编号，或发送 /status 查看您的全部登记。"


# -- buttons (values, row by row) -------------------------------------------------------------------

NAV = ["back", "cancel"]
NAV_SKIP = ["skip", "back", "cancel"]
PLATFORM_BUTTONS = [
    ["plat:抖音", "plat:快手", "plat:淘宝直播"],
    ["plat:视频号", "plat:小红书", "plat:京东"],
    ["plat:拼多多", "plat:哔哩哔哩", "plat:微博"],
    ["plat:other"],
    NAV_SKIP,
]
WANTS_BUTTONS = [["kind:complaint"], ["kind:tipoff"], ["kind:consultation"], NAV]
MERCHANT_BUTTONS = [["loc:in", "loc:out"], ["loc:unknown"], NAV]
STREET_BUTTONS = [
    ["street:永中街道", "street:永兴街道", "street:海滨街道"],
    ["street:瑶溪街道", "street:沙城街道", "street:天河街道"],
    ["street:星海街道", "street:状元街道", "street:蒲州街道"],
    ["street:海城街道"],
    ["street:"],
    NAV,
]
EVIDENCE_BUTTONS = [["evidence_done", "evidence_done"], NAV]
IDENTITY_BUTTONS = [["anon:no", "anon:yes"], NAV]
CONSENT_BUTTONS = [["consent:yes", "consent:no"]]
CANCEL_BUTTONS = [["cancel_yes", "cancel_no"]]
SUBMIT_ROW = ["submit", "cancel"]
COMPLAINT_EDITS = [
    ["edit:category", "edit:kind", "edit:platform"],
    ["edit:live_room", "edit:product", "edit:amount"],
    ["edit:order_number", "edit:purchase_date", "edit:merchant"],
    ["edit:evidence", "edit:contact"],
    SUBMIT_ROW,
]
TIPOFF_EDITS = [
    ["edit:category", "edit:kind", "edit:platform"],
    ["edit:live_room", "edit:product", "edit:purchase_date"],
    ["edit:merchant", "edit:evidence", "edit:contact"],
    SUBMIT_ROW,
]
CONSULTATION_EDITS = [["edit:category", "edit:kind", "edit:platform"], ["edit:product"], SUBMIT_ROW]

# -- the stories ------------------------------------------------------------------------------------

RICH = "昨天在抖音「小美好物」直播间花399元买了一件羽绒服，收到是假货，商家不给退款"
RICH_FACTS = (
    "平台：抖音\n直播间/主播：小美好物\n商品：羽绒服\n金额：399 元\n购买日期：2026年11月15日\n"
    "诉求：投诉（要求退款、赔偿等）"
)
RICH_SLOTS = {"platform": "抖音", "live_room": "小美好物", "product": "羽绒服", "amount": 39900, "purchase_date": "2026-11-15"}
# names the live room but not the amount, the order number or the date: those are asked
PLAIN = "在抖音「杯子小铺」直播间买的保温杯质量很差，想退款"
TIPOFF = "在快手「老王特卖」直播间看到主播卖三无保健品，说能治高血压，举报一下"
CONSULTATION = "想咨询一下，直播间买的东西用了过敏，七天无理由退货商家能拒绝吗"
VAGUE = "我要反映一个情况"
LINK = "https://v.douyin.com/abc123/"


def photo(n: int, size: int, mime: str = "image/jpeg") -> Attachment:
    return Attachment(hashlib.sha256(f"photo {n}".encode()).hexdigest(), size, mime, f"photo{n}.jpg")


# -- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nlu(tmp_path_factory) -> EmbeddedBackend:
    backend = EmbeddedBackend(cache_dir=tmp_path_factory.mktemp("nlu"), progress=False)
    backend.warm_up()  # trains once (about 2 s) for the whole module
    return backend


@pytest.fixture
def engine(container, nlu) -> ConversationEngine:
    return ConversationEngine(nlu, container.cases, container.directory, container.settings.tz)


@pytest.fixture
def chat(engine):
    def make(user_id: str = "42", channel: str = "telegram", language: str = "zh") -> ChatDriver:
        return ChatDriver(engine, Person(channel, user_id, language), NOW)

    return make


@pytest.fixture
async def staff(container) -> Actor:
    user = await container.accounts.create_user("triage1", "xiaobao", "triage")
    return Actor("staff", user.id)


async def stored(container, number: str) -> SimpleNamespace:
    """The case as the database has it, copied out of the session."""
    async with container.uow() as uow:
        found = await uow.cases.by_number(number)
        assert found is not None, f"no case {number} in the database"
        case = await uow.cases.get(found.id)
        values = {a.key: getattr(case, a.key) for a in inspect(Case).column_attrs}
        active = [a for a in case.assignments if a.active]
        values["lead"] = next((a.unit.code for a in active if a.role == "lead"), None)
        values["co_units"] = {a.unit.code for a in active if a.role == "co"}
        values["deadlines"] = {d.clock: d.due_on for d in case.deadlines}
        values["provisional"] = {d.clock: d.provisional for d in case.deadlines}
        person = await uow.session.get(Complainant, case.complainant_id) if case.complainant_id else None
        values["complainant"] = (
            SimpleNamespace(channel=person.channel, channel_user_id=person.channel_user_id, name=person.name,
                            phone=person.phone, language=person.language)
            if person else None
        )
        rows = (await uow.session.scalars(select(Evidence).where(Evidence.case_id == case.id).order_by(Evidence.id))).all()
        values["evidence"] = [(e.sha256, e.size, e.mime, e.original_name, e.source) for e in rows]
        messages = (await uow.session.scalars(
            select(CaseMessage).where(CaseMessage.case_id == case.id).order_by(CaseMessage.id))).all()
        values["messages"] = [(m.direction, m.body, m.is_reply) for m in messages]
    return SimpleNamespace(**values)


async def case_count(container) -> int:
    async with container.uow() as uow:
        return len((await uow.session.scalars(select(Case.id))).all())


async def reach_summary(c: ChatDriver, text: str = RICH, *, name: str = "张三", phone: str = "13812345678",
                        street: str = "永中街道") -> None:
    """The rich complaint, told quickly up to the summary (no evidence)."""
    await c.send(text)
    await c.press("ok")
    assert c.text == ASK_ORDER
    await c.send("DD2026111500123")
    await c.press("loc:in")
    await c.press(f"street:{street}")
    await c.press("evidence_done")
    await c.send(name)
    await c.send(phone)
    await c.press("consent:yes")
    assert c.step == Step.SUMMARY, c.texts


async def file_complaint(c: ChatDriver, **kwargs) -> str:
    await reach_summary(c, **kwargs)
    await c.press("submit")
    assert c.case is not None, c.texts
    return c.case.number


def summary_of_rich(*, amount: str = "399 元", merchant: str = "龙湾区永中街道", evidence: str = "0 个文件",
                    contact: str = "张三 138****5678") -> str:
    return (
        "请核对登记内容：\n问题类别：侵犯消费者权益\n诉求：投诉（要求退款、赔偿等）\n"
        f"平台：抖音\n直播间/主播：小美好物\n商品：羽绒服\n金额：{amount}\n订单号：DD2026111500123\n"
        f"购买日期：2026年11月15日\n商家所在地：{merchant}\n证据：{evidence}\n联系方式：{contact}\n"
        f"情况描述：{RICH}"
    )


def confirm_buttons(c: ChatDriver) -> list[list[str]]:
    """The buttons of the category question: the alternatives are the classifier's runners-up."""
    alternatives = [f"cat:{cat}" for cat, _conf in c.draft.ranking[1:3] if cat != c.draft.category]
    return [["ok"], alternatives, ["cats", "redescribe"]]


# == 1. a complaint told in one rich message ===========================================================


async def test_rich_complaint_is_asked_only_what_is_missing_and_stored(container, chat):
    c = chat()
    prompts = []

    await c.send(RICH)
    assert c.texts == [f"我理解的情况是：\n问题类别：侵犯消费者权益\n{RICH_FACTS}\n对吗？"]
    assert c.buttons == confirm_buttons(c)
    assert c.draft.slots == RICH_SLOTS
    assert c.draft.kind == "complaint" and c.draft.category == "consumer_rights"
    assert c.draft.nlu_confidence >= 0.45

    await c.press("ok")
    prompts.append(c.text)
    assert c.buttons == [NAV_SKIP]
    await c.send("DD2026111500123")
    prompts.append(c.text)
    assert c.buttons == MERCHANT_BUTTONS
    await c.press("loc:in")
    prompts.append(c.text)
    assert c.buttons == STREET_BUTTONS
    await c.press("street:永中街道")
    prompts.append(c.text)
    assert c.buttons == EVIDENCE_BUTTONS
    # platform, live room, product, amount and date came with the first message: none of them was asked
    assert prompts == [ASK_ORDER, ASK_MERCHANT, ASK_STREET, ASK_EVIDENCE]

    # evidence: two photos (200 KB, then 1 MB more: 1.2 MB in all) and a link
    first, second = photo(1, 200 * 1024), photo(2, 1024 * 1024, "image/png")
    await c.attach(first)
    assert c.texts == ["已收到 1 个文件，共 200 KB。" + MORE_EVIDENCE]
    assert c.buttons == [["evidence_done"]]
    await c.attach(second)
    assert c.texts == ["已收到 2 个文件，共 1.2 MB。" + MORE_EVIDENCE]
    await c.attach(second)  # the same file twice is kept once
    assert c.texts == ["已收到 2 个文件，共 1.2 MB。" + MORE_EVIDENCE]
    await c.send(LINK)
    assert c.texts == [ONE_LINK]
    assert c.buttons == [["evidence_done"]]
    assert c.draft.links == [LINK]

    await c.press("evidence_done")
    assert c.texts == [ASK_NAME_COMPLAINT]
    assert c.buttons == [NAV]
    await c.send("张三")
    assert c.texts == [ASK_PHONE]
    assert c.buttons == [NAV]
    await c.send("13812345678")
    assert c.texts == [ASK_CONSENT]
    assert c.buttons == CONSENT_BUTTONS
    await c.press("consent:yes")
    assert c.texts == [summary_of_rich(evidence="2 个文件，1 个链接")]
    assert c.buttons == COMPLAINT_EDITS

    await c.press("submit")
    assert c.texts == [
        "✅ 已登记，编号 LW-2026-000001。\n承办单位：永中市场监督管理所。\n"
        "· 2026年11月25日 前告知您是否受理\n" + AFTER_SUBMIT
    ]
    assert c.buttons == []
    assert c.draft is None  # nothing is kept after the submit
    assert c.case.number == "LW-2026-000001" and c.case.lead_unit == "suo_yongzhong"

    case = await stored(container, "LW-2026-000001")
    assert (case.kind, case.category, case.status) == ("complaint", "consumer_rights", "received")
    assert (case.channel, case.anonymous) == ("telegram", False)
    assert case.description == RICH
    assert (case.platform, case.live_room, case.product) == ("抖音", "小美好物", "羽绒服")
    assert (case.amount_fen, case.order_number, case.purchase_date) == (39900, "DD2026111500123", date(2026, 11, 15))
    assert (case.merchant_in_district, case.merchant_street, case.merchant_province) == (True, "永中街道", None)
    assert (case.lead, case.co_units) == ("suo_yongzhong", set())
    assert case.nlu_category == "consumer_rights"
    assert case.received_at == NOW
    assert case.evidence == [
        (first.sha256, 200 * 1024, "image/jpeg", "photo1.jpg", "telegram"),
        (second.sha256, 1024 * 1024, "image/png", "photo2.jpg", "telegram"),
        (hashlib.sha256(LINK.encode()).hexdigest(), len(LINK), "text/uri-list", LINK, "link"),
    ]
    assert case.deadlines == {"complaint_acceptance": ACCEPTANCE_DUE}
    assert case.provisional == {"complaint_acceptance": False}
    assert case.next_due_on == ACCEPTANCE_DUE
    p = case.complainant
    assert (p.channel, p.channel_user_id, p.name, p.phone, p.language) == ("telegram", "42", "张三", "13812345678", "zh")


async def test_answers_are_normalised_before_they_are_stored(container, chat):
    c = chat()
    await c.send(PLAIN)
    assert c.draft.slots == {"platform": "抖音", "live_room": "杯子小铺", "product": "保温杯"}
    await c.press("ok")
    assert c.texts == [ASK_AMOUNT] and c.buttons == [NAV_SKIP]
    await c.send("三百九十九元")
    assert c.texts == [ASK_ORDER]
    await c.send("DD 2026 1115 00123")
    assert c.texts == [ASK_DATE] and c.buttons == [NAV_SKIP]
    await c.send("11月3日")
    assert c.texts == [ASK_MERCHANT]
    await c.press("loc:in")
    await c.send("永中街道办")  # typed instead of pressed; the directory knows the street by this name
    assert c.texts == [ASK_EVIDENCE]
    await c.press("evidence_done")
    await c.send("  李四  ")
    await c.send("138-1234-5678")
    await c.press("consent:yes")
    await c.press("submit")
    case = await stored(container, c.case.number)
    assert (case.amount_fen, case.order_number, case.purchase_date) == (39900, "DD2026111500123", date(2026, 11, 3))
    assert (case.merchant_street, case.lead) == ("永中街道", "suo_yongzhong")
    assert (case.complainant.name, case.complainant.phone) == ("李四", "13812345678")
    assert case.evidence == []


# == 2. an anonymous tip-off ===========================================================================


async def test_anonymous_tipoff_stores_no_identity(container, chat):
    c = chat("77")
    await c.send(TIPOFF)
    assert c.draft.kind == "tipoff"
    assert c.draft.slots == {"platform": "快手", "live_room": "老王特卖"}
    assert c.buttons == confirm_buttons(c)
    category = c.draft.category
    await c.press("ok")
    assert c.texts == [ASK_PRODUCT]
    await c.send("保健品")
    assert c.texts == [ASK_DATE]
    await c.press("skip")
    assert c.texts == [ASK_MERCHANT]
    await c.send("龙湾区海滨街道")
    assert c.texts == [ASK_EVIDENCE]
    shot = photo(7, 3 * 1024 * 1024 // 2)  # 1.5 MB
    await c.attach(shot, "直播截图")
    assert c.texts == ["已收到 1 个文件，共 1.5 MB。" + MORE_EVIDENCE]
    await c.press("evidence_done")
    assert c.texts == [ASK_IDENTITY]
    assert c.buttons == IDENTITY_BUTTONS
    await c.press("anon:yes")
    assert c.texts == [ASK_CONSENT]  # no name or phone asked
    await c.press("consent:yes")
    name = next(x.zh for x in CATEGORIES if x.id == category)
    assert c.texts == [
        f"请核对登记内容：\n问题类别：{name}\n诉求：举报（请求查处违法行为）\n平台：快手\n直播间/主播：老王特卖\n"
        f"商品：保健品\n购买日期：（未提供）\n商家所在地：龙湾区海滨街道\n证据：1 个文件\n联系方式：匿名\n情况描述：{TIPOFF}"
    ]
    assert c.buttons == TIPOFF_EDITS
    await c.press("submit")
    lead = c.case.lead_unit
    unit = container.directory.unit(lead).name
    assert c.texts == [
        f"✅ 已登记，编号 LW-2026-000001。\n承办单位：{unit}。\n· 2026年12月7日 前完成核查并决定是否立案\n"
        + AFTER_ANONYMOUS_SUBMIT
    ]

    case = await stored(container, "LW-2026-000001")
    assert (case.kind, case.category, case.anonymous) == ("tipoff", category, True)
    assert (case.product, case.purchase_date, case.merchant_street) == ("保健品", None, "海滨街道")
    assert case.description == TIPOFF + "\n直播截图"  # the caption is kept with the description
    assert case.evidence == [(shot.sha256, shot.size, "image/jpeg", "photo7.jpg", "telegram")]
    # a tip-off is checked by the lead unit in 15 working days; nobody to notify of the filing decision
    assert case.deadlines == {"tipoff_check": TIPOFF_CHECK_DUE}
    # the person can still follow the case in the chat, but no name or phone is stored
    assert case.complainant.channel_user_id == "77"
    assert (case.complainant.name, case.complainant.phone) == (None, None)


async def test_named_tipoff_asks_for_name_and_phone_after_the_explanation(container, chat):
    c = chat()
    await c.send(TIPOFF)
    await c.press("ok")
    await c.send("保健品")
    await c.send("昨天")
    await c.press("loc:unknown")
    await c.press("evidence_done")
    await c.press("anon:no")
    assert c.texts == ["请输入您的姓名："]  # no "a complaint needs ..." reason for a tip-off
    await c.send("王五")
    assert c.texts == [ASK_PHONE]
    await c.send("0577-86661234")  # a landline is accepted as it is written
    await c.press("consent:yes")
    assert "联系方式：王五 057****1234" in c.text
    await c.press("submit")
    case = await stored(container, c.case.number)
    assert case.anonymous is False
    assert (case.complainant.name, case.complainant.phone) == ("王五", "0577-86661234")
    assert case.purchase_date == date(2026, 11, 15)
    assert case.merchant_in_district is None


# == 3. a consultation =================================================================================


async def test_consultation_asks_only_platform_and_product(container, chat):
    c = chat()
    await c.send(CONSULTATION)
    assert c.texts == ["我理解的情况是：\n问题类别：侵犯消费者权益\n诉求：咨询（了解政策或维权方法）\n对吗？"]
    assert c.draft.kind == "consultation" and c.draft.slots == {}
    await c.press("ok")
    assert c.texts == [ASK_PLATFORM]
    assert c.buttons == PLATFORM_BUTTONS
    await c.press("plat:小红书")
    assert c.texts == [ASK_PRODUCT]
    await c.send("面膜")
    # no order, merchant, evidence, identity: straight to the consent
    assert c.texts == [ASK_CONSENT]
    await c.press("consent:yes")
    assert c.texts == [
        "请核对登记内容：\n问题类别：侵犯消费者权益\n诉求：咨询（了解政策或维权方法）\n平台：小红书\n商品：面膜\n"
        f"情况描述：{CONSULTATION}"  # a consultation asks for no evidence, so the summary shows none
    ]
    assert c.buttons == CONSULTATION_EDITS
    await c.press("submit")
    assert c.texts == ["✅ 已登记，编号 LW-2026-000001。\n承办单位：消保分局。\n" + AFTER_SUBMIT]
    case = await stored(container, "LW-2026-000001")
    assert (case.kind, case.category, case.platform, case.product) == ("consultation", "consumer_rights", "小红书", "面膜")
    assert (case.amount_fen, case.order_number, case.merchant_in_district) == (None, None, None)
    assert case.lead == "xiaobao"
    assert case.deadlines == {}
    assert case.evidence == []
    assert (case.complainant.name, case.complainant.phone) == (None, None)


async def test_other_platform_is_typed_and_recognised(chat):
    c = chat()
    await c.send(CONSULTATION)
    await c.press("ok")
    await c.press("plat:other")
    assert c.texts == ["请直接输入平台名称。"]
    assert c.buttons == [NAV]
    await c.send("我是在快手上看的直播")
    assert c.draft.slots["platform"] == "快手"
    assert c.texts == [ASK_PRODUCT]


# == 4. editing from the summary ========================================================================


async def test_edits_from_the_summary_are_stored_and_out_of_district_is_transferred(container, chat):
    c = chat()
    await reach_summary(c)
    assert c.texts == [summary_of_rich()]

    await c.press("edit:amount")
    assert c.texts == [ASK_AMOUNT]
    assert c.buttons == [NAV_SKIP]
    assert "amount" not in c.draft.slots
    await c.send("三百五十九元")
    # nothing else is missing: straight back to the summary, with the new amount
    assert c.texts == [summary_of_rich(amount="359 元")]

    await c.press("edit:merchant")
    assert c.texts == [ASK_MERCHANT]
    assert c.buttons == MERCHANT_BUTTONS
    await c.press("loc:out")
    assert c.texts == [ASK_PROVINCE]
    assert c.buttons == [NAV]
    await c.send("广东省广州市")
    assert c.texts == [summary_of_rich(amount="359 元", merchant="广东省广州市")]

    await c.press("submit")
    assert c.texts == [
        "✅ 已登记，编号 LW-2026-000001。\n商家不在本局管辖范围内，我们将把您的材料移送至：商户所在地市场监督管理部门。\n"
        "· 2026年11月25日 前移送有管辖权的部门并告知您\n" + AFTER_SUBMIT
    ]
    case = await stored(container, "LW-2026-000001")
    assert case.amount_fen == 35900
    assert (case.merchant_in_district, case.merchant_street, case.merchant_province) == (False, None, "广东省广州市")
    assert case.deadlines == {"transfer": TRANSFER_DUE}  # only the transfer clock runs
    assert case.lead == "xiaobao"  # 消保分局 records the transfer
    # the rest is as first told
    assert (case.platform, case.live_room, case.product, case.order_number) == ("抖音", "小美好物", "羽绒服", "DD2026111500123")


async def test_editing_category_and_contact(container, chat):
    c = chat()
    await reach_summary(c)
    await c.press("edit:category")
    assert c.texts == [ALL_CATEGORIES]
    values = [v for v in c.button_values if v.startswith("cat:")]
    assert values == [f"cat:{x.id}" for x in CATEGORIES]
    assert c.buttons[-1] == ["redescribe", "cancel"]
    await c.press("cat:product_quality")
    assert c.step == Step.SUMMARY
    assert c.text.startswith("请核对登记内容：\n问题类别：产品质量违法\n")
    await c.press("edit:contact")
    assert c.texts == [ASK_NAME_COMPLAINT]
    await c.send("赵六")
    await c.send("13900001111")
    assert c.step == Step.SUMMARY
    assert "联系方式：赵六 139****1111" in c.text
    await c.press("submit")
    case = await stored(container, c.case.number)
    assert case.category == "product_quality"
    assert case.nlu_category == "consumer_rights"  # what the classifier proposed is kept beside it
    assert (case.complainant.name, case.complainant.phone) == ("赵六", "13900001111")


# == 5. cancel and back =================================================================================


async def test_cancel_confirmed_deletes_the_draft(container, chat):
    c = chat()
    await c.send(RICH)
    await c.press("ok")
    await c.press("cancel")
    assert c.texts == [CONFIRM_CANCEL]
    assert c.buttons == CANCEL_BUTTONS
    await c.press("cancel_yes")
    assert c.texts == [CANCELLED]
    assert c.draft is None
    await c.press("ok")  # a button of the deleted draft
    assert c.texts == [STALE_AT_START]
    assert await case_count(container) == 0


async def test_cancel_not_confirmed_resumes_where_it_was(chat):
    c = chat()
    await c.send(RICH)
    await c.press("ok")
    before = copy.deepcopy(c.draft.slots)
    await c.press("cancel")
    await c.press("cancel_no")
    assert c.texts == [ASK_ORDER]
    assert c.buttons == [NAV_SKIP]
    assert c.step == Step.ORDER_NUMBER and c.draft.slots == before
    await c.send("DD2026111500123")
    assert c.texts == [ASK_MERCHANT]


@pytest.mark.parametrize("typed", ["取消", "取消登记", "cancel"])
async def test_typed_cancel_asks_for_confirmation(chat, typed):
    c = chat()
    await c.send(RICH)
    await c.press("ok")
    await c.send(typed)
    assert c.texts == [CONFIRM_CANCEL]
    assert c.buttons == CANCEL_BUTTONS
    await c.send("随便说点什么")  # words are not an answer to the confirmation
    assert c.texts == [CLICK_A_BUTTON, CONFIRM_CANCEL]
    await c.command("cancel")  # asking again keeps the place to return to
    await c.press("cancel_no")
    assert c.texts == [ASK_ORDER]
    await c.command("cancel")
    await c.press("cancel_yes")
    assert c.texts == [CANCELLED] and c.draft is None


async def test_cancel_with_nothing_to_cancel(chat):
    c = chat()
    await c.send("取消")
    assert c.texts == [NOTHING_TO_CANCEL] and c.draft is None
    await c.command("cancel")
    assert c.texts == [NOTHING_TO_CANCEL] and c.draft is None


async def test_consent_declined_offers_consent_or_cancel(container, chat):
    c = chat()
    await c.send(RICH)
    await c.press("ok")
    await c.send("DD2026111500123")
    await c.press("loc:unknown")
    await c.press("evidence_done")
    await c.send("张三")
    await c.send("13812345678")
    assert c.texts == [ASK_CONSENT]
    await c.press("consent:no")
    assert c.texts == [NO_CONSENT]
    assert c.buttons == [["consent:yes", "cancel"]]
    assert c.step == Step.CONSENT and c.draft.consent is False
    await c.press("submit")  # not before the consent
    assert c.texts == [STALE, ASK_CONSENT]
    await c.press("cancel")
    assert c.texts == [CONFIRM_CANCEL]
    await c.press("cancel_yes")
    assert await case_count(container) == 0


async def test_back_steps_and_drops_the_old_answer(chat):
    c = chat()
    await c.send(RICH)
    await c.press("back")
    assert c.texts[0] == FIRST_STEP and c.step == Step.CONFIRM_CATEGORY
    await c.press("ok")
    await c.send("DD2026111500123")
    assert c.texts == [ASK_MERCHANT]
    await c.press("back")
    assert c.texts == [ASK_ORDER]
    assert "order_number" not in c.draft.slots  # asked again: the old answer is dropped
    await c.send("XY987654321")
    assert c.draft.slots["order_number"] == "XY987654321"
    assert c.texts == [ASK_MERCHANT]
    await c.send("返回")
    assert c.texts == [ASK_ORDER]
    await c.send("上一步")
    # back to the category question, which must be confirmed again
    assert c.step == Step.CONFIRM_CATEGORY and not c.draft.category_confirmed
    assert c.text.startswith("我理解的情况是：")
    assert c.draft.slots == RICH_SLOTS  # facts told in the first message are not dropped


async def test_back_from_the_street_question_returns_to_the_merchant_question(chat):
    c = chat()
    await c.send(RICH)
    await c.press("ok")
    await c.send("DD2026111500123")
    await c.press("loc:in")
    assert c.texts == [ASK_STREET]
    await c.press("back")
    assert c.texts == [ASK_MERCHANT]
    assert c.draft.slots.get("order_number") == "DD2026111500123"


async def test_start_and_new_commands(chat):
    c = chat()
    await c.command("start")
    assert c.texts == [WELCOME] and c.draft is None
    await c.send(RICH)
    await c.press("ok")
    await c.command("start")
    assert c.texts == [RESUME, ASK_ORDER]
    assert c.draft.slots == RICH_SLOTS
    await c.command("new")
    assert c.texts == [WELCOME] and c.draft is None


# == 6. low confidence ===================================================================================


async def test_vague_text_offers_the_top_choices(container, chat):
    c = chat()
    await c.send(VAGUE)
    assert c.draft.nlu_confidence < 0.45
    top = [cat for cat, _conf in c.draft.ranking[:3]]
    assert len(top) == 3
    assert c.texts == [LOW_CONFIDENCE]
    choices = [f"cat:{cat}" for cat in top]
    assert c.buttons == [choices[:2], choices[2:], ["cats"], ["redescribe", "cancel"]]
    names = {x.id: x.zh for x in CATEGORIES}
    assert c.labels[0] == [names[top[0]], names[top[1]]]
    assert "ok" not in c.button_values  # nothing to confirm yet

    await c.press("cats")
    assert c.texts == [ALL_CATEGORIES]
    assert [v for v in c.button_values if v.startswith("cat:")] == [f"cat:{x.id}" for x in CATEGORIES]
    await c.press("cat:consumer_rights")
    assert c.draft.category == "consumer_rights" and c.draft.category_confirmed
    assert c.step in (Step.WANTS, Step.PLATFORM)
    if c.step == Step.WANTS:
        assert c.texts == [ASK_WANTS] and c.buttons == WANTS_BUTTONS
        await c.press("kind:complaint")
    assert c.texts == [ASK_PLATFORM]
    assert c.buttons == PLATFORM_BUTTONS


async def test_redescribe_from_the_choice(chat):
    c = chat()
    await c.send(VAGUE)
    await c.press("redescribe")
    assert c.texts == [REDESCRIBE]
    assert c.draft is None  # nothing was told but the vague words, and they are gone
    await c.send(RICH)
    assert c.text.startswith("我理解的情况是：\n问题类别：侵犯消费者权益\n")


async def test_more_words_at_the_category_question_are_added_and_classified_again(chat):
    c = chat()
    await c.send(VAGUE)
    await c.send("在抖音直播间买的羽绒服七天无理由退货，商家一直不给退款")
    assert c.draft.description == VAGUE + "\n在抖音直播间买的羽绒服七天无理由退货，商家一直不给退款"
    assert c.draft.category == "consumer_rights"
    assert c.text.startswith("我理解的情况是：\n问题类别：侵犯消费者权益\n")


async def test_words_added_at_the_category_question_never_lose_the_description(chat):
    c = chat()
    await c.send(VAGUE)
    assert c.texts == [LOW_CONFIDENCE]
    await c.send("你好")  # a greeting: with the description it is still one story
    assert c.draft is not None
    assert c.draft.description.startswith(VAGUE)
    assert c.step == Step.CONFIRM_CATEGORY
    await c.press("cat:consumer_rights")
    assert c.draft is not None and c.draft.description.startswith(VAGUE)
    assert c.step not in (Step.DESCRIBE, Step.CONFIRM_CATEGORY)


# == 7. bad input ========================================================================================


@pytest.mark.parametrize("text", ["😀😀😀", "！！？？……", "   ", "🙏🏻👍"], ids=["emoji", "punctuation", "blank", "emoji2"])
async def test_no_words_at_the_first_step(chat, text):
    c = chat()
    await c.send(text)
    assert c.texts == [NO_TEXT]
    assert c.draft is None


async def test_too_short_and_small_talk_at_the_first_step(chat):
    c = chat()
    await c.send("你好")
    assert c.texts == ["您好！请告诉我您在直播购物中遇到的问题：在哪个直播间、买了什么、出了什么问题。"]
    assert c.draft is None
    await c.send("今天天气怎么样")
    assert c.texts == [
        "这个问题不在市场监管部门的职责范围内，我帮不上忙。其他政务问题可以拨打 12345 政务服务热线。\n"
        "如果您在直播购物中遇到了问题，请直接描述。"
    ]
    assert c.draft is None


async def test_photo_without_caption_at_the_first_step_is_kept_and_words_are_asked(container, chat):
    c = chat()
    shot = photo(3, 120_000, "image/png")
    await c.attach(shot)
    assert c.texts == ["已收到 1 个文件，共 117 KB。" + ASK_WORDS]
    assert c.step == Step.DESCRIBE
    assert c.draft.evidence == [{"sha256": shot.sha256, "size": 120_000, "mime": "image/png", "name": "photo3.jpg"}]
    await c.send(RICH)
    assert c.text.startswith("我理解的情况是：")
    await c.press("ok")
    await c.send("DD2026111500123")
    await c.press("loc:in")
    await c.press("street:永中街道")
    assert c.texts == [ASK_EVIDENCE]
    await c.send("商家客服一直不回复")  # words, not a file or a link, at the evidence step
    assert c.texts == ["已记录您的补充说明。如有截图、视频或链接请继续发送，全部发完请点“发送完毕”。"]
    assert c.buttons == [["evidence_done", "evidence_done"]]
    await c.press("evidence_done")
    await c.send("张三")
    await c.send("13812345678")
    await c.press("consent:yes")
    assert "证据：1 个文件\n" in c.text
    await c.press("submit")
    case = await stored(container, c.case.number)
    assert case.evidence == [(shot.sha256, 120_000, "image/png", "photo3.jpg", "telegram")]
    assert case.description == RICH + "\n商家客服一直不回复"


async def test_photo_with_caption_at_the_first_step_is_the_description(chat):
    c = chat()
    await c.attach(photo(4, 50 * 1024), RICH)
    assert c.texts[0] == "已收到 1 个文件，共 50 KB。"
    assert c.texts[1].startswith("我理解的情况是：\n问题类别：侵犯消费者权益\n")
    assert c.draft.description == RICH and len(c.draft.evidence) == 1


async def test_a_file_sent_at_another_step_is_kept_and_the_question_repeated(chat):
    c = chat()
    await c.send(RICH)
    await c.press("ok")
    await c.attach(photo(5, 2048))
    assert c.texts == ["已收到 1 个文件，共 2 KB。\n证据已保存。", ASK_ORDER]
    assert c.step == Step.ORDER_NUMBER and len(c.draft.evidence) == 1


async def test_very_long_text_is_cut_to_the_limit_with_a_notice(chat):
    c = chat()
    text = RICH + "。" + "详细情况如下，" * 800
    assert len(text) > 5000
    await c.send(text[:5000])
    assert c.texts[0] == TOO_LONG
    assert c.texts[1].startswith("我理解的情况是：")
    assert c.draft.description == text[:MAX_TEXT]
    assert len(c.draft.description) == 4096


async def test_stale_and_unknown_buttons_change_nothing(chat):
    c = chat()
    await c.press("plat:抖音")
    assert c.texts == [STALE_AT_START] and c.draft is None
    await c.press("no-such-button")
    assert c.texts == [STALE_AT_START] and c.draft is None

    await c.send(RICH)
    await c.press("ok")
    before = c.draft.to_dict()
    for value in ("plat:快手", "kind:tipoff", "submit", "cat:no_such_category", "edit:amount", "whatever:1", "ok"):
        await c.press(value)
        assert c.texts == [STALE, ASK_ORDER], value
        assert c.buttons == [NAV_SKIP]
        after = c.draft.to_dict()
        before["rev"] = after["rev"]
        assert after == before, value


async def test_unknown_command_and_help(chat):
    c = chat()
    await c.send(RICH)
    await c.command("frobnicate")
    assert c.texts == [UNKNOWN_COMMAND]
    assert c.step == Step.CONFIRM_CATEGORY and c.draft.slots == RICH_SLOTS
    await c.command("help")
    assert c.texts == [
        "我可以帮您投诉或举报网络直播购物中遇到的问题，例如假货、虚假宣传、价格欺诈、不给退款。\n"
        "直接描述情况即可，我会一步步询问还缺少的信息。\n"
        "/new 新登记  /status 查询进度  /case 编号 查看某件  /cancel 取消  /lang 切换语言  /privacy 隐私说明"
    ]
    await c.command("privacy")
    assert c.texts == [PRIVACY]
    assert c.step == Step.CONFIRM_CATEGORY


async def _at_step(c: ChatDriver, step: str) -> None:
    """The PLAIN complaint, answered up to `step`."""
    await c.send(PLAIN)
    await c.press("ok")
    answers = [
        (Step.AMOUNT, "128"),
        (Step.ORDER_NUMBER, "DD2026111500123"),
        (Step.PURCHASE_DATE, "11月3日"),
        (Step.MERCHANT, "龙湾区永中街道"),
        (Step.EVIDENCE, None),
        (Step.NAME, "张三"),
        (Step.PHONE, "13812345678"),
    ]
    for here, answer in answers:
        assert c.step == here
        if here == step:
            return
        if answer is None:
            await c.press("evidence_done")
        else:
            await c.send(answer)
    assert c.step == step


@pytest.mark.parametrize(
    ("step", "bad", "message", "buttons"),
    [
        (Step.AMOUNT, "很多钱", BAD_AMOUNT, [NAV_SKIP]),
        (Step.AMOUNT, "-5", BAD_AMOUNT, [NAV_SKIP]),
        (Step.AMOUNT, "零", BAD_AMOUNT, [NAV_SKIP]),
        (Step.AMOUNT, "「杯子小铺」", BAD_AMOUNT, [NAV_SKIP]),
        (Step.ORDER_NUMBER, "订单", BAD_ORDER, [NAV_SKIP]),
        (Step.ORDER_NUMBER, "12345", BAD_ORDER, [NAV_SKIP]),
        (Step.ORDER_NUMBER, "订单号我找不到了！", BAD_ORDER, [NAV_SKIP]),
        (Step.PURCHASE_DATE, "很久以前", BAD_DATE, [NAV_SKIP]),
        (Step.PURCHASE_DATE, "2026-13-01", BAD_DATE, [NAV_SKIP]),
        (Step.PURCHASE_DATE, "2026-11-20", BAD_DATE, [NAV_SKIP]),  # in the future
        (Step.NAME, "李", BAD_NAME, [NAV]),
        (Step.NAME, "张3", BAD_NAME, [NAV]),
        (Step.NAME, "张" * 31, BAD_NAME, [NAV]),
        (Step.PHONE, "12345", BAD_PHONE, [NAV]),
        (Step.PHONE, "1381234567", BAD_PHONE, [NAV]),
        (Step.PHONE, "23812345678", BAD_PHONE, [NAV]),
        (Step.PHONE, "电话不方便给", BAD_PHONE, [NAV]),
    ],
)
async def test_invalid_answer_is_asked_again_and_changes_nothing(chat, step, bad, message, buttons):
    c = chat()
    await _at_step(c, step)
    before = c.draft.to_dict()
    await c.send(bad)
    assert c.texts == [message]
    assert c.buttons == buttons
    after = c.draft.to_dict()
    before["rev"] = after["rev"]
    assert after == before


async def test_skip_leaves_a_fact_out(container, chat):
    c = chat()
    await _at_step(c, Step.AMOUNT)
    await c.press("skip")
    assert c.texts == [ASK_ORDER]
    await c.press("skip")
    assert c.texts == [ASK_DATE]
    await c.press("skip")
    await c.send("龙湾区永中街道")
    await c.press("evidence_done")
    await c.send("张三")
    await c.send("13812345678")
    await c.press("consent:yes")
    assert "金额：（未提供）\n订单号：（未提供）\n购买日期：（未提供）\n" in c.text
    await c.press("submit")
    case = await stored(container, c.case.number)
    assert (case.amount_fen, case.order_number, case.purchase_date) == (None, None, None)


@pytest.mark.parametrize(
    ("typed", "step", "merchant"),
    [
        ("龙湾区永中街道", Step.EVIDENCE, {"in_district": True, "street": "永中街道", "province": None}),
        ("永中", Step.EVIDENCE, {"in_district": True, "street": "永中街道", "province": None}),
        ("广东省广州市", Step.EVIDENCE, {"in_district": False, "street": None, "province": "广东省广州市"}),
        # a sentence naming the street
        ("商家在龙湾区永中街道", Step.EVIDENCE, {"in_district": True, "street": "永中街道", "province": None}),
        # the labels of the buttons, typed: they mean what the buttons mean
        ("在龙湾区", Step.MERCHANT_STREET, None),
        ("不在龙湾区", Step.MERCHANT_PROVINCE, None),
        ("不清楚", Step.EVIDENCE, {"in_district": None, "street": None, "province": None}),
    ],
    ids=["district+street", "street-stem", "province", "sentence-with-street", "typed-in", "typed-out", "typed-unknown"],
)
async def test_typed_merchant_answers_mean_what_the_buttons_mean(chat, typed, step, merchant):
    c = chat()
    await _at_step(c, Step.MERCHANT)
    await c.send(typed)
    assert c.draft.slots.get("merchant") == merchant
    assert c.step == step


async def test_platform_named_before_the_live_room_word_is_not_the_live_room(chat):
    c = chat()
    await c.send("在抖音直播间买的保温杯质量很差，想退款")
    assert c.draft.slots.get("platform") == "抖音"
    assert c.draft.slots.get("live_room") != "抖音"
    await c.press("ok")
    assert c.texts == [ASK_LIVE_ROOM]  # the live room was not told: it is asked


# == 8. /status and /case ================================================================================


async def test_status_lists_only_own_cases(container, chat):
    mine, theirs = chat("42"), chat("43")
    await mine.command("status")
    assert mine.texts == [NO_CASES]
    first = await file_complaint(mine)
    other = await file_complaint(theirs, name="李四", phone="13900000000", street="海滨街道")
    # the very same complaint again (same words, facts and contacts) is the case already filed
    assert await file_complaint(mine) == first
    second = await file_complaint(mine, street="海滨街道")
    assert (first, other, second) == ("LW-2026-000001", "LW-2026-000002", "LW-2026-000003")

    await mine.command("status")
    line = " · 侵犯消费者权益 · 已接收，下一期限 2026年11月25日"
    assert mine.texts == [f"您的登记：\n{first}{line}\n{second}{line}"] or mine.texts == [
        f"您的登记：\n{second}{line}\n{first}{line}"
    ]
    assert sorted(mine.button_values) == [f"case:{first}", f"case:{second}"]
    assert len(mine.buttons) == 1  # two per row

    await theirs.command("status")
    assert theirs.texts == [f"您的登记：\n{other}{line}"]
    assert theirs.buttons == [[f"case:{other}"]]

    # the same user id on another channel is another person
    web = chat("42", channel="web")
    await web.command("status")
    assert web.texts == [NO_CASES]


async def test_case_shows_own_case_and_hides_others(container, chat):
    mine, theirs = chat("42"), chat("43")
    number = await file_complaint(mine)
    other = await file_complaint(theirs, name="李四", phone="13900000000")

    await mine.command("case", number)
    expected = f"{number}\n问题类别：侵犯消费者权益\n状态：已接收\n承办单位：永中市场监督管理所\n下一期限：2026年11月25日"
    assert mine.texts == [expected]
    assert mine.buttons == [[f"add:{number}", f"withdraw:{number}"]]
    await mine.press(f"case:{number}")  # the button of /status says the same
    assert mine.texts == [expected]
    await mine.command("case", number.lower())
    assert mine.texts == [expected]

    # someone else's case and a case that does not exist get the same answer
    await mine.command("case", other)
    someone_elses = mine.text
    assert mine.texts == [not_found(other)] and mine.buttons == []
    await mine.command("case", "LW-2026-999999")
    assert mine.texts == [not_found("LW-2026-999999")]
    assert someone_elses.replace(other, "X") == mine.text.replace("LW-2026-999999", "X")
    await mine.press(f"case:{other}")
    assert mine.texts == [not_found(other)]
    await mine.command("case")
    assert mine.texts == [CASE_NUMBER_NEEDED]


async def test_adding_words_and_files_to_an_open_case(container, chat):
    c = chat()
    number = await file_complaint(c)
    await c.command("case", number)
    await c.press(f"add:{number}")
    assert c.texts == [f"请发送要补充的文字、截图或视频，我会附到 {number} 中。"]
    assert c.buttons == [["add_done"]]
    await c.send("补充一下：商家客服电话一直打不通")
    added = f"已附到 {number}。还可以继续发送，完成后点“补充完毕”。"
    assert c.texts == [added] and c.buttons == [["add_done"]]
    video = Attachment("e" * 64, 5 * 1024 * 1024, "video/mp4", "live.mp4")
    await c.attach(video)
    assert c.texts == [added]
    await c.press("add_done")
    assert c.texts == [ADD_DONE]
    assert c.draft is None

    case = await stored(container, number)
    assert case.messages == [("in", "补充一下：商家客服电话一直打不通", False)]
    assert case.evidence == [("e" * 64, 5 * 1024 * 1024, "video/mp4", "live.mp4", "telegram")]
    assert case.description == RICH  # the additions are messages, not a new description

    # somebody else cannot add to it
    other = chat("43")
    await other.press(f"add:{number}")
    await other.send("我也来补充")
    assert other.texts == [f"{number} 已经办结或不存在，无法补充。如有新问题请直接描述。"]
    assert (await stored(container, number)).messages == case.messages


async def test_caption_of_a_file_added_to_a_case_is_kept(container, chat):
    c = chat()
    number = await file_complaint(c)
    await c.press(f"add:{number}")
    await c.attach(photo(9, 4096), "这是商家拒绝退款的聊天记录")
    case = await stored(container, number)
    assert [e[0] for e in case.evidence] == [photo(9, 4096).sha256]
    assert case.messages == [("in", "这是商家拒绝退款的聊天记录", False)]


@pytest.mark.parametrize("how", ["add_done", "withdraw_no"])
async def test_looking_at_a_case_mid_draft_returns_to_the_unfinished_draft(container, chat, how):
    c = chat()
    number = await file_complaint(c)
    await c.send(RICH)
    await c.press("ok")
    assert c.texts == [ASK_ORDER]
    await c.command("status")
    await c.press(f"case:{number}")
    if how == "add_done":
        await c.press(f"add:{number}")
        await c.send("再补充一句")
        await c.press("add_done")
    else:
        await c.press(f"withdraw:{number}")
        await c.press("withdraw_no")
    # the unfinished draft picks up where it was
    assert c.step == Step.ORDER_NUMBER
    assert c.text == ASK_ORDER
    await c.send("DD2026111500999")
    assert c.texts == [ASK_MERCHANT]
    assert c.draft.description == RICH and c.draft.slots["order_number"] == "DD2026111500999"


async def test_withdrawing_a_received_case(container, chat):
    c = chat()
    number = await file_complaint(c)
    await c.press(f"withdraw:{number}")
    assert c.texts == [f"确定撤回 {number} 吗？撤回后本件将不再处理。"]
    assert c.buttons == [["withdraw_yes", "withdraw_no"]]
    await c.press("withdraw_no")
    assert c.texts == [WITHDRAW_KEPT]
    assert (await stored(container, number)).status == "received"

    await c.press(f"withdraw:{number}")
    await c.press("withdraw_yes")
    assert c.texts == [f"已撤回 {number}。"]
    case = await stored(container, number)
    assert (case.status, case.outcome) == (Status.CLOSED, "withdrawn")
    assert case.closed_at == NOW
    assert case.messages == [("out", f"您已撤回 {number}，本件不再处理。", True)]
    assert case.next_due_on is None  # every clock is met

    await c.command("case", number)
    assert c.texts == [f"{number}\n问题类别：侵犯消费者权益\n状态：已关闭\n承办单位：永中市场监督管理所"]
    assert c.buttons == []  # nothing to add to or withdraw from a closed case
    await c.press(f"add:{number}")  # an old button
    await c.send("还能补充吗")
    assert c.texts == [f"{number} 已经办结或不存在，无法补充。如有新问题请直接描述。"]


async def test_withdrawal_refused_after_acceptance(container, chat, staff):
    c = chat()
    number = await file_complaint(c)
    await c.command("case", number)
    assert f"withdraw:{number}" in c.button_values  # the button is offered while the case is received
    await container.cases.accept(c.cases[-1].id, staff)

    await c.command("case", number)
    assert c.texts[0].startswith(f"{number}\n问题类别：侵犯消费者权益\n状态：已受理\n")
    assert c.buttons == [[f"add:{number}"]]  # no withdraw any more
    await c.press(f"withdraw:{number}")  # the old button
    await c.press("withdraw_yes")
    assert c.texts == [f"{number} 已经受理，不能再撤回。如有需要请补充说明，承办人员会与您联系。"]
    case = await stored(container, number)
    assert (case.status, case.outcome) == (Status.ACCEPTED, None)

    # someone else cannot withdraw it either, and learns nothing
    other = chat("43")
    await other.press(f"withdraw:{number}")
    await other.press("withdraw_yes")
    assert other.texts == [f"没有找到您名下编号为 {number} 的登记。"]


# == 9. language ========================================================================================
# The English texts come from the catalog qinglang/locales/en/LC_MESSAGES/qinglang.po.


async def test_lang_en_switches_the_replies_to_english(container, chat):
    c = chat()
    await c.command("lang", "en")
    assert c.texts == ["Switched to English."]
    assert c.draft is not None and c.draft.lang == "en"  # kept although nothing else is
    await c.command("start")
    assert c.texts == [
        "Hello! This is the live-stream shopping complaints and tip-offs service of the Longwan District "
        "Administration for Market Regulation.\n"
        "Please tell me in a few sentences: which live room, what you bought, and what went wrong."
    ]
    await c.send(RICH)
    assert c.text.startswith("Here is what I understood:\n")
    assert c.text.endswith("\nIs that right?")
    # category names, amounts and dates are English too; the person's own words stay as written
    for part in ("Consumer rights", "399 yuan", "2026-11-15", "抖音", "小美好物", "羽绒服"):
        assert part in c.text, part
    assert c.buttons == confirm_buttons(c)  # the values do not depend on the language
    assert c.labels[0] == ["Yes, continue"]
    await c.press("ok")
    assert c.texts == ["What is the order number? (You can copy it from the order details page.)"]
    assert c.labels == [["Skip / not sure", "Back", "Cancel"]]
    await c.send("DD2026111500123")
    await c.press("loc:in")
    await c.press("street:永中街道")
    await c.press("evidence_done")
    assert c.texts == [
        "A complaint needs your real name and a phone number, so that we can mediate and tell you the result.\n"
        "Please enter your name:"
    ]
    await c.send("Zhang San")
    await c.send("13812345678")
    await c.press("consent:yes")
    assert c.buttons == COMPLAINT_EDITS
    await c.press("submit")
    assert c.texts == [
        "✅ Registered. Your case number is LW-2026-000001.\nHandled by: Yongzhong Market Supervision Station.\n"
        "· By 2026-11-25: we tell you whether your complaint is accepted\n"
        "We will keep you informed here. To check progress, send /status."
    ]
    assert c.draft is not None and c.draft.lang == "en"  # the language outlives the submitted draft
    await c.command("status")
    assert c.texts == ["Your reports:\nLW-2026-000001 · Consumer rights · Received, next deadline 2026-11-25"]
    case = await stored(container, "LW-2026-000001")
    assert (case.complainant.language, case.complainant.name) == ("en", "Zhang San")

    await c.command("lang", "zh")
    assert c.texts == ["已切换为中文。"]
    assert c.draft is None  # back to the default: nothing to keep
    await c.command("status")
    assert c.texts == ["您的登记：\nLW-2026-000001 · 侵犯消费者权益 · 已接收，下一期限 2026年11月25日"]
    await c.command("lang")  # without a code: the other language
    assert c.texts == ["Switched to English."]


async def test_english_summary_uses_no_chinese_punctuation(chat):
    c = chat()
    await c.command("lang", "en")
    await c.send(RICH)
    await c.press("ok")
    await c.send("DD2026111500123")
    await c.press("loc:in")
    await c.press("street:永中街道")
    await c.send(LINK)
    await c.attach(photo(1, 1024))
    await c.press("evidence_done")
    await c.send("Zhang San")
    await c.send("13812345678")
    await c.press("consent:yes")
    assert c.text.startswith("Please check your report:\n")
    # the labels are translated, the separators between label and value must be too
    for line in c.text.split("\n")[1:]:
        label, _sep, _value = line.partition("：")
        assert not _sep, f"full-width colon after {label!r} in {line!r}"
    assert "，" not in c.text.replace(RICH, "")  # e.g. "Evidence: 1 file, 1 link(s)"



# == 10. two people at once =============================================================================


async def test_two_people_interleaved_do_not_mix(container, chat):
    a, b = chat("1001"), chat("1002")
    await a.send(RICH)
    await b.send(PLAIN)
    await a.press("ok")
    await b.press("ok")
    assert (a.text, b.text) == (ASK_ORDER, ASK_AMOUNT)
    await a.send("AAA111222333")
    await b.send("128")
    await b.send("BBB444555666")
    await a.press("loc:in")
    await b.send("11月3日")
    await a.press("street:永中街道")
    await b.press("loc:out")
    await a.attach(photo(11, 1024))
    await b.send("广东省广州市")
    await b.attach(photo(12, 2048))
    await a.press("evidence_done")
    await b.press("evidence_done")
    await a.send("张三")
    await b.send("李四")
    await b.send("13900000000")
    await a.send("13812345678")
    await a.press("consent:yes")
    await b.press("consent:yes")
    assert a.draft.slots["order_number"] == "AAA111222333" and a.draft.name == "张三"
    assert b.draft.slots["order_number"] == "BBB444555666" and b.draft.name == "李四"
    assert [e["sha256"] for e in a.draft.evidence] == [photo(11, 1024).sha256]
    assert [e["sha256"] for e in b.draft.evidence] == [photo(12, 2048).sha256]
    await b.press("submit")
    await a.press("submit")
    case_a, case_b = a.cases[-1], b.cases[-1]
    assert (case_b.number, case_a.number) == ("LW-2026-000001", "LW-2026-000002")

    ca, cb = await stored(container, case_a.number), await stored(container, case_b.number)
    assert (ca.complainant.channel_user_id, ca.complainant.name, ca.complainant.phone) == ("1001", "张三", "13812345678")
    assert (cb.complainant.channel_user_id, cb.complainant.name, cb.complainant.phone) == ("1002", "李四", "13900000000")
    assert (ca.order_number, ca.amount_fen, ca.live_room, ca.lead) == ("AAA111222333", 39900, "小美好物", "suo_yongzhong")
    assert (cb.order_number, cb.amount_fen, cb.live_room, cb.merchant_province) == ("BBB444555666", 12800, "杯子小铺", "广东省广州市")
    assert [e[0] for e in ca.evidence] == [photo(11, 1024).sha256]
    assert [e[0] for e in cb.evidence] == [photo(12, 2048).sha256]
    assert cb.deadlines == {"transfer": TRANSFER_DUE} and ca.deadlines == {"complaint_acceptance": ACCEPTANCE_DUE}

    await a.command("status")
    await b.command("status")
    assert a.button_values == [f"case:{case_a.number}"]
    assert b.button_values == [f"case:{case_b.number}"]
    await a.command("case", case_b.number)
    assert a.texts == [not_found(case_b.number)]


# == 11. the satisfaction survey (回访) ==================================================================
# The survey notice (intake/notice_templates.py) carries buttons "rate:<number>:<1-5>"; a press lands here.

def rated(score: int, label: str) -> str:
    return (f"感谢您的评价：{score} 分（{label}）。\n"
            "如果愿意，可以直接发送一段文字，写下您的意见或建议；不需要请点“不用了”。")


def rated_low(number: str, score: int, label: str) -> str:
    return (f"感谢您的评价：{score} 分（{label}）。很抱歉没能让您满意，{number} 已重新打开，由消保分局复核。\n"
            "可以直接发送一段文字，说说不满意的地方，复核时会参考；不需要请点“不用了”。")


COMMENT_THANKS = "已收到您的留言，谢谢！我们会认真对待您的意见。"
SKIP_THANKS = "好的，谢谢您的评价！"
INVALID_RATING = "这个评价按钮无效。请点击通知里的评分按钮，或发送 /status 查看您的登记。"


def already_rated(number: str) -> str:
    return f"{number} 已经评价过了，每件登记只能评价一次。谢谢您！"


def not_closed(number: str) -> str:
    return f"{number} 还没有办结，办结后才能评价。"


async def closed_case(container, c: ChatDriver, staff: Actor, **kwargs) -> str:
    """A complaint filed by `c`, accepted, answered and closed by staff."""
    number = await file_complaint(c, **kwargs)
    case_id = c.cases[-1].id
    await container.cases.accept(case_id, staff)
    await container.cases.resolve(case_id, staff, "mediated", "经调解，商家同意退款399元。")
    await container.cases.close(case_id, staff)
    return number


async def events_of(container, number: str) -> list[str]:
    async with container.uow() as uow:
        case = await uow.cases.by_number(number)
        return [e.action for e in await uow.cases.events(case.id)]


async def test_rating_with_a_comment(container, chat, staff):
    c = chat()
    number = await closed_case(container, c, staff)
    await c.press(f"rate:{number}:4")
    assert c.texts == [rated(4, "满意")]
    assert c.buttons == [["rate_skip"]]
    assert (c.step, c.draft.case_number, c.draft.rating) == (Step.RATE_COMMENT, number, 4)
    case = await stored(container, number)
    assert (case.satisfaction, case.satisfaction_comment, case.rated_at) == (4, None, NOW)
    assert case.status == Status.CLOSED and case.survey_due_on is None

    await c.send("处理很及时，<b>谢谢</b>！")
    assert c.texts == [COMMENT_THANKS]
    assert c.draft is None  # nothing left to keep
    case = await stored(container, number)
    assert (case.satisfaction, case.satisfaction_comment, case.status) == (4, "处理很及时，<b>谢谢</b>！", Status.CLOSED)
    assert (await events_of(container, number))[-2:] == ["rate", "rating_comment"]  # the score, then the comment


@pytest.mark.parametrize("how", ["button", "typed"])
async def test_rating_without_a_comment(container, chat, staff, how):
    c = chat()
    number = await closed_case(container, c, staff)
    await c.press(f"rate:{number}:5")
    assert c.texts == [rated(5, "很满意")]
    if how == "button":
        await c.press("rate_skip")
    else:
        await c.send("不用了")
    assert c.texts == [SKIP_THANKS]
    assert c.draft is None
    case = await stored(container, number)
    assert (case.satisfaction, case.satisfaction_comment, case.status) == (5, None, Status.CLOSED)
    await c.press("rate_skip")  # the button again, once the question is gone: nothing happens to the case
    assert (await stored(container, number)).satisfaction == 5


async def test_low_rating_reopens_the_case_for_review(container, chat, staff):
    c = chat()
    number = await closed_case(container, c, staff)
    await c.press(f"rate:{number}:1")
    assert c.texts == [rated_low(number, 1, "很不满意")]
    case = await stored(container, number)
    assert (case.satisfaction, case.status, case.closed_at) == (1, Status.IN_PROGRESS, None)
    await c.send("商家至今没有退款")
    assert c.texts == [COMMENT_THANKS]
    case = await stored(container, number)
    assert (case.satisfaction, case.satisfaction_comment, case.status) == (1, "商家至今没有退款", Status.IN_PROGRESS)
    assert (await events_of(container, number))[-3:] == ["rate", "reopen", "rating_comment"]

    # the reopened case is rated already: another press is refused as such (not as "not closed")
    await c.press(f"rate:{number}:5")
    assert c.texts == [already_rated(number)]
    assert (await stored(container, number)).satisfaction == 1


async def test_a_second_rating_is_refused_and_changes_nothing(container, chat, staff):
    c = chat()
    number = await closed_case(container, c, staff)
    await c.press(f"rate:{number}:4")
    await c.press("rate_skip")
    before = await stored(container, number)
    for score in (1, 4):
        await c.press(f"rate:{number}:{score}")
        assert c.texts == [already_rated(number)] and c.buttons == []
        assert c.draft is None
    after = await stored(container, number)
    assert (after.satisfaction, after.rated_at, after.status) == (before.satisfaction, before.rated_at, Status.CLOSED)


async def test_an_open_case_cannot_be_rated(container, chat):
    c = chat()
    number = await file_complaint(c)
    await c.press(f"rate:{number}:5")
    assert c.texts == [not_closed(number)]
    assert c.draft is None
    assert (await stored(container, number)).satisfaction is None


@pytest.mark.parametrize("value", [
    "rate:XYZ:9", "rate:{n}:9", "rate:{n}:0", "rate:{n}:6", "rate:{n}:abc", "rate:{n}:", "rate:{n}:4:5",
    "rate:{n}:-1", "rate:", "rate:{n}:４", "rate:<script>:3",
])
async def test_forged_rating_values_are_refused(container, chat, staff, value):
    c = chat()
    number = await closed_case(container, c, staff)
    await c.send(PLAIN)  # an unfinished draft stays as it was
    draft_before = c.draft.to_dict()
    await c.press(value.format(n=number))
    assert c.texts == [INVALID_RATING]
    assert c.draft.to_dict() == draft_before
    case = await stored(container, number)
    assert (case.satisfaction, case.status) == (None, Status.CLOSED)


async def test_someone_elses_case_cannot_be_rated(container, chat, staff):
    owner, other = chat("42"), chat("43")
    number = await closed_case(container, owner, staff)
    await other.press(f"rate:{number}:1")
    assert other.texts == [not_found(number)]
    await other.press("rate:LW-2026-999999:1")  # reads the same as a number nobody has
    assert other.texts == [not_found("LW-2026-999999")]
    await other.press(f"rate:{number}")
    assert other.texts == [not_found(number)]
    assert other.draft is None
    case = await stored(container, number)
    assert (case.satisfaction, case.status) == (None, Status.CLOSED)
    # the owner still can
    await owner.press(f"rate:{number}:3")
    assert owner.texts == [rated(3, "一般")]


async def test_rating_in_the_middle_of_a_draft_returns_to_it(container, chat, staff):
    c = chat()
    number = await closed_case(container, c, staff)
    await c.send(RICH)
    await c.press("ok")
    assert c.texts == [ASK_ORDER]
    await c.press(f"rate:{number}:4")
    assert c.texts == [rated(4, "满意")]
    await c.send("DD2026111500999")  # meant for the draft, but the comment was asked: it is the comment
    assert c.texts == [COMMENT_THANKS, ASK_ORDER]
    assert c.step == Step.ORDER_NUMBER and c.draft.description == RICH
    await c.send("DD2026111500999")
    assert c.texts == [ASK_MERCHANT]

    # skipping the comment returns to the draft too
    other = await closed_case(container, chat("44"), staff, name="李四", phone="13900000000")
    assert other != number
    d = chat("44")
    await d.send(PLAIN)
    await d.press(f"rate:{other}:5")
    await d.press("rate_skip")
    assert d.texts[0] == SKIP_THANKS and d.step == Step.CONFIRM_CATEGORY


async def test_the_rating_question_answered_with_a_typed_number(container, chat, staff):
    c = chat()
    number = await closed_case(container, c, staff)
    await c.press(f"rate:{number}")  # without a score: the question is asked
    assert c.texts == [f"您对 {number} 的处理结果满意吗？请选择 1 到 5 分（5 分最满意），也可以直接回复数字。"]
    assert c.buttons == [[f"rate:{number}:1", f"rate:{number}:2", f"rate:{number}:3"],
                         [f"rate:{number}:4", f"rate:{number}:5"], ["rate_later"]]
    assert c.labels[0][0] == "1 · 很不满意" and c.labels[1][1] == "5 · 很满意"
    assert c.step == Step.RATE
    await c.send("４分")  # a full-width digit, with 分
    assert c.texts == [rated(4, "满意")]
    assert (await stored(container, number)).satisfaction == 4
    await c.send("五")  # now the comment is asked: a word is a comment, not another score
    assert c.texts == [COMMENT_THANKS]
    case = await stored(container, number)
    assert (case.satisfaction, case.satisfaction_comment) == (4, "五")


async def test_the_rating_question_can_be_left(container, chat, staff):
    c = chat()
    number = await closed_case(container, c, staff)
    await c.press(f"rate:{number}")
    await c.press("rate_later")
    assert c.texts == ["好的。以后想评价时，点击通知里的评分按钮即可。"]
    assert c.draft is None
    # asked again, then something else is said: the question is dropped and the words are a new report
    await c.press(f"rate:{number}")
    await c.send(PLAIN)
    assert c.step == Step.CONFIRM_CATEGORY and c.draft.description == PLAIN
    assert (await stored(container, number)).satisfaction is None
    # a command leaves the question too
    await c.press(f"rate:{number}")
    await c.command("status")
    assert c.texts[0].startswith("您的登记：")
    assert c.step == Step.CONFIRM_CATEGORY
    assert (await stored(container, number)).satisfaction is None


async def test_the_rating_question_is_not_asked_for_an_open_case(container, chat):
    c = chat()
    number = await file_complaint(c)
    await c.press(f"rate:{number}")
    assert c.texts == [not_closed(number)] and c.draft is None


async def test_a_file_sent_while_the_comment_is_asked(container, chat, staff):
    c = chat()
    number = await closed_case(container, c, staff)
    await c.press(f"rate:{number}:2")
    await c.attach(photo(3, 2048), "截图")
    assert c.texts == ["评价留言只能是文字。请直接发送文字，不需要留言请点“不用了”。"]
    assert c.buttons == [["rate_skip"]] and c.step == Step.RATE_COMMENT
    case = await stored(container, number)
    assert (case.satisfaction, case.evidence) == (2, [])


async def test_rating_keeps_the_language_of_the_conversation(container, chat, staff):
    c = chat()
    number = await closed_case(container, c, staff)
    await c.command("lang", "en")
    await c.press(f"rate:{number}:5")
    assert c.buttons == [["rate_skip"]]
    await c.press("rate_skip")
    assert c.draft is not None and c.draft.lang == "en" and c.step == Step.DESCRIBE
    assert (await stored(container, number)).satisfaction == 5


# == 12. answering an information request (补正) =========================================================


async def _to_status(container, staff: Actor, case_id: int, status: str) -> None:
    cases = container.cases
    if status in ("accepted", "in_progress", "resolved"):
        await cases.accept(case_id, staff)
    if status in ("in_progress", "resolved"):
        await cases.start(case_id, staff)
    if status == "resolved":
        await cases.resolve(case_id, staff, "mediated", "已调解。")
    if status == "transferred":
        await cases.transfer(case_id, staff, unit_code="zhiliang")
    if status == "rejected":
        await cases.reject(case_id, staff, "missing_information", "请补充订单信息后重新提出。")


@pytest.mark.parametrize("status", ["received", "accepted", "in_progress", "transferred", "resolved", "rejected"])
async def test_an_information_request_is_answered_in_any_open_status(container, chat, staff, status):
    c = chat()
    number = await file_complaint(c)
    case_id = c.cases[-1].id
    await _to_status(container, staff, case_id, status)
    if status not in ("resolved", "rejected"):
        await container.cases.request_information(case_id, staff, "请提供付款截图")
    # the notice's button "补充材料" ("add:<number>", any turn of the conversation)
    await c.press(f"add:{number}")
    assert c.texts == [f"请发送要补充的文字、截图或视频，我会附到 {number} 中。"]
    await c.send("付款截图如下")
    assert c.texts == [f"已附到 {number}。还可以继续发送，完成后点“补充完毕”。"]
    await c.attach(photo(21, 4096))
    assert c.texts == [f"已附到 {number}。还可以继续发送，完成后点“补充完毕”。"]
    await c.press("add_done")
    assert c.texts == [ADD_DONE] and c.draft is None
    case = await stored(container, number)
    assert case.status == status
    assert ("in", "付款截图如下", False) in case.messages
    assert [e[0] for e in case.evidence] == [photo(21, 4096).sha256]
    assert "complainant_addition" in await events_of(container, number)
