"""The complaint conversation, independent of any channel.

An inbound event (text, attachment, button, command) and the stored draft go in; the replies (text
and buttons) and the new draft come out. Telegram, the web chat and the API only translate.
Messages are written in Simplified Chinese and translated through gettext (`_`).
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from intake.cases import (
    Actor,
    AlreadyRated,
    CaseNotFound,
    CaseService,
    CaseView,
    ComplainantInfo,
    EvidenceItem,
    NewCase,
)
from intake.draft import Draft, Step
from intake.status import STATUS_NAMES_ZH, DomainError, Status
from nlu import entities as ent
from nlu.classifier import Backend
from nlu.crisis import default_detector
from nlu.kind import decide_kind
from nlu.taxonomy import CATEGORIES, CATEGORY_IDS, Kind, category
from nlu.text import NluInputError, normalise
from qinglang.i18n import N_, translations
from routing.directory import UnitDirectory
from routing.rules import MerchantLocation

MAX_TEXT = 4096
PLATFORMS = ("抖音", "快手", "淘宝直播", "视频号", "小红书", "京东", "拼多多", "哔哩哔哩", "微博")
_URL = re.compile(r"https?://[^\s<>\"'，。]+", re.I)
_MOBILE = re.compile(r"^1[3-9]\d{9}$")
_LANDLINE = re.compile(r"^0\d{2,3}-?\d{7,8}$")
_ORDER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{5,39}$")
_CASE_NUMBER = re.compile(r"^[A-Za-z]{1,6}-\d{4}-\d{6,12}$")
# what no storage keeps: NUL (PostgreSQL text refuses it) and unpaired surrogates (UTF-8 cannot encode them;
# a JSON update may carry "\ud800"). NUL is dropped, a lone surrogate becomes U+FFFD; everything else is kept.
_NUL = "\x00"
_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")
MAX_AMOUNT_YUAN = 100_000_000  # 1亿元, as nlu.entities.amount_paid: more is a typo, not a purchase
# the satisfaction survey's scale (the same words as the survey notice, intake/notice_templates.py)
RATING_LABELS = {1: N_("很不满意"), 2: N_("不满意"), 3: N_("一般"), 4: N_("满意"), 5: N_("很满意")}
_SCORE_WORDS = {"一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5}
# a typed answer to "leave a comment?" that means "no, thanks"
_NO_COMMENT = frozenset({"不用了", "不用", "不了", "没有", "没有了", "无", "算了", "跳过", "取消", "不需要", "no", "skip"})

# What each kind needs to be handled, in the order it is asked.
SLOTS_BY_KIND = {
    Kind.COMPLAINT: ("platform", "live_room", "product", "amount", "order_number", "purchase_date", "merchant"),
    Kind.TIPOFF: ("platform", "live_room", "product", "purchase_date", "merchant"),
    Kind.CONSULTATION: ("platform", "product"),
}
SLOT_STEP = {
    "platform": Step.PLATFORM, "live_room": Step.LIVE_ROOM, "product": Step.PRODUCT, "amount": Step.AMOUNT,
    "order_number": Step.ORDER_NUMBER, "purchase_date": Step.PURCHASE_DATE, "merchant": Step.MERCHANT,
}
FIELD_LABELS = {
    "category": N_("问题类别"), "kind": N_("诉求"), "platform": N_("平台"), "live_room": N_("直播间/主播"),
    "product": N_("商品"), "amount": N_("金额"), "order_number": N_("订单号"), "purchase_date": N_("购买日期"),
    "merchant": N_("商家所在地"), "evidence": N_("证据"), "contact": N_("联系方式"), "description": N_("情况描述"),
}
KIND_LABELS = {
    Kind.COMPLAINT: N_("投诉（要求退款、赔偿等）"),
    Kind.TIPOFF: N_("举报（请求查处违法行为）"),
    Kind.CONSULTATION: N_("咨询（了解政策或维权方法）"),
}
CLOCK_PHRASES = {
    "complaint_acceptance": N_("{date} 前告知您是否受理"),
    "tipoff_check": N_("{date} 前完成核查并决定是否立案"),
    "transfer": N_("{date} 前移送有管辖权的部门并告知您"),
    "informant_notice": N_("{date} 前告知您立案结果"),
    "complaint_mediation": N_("{date} 前完成调解"),
}


@dataclass(frozen=True)
class Attachment:
    """A file the channel has already put in the evidence store."""

    sha256: str
    size: int
    mime: str
    name: str | None = None


@dataclass(frozen=True)
class Inbound:
    type: str  # text | attachment | button | command
    at: datetime
    text: str = ""
    value: str = ""  # the button's value or the command's name (without '/')
    args: str = ""
    attachment: Attachment | None = None


@dataclass(frozen=True)
class Button:
    label: str
    value: str


@dataclass(frozen=True)
class Reply:
    text: str
    buttons: tuple[tuple[Button, ...], ...] = ()


@dataclass(frozen=True)
class Person:
    channel: str
    user_id: str
    language: str = "zh"


@dataclass
class Outcome:
    replies: list[Reply] = field(default_factory=list)
    draft: Draft | None = None  # None: nothing kept
    case: CaseView | None = None


class _Turn:
    """One event being handled: the draft, the person, the translator and the replies so far."""

    def __init__(self, draft: Draft, person: Person, event: Inbound) -> None:
        self.draft = draft
        self.person = person
        self.event = event
        self.replies: list[Reply] = []
        t = translations(draft.lang)
        self._ = t.gettext
        self.ngettext = t.ngettext
        self.case: CaseView | None = None

    def say(self, text: str, *rows: tuple[Button, ...]) -> None:
        self.replies.append(Reply(text, tuple(r for r in rows if r)))


class ConversationEngine:
    def __init__(
        self,
        nlu: Backend,
        cases: CaseService,
        directory: UnitDirectory,
        tz: ZoneInfo,
        *,
        confidence_threshold: float = 0.45,
        extractor: ent.EntityExtractor | None = None,
    ) -> None:
        self._nlu = nlu
        self._extractor = extractor
        self._cases = cases
        self._directory = directory
        self._tz = tz
        self._threshold = confidence_threshold

    # -- entry point ------------------------------------------------------------------------------

    async def handle(self, event: Inbound, draft: Draft | None, person: Person) -> Outcome:
        event = _storable_event(event)
        draft = draft or Draft(lang=person.language)
        step_before = draft.step
        turn = _Turn(draft, person, event)
        if event.type in ("text", "attachment"):
            self._watch_for_crisis(turn)
        if event.type == "command":
            await self._command(turn)
        elif event.type == "button":
            await self._button(turn)
        elif event.type == "attachment":
            await self._attachment(turn)
        else:
            await self._text(turn)
        # Buttons carry the rev: it changes when the conversation moves to another step (or the draft
        # is replaced), so buttons of the current question stay usable after /help, a wrong answer, ...
        if turn.draft is not draft or turn.draft.step != step_before:
            turn.draft.rev = draft.rev + 1
        keep = turn.draft if (turn.draft.has_content or turn.draft.step != Step.DESCRIBE or turn.draft.lang != "zh"
                              or turn.draft.urgent) else None
        return Outcome(turn.replies, keep, turn.case)

    @staticmethod
    def _watch_for_crisis(turn: _Turn) -> None:
        """Every text the person sends is read for self-harm, violence or a mass incident: the draft is
        marked (its case will be urgent) and the help lines come first; the conversation goes on."""
        if turn.draft.urgent or not default_detector().is_crisis(turn.event.text or ""):
            return
        turn.draft.urgent = True
        turn.say(turn._("如果您或身边的人有危险，请立即拨打 110；需要心理援助可拨打全国心理援助热线 12356。"
                        "我们会优先处理您反映的问题。"))

    # -- commands ---------------------------------------------------------------------------------

    async def _command(self, turn: _Turn) -> None:
        _ = turn._
        name = turn.event.value
        if turn.draft.step in (Step.RATE, Step.RATE_COMMENT) and name not in ("help", "privacy", "lang"):
            self._leave_case(turn.draft)  # the rating is kept; the question or the comment is dropped
        if name in ("start", "new"):
            if turn.draft.has_content and name == "new":
                self._reset(turn)
            elif turn.draft.has_content:
                turn.say(_("您有一份尚未提交的登记，我们继续吧。输入 /new 可以重新开始。"))
                self._prompt(turn)
                return
            turn.say(_("您好！这里是龙湾区市场监督管理局网络直播消费投诉举报平台。\n"
                       "请用几句话告诉我：在哪个直播间、买了什么、遇到了什么问题。"))
        elif name == "help":
            self._help(turn)
        elif name == "cancel":
            self._ask_cancel(turn)
        elif name == "privacy":
            turn.say(self._privacy_text(turn))
        elif name == "lang":
            self._switch_language(turn, turn.event.args.strip().lower())
        elif name == "status":
            await self._status(turn)
        elif name == "case":
            await self._show_case(turn, turn.event.args.strip())
        else:
            turn.say(_("没有这个命令。可用命令：/new 新登记，/status 查询进度，/help 帮助。"))

    def _help(self, turn: _Turn) -> None:
        _ = turn._
        turn.say(_("我可以帮您投诉或举报网络直播购物中遇到的问题，例如假货、虚假宣传、价格欺诈、不给退款。\n"
                   "直接描述情况即可，我会一步步询问还缺少的信息。\n"
                   "/new 新登记  /status 查询进度  /case 编号 查看某件  /cancel 取消  /lang 切换语言  /privacy 隐私说明"))

    def _switch_language(self, turn: _Turn, code: str) -> None:
        if code not in ("zh", "en"):
            code = "en" if turn.draft.lang == "zh" else "zh"
        turn.draft.lang = code
        fresh = _Turn(turn.draft, turn.person, turn.event)
        turn._, turn.ngettext = fresh._, fresh.ngettext
        turn.say(turn._("已切换为中文。"))
        if turn.draft.has_content:
            self._prompt(turn)

    def _privacy_text(self, turn: _Turn) -> str:
        return turn._(
            "隐私说明：您提供的信息只用于处理本次投诉举报，仅承办人员可以查看；举报人身份依法保密，不会告知被举报方。"
            "手机号等个人信息只向承办人员显示，每一次查看都有记录。"
        )

    # -- buttons ----------------------------------------------------------------------------------

    async def _button(self, turn: _Turn) -> None:
        _ = turn._
        value = turn.event.value
        action, _sep, arg = value.partition(":")
        draft = turn.draft
        if action == "cancel":
            self._ask_cancel(turn)
        elif action == "cancel_yes":
            self._reset(turn)
            turn.say(_("已取消，本次填写的内容已删除。需要时随时发消息给我。"))
        elif action == "cancel_no":
            draft.step = draft.resume_step or Step.DESCRIBE
            draft.resume_step = None
            self._prompt(turn)
        elif action == "back":
            self._back(turn)
        elif action == "case":
            await self._show_case(turn, arg)
        elif action == "add":
            self._set_aside(draft)
            draft.case_number, draft.step = arg, Step.ADD_TO_CASE
            turn.say(_("请发送要补充的文字、截图或视频，我会附到 {number} 中。").format(number=arg),
                     (Button(_("补充完毕"), "add_done"),))
        elif action == "add_done":
            turn.say(_("好的。有新情况随时告诉我。"))
            self._resume(turn)
        elif action == "withdraw":
            self._set_aside(draft)
            draft.case_number, draft.step = arg, Step.CONFIRM_WITHDRAW
            turn.say(_("确定撤回 {number} 吗？撤回后本件将不再处理。").format(number=arg),
                     (Button(_("确定撤回"), "withdraw_yes"), Button(_("不撤回"), "withdraw_no")))
        elif action in ("withdraw_yes", "withdraw_no"):
            await self._withdraw(turn, confirmed=action == "withdraw_yes")
        elif action == "rate":
            await self._rate_button(turn, arg)
        elif action == "rate_skip" and draft.step == Step.RATE_COMMENT:
            turn.say(_("好的，谢谢您的评价！"))
            self._resume(turn)
        elif action == "rate_later" and draft.step == Step.RATE:
            turn.say(_("好的。以后想评价时，点击通知里的评分按钮即可。"))
            self._resume(turn)
        elif not draft.has_content and draft.step == Step.DESCRIBE:
            turn.say(_("这个按钮已经过期了。请直接描述您遇到的问题。"))
        else:
            await self._answer_button(turn, action, arg)

    async def _answer_button(self, turn: _Turn, action: str, arg: str) -> None:
        _ = turn._
        draft = turn.draft
        step = draft.step
        if action == "ok" and step == Step.CONFIRM_CATEGORY:
            draft.category_confirmed = True
            return self._advance(turn)
        if action == "cat" and arg in CATEGORY_IDS and step in (Step.CONFIRM_CATEGORY, Step.SUMMARY):
            draft.category, draft.category_confirmed = arg, True
            return self._advance(turn)
        if action == "cats" and step in (Step.CONFIRM_CATEGORY, Step.SUMMARY):
            return self._choose_category(turn, everything=True)
        if action == "redescribe" and step == Step.CONFIRM_CATEGORY:
            draft.description, draft.category, draft.ranking = "", None, []
            draft.step = Step.DESCRIBE
            return turn.say(_("好的，请重新描述您遇到的问题。"))
        if action == "kind" and arg in Kind.__members__.values() and step == Step.WANTS:
            draft.kind = arg
            return self._advance(turn)
        if action == "plat" and step == Step.PLATFORM and (arg in PLATFORMS or arg == "other"):
            if arg == "other":
                return turn.say(_("请直接输入平台名称。"), self._nav(turn))
            draft.slots["platform"] = arg
            return self._advance(turn)
        if action == "skip" and (step in SLOT_STEP.values() or step == Step.MERCHANT_STREET):
            self._skip(draft)
            return self._advance(turn)
        if action == "loc" and step == Step.MERCHANT:
            return self._merchant_answer(turn, arg)
        if action == "street" and step == Step.MERCHANT_STREET and (not arg or arg in self._directory.streets):
            draft.slots["merchant"] = {"in_district": True, "street": arg or None, "province": None}
            return self._advance(turn)
        if action == "evidence_done" and step == Step.EVIDENCE:
            draft.slots["evidence_done"] = True
            return self._advance(turn)
        if action == "anon" and step == Step.IDENTITY:
            draft.anonymous = arg == "yes"
            if draft.anonymous:
                draft.name = draft.phone = None
            return self._advance(turn)
        if action == "consent" and step == Step.CONSENT:
            if arg != "yes":
                return turn.say(_("没有您的同意，我们无法登记本次投诉举报。您可以点击“同意”继续，或取消本次登记。"),
                                (Button(_("同意"), "consent:yes"), Button(_("取消登记"), "cancel")))
            draft.consent = True
            return self._advance(turn)
        if action == "edit" and step == Step.SUMMARY:
            return self._edit(turn, arg)
        if action == "submit" and step == Step.SUMMARY:
            return await self._submit(turn)
        turn.say(_("这个按钮已经过期了，请按最新的提示操作。"))
        self._prompt(turn)

    # -- attachments and text ---------------------------------------------------------------------

    async def _attachment(self, turn: _Turn) -> None:
        _ = turn._
        draft = turn.draft
        item = turn.event.attachment
        if draft.step == Step.RATE_COMMENT and draft.case_number:
            return turn.say(_("评价留言只能是文字。请直接发送文字，不需要留言请点“不用了”。"),
                            (Button(_("不用了"), "rate_skip"),))
        if draft.step == Step.RATE:
            self._leave_case(draft)  # the question goes unanswered; the file is handled as usual
        if draft.step == Step.ADD_TO_CASE and draft.case_number:
            return await self._add_to_case(turn, text=turn.event.text.strip() or None, evidence=item)
        if item is not None and item.sha256 not in {e["sha256"] for e in draft.evidence}:
            draft.evidence.append({"sha256": item.sha256, "size": item.size, "mime": item.mime, "name": item.name})
        count = len(draft.evidence)
        total = sum(e["size"] for e in draft.evidence)
        receipt = turn.ngettext("已收到 {count} 个文件，共 {size}。", "已收到 {count} 个文件，共 {size}。", count).format(
            count=count, size=_size(total))
        caption = turn.event.text.strip()
        if draft.step == Step.DESCRIBE and not draft.description:
            if caption:
                turn.say(receipt)
                return await self._describe(turn, caption)
            return turn.say(receipt + _("\n请再用文字简单描述一下遇到的问题：在哪个直播间、买了什么、出了什么问题。"))
        if caption:
            draft.additions.append(caption[:MAX_TEXT])
        if draft.step == Step.EVIDENCE:
            return turn.say(receipt + _("\n还有其他证据可以继续发送，全部发完请点“发送完毕”。"),
                            (Button(_("发送完毕"), "evidence_done"),))
        turn.say(receipt + _("\n证据已保存。"))
        self._prompt(turn)

    async def _text(self, turn: _Turn) -> None:
        _ = turn._
        text = (turn.event.text or "").strip()
        draft = turn.draft
        if len(text) > MAX_TEXT:
            text = text[:MAX_TEXT]
            turn.say(_("消息太长，我保存了前 {limit} 个字。更多内容可以分几条发送，或以文件形式发送。").format(limit=MAX_TEXT))
        if draft.step == Step.RATE_COMMENT and draft.case_number:
            return await self._rate_comment(turn, text)
        if draft.step == Step.RATE and draft.case_number:
            score = _typed_score(text)
            if score is not None:
                return await self._rate_case(turn, draft.case_number, score)
            self._leave_case(draft)  # something else was said: the question is dropped, the words count
        if text in ("取消", "取消登记", "cancel"):
            return self._ask_cancel(turn)
        if text in ("返回", "上一步", "back"):
            return self._back(turn)
        if text in ("修改", "edit") and draft.consent:
            draft.step = Step.SUMMARY
            return self._prompt(turn)
        if draft.step == Step.DESCRIBE:
            return await self._describe(turn, text)
        if not _has_words(text):
            turn.say(_("我没看到文字内容。请用文字回答，或点击下面的按钮。"))
            return self._prompt(turn)
        if draft.step == Step.ADD_TO_CASE and draft.case_number:
            return await self._add_to_case(turn, text=text)
        handler = {
            Step.CONFIRM_CATEGORY: self._more_description,
            Step.WANTS: self._wants_text,
            Step.PLATFORM: self._platform_text,
            Step.LIVE_ROOM: self._live_room_text,
            Step.PRODUCT: self._product_text,
            Step.AMOUNT: self._amount_text,
            Step.ORDER_NUMBER: self._order_text,
            Step.PURCHASE_DATE: self._date_text,
            Step.MERCHANT: self._merchant_text,
            Step.MERCHANT_STREET: self._street_text,
            Step.MERCHANT_PROVINCE: self._province_text,
            Step.EVIDENCE: self._evidence_text,
            Step.NAME: self._name_text,
            Step.PHONE: self._phone_text,
        }.get(Step(draft.step))
        if handler is None:
            typed = self._typed_choice(draft, text)
            if typed is not None:
                return await self._answer_button(turn, *typed.partition(":")[::2])
            turn.say(_("请点击上面的按钮选择。"))
            return self._prompt(turn)
        await handler(turn, text)

    @staticmethod
    def _typed_choice(draft: Draft, text: str) -> str | None:
        """The button a typed word stands for, at steps that are answered with buttons."""
        words = {
            Step.CONSENT: {"同意": "consent:yes", "好": "consent:yes", "可以": "consent:yes", "不同意": "consent:no"},
            Step.IDENTITY: {"匿名": "anon:yes", "匿名举报": "anon:yes", "实名": "anon:no", "实名举报": "anon:no"},
            Step.SUMMARY: {"提交": "submit", "确认提交": "submit"},
        }.get(Step(draft.step), {})
        return words.get(text.strip().rstrip("。!！"))

    async def _describe(self, turn: _Turn, text: str, *, small_talk: bool = True) -> None:
        _ = turn._
        draft = turn.draft
        try:
            result = await self._nlu.parse(text, now=turn.event.at)
        except NluInputError:
            return turn.say(_("我没看到文字内容。请用文字描述您遇到的问题，例如：在哪个直播间买了什么，出了什么问题。"))
        dialogue = result.intent in ("greet", "help", "status_query", "cancel", "out_of_scope")
        if small_talk and dialogue and result.needs_choice(self._threshold):
            return await self._dialogue(turn, result.intent)
        if len(text) < 6:
            return turn.say(_("能再多说一点吗？比如在哪个平台的直播间、买了什么、遇到了什么问题。"))
        draft.description = text
        draft.ranking = [[s.label, round(s.confidence, 4)] for s in result.ranking[:4]]
        draft.category = result.category
        draft.nlu_confidence = round(result.confidence, 4)
        draft.kind = result.kind
        self._take_entities(draft, result.entities)
        draft.category_confirmed = False
        draft.step = Step.CONFIRM_CATEGORY
        draft.links.extend(u for u in _URL.findall(text) if u not in draft.links)
        self._prompt(turn)

    async def _dialogue(self, turn: _Turn, intent: str) -> None:
        _ = turn._
        if intent == "greet":
            turn.say(_("您好！请告诉我您在直播购物中遇到的问题：在哪个直播间、买了什么、出了什么问题。"))
        elif intent == "help":
            self._help(turn)
        elif intent == "status_query":
            await self._status(turn)
        elif intent == "cancel":
            turn.say(_("目前没有正在填写的登记。需要时随时发消息给我。"))
        else:
            turn.say(_("这个问题不在市场监管部门的职责范围内，我帮不上忙。其他政务问题可以拨打 12345 政务服务热线。\n"
                       "如果您在直播购物中遇到了问题，请直接描述。"))

    async def _more_description(self, turn: _Turn, text: str) -> None:
        """Words typed while asked to confirm the category: add them and classify the whole again."""
        await self._describe(turn, f"{turn.draft.description}\n{text}", small_talk=False)

    async def _wants_text(self, turn: _Turn, text: str) -> None:
        kind, _confidence = decide_kind(text, {})
        if kind is None:
            turn.say(turn._("请点击下面的一个选项，告诉我您希望我们做什么。"))
            return self._prompt(turn)
        turn.draft.kind = kind
        self._advance(turn)

    async def _platform_text(self, turn: _Turn, text: str) -> None:
        turn.draft.slots["platform"] = self._nlu_platform(text) or text[:40]
        self._advance(turn)

    async def _live_room_text(self, turn: _Turn, text: str) -> None:
        turn.draft.slots["live_room"] = text[:200]
        self._advance(turn)

    async def _product_text(self, turn: _Turn, text: str) -> None:
        turn.draft.slots["product"] = text[:200]
        self._advance(turn)

    async def _amount_text(self, turn: _Turn, text: str) -> None:
        fen = ent.amount_paid(text) or _plain_amount(text)
        if fen is None:
            return turn.say(turn._("没看懂金额，请输入数字，例如 399 或 三百九十九元。"), self._nav(turn, skip=True))
        turn.draft.slots["amount"] = fen
        self._advance(turn)

    async def _order_text(self, turn: _Turn, text: str) -> None:
        compact = text.replace(" ", "")
        value = compact if _ORDER.match(compact) else (ent.order_number(text) or compact)
        if not _ORDER.match(value):
            return turn.say(turn._("订单号一般是一串字母或数字，请复制订单详情页中的订单号发给我。"), self._nav(turn, skip=True))
        turn.draft.slots["order_number"] = value
        self._advance(turn)

    async def _date_text(self, turn: _Turn, text: str) -> None:
        today = turn.event.at.astimezone(self._tz).date()
        found = ent.purchase_date(text, today) or _iso_date(text)
        if found is None or found > today:
            return turn.say(turn._("没看懂日期，请输入例如 11月3日、昨天 或 2026-11-03。"), self._nav(turn, skip=True))
        turn.draft.slots["purchase_date"] = found.isoformat()
        self._advance(turn)

    async def _merchant_text(self, turn: _Turn, text: str) -> None:
        """A typed answer means what the matching button means; a street or a place says more."""
        street = self._street_in(text)
        if street is not None:
            turn.draft.slots["merchant"] = {"in_district": True, "street": street, "province": None}
            return self._advance(turn)
        if re.search(r"不清楚|不知道|不确定|不晓得|没注意", text):
            return self._merchant_answer(turn, "unknown")
        if re.search(r"不在|不是|外地|外省", text) and not re.search(r"[省市县区州]", text.replace("龙湾区", "")):
            return self._merchant_answer(turn, "out")
        if "龙湾" in text or re.fullmatch(r"\s*(是|是的|对|在|嗯|在的)\s*[。!！]?\s*", text):
            return self._merchant_answer(turn, "in")
        turn.draft.slots["merchant"] = {"in_district": False, "street": None, "province": text[:40]}
        self._advance(turn)

    def _street_in(self, text: str) -> str | None:
        """The district street named anywhere in the text (with or without 街道)."""
        for street in self._directory.streets:
            short = street.removesuffix("街道")
            if street in text or (len(short) >= 2 and short in text):
                return street
        return None

    def _merchant_answer(self, turn: _Turn, arg: str) -> None:
        draft = turn.draft
        if arg in ("in", "out"):
            draft.history.append(draft.step)  # so 上一步 from the next question comes back here
        if arg == "in":
            draft.step = Step.MERCHANT_STREET
            return self._prompt(turn)
        if arg == "out":
            draft.step = Step.MERCHANT_PROVINCE
            return self._prompt(turn)
        draft.slots["merchant"] = {"in_district": None, "street": None, "province": None}
        self._advance(turn)

    async def _street_text(self, turn: _Turn, text: str) -> None:
        street = self._street_in(text)
        if street is None:
            return turn.say(turn._("没有找到这个街道，请点击下面的街道，或点“不清楚”。"), *self._street_rows(turn))
        turn.draft.slots["merchant"] = {"in_district": True, "street": street, "province": None}
        self._advance(turn)

    async def _province_text(self, turn: _Turn, text: str) -> None:
        turn.draft.slots["merchant"] = {"in_district": False, "street": None, "province": text[:40]}
        self._advance(turn)

    async def _evidence_text(self, turn: _Turn, text: str) -> None:
        _ = turn._
        urls = [u for u in _URL.findall(text) if u not in turn.draft.links]
        if urls:
            turn.draft.links.extend(urls)
            return turn.say(_("已记录 {count} 个链接。还有其他证据可以继续发送，全部发完请点“发送完毕”。").format(count=len(urls)),
                            (Button(_("发送完毕"), "evidence_done"),))
        turn.draft.additions.append(text)
        turn.say(_("已记录您的补充说明。如有截图、视频或链接请继续发送，全部发完请点“发送完毕”。"),
                 (Button(_("发送完毕"), "evidence_done"), Button(_("没有证据"), "evidence_done")))

    async def _name_text(self, turn: _Turn, text: str) -> None:
        name = text.strip()
        if not (1 < len(name) <= 30) or any(ch.isdigit() for ch in name):
            return turn.say(turn._("请输入您的真实姓名（2 到 30 个字）。"), self._nav(turn))
        turn.draft.name = name
        self._advance(turn)

    async def _phone_text(self, turn: _Turn, text: str) -> None:
        phone = re.sub(r"[\s-]", "", text) if not _LANDLINE.match(text.strip()) else text.strip()
        if not (_MOBILE.match(phone) or _LANDLINE.match(phone)):
            return turn.say(turn._("手机号格式不对，请输入 11 位手机号，例如 13812345678。"), self._nav(turn))
        turn.draft.phone = phone
        self._advance(turn)

    # -- moving through the steps -----------------------------------------------------------------

    def _advance(self, turn: _Turn) -> None:
        """Go to the next thing that is still missing (or back to the summary when editing)."""
        draft = turn.draft
        draft.history.append(draft.step)
        draft.history = draft.history[-30:]
        # after an edit from the summary this leads straight back to it, since nothing else is missing
        draft.step = self._first_missing(draft)
        self._prompt(turn)

    def _first_missing(self, draft: Draft) -> Step:
        if not draft.description:
            return Step.DESCRIBE
        if not draft.category_confirmed:
            return Step.CONFIRM_CATEGORY
        if draft.kind is None:
            return Step.WANTS
        for slot in SLOTS_BY_KIND[Kind(draft.kind)]:
            if slot not in draft.slots and slot not in draft.skipped:
                return SLOT_STEP[slot]
        if draft.kind != Kind.CONSULTATION and not draft.slots.get("evidence_done"):
            return Step.EVIDENCE
        if draft.kind == Kind.TIPOFF and draft.anonymous is None:
            return Step.IDENTITY
        needs_identity = draft.kind == Kind.COMPLAINT or (draft.kind == Kind.TIPOFF and not draft.anonymous)
        if needs_identity and not draft.name:
            return Step.NAME
        if needs_identity and not draft.phone:
            return Step.PHONE
        if not draft.consent:
            return Step.CONSENT
        return Step.SUMMARY

    def _complete(self, draft: Draft) -> bool:
        return self._first_missing(draft) == Step.SUMMARY

    def _skip(self, draft: Draft) -> None:
        slot = next((s for s, st in SLOT_STEP.items() if st == draft.step), None)
        if draft.step == Step.MERCHANT_STREET:
            draft.slots["merchant"] = {"in_district": True, "street": None, "province": None}
        elif slot:
            draft.skipped.append(slot)
            draft.slots.pop(slot, None)

    def _back(self, turn: _Turn) -> None:
        draft = turn.draft
        if not draft.history:
            turn.say(turn._("已经是第一步了。"))
            return self._prompt(turn)
        previous = draft.history.pop()
        draft.step = previous
        slot = next((s for s, st in SLOT_STEP.items() if st == previous), None)
        if slot:  # asking again: the old answer is dropped so the new one counts
            draft.slots.pop(slot, None)
            if slot in draft.skipped:
                draft.skipped.remove(slot)
        if previous == Step.CONFIRM_CATEGORY:
            draft.category_confirmed = False
        if previous == Step.WANTS:
            draft.kind = None
        self._prompt(turn)

    def _edit(self, turn: _Turn, field_name: str) -> None:
        draft = turn.draft
        draft.history.append(Step.SUMMARY)
        if field_name == "category":
            draft.category_confirmed = False
            draft.step = Step.CONFIRM_CATEGORY
            return self._choose_category(turn, everything=True)
        if field_name == "kind":
            draft.kind, draft.step = None, Step.WANTS
        elif field_name in SLOT_STEP:
            draft.slots.pop(field_name, None)
            if field_name in draft.skipped:
                draft.skipped.remove(field_name)
            draft.step = SLOT_STEP[field_name]
        elif field_name == "evidence":
            draft.slots.pop("evidence_done", None)
            draft.step = Step.EVIDENCE
        elif field_name == "contact":
            draft.name = draft.phone = None
            draft.step = Step.IDENTITY if draft.kind == Kind.TIPOFF else Step.NAME
            if draft.kind == Kind.TIPOFF:
                draft.anonymous = None
        else:
            draft.step = Step.SUMMARY
        self._prompt(turn)

    def _ask_cancel(self, turn: _Turn) -> None:
        _ = turn._
        draft = turn.draft
        if not draft.has_content and draft.step in (Step.DESCRIBE, Step.CONFIRM_CANCEL):
            draft.step = Step.DESCRIBE
            return turn.say(_("目前没有正在填写的登记。需要时随时发消息给我。"))
        if draft.step != Step.CONFIRM_CANCEL:
            draft.resume_step = draft.step
        draft.step = Step.CONFIRM_CANCEL
        turn.say(_("确定要取消本次登记吗？已填写的内容将被删除。"),
                 (Button(_("确定取消"), "cancel_yes"), Button(_("继续填写"), "cancel_no")))

    def _reset(self, turn: _Turn) -> None:
        turn.draft = Draft(lang=turn.draft.lang, rev=turn.draft.rev)

    # -- prompts ----------------------------------------------------------------------------------

    def _nav(self, turn: _Turn, *, skip: bool = False) -> tuple[Button, ...]:
        _ = turn._
        buttons = [Button(_("跳过/不清楚"), "skip")] if skip else []
        buttons += [Button(_("上一步"), "back"), Button(_("取消"), "cancel")]
        return tuple(buttons)

    def _prompt(self, turn: _Turn) -> None:
        """Ask for what the current step needs."""
        _ = turn._
        draft = turn.draft
        step = Step(draft.step)
        if step == Step.DESCRIBE:
            turn.say(_("请描述您遇到的问题：在哪个直播间、买了什么、出了什么问题。"))
        elif step == Step.CONFIRM_CATEGORY:
            self._confirm_category(turn)
        elif step == Step.WANTS:
            turn.say(_("您希望我们做什么？"),
                     (Button(_(KIND_LABELS[Kind.COMPLAINT]), "kind:complaint"),),
                     (Button(_(KIND_LABELS[Kind.TIPOFF]), "kind:tipoff"),),
                     (Button(_(KIND_LABELS[Kind.CONSULTATION]), "kind:consultation"),),
                     self._nav(turn))
        elif step == Step.PLATFORM:
            buttons = [Button(p, f"plat:{p}") for p in PLATFORMS] + [Button(_("其他"), "plat:other")]
            turn.say(_("是在哪个平台的直播间？"), *_rows(buttons, 3), self._nav(turn, skip=True))
        elif step == Step.LIVE_ROOM:
            turn.say(_("直播间或主播叫什么名字？（可以复制直播间名称或主播昵称）"), self._nav(turn, skip=True))
        elif step == Step.PRODUCT:
            turn.say(_("买的是什么商品？"), self._nav(turn, skip=True))
        elif step == Step.AMOUNT:
            turn.say(_("实际付了多少钱？"), self._nav(turn, skip=True))
        elif step == Step.ORDER_NUMBER:
            turn.say(_("订单号是多少？（在订单详情页可以复制）"), self._nav(turn, skip=True))
        elif step == Step.PURCHASE_DATE:
            turn.say(_("是哪天买的？例如 11月3日、昨天。"), self._nav(turn, skip=True))
        elif step == Step.MERCHANT:
            turn.say(_("商家（发货或经营地）在龙湾区吗？这决定由哪个部门处理。"),
                     (Button(_("在龙湾区"), "loc:in"), Button(_("不在龙湾区"), "loc:out")),
                     (Button(_("不清楚"), "loc:unknown"),), self._nav(turn))
        elif step == Step.MERCHANT_STREET:
            turn.say(_("商家在龙湾区哪个街道？"), *self._street_rows(turn))
        elif step == Step.MERCHANT_PROVINCE:
            turn.say(_("商家在哪个省、市？例如：广东省广州市。"), self._nav(turn, skip=False))
        elif step == Step.EVIDENCE:
            turn.say(_("请发送相关证据：商品或订单截图、聊天记录、直播录屏、照片，或直播间/商品链接。全部发完请点“发送完毕”。"),
                     (Button(_("发送完毕"), "evidence_done"), Button(_("没有证据"), "evidence_done")), self._nav(turn))
        elif step == Step.IDENTITY:
            turn.say(_("您希望实名举报还是匿名举报？\n实名举报：我们会在作出是否立案的决定后告知您结果。\n"
                       "匿名举报：不需要留下姓名和电话，但我们无法告知您核查结果。举报人身份在任何情况下都依法保密。"),
                     (Button(_("实名举报"), "anon:no"), Button(_("匿名举报"), "anon:yes")), self._nav(turn))
        elif step == Step.NAME:
            reason = _("投诉需要您的真实姓名和联系电话，以便调解和告知结果。") if draft.kind == Kind.COMPLAINT else ""
            turn.say((reason + "\n" if reason else "") + _("请输入您的姓名："), self._nav(turn))
        elif step == Step.PHONE:
            turn.say(_("请输入您的手机号："), self._nav(turn))
        elif step == Step.CONSENT:
            turn.say(self._privacy_text(turn) + "\n" + _("同意后我们会把您的信息用于处理本次投诉举报。"),
                     (Button(_("同意"), "consent:yes"), Button(_("不同意"), "consent:no")))
        elif step == Step.SUMMARY:
            self._summary(turn)
        elif step == Step.CONFIRM_CANCEL:
            self._ask_cancel(turn)
        elif step == Step.ADD_TO_CASE:
            turn.say(_("请发送要补充的文字、截图或视频。"), (Button(_("补充完毕"), "add_done"),))
        elif step == Step.RATE:
            self._ask_rating(turn, draft.case_number or "")
        elif step == Step.RATE_COMMENT:
            turn.say(_("如果愿意，可以直接发送一段文字，写下您的意见或建议；不需要请点“不用了”。"),
                     (Button(_("不用了"), "rate_skip"),))

    def _confirm_category(self, turn: _Turn) -> None:
        _ = turn._
        draft = turn.draft
        if draft.nlu_confidence is not None and draft.nlu_confidence < self._threshold and not draft.category_confirmed:
            return self._choose_category(turn, everything=False)
        lines = [_("我理解的情况是："), _line(turn, "category", self._category_name(turn, draft.category))]
        lines += self._fact_lines(turn)
        lines.append(_("对吗？"))
        alternatives = [c for c, _conf in draft.ranking[1:3] if c != draft.category]
        turn.say("\n".join(lines),
                 (Button(_("对，继续"), "ok"),),
                 tuple(Button(_("改为：") + self._category_name(turn, c), f"cat:{c}") for c in alternatives),
                 (Button(_("其他类别"), "cats"), Button(_("重新描述"), "redescribe")))

    def _choose_category(self, turn: _Turn, *, everything: bool) -> None:
        _ = turn._
        draft = turn.draft
        if everything:
            options = [c.id for c in CATEGORIES]
            text = _("请选择问题类别：")
        else:
            options = [c for c, _conf in draft.ranking[:3]]
            text = _("我还不能确定这属于哪一类问题，请选择最接近的一项：")
        buttons = [Button(self._category_name(turn, c), f"cat:{c}") for c in options]
        more = () if everything else (Button(_("其他类别"), "cats"),)
        turn.say(text, *_rows(buttons, 2), more, (Button(_("重新描述"), "redescribe"), Button(_("取消"), "cancel")))

    def _summary(self, turn: _Turn) -> None:
        _ = turn._
        draft = turn.draft
        lines = [_("请核对登记内容："),
                 _line(turn, "category", self._category_name(turn, draft.category)),
                 _line(turn, "kind", _(KIND_LABELS[Kind(draft.kind)]))]
        lines += self._fact_lines(turn, with_missing=True)
        if draft.kind != Kind.CONSULTATION:
            files = turn.ngettext("{count} 个文件", "{count} 个文件", len(draft.evidence)).format(count=len(draft.evidence))
            if draft.links:
                files += turn.ngettext("，{count} 个链接", "，{count} 个链接", len(draft.links)).format(count=len(draft.links))
            lines.append(_line(turn, "evidence", files))
        if draft.kind == Kind.TIPOFF and draft.anonymous:
            lines.append(_line(turn, "contact", _("匿名")))
        elif draft.name:
            lines.append(_line(turn, "contact", f"{draft.name} {_mask(draft.phone)}"))
        lines.append(_line(turn, "description", _shorten(draft.description, 120)))
        fields = ["category", "kind", *SLOTS_BY_KIND[Kind(draft.kind)]]
        if draft.kind != Kind.CONSULTATION:
            fields.append("evidence")
        if draft.kind != Kind.CONSULTATION:
            fields.append("contact")
        edit = [Button(_("改") + _(FIELD_LABELS[f]), f"edit:{f}") for f in fields]
        turn.say("\n".join(lines), *_rows(edit, 3), (Button(_("✅ 提交"), "submit"), Button(_("取消"), "cancel")))

    def _fact_lines(self, turn: _Turn, *, with_missing: bool = False) -> list[str]:
        _ = turn._
        slots = turn.draft.slots
        lines = []
        kind = turn.draft.kind
        names = SLOTS_BY_KIND[Kind(kind)] if (with_missing and kind) else tuple(SLOT_STEP)
        missing = _("（未提供）")  # not inside the f-string: Python 3.11's tokenizer hides it from extraction
        for slot in names:
            value = self._slot_text(turn, slot, slots.get(slot))
            if value is None and not with_missing:
                continue
            lines.append(_line(turn, slot, value if value is not None else missing))
        if not with_missing and kind:
            lines.append(_line(turn, "kind", _(KIND_LABELS[Kind(kind)])))
        return lines

    def _slot_text(self, turn: _Turn, slot: str, value) -> str | None:
        _ = turn._
        if value is None:
            return None
        if slot == "amount":
            return _("{yuan} 元").format(yuan=_yuan(value))
        if slot == "purchase_date":
            return _date_text(turn, date.fromisoformat(value))
        if slot == "merchant":
            if value.get("in_district"):
                return _("龙湾区") + (value.get("street") or "")
            if value.get("in_district") is False:
                return value.get("province") or _("龙湾区以外")
            return _("不清楚")
        return str(value)

    def _street_rows(self, turn: _Turn) -> list[tuple[Button, ...]]:
        streets = [Button(s, f"street:{s}") for s in self._directory.streets]
        return [*_rows(streets, 3), (Button(turn._("不清楚"), "street:"),), self._nav(turn)]

    # -- submitting and existing cases ------------------------------------------------------------

    async def _submit(self, turn: _Turn) -> None:
        _ = turn._
        draft = turn.draft
        if not self._complete(draft):
            draft.step = self._first_missing(draft)
            turn.say(_("还有信息没有填写完整。"))
            return self._prompt(turn)
        merchant = draft.slots.get("merchant") or {}
        description = "\n".join([draft.description, *draft.additions])
        anonymous = draft.kind == Kind.TIPOFF and bool(draft.anonymous)
        new = NewCase(
            submission_key=_submission_key(turn.person, draft),
            kind=Kind(draft.kind),
            category=draft.category,
            description=description,
            channel=turn.person.channel,
            complainant=ComplainantInfo(
                channel_user_id=turn.person.user_id,
                name=None if anonymous else draft.name,
                phone=None if anonymous else draft.phone,
                language=draft.lang,
            ),
            anonymous=anonymous,
            platform=draft.slots.get("platform"),
            live_room=draft.slots.get("live_room"),
            product=draft.slots.get("product"),
            amount_fen=draft.slots.get("amount"),
            order_number=draft.slots.get("order_number"),
            purchase_date=date.fromisoformat(draft.slots["purchase_date"]) if draft.slots.get("purchase_date") else None,
            merchant=MerchantLocation(merchant.get("in_district"), merchant.get("street"), merchant.get("province")),
            nlu_category=draft.ranking[0][0] if draft.ranking else None,
            nlu_confidence=draft.nlu_confidence,
            received_at=turn.event.at,
            evidence=tuple(EvidenceItem(e["sha256"], e["size"], e["mime"], e.get("name"), turn.person.channel)
                           for e in draft.evidence),
            links=tuple(draft.links),
            urgent=draft.urgent,
        )
        try:
            view = await self._cases.create(new, Actor("complainant"))
        except DomainError as exc:
            turn.say(_("登记没有成功：{reason}。您填写的内容仍然保留，可以修改后再提交。").format(reason=str(exc)))
            return self._prompt(turn)
        turn.case = view
        lang = draft.lang
        turn.draft = Draft(lang=lang, rev=draft.rev)
        turn.say(self._receipt(turn, view, anonymous=anonymous))

    def _receipt(self, turn: _Turn, view: CaseView, *, anonymous: bool) -> str:
        _ = turn._
        unit = self._unit_name(turn, view.lead_unit)
        lines = [_("✅ 已登记，编号 {number}。").format(number=view.number)]
        if view.routing and view.routing.transfer:
            lines.append(_("商家不在本局管辖范围内，我们将把您的材料移送至：{authority}。").format(
                authority=view.routing.transfer.name))
        elif unit:
            lines.append(_("承办单位：{unit}。").format(unit=unit))
        for deadline in view.deadlines:
            phrase = CLOCK_PHRASES.get(deadline.clock)
            if phrase:
                line = _(phrase).format(date=_date_text(turn, deadline.due_on))
                if deadline.provisional:
                    line += _("（暂定，以法定节假日安排为准）")
                lines.append("· " + line)
        if anonymous:
            lines.append(_("匿名举报不告知核查结果；处理状态可以随时发送 /status 查询。"))
        elif turn.person.channel == "telegram":
            lines.append(_("处理进展会在这里通知您。查询进度请发送 /status。"))
        else:
            lines.append(_("处理进展可以随时用编号和查询码在状态页查询。"))
        return "\n".join(lines)

    async def _status(self, turn: _Turn) -> None:
        _ = turn._
        cases = await self._cases.cases_of(turn.person.channel, turn.person.user_id)
        if not cases:
            return turn.say(_("您还没有登记过投诉举报。直接描述遇到的问题即可开始。"))
        lines = [_("您的登记：")]
        buttons = []
        for case in cases[:10]:
            due = _("，下一期限 {date}").format(date=_date_text(turn, case.next_due_on)) if case.next_due_on else ""
            lines.append(f"{case.number} · {self._category_name(turn, case.category)} · {self._status_name(turn, case.status)}{due}")
            buttons.append(Button(case.number, f"case:{case.number}"))
        turn.say("\n".join(lines), *_rows(buttons, 2))

    async def _show_case(self, turn: _Turn, number: str) -> None:
        _ = turn._
        if not number:
            return turn.say(_("请在命令后写上编号，例如：/case LW-2026-000123"))
        try:
            case = await self._cases.case_of(turn.person.channel, turn.person.user_id, number)
        except CaseNotFound:
            return turn.say(_("没有找到您名下编号为 {number} 的登记。请检查编号，或发送 /status 查看您的全部登记。").format(
                number=number[:40]))
        lines = [f"{case.number}", _line(turn, "category", self._category_name(turn, case.category)),
                 _("状态：{status}").format(status=self._status_name(turn, case.status))]
        if case.lead_unit:
            lines.append(_("承办单位：{unit}").format(unit=self._unit_name(turn, case.lead_unit)))
        if case.next_due_on:
            lines.append(_("下一期限：{date}").format(date=_date_text(turn, case.next_due_on)))
        buttons = []
        if case.status != Status.CLOSED:
            buttons.append(Button(_("补充材料"), f"add:{case.number}"))
        if case.status == Status.RECEIVED:
            buttons.append(Button(_("撤回"), f"withdraw:{case.number}"))
        turn.say("\n".join(lines), tuple(buttons))

    async def _add_to_case(self, turn: _Turn, *, text: str | None = None, evidence: Attachment | None = None) -> None:
        _ = turn._
        number = turn.draft.case_number
        try:
            case = await self._cases.case_of(turn.person.channel, turn.person.user_id, number)
            items = (EvidenceItem(evidence.sha256, evidence.size, evidence.mime, evidence.name, turn.person.channel),) if evidence else ()
            await self._cases.add_from_complainant(case.id, Actor("complainant"), text=text, evidence=items)
        except (CaseNotFound, DomainError):
            turn.say(_("{number} 已经办结或不存在，无法补充。如有新问题请直接描述。").format(number=number))
            return self._resume(turn)
        turn.say(_("已附到 {number}。还可以继续发送，完成后点“补充完毕”。").format(number=number),
                 (Button(_("补充完毕"), "add_done"),))

    async def _withdraw(self, turn: _Turn, *, confirmed: bool) -> None:
        _ = turn._
        number = turn.draft.case_number
        if not confirmed or not number:
            turn.say(_("好的，没有撤回。"))
            return self._resume(turn)
        try:
            case = await self._cases.case_of(turn.person.channel, turn.person.user_id, number)
            await self._cases.withdraw(case.id, Actor("complainant"), _("您已撤回 {number}，本件不再处理。").format(number=number))
        except CaseNotFound:
            turn.say(_("没有找到您名下编号为 {number} 的登记。").format(number=number))
        except DomainError:
            turn.say(_("{number} 已经受理，不能再撤回。如有需要请补充说明，承办人员会与您联系。").format(number=number))
        else:
            turn.say(_("已撤回 {number}。").format(number=number))
        self._resume(turn)

    @staticmethod
    def _set_aside(draft: Draft) -> None:
        """Remember the unfinished draft's step while the person deals with an existing case."""
        if draft.step not in (Step.ADD_TO_CASE, Step.CONFIRM_WITHDRAW, Step.CONFIRM_CANCEL, Step.RATE,
                              Step.RATE_COMMENT):
            draft.resume_step = draft.step

    def _resume(self, turn: _Turn) -> None:
        self._leave_case(turn.draft)
        if turn.draft.has_content:
            self._prompt(turn)

    @staticmethod
    def _leave_case(draft: Draft) -> None:
        """Back to the unfinished draft's step (or the start), without asking anything yet."""
        draft.case_number = None
        draft.rating = None
        draft.step = draft.resume_step or Step.DESCRIBE
        draft.resume_step = None

    # -- the satisfaction survey (回访) -------------------------------------------------------------

    async def _rate_button(self, turn: _Turn, arg: str) -> None:
        """"rate:<number>:<1-5>" rates at once (the survey notice's buttons); "rate:<number>" asks."""
        _ = turn._
        number, sep, score_text = arg.partition(":")
        number = number.strip()
        if not _CASE_NUMBER.match(number) or (sep and not re.fullmatch(r"[1-5]", score_text)):
            return turn.say(_("这个评价按钮无效。请点击通知里的评分按钮，或发送 /status 查看您的登记。"))
        if sep:
            return await self._rate_case(turn, number, int(score_text))
        try:
            case = await self._cases.case_of(turn.person.channel, turn.person.user_id, number)
        except CaseNotFound:
            return turn.say(_("没有找到您名下编号为 {number} 的登记。请检查编号，或发送 /status 查看您的全部登记。").format(
                number=number))
        if case.status != Status.CLOSED:
            return turn.say(_("{number} 还没有办结，办结后才能评价。").format(number=case.number))
        self._set_aside(turn.draft)
        turn.draft.case_number, turn.draft.rating, turn.draft.step = case.number, None, Step.RATE
        self._ask_rating(turn, case.number)

    def _ask_rating(self, turn: _Turn, number: str) -> None:
        _ = turn._
        buttons = [Button(f"{score} · {_(label)}", f"rate:{number}:{score}") for score, label in RATING_LABELS.items()]
        turn.say(_("您对 {number} 的处理结果满意吗？请选择 1 到 5 分（5 分最满意），也可以直接回复数字。").format(number=number),
                 tuple(buttons[:3]), tuple(buttons[3:]), (Button(_("以后再说"), "rate_later"),))

    async def _rate_case(self, turn: _Turn, number: str, score: int) -> None:
        """Rate the person's own case; then the optional comment is asked. Refusals change nothing."""
        _ = turn._
        draft = turn.draft
        asked = draft.step == Step.RATE
        try:
            case = await self._cases.case_of(turn.person.channel, turn.person.user_id, number)
        except CaseNotFound:
            turn.say(_("没有找到您名下编号为 {number} 的登记。请检查编号，或发送 /status 查看您的全部登记。").format(
                number=number))
            return self._resume(turn) if asked else None
        try:
            view = await self._cases.rate(case.id, Actor("complainant"), score)
        except DomainError as exc:
            if isinstance(exc, AlreadyRated):
                turn.say(_("{number} 已经评价过了，每件登记只能评价一次。谢谢您！").format(number=case.number))
            elif case.status != Status.CLOSED:
                turn.say(_("{number} 还没有办结，办结后才能评价。").format(number=case.number))
            else:
                turn.say(_("{number} 目前不能评价。").format(number=case.number))
            return self._resume(turn) if asked else None
        self._set_aside(draft)
        draft.case_number, draft.rating, draft.step = case.number, score, Step.RATE_COMMENT
        thanks = _("感谢您的评价：{score} 分（{label}）。").format(score=score, label=_(RATING_LABELS[score]))
        if view.status != Status.CLOSED:  # a low rating reopened the case
            thanks += _("很抱歉没能让您满意，{number} 已重新打开，由消保分局复核。").format(number=case.number)
            ask = _("可以直接发送一段文字，说说不满意的地方，复核时会参考；不需要请点“不用了”。")
        else:
            ask = _("如果愿意，可以直接发送一段文字，写下您的意见或建议；不需要请点“不用了”。")
        turn.say(thanks + "\n" + ask, (Button(_("不用了"), "rate_skip"),))

    async def _rate_comment(self, turn: _Turn, text: str) -> None:
        _ = turn._
        draft = turn.draft
        if text.strip().rstrip("。.!！").lower() in _NO_COMMENT or draft.rating not in RATING_LABELS:
            turn.say(_("好的，谢谢您的评价！"))
            return self._resume(turn)
        if not _has_words(text):
            return turn.say(_("我没看到文字内容。请用文字写下您的意见，不需要留言请点“不用了”。"),
                            (Button(_("不用了"), "rate_skip"),))
        number = draft.case_number
        try:
            case = await self._cases.case_of(turn.person.channel, turn.person.user_id, number)
            await self._cases.comment_on_rating(case.id, Actor("complainant"), text)
        except DomainError:  # CaseNotFound too
            turn.say(_("抱歉，留言没有保存成功；您的评分已经记录。"))
        else:
            turn.say(_("已收到您的留言，谢谢！我们会认真对待您的意见。"))
        self._resume(turn)

    # -- small helpers ----------------------------------------------------------------------------

    def _take_entities(self, draft: Draft, found) -> None:
        values = {
            "platform": found.platform,
            "live_room": found.live_room or found.streamer or found.shop,
            "product": found.product,
            "amount": found.amount_fen,
            "order_number": found.order_number,
            "purchase_date": found.purchase_date.isoformat() if found.purchase_date else None,
        }
        for slot, value in values.items():
            if value is not None and slot not in draft.slots:
                draft.slots[slot] = value
        if found.phone and not draft.phone:
            draft.phone = found.phone

    def _nlu_platform(self, text: str) -> str | None:
        if self._extractor is None:
            from nlu.training import default_training_data

            self._extractor = ent.EntityExtractor(default_training_data())
        return self._extractor.platform(text)

    def _category_name(self, turn: _Turn, category_id: str | None) -> str:
        if not category_id:
            return turn._("（未确定）")
        c = category(category_id)
        return c.en if turn.draft.lang == "en" else c.zh

    def _unit_name(self, turn: _Turn, code: str | None) -> str:
        if not code:
            return ""
        unit = self._directory.unit(code)
        return unit.name_en if turn.draft.lang == "en" and unit.name_en else unit.name

    def _status_name(self, turn: _Turn, status: Status) -> str:
        return turn._(STATUS_NAMES_ZH[status])


def _has_words(text: str) -> bool:
    try:
        normalise(text)
    except NluInputError:
        return False
    return True


def _line(turn: _Turn, field_name: str, value: str) -> str:
    """'label：value', with the punctuation of the person's language."""
    return turn._("{label}：{value}").format(label=turn._(FIELD_LABELS[field_name]), value=value)


def _rows(buttons: list[Button], width: int) -> list[tuple[Button, ...]]:
    return [tuple(buttons[i : i + width]) for i in range(0, len(buttons), width)]


def _size(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size / 1024 / 1024:.1f} MB"
    return f"{max(1, round(size / 1024))} KB"


def _yuan(fen: int) -> str:
    return f"{fen // 100}" if fen % 100 == 0 else f"{fen / 100:.2f}"


def _mask(phone: str | None) -> str:
    if not phone:
        return ""
    return phone[:3] + "****" + phone[-4:] if len(phone) >= 8 else "****"


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _typed_score(text: str) -> int | None:
    """A score typed as the answer to the rating question: 4, ４, 4分, 四分, 4星."""
    plain = unicodedata.normalize("NFKC", text).strip().rstrip("。.!！")
    match = re.fullmatch(r"([1-5一二两三四五])\s*(分|星)?", plain)
    if match is None:
        return None
    digit = match.group(1)
    return int(digit) if digit.isdigit() else _SCORE_WORDS[digit]


def _plain_amount(text: str) -> int | None:
    """A bare number given as the amount: 399, 399.5 or 三百九十九."""
    from nlu.numerals import parse_chinese_number

    match = re.fullmatch(r"\s*(\d{1,12}(?:\.\d{1,2})?)\s*", text)
    value = Decimal(match.group(1)) if match else parse_chinese_number(text.strip())
    if value is None or not 0 < value <= MAX_AMOUNT_YUAN:  # a price of 0 is no answer; 100 million+ a typo
        return None
    return int((value * 100).to_integral_value()) or None


def _iso_date(text: str) -> date | None:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        return None


def _date_text(turn: _Turn, day: date) -> str:
    if turn.draft.lang == "en":
        return day.isoformat()
    return f"{day.year}年{day.month}月{day.day}日"


def _storable(text: str) -> str:
    """The text as it can be stored anywhere: without NUL, lone surrogates replaced (see _NUL)."""
    if not text:
        return text
    return _LONE_SURROGATE.sub("\ufffd", text.replace(_NUL, ""))


def _storable_event(event: Inbound) -> Inbound:
    """Channels pass on what people send; what no database can keep is made storable here, once, so a
    draft never carries it into a case (where PostgreSQL would refuse the whole insert)."""
    attachment = event.attachment
    if attachment is not None and attachment.name:
        attachment = replace(attachment, name=_storable(attachment.name))
    return replace(event, text=_storable(event.text), value=_storable(event.value), args=_storable(event.args),
                   attachment=attachment)


def _submission_key(person: Person, draft: Draft) -> str:
    """The same person submitting the same draft: a retry of one submit (the update handled again after
    its reply could not be saved) files no second case."""
    material = json.dumps([person.channel, person.user_id, draft.to_dict()], ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(material.encode()).hexdigest()
