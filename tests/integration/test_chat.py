"""The web chat (/chat) through real HTTP: the same conversation as the bot, file uploads, the case
number and access code at the end, the status page, and the protections (CSRF, Origin, rate limit,
escaping).

The clock is fixed at Monday 2026-11-16 10:00 Shanghai (tests/conftest.py); 7 working days later is
Wednesday 2026-11-25 (see test_bot_flows.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select

from db.models import Case, CaseEvent, Complainant, Evidence, InboxUpdate, OutboxMessage
from intake.cases import NewCase
from nlu.taxonomy import Kind
from qinglang.bootstrap import build_container
from web.app import create_app
from web.chat.codes import code_hash, normalise_code
from web.chat.identity import COOKIE
from web.chat.routes import SERVICE
from tests.fakes.images import png

CASHMERE = "我昨天在抖音「好物严选」直播间花了399元买了一件羊绒衫，收到后送检根本不含羊绒，以假充真，我要投诉退款"
CASHMERE_CONFIRM = ("我理解的情况是：\n问题类别：产品质量违法\n平台：抖音\n直播间/主播：好物严选\n商品：羊绒衫\n金额：399 元\n"
                    "购买日期：2026年11月15日\n诉求：投诉（要求退款、赔偿等）\n对吗？")
ORDER_Q = "订单号是多少？（在订单详情页可以复制）"
MERCHANT_Q = "商家（发货或经营地）在龙湾区吗？这决定由哪个部门处理。"
STREET_Q = "商家在龙湾区哪个街道？"
EVIDENCE_Q = "请发送相关证据：商品或订单截图、聊天记录、直播录屏、照片，或直播间/商品链接。全部发完请点“发送完毕”。"
COMPLAINT_NAME_Q = "投诉需要您的真实姓名和联系电话，以便调解和告知结果。\n请输入您的姓名："
PHONE_Q = "请输入您的手机号："
PRIVACY = ("隐私说明：您提供的信息只用于处理本次投诉举报，仅承办人员可以查看；举报人身份依法保密，不会告知被举报方。"
           "手机号等个人信息只向承办人员显示，每一次查看都有记录。")
CONSENT_Q = PRIVACY + "\n同意后我们会把您的信息用于处理本次投诉举报。"
RECEIPT = ("✅ 已登记，编号 LW-2026-000001。\n承办单位：永中市场监督管理所。\n· 2026年11月25日 前告知您是否受理\n"
           "处理进展可以随时用编号和查询码在状态页查询。")
NOT_FOUND = "没有找到与该编号和查询码相符的登记。请检查后重新输入。"
TOO_MANY = "尝试次数过多，请 10 分钟后再试。"
ELF = b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 8 + b"\x02\x00\x3e\x00\x01\x00\x00\x00" + b"\x00" * 200


# -- reading the pages ------------------------------------------------------------------------------

@dataclass
class Form:
    action: str
    fields: dict[str, str] = field(default_factory=dict)
    buttons: list[tuple[str, str]] = field(default_factory=list)  # (label, value)
    enctype: str = ""


@dataclass
class Page:
    html: str
    messages: list[tuple[str, str]] = field(default_factory=list)  # (me|bot, text)
    forms: list[Form] = field(default_factory=list)
    receipt: dict[str, str] = field(default_factory=dict)  # dt -> dd of the receipt panel
    details: dict[str, str] = field(default_factory=dict)  # dt -> dd of the status page
    errors: list[str] = field(default_factory=list)
    notices: list[tuple[str, str]] = field(default_factory=list)  # (when, text) of the status page's notices
    thread: list[tuple[str, str]] = field(default_factory=list)  # (mine|theirs, text) of its messages
    done: list[str] = field(default_factory=list)  # the one-time confirmation after a status page post

    def form(self, action: str, *, with_buttons: bool = False) -> Form:
        return next(f for f in self.forms if f.action == action and bool(f.buttons) == with_buttons)

    @property
    def button_labels(self) -> list[str]:
        return [label for f in self.forms for label, _value in f.buttons]


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.page = Page("")
        self._text: list[str] | None = None
        self._who = ""
        self._button: tuple[str, list[str]] | None = None
        self._dl: dict[str, str] | None = None
        self._dt: list[str] | None = None
        self._dd: list[str] | None = None
        self._key = ""
        self._error: list[str] | None = None
        self._section = ""
        self._item = ""  # notice | mine | theirs: the status page's list item being read
        self._when: list[str] | None = None
        self._item_when = ""
        self._done: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        if tag == "li" and "msg" in classes:
            self._who = "me" if "me" in classes else "bot"
        elif tag == "li" and {"notice", "mine", "theirs"} & set(classes):
            self._item = next(c for c in classes if c in ("notice", "mine", "theirs"))
        elif tag == "span" and "when" in classes and self._item:
            self._when = []
        elif tag == "p" and self._item and ({"body", "text"} & set(classes)):
            self._text = []
        elif tag == "p" and "done" in classes:
            self._done = []
        elif tag == "p" and "text" in classes and self._who:
            self._text = []
        elif tag == "form":
            self.page.forms.append(Form(a.get("action", ""), enctype=a.get("enctype", "")))
        elif tag == "input" and self.page.forms and a.get("type") == "hidden":
            self.page.forms[-1].fields[a["name"]] = a.get("value", "")
        elif tag == "button" and self.page.forms and a.get("name") == "value":
            self._button = (a.get("value", ""), [])
        elif tag == "section":
            self._section = "receipt" if "receipt" in classes else "case"
        elif tag == "dl":
            self._dl = self.page.receipt if self._section == "receipt" else self.page.details
        elif tag == "dt" and self._dl is not None:
            self._dt = []
        elif tag == "dd" and self._dl is not None:
            self._dd = []
        elif tag == "p" and "error" in classes:
            self._error = []

    def handle_endtag(self, tag):
        if tag == "p" and self._text is not None and self._item:
            text = "".join(self._text)
            if self._item == "notice":
                self.page.notices.append((self._item_when, text))
            else:
                self.page.thread.append((self._item, text))
            self._text, self._item = None, ""
        elif tag == "span" and self._when is not None:
            self._item_when, self._when = "".join(self._when).strip(), None
        elif tag == "p" and self._done is not None:
            self.page.done.append("".join(self._done).strip())
            self._done = None
        elif tag == "p" and self._text is not None:
            self.page.messages.append((self._who, "".join(self._text)))
            self._text, self._who = None, ""
        elif tag == "button" and self._button is not None:
            value, label = self._button
            self.page.forms[-1].buttons.append(("".join(label).strip(), value))
            self._button = None
        elif tag == "dt" and self._dt is not None:
            self._key, self._dt = "".join(self._dt).strip(), None
        elif tag == "dd" and self._dd is not None:
            self._dl[self._key] = "".join(self._dd).strip()
            self._dd = None
        elif tag == "dl":
            self._dl = None
        elif tag == "p" and self._error is not None:
            if "".join(self._error).strip():
                self.page.errors.append("".join(self._error).strip())
            self._error = None

    def handle_data(self, data):
        for sink in (self._text, self._dt, self._dd, self._error, self._when, self._done):
            if sink is not None:
                sink.append(data)
        if self._button is not None:
            self._button[1].append(data)


def parse(html: str) -> Page:
    parser = _Parser()
    parser.feed(html)
    parser.page.html = html
    return parser.page


class Citizen:
    """A browser without JavaScript: every form is a plain POST followed by the redirect."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.page: Page | None = None

    @property
    def origin(self) -> str:
        return str(self.client.make_url("/")).rstrip("/")

    async def open(self, path: str = "/chat") -> Page:
        response = await self.client.get(path)
        assert response.status == 200, await response.text()
        self.page = parse(await response.text())
        return self.page

    async def post(self, form: Form, data: dict | FormData, *, headers: dict | None = None, expect: int = 200):
        response = await self.client.post(form.action, data=data, headers={"Origin": self.origin, **(headers or {})})
        assert response.status == expect, (response.status, await response.text())
        self.page = parse(await response.text())
        return response

    async def _new_messages(self) -> list[str]:
        """What the bot said after the person's last line."""
        last = max((i for i, (who, _text) in enumerate(self.page.messages) if who == "me"), default=-1)
        return [text for who, text in self.page.messages[last + 1:] if who == "bot"]

    async def start(self) -> None:
        await self.open()

    async def send(self, text: str) -> list[str]:
        form = self.page.form("/chat/send")
        await self.post(form, {**form.fields, "text": text})
        return await self._new_messages()

    async def press(self, label: str) -> list[str]:
        form = self.page.form("/chat/send", with_buttons=True)
        value = next(v for lbl, v in form.buttons if lbl == label)
        await self.post(form, {**form.fields, "value": value})
        return await self._new_messages()

    async def upload(self, content: bytes, name: str, caption: str = "") -> list[str]:
        form = self.page.form("/chat/upload")
        data = FormData(quote_fields=False)  # as browsers send it: the file name in UTF-8
        for key, value in form.fields.items():
            data.add_field(key, value)
        data.add_field("caption", caption)
        data.add_field("file", content, filename=name, content_type="application/octet-stream")
        await self.post(form, data)
        return await self._new_messages()

    async def status(self, number: str, code: str, *, expect: int = 200, headers: dict | None = None) -> Page:
        await self.open("/chat/status")
        form = self.page.form("/chat/status")
        await self.post(form, {**form.fields, "number": number, "code": code}, expect=expect, headers=headers)
        return self.page


@contextlib.asynccontextmanager
async def running(container) -> AsyncIterator[TestClient]:
    app = create_app(container, with_bot=False)
    async with TestClient(TestServer(app)) as client:
        yield client


@pytest.fixture
async def client(container) -> AsyncIterator[TestClient]:
    async with running(container) as c:
        yield c


@pytest.fixture
async def citizen(client) -> Citizen:
    someone = Citizen(client)
    await someone.start()
    return someone


async def to_evidence_step(someone: Citizen) -> None:
    assert await someone.send(CASHMERE) == [CASHMERE_CONFIRM]
    assert await someone.press("对，继续") == [ORDER_Q]
    assert await someone.send("DY2026111500123") == [MERCHANT_Q]
    assert await someone.press("在龙湾区") == [STREET_Q]
    assert await someone.press("永中街道") == [EVIDENCE_Q]


async def from_evidence_to_receipt(someone: Citizen) -> list[str]:
    assert await someone.press("发送完毕") == [COMPLAINT_NAME_Q]
    assert await someone.send("张三") == [PHONE_Q]
    assert await someone.send("13812345678") == [CONSENT_Q]
    (summary,) = await someone.press("同意")
    assert summary.startswith("请核对登记内容：")
    return await someone.press("✅ 提交")


def sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


async def count(container, model, *where) -> int:
    async with container.uow() as uow:
        return await uow.session.scalar(select(func.count()).select_from(model).where(*where))


def stored_files(container) -> list[str]:
    root = container.evidence.root
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and ".incoming" not in p.parts)


# -- complete conversations -------------------------------------------------------------------------

async def test_complaint_with_a_photo_gets_number_and_access_code(citizen, container):
    welcome = citizen.page.messages[0][1]
    assert welcome.startswith("您好！这里是龙湾区市场监督管理局")
    await to_evidence_step(citizen)
    photo = png(1)
    (received,) = await citizen.upload(photo, "订单截图.png", caption="商品页")
    assert received.startswith("已收到 1 个文件，共 1 KB。")
    assert ("me", "📎 订单截图.png (1 KB)\n商品页") in citizen.page.messages, citizen.page.messages[-3:]
    assert await from_evidence_to_receipt(citizen) == [RECEIPT]

    # the receipt panel: number, unit, due date and an access code, shown this once
    receipt = citizen.page.receipt
    assert receipt["编号"] == "LW-2026-000001"
    assert receipt["承办单位"] == "永中市场监督管理所"
    assert "2026年11月25日 前告知您是否受理" in citizen.page.html
    code = receipt["查询码"]
    assert re.fullmatch(r"[A-HJKMNP-Z2-9]{5}-[A-HJKMNP-Z2-9]{5}", code)
    again = await citizen.open()
    assert again.receipt == {} and code not in again.html
    # the transcript of the submitted draft is gone with it (name, phone): only the receipt stays
    assert again.messages[1:] == [("me", "✅ 提交"), ("bot", RECEIPT)]  # after the welcome

    async with container.uow() as uow:
        case = await uow.session.scalar(select(Case))
        person = await uow.session.get(Complainant, case.complainant_id)
        evidence = list(await uow.session.scalars(select(Evidence).where(Evidence.case_id == case.id)))
        events = [e.action for e in await uow.cases.events(case.id)]
    assert (case.number, case.channel, case.kind, case.category) == (
        "LW-2026-000001", "web", "complaint", "product_quality")
    assert (case.order_number, case.merchant_street) == ("DY2026111500123", "永中街道")
    assert [(e.sha256, e.mime, e.original_name, e.source) for e in evidence] == [
        (sha(photo), "image/png", "订单截图.png", "web")]
    assert container.evidence.exists(sha(photo))
    # the access code is stored only as its hash, and the raw cookie token never reaches the database
    assert case.access_code_hash == code_hash(case.number, code) and normalise_code(code) not in case.access_code_hash
    token = citizen.client.session.cookie_jar.filter_cookies(citizen.client.make_url("/chat"))[COOKIE].value
    assert person.channel_user_id == hashlib.sha256(token.encode()).hexdigest()
    assert (person.name, person.phone) == ("张三", "13812345678")
    assert "access_code_issued" in events
    rows = []
    async with container.engine.connect() as conn:
        for table in ("cases", "complainants", "bot_states", "inbox", "case_events"):
            rows += (await conn.exec_driver_sql(f"SELECT * FROM {table}")).all()
    dump = " ".join(map(str, rows))
    assert token not in dump and normalise_code(code) not in dump

    # /status inside the chat knows the cookie's cases
    (listing,) = await citizen.send("/status")
    assert "LW-2026-000001 · 产品质量违法 · 已接收" in listing

    # and the status page shows it with the code
    page = await citizen.status("lw-2026-000001", code.lower().replace("-", " "))
    assert page.details["状态"] == "已接收"
    assert page.details["问题类别"] == "产品质量违法"
    assert page.details["承办单位"] == "永中市场监督管理所"
    assert page.details["下一期限"] == "2026年11月25日"
    assert "暂时还没有答复" in page.html


async def test_plain_html_forms_without_javascript(citizen, container):
    """Posts answer 303 to /chat; the page carries everything needed (cookie, token, ids, buttons)."""
    form = citizen.page.form("/chat/send")
    assert set(form.fields) == {"csrf_token", "msg_id"}
    response = await citizen.client.post("/chat/send", data={**form.fields, "text": CASHMERE},
                                         headers={"Origin": citizen.origin}, allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == "/chat#latest"
    page = await citizen.open()
    assert page.messages[-1] == ("bot", CASHMERE_CONFIRM)
    assert page.messages[-2] == ("me", CASHMERE)
    buttons = page.form("/chat/send", with_buttons=True)
    assert [label for label, _v in buttons.buttons][0] == "对，继续"
    assert set(buttons.fields) == {"csrf_token", "msg_id", "rev"}
    response = await citizen.client.post("/chat/send", data={**buttons.fields, "value": "ok"},
                                         headers={"Origin": citizen.origin}, allow_redirects=False)
    assert response.status == 303
    assert (await citizen.open()).messages[-1] == ("bot", ORDER_Q)
    # the page is self-contained: local CSS and JS only, no inline script, nothing from elsewhere
    assert 'src="/static/chat/chat.js"' in page.html and "<script>" not in page.html and "://" not in page.html
    assert (await citizen.client.get("/static/chat/chat.js")).status == 200
    assert (await citizen.client.get("/static/chat/chat.css")).status == 200


async def test_fetch_posts_get_the_conversation_fragment(citizen):
    form = citizen.page.form("/chat/send")
    response = await citizen.client.post("/chat/send", data={**form.fields, "text": CASHMERE},
                                         headers={"Origin": citizen.origin, "X-Requested-With": "qinglang-chat"})
    assert response.status == 200
    html = await response.text()
    assert html.lstrip().startswith('<main id="chat"') and "<html" not in html
    assert parse(html).messages[-1] == ("bot", CASHMERE_CONFIRM)


async def test_a_draft_survives_a_restart(citizen, container, settings, clock):
    assert await citizen.send(CASHMERE) == [CASHMERE_CONFIRM]
    assert await citizen.press("对，继续") == [ORDER_Q]
    cookies = citizen.client.session.cookie_jar.filter_cookies(citizen.client.make_url("/chat"))
    await citizen.client.close()  # the first app stops (and disposes of its engine)

    second = build_container(settings, clock=clock)  # a new process on the same database and files
    async with running(second) as client:
        client.session.cookie_jar.update_cookies(cookies, client.make_url("/chat"))
        again = Citizen(client)
        page = await again.open()
        assert page.messages[-1] == ("bot", ORDER_Q)  # the transcript is still there
        assert await again.send("DY2026111500123") == [MERCHANT_Q]
        assert await again.press("在龙湾区") == [STREET_Q]
        user_id = hashlib.sha256(cookies[COOKIE].value.encode()).hexdigest()
        draft = await client.app[SERVICE].draft(user_id)
        assert (draft.step, draft.slots["order_number"], draft.slots["product"]) == (
            "merchant_street", "DY2026111500123", "羊绒衫")


async def test_the_same_message_sent_twice_is_handled_once(citizen, container):
    form = citizen.page.form("/chat/send")
    data = {**form.fields, "text": CASHMERE}
    for _ in range(2):
        response = await citizen.client.post("/chat/send", data=data, headers={"Origin": citizen.origin},
                                             allow_redirects=False)
        assert response.status == 303
    page = await citizen.open()
    assert [m for m in page.messages if m == ("me", CASHMERE)] == [("me", CASHMERE)]
    assert page.messages.count(("bot", CASHMERE_CONFIRM)) == 1
    assert await count(container, InboxUpdate, InboxUpdate.channel == "web") == 1
    (row,) = await _inbox(container)
    assert row.processed_at is not None and row.payload is None  # handled: the words live in the draft only
    assert row.external_id.endswith(":" + form.fields["msg_id"])

    # the same for a button: a double click on "对，继续" moves on once
    buttons = page.form("/chat/send", with_buttons=True)
    for _ in range(2):
        await citizen.client.post("/chat/send", data={**buttons.fields, "value": "ok"},
                                  headers={"Origin": citizen.origin}, allow_redirects=False)
    page = await citizen.open()
    assert page.messages.count(("bot", ORDER_Q)) == 1
    assert await count(container, InboxUpdate, InboxUpdate.channel == "web") == 2


async def _inbox(container) -> list[InboxUpdate]:
    async with container.uow() as uow:
        return list(await uow.session.scalars(select(InboxUpdate).order_by(InboxUpdate.id)))


async def test_an_executable_is_refused_and_nothing_is_stored(citizen, container):
    await to_evidence_step(citizen)
    inbox_before = await count(container, InboxUpdate)
    (refusal,) = await citizen.upload(ELF, "invoice.pdf")
    assert refusal.startswith("不支持的文件类型：检测到 可执行程序")
    assert "可接受的类型：JPEG、PNG" in refusal
    assert ("me", "📎 invoice.pdf") in citizen.page.messages
    assert stored_files(container) == []
    assert await count(container, InboxUpdate) == inbox_before
    # the evidence step is still on offer and the draft has no file
    assert "发送完毕" in citizen.page.button_labels
    assert await from_evidence_to_receipt(citizen) == [RECEIPT]
    assert await count(container, Evidence) == 0


async def test_an_empty_upload_form_asks_for_a_file(citizen, container):
    form = citizen.page.form("/chat/upload")
    data = FormData(quote_fields=False)
    for key, value in form.fields.items():
        data.add_field(key, value)
    data.add_field("file", b"", filename="", content_type="application/octet-stream")
    await citizen.post(form, data)
    assert citizen.page.messages[-1] == ("bot", "请先选择要上传的文件（截图、照片、视频、PDF 等）。")
    assert stored_files(container) == []


async def test_a_stale_or_foreign_button_changes_nothing(citizen):
    assert await citizen.send(CASHMERE) == [CASHMERE_CONFIRM]
    old = citizen.page.form("/chat/send", with_buttons=True)
    assert await citizen.press("对，继续") == [ORDER_Q]
    # the old page's "对，继续" again (browser back): the draft moved on
    await citizen.post(old, {**old.fields, "msg_id": old.fields["msg_id"] + "x", "value": "cats"})
    assert citizen.page.messages[-1] == ("bot", "这个按钮已经失效了。")
    await citizen.post(old, {**old.fields, "msg_id": old.fields["msg_id"] + "y", "value": "skip"})
    assert citizen.page.messages[-1][1] == "这个按钮已经过期了，请按最新的提示操作。"
    # a value never offered (a forged form) is refused the same way
    await citizen.post(old, {**old.fields, "msg_id": old.fields["msg_id"] + "z", "value": "submit"})
    assert citizen.page.messages[-1] == ("bot", "这个按钮已经失效了。")
    assert await citizen.send("DY2026111500123") == [MERCHANT_Q]  # the conversation goes on where it was


async def test_cancelling_deletes_the_draft_and_its_transcript(citizen, container):
    await to_evidence_step(citizen)
    assert await citizen.send("取消") == ["确定要取消本次登记吗？已填写的内容将被删除。"]
    assert await citizen.press("确定取消") == ["已取消，本次填写的内容已删除。需要时随时发消息给我。"]
    page = await citizen.open()
    assert page.messages[1:] == [("me", "确定取消"), ("bot", "已取消，本次填写的内容已删除。需要时随时发消息给我。")]
    user_id = hashlib.sha256(citizen.client.session.cookie_jar.filter_cookies(
        citizen.client.make_url("/chat"))[COOKIE].value.encode()).hexdigest()
    assert await citizen.client.app[SERVICE].draft(user_id) is None
    assert await count(container, Case) == 0


# -- the status page --------------------------------------------------------------------------------

async def submitted(citizen: Citizen) -> tuple[str, str]:
    await to_evidence_step(citizen)
    await from_evidence_to_receipt(citizen)
    return citizen.page.receipt["编号"], citizen.page.receipt["查询码"]


async def test_status_page_with_right_and_wrong_codes(citizen, container, clock):
    number, code = await submitted(citizen)
    async with container.uow() as uow:
        case = await uow.session.scalar(select(Case))
    await container.cases.accept(case.id, _staff())
    await container.cases.resolve(case.id, _staff(), "mediated", "经调解，商家同意退款399元。<script>alert(1)</script>")

    page = await citizen.status(number, code)
    assert page.details["状态"] == "已办结"
    assert "经调解，商家同意退款399元。&lt;script&gt;alert(1)&lt;/script&gt;" in page.html
    assert "<script>alert(1)" not in page.html

    wrong = await citizen.status(number, "AAAAA-AAAAA")
    assert wrong.errors == [NOT_FOUND] and wrong.details == {}
    unknown = await citizen.status("LW-2026-999999", code)
    assert unknown.errors == [NOT_FOUND]
    nonsense = await citizen.status("<b>x</b>", "")
    assert nonsense.errors == [NOT_FOUND] and "<b>x</b>" not in nonsense.html
    # no code at all
    assert (await citizen.status(number, "")).errors == [NOT_FOUND]
    async with container.uow() as uow:
        failures = list(await uow.session.scalars(select(CaseEvent).where(CaseEvent.action == "status_lookup_failed")))
    assert len(failures) == 4 and failures[0].note == number and failures[0].data == {"ip": "127.0.0.1"}


def _staff():
    from intake.cases import Actor

    return Actor.system()


async def test_status_guessing_is_rate_limited(citizen, container, clock, caplog):
    number, code = await submitted(citizen)
    caplog.set_level("WARNING", logger="web.chat.routes")
    # wrong pairs for other numbers: this address's and this cookie's tries, not the case's own
    # (test_attack_status_lookup.py has those)
    for attempt in range(10):
        assert (await citizen.status(f"LW-2026-{900000 + attempt}", f"WRONG{attempt:05d}")).errors == [NOT_FOUND]
    assert sum("wrong case number or access code" in r.getMessage() for r in caplog.records) == 10
    # the 11th try is refused, even with the right code, and from a fresh cookie on the same IP
    assert (await citizen.status(number, code, expect=429)).errors == [TOO_MANY]
    citizen.client.session.cookie_jar.clear()
    assert (await citizen.status(number, code, expect=429)).errors == [TOO_MANY]
    # behind a reverse proxy on this machine, the address it forwards is the one counted
    behind_proxy = await citizen.status(number, code, headers={"X-Forwarded-For": "198.51.100.1, 203.0.113.7"})
    assert behind_proxy.details["状态"] == "已接收"
    # ten minutes later the oldest tries have expired
    clock.advance(minutes=10, seconds=1)
    assert (await citizen.status(number, code)).details["状态"] == "已接收"


# -- protections ------------------------------------------------------------------------------------

async def test_posts_without_token_or_from_another_site_are_refused(citizen, container):
    form = citizen.page.form("/chat/send")
    base = {**form.fields, "text": CASHMERE}
    cases = [
        ({k: v for k, v in base.items() if k != "csrf_token"}, {"Origin": citizen.origin}),
        ({**base, "csrf_token": "0" * 64}, {"Origin": citizen.origin}),
        (base, {"Origin": "https://evil.example"}),
        (base, {"Origin": "null"}),
        (base, {"Referer": "https://evil.example/chat"}),
    ]
    for data, headers in cases:
        response = await citizen.client.post("/chat/send", data=data, headers=headers, allow_redirects=False)
        assert response.status == 403, (data, headers)
        assert "<p class=\"error\"" in await response.text()
    # an upload from another site stores no file
    upload = citizen.page.form("/chat/upload")
    data = FormData(quote_fields=False)
    for key, value in upload.fields.items():
        data.add_field(key, value)
    data.add_field("file", png(3), filename="a.png", content_type="image/png")
    response = await citizen.client.post("/chat/upload", data=data, headers={"Origin": "https://evil.example"})
    assert response.status == 403 and stored_files(container) == []
    # a status look-up from another site is refused before any code is checked
    response = await citizen.client.post("/chat/status", data={**form.fields, "number": "LW-2026-000001", "code": "x"},
                                         headers={"Origin": "https://evil.example"})
    assert response.status == 403
    # another browser's cookie does not make the token right
    other = Citizen(citizen.client)
    citizen.client.session.cookie_jar.clear()
    await other.open()
    response = await citizen.client.post("/chat/send", data=base, headers={"Origin": citizen.origin},
                                         allow_redirects=False)
    assert response.status == 403
    assert await count(container, InboxUpdate) == 0
    # the cookie: HttpOnly, SameSite=Lax, only for /chat
    citizen.client.session.cookie_jar.clear()
    fresh = await citizen.client.get("/chat")
    cookie = fresh.cookies[COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Lax" and cookie["path"] == "/chat"


async def test_the_citizens_words_and_file_names_are_escaped(citizen, container):
    payload = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    await citizen.send("我在直播间买的口红是假货 " + payload)
    name = '"><img src=x onerror=alert(2)>.png'  # (a "/" would end the name: only its last part is kept)
    await citizen.upload(png(5), name)
    html = citizen.page.html
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;" in html
    assert "&#34;&gt;&lt;img src=x onerror=alert(2)&gt;.png" in html
    assert ("me", "我在直播间买的口红是假货 " + payload) in citizen.page.messages
    assert any(who == "me" and text.startswith("📎 " + name) for who, text in citizen.page.messages)


# -- the status page: notices, answering an information request, rating -----------------------------

NOW = datetime(2026, 11, 16, 2, 0, tzinfo=UTC)  # the `clock` fixture: 10:00 in Shanghai
LOOK_UP_FIRST = "请先输入编号和查询码查询（查询 30 分钟后需要重新输入）。"
PICK_A_SCORE = "请选择 1 到 5 分。"


async def looked_up(citizen: Citizen, container) -> tuple[str, int]:
    """A complaint submitted in the chat and looked up on the status page: (number, case id)."""
    number, code = await submitted(citizen)
    page = await citizen.status(number, code)
    assert page.details["状态"] == "已接收"
    async with container.uow() as uow:
        case = await uow.cases.by_number(number)
    return number, case.id


async def add_notice(container, case_id: int, body: str, sent_at: datetime | None, *, channel: str = "web",
                     status: str = "sent") -> None:
    """An outbox row as the notifier leaves it once delivered (web: written to the status page)."""
    async with container.uow() as uow:
        uow.session.add(OutboxMessage(
            idempotency_key=f"test:{uuid.uuid4().hex}", case_id=case_id, channel=channel,
            recipient="1001" if channel == "telegram" else None, template="staff_message", payload={},
            status=status, attempts=1, next_attempt_at=NOW, created_at=NOW, sent_at=sent_at, body=body))
        await uow.commit()


async def stored_case(container, case_id: int) -> Case:
    async with container.uow() as uow:
        return await uow.session.get(Case, case_id)


async def case_messages(container, case_id: int) -> list[tuple[str, str, bool]]:
    async with container.uow() as uow:
        return [(m.direction, m.body, m.info_request) for m in await uow.cases.messages(case_id)]


async def closed(container, case_id: int) -> None:
    staff = _staff()
    await container.cases.accept(case_id, staff)
    await container.cases.resolve(case_id, staff, "mediated", "经调解，商家同意退款399元。")
    await container.cases.close(case_id, staff)


def answer_form(page: Page | Form, fields: dict | None = None, *, text: str = "",
                file: tuple[bytes, str] | None = None) -> FormData:
    """The answer form's fields (of a page, or of a form kept from an earlier page), as a browser sends them."""
    form = page if isinstance(page, Form) else page.form("/chat/status/answer")
    data = FormData(quote_fields=False)
    for key, value in {**form.fields, **(fields or {})}.items():
        if value is not None:
            data.add_field(key, value)
    data.add_field("text", text)
    if file is not None:
        data.add_field("file", file[0], filename=file[1], content_type="application/octet-stream")
    else:
        data.add_field("file", b"", filename="", content_type="application/octet-stream")
    return data


async def test_status_page_lists_the_delivered_notices(citizen, container):
    number, case_id = await looked_up(citizen, container)
    other = await container.cases.create(NewCase(kind=Kind.TIPOFF, category="price", description="另一件举报：虚构原价",
                                                 channel="web", anonymous=True))
    # written out of order: the page orders them by the time they were delivered
    await add_notice(container, case_id, f"{number}：承办人员给您留言：\n<b>请</b>保留<script>alert(1)</script>小票",
                     NOW + timedelta(minutes=30))
    await add_notice(container, case_id, f"{number}：已受理，由永中市场监督管理所办理。", NOW + timedelta(minutes=5))
    await add_notice(container, case_id, "还没有送出的通知", None, status="pending")
    await add_notice(container, case_id, "发到 Telegram 的通知", NOW, channel="telegram")
    await add_notice(container, other.id, "别人的通知", NOW)

    page = await citizen.open(f"/chat/status?case={number}")
    assert page.notices == [
        ("2026年11月16日 10:05", f"{number}：已受理，由永中市场监督管理所办理。"),
        ("2026年11月16日 10:30", f"{number}：承办人员给您留言：\n<b>请</b>保留<script>alert(1)</script>小票"),
    ]
    assert "&lt;b&gt;请&lt;/b&gt;保留&lt;script&gt;alert(1)&lt;/script&gt;小票" in page.html
    assert "<script>alert(1)" not in page.html and "<b>请" not in page.html
    for hidden in ("还没有送出的通知", "发到 Telegram 的通知", "别人的通知"):
        assert hidden not in page.html
    # the page of a case this cookie did not look up stays closed, as does any page for another browser
    assert (await citizen.open(f"/chat/status?case={other.number}")).notices == []
    stranger = Citizen(citizen.client)
    citizen.client.session.cookie_jar.clear()
    page = await stranger.open(f"/chat/status?case={number}")
    assert page.details == {} and page.notices == [] and "已受理" not in page.html


async def test_status_page_shows_the_staffs_messages_and_replies(citizen, container):
    number, case_id = await looked_up(citizen, container)
    staff = _staff()
    await container.cases.accept(case_id, staff)
    await container.cases.message(case_id, staff, "我们已联系商家，请耐心等待。")
    await container.cases.request_information(case_id, staff, "请提供付款截图和<i>订单号</i>")
    page = await citizen.open(f"/chat/status?case={number}")
    assert page.thread == [("theirs", "我们已联系商家，请耐心等待。"), ("theirs", "请提供付款截图和<i>订单号</i>")]
    assert "需要补充" in page.html and "&lt;i&gt;订单号&lt;/i&gt;" in page.html and "<i>订单号" not in page.html
    assert "承办人员请您补充：" in page.html
    assert page.form("/chat/status/answer").fields.keys() == {"csrf_token", "number", "form_id"}
    assert not [f for f in page.forms if f.action == "/chat/status/rate"]  # not closed: nothing to rate


async def test_answering_an_information_request_with_words_and_a_file(citizen, container):
    number, case_id = await looked_up(citizen, container)
    await container.cases.accept(case_id, _staff())
    await container.cases.request_information(case_id, _staff(), "请提供付款截图")
    page = await citizen.open(f"/chat/status?case={number}")
    photo = png(7)
    words = "付款截图见附件 <script>alert(2)</script>"
    data = answer_form(page, text=words, file=(photo, "付款截图.png"))
    await citizen.post(page.form("/chat/status/answer"), data)
    assert citizen.page.done == [f"已收到您的补充，已附到 {number}，承办人员会看到。"]
    assert ("mine", words) in citizen.page.thread
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in citizen.page.html and "<script>alert(2)" not in citizen.page.html
    assert "承办人员请您补充：" not in citizen.page.html  # answered
    assert (await case_messages(container, case_id))[-1] == ("in", words, False)
    async with container.uow() as uow:
        evidence = [(e.sha256, e.mime, e.original_name, e.source) for e in await uow.cases.evidence(case_id)]
        events = [e.action for e in await uow.cases.events(case_id)]
    assert evidence == [(sha(photo), "image/png", "付款截图.png", "web")]
    assert events.count("complainant_addition") == 1
    assert (await citizen.open(f"/chat/status?case={number}")).done == []  # the confirmation is shown once

    # the same form posted again (a double click, a reload): added once
    await citizen.post(page.form("/chat/status/answer"), answer_form(page, text=words))
    assert [m for m in await case_messages(container, case_id) if m[0] == "in"] == [("in", words, False)]
    # a file alone, and words alone, from fresh pages
    page = await citizen.open(f"/chat/status?case={number}")
    await citizen.post(page.form("/chat/status/answer"), answer_form(page, file=(png(8), "b.png")))
    page = await citizen.open(f"/chat/status?case={number}")
    await citizen.post(page.form("/chat/status/answer"), answer_form(page, text="还有一句"))
    async with container.uow() as uow:
        assert len(await uow.cases.evidence(case_id)) == 2
    assert [m[1] for m in await case_messages(container, case_id) if m[0] == "in"] == [words, "还有一句"]


async def test_answer_form_refuses_empty_forged_and_closed(citizen, container):
    number, case_id = await looked_up(citizen, container)
    page = await citizen.open(f"/chat/status?case={number}")
    form = page.form("/chat/status/answer")
    await citizen.post(form, answer_form(page, text="   "), expect=400)
    assert citizen.page.errors == ["请填写要补充的内容，或选择一个文件。"]
    await citizen.post(form, answer_form(page, text="一段话", file=(ELF, "invoice.pdf")), expect=400)
    assert citizen.page.errors[0].startswith("不支持的文件类型")
    await citizen.post(form, answer_form(page, text="长" * 4097, file=(png(9), "a.png")), expect=400)
    assert citizen.page.errors == ["内容太长了，请控制在 4096 字以内，或分几次发送。"]
    assert stored_files(container) == []
    # no token, a wrong token, another site
    for fields, headers in (({"csrf_token": None}, {}), ({"csrf_token": "0" * 64}, {}),
                            ({}, {"Origin": "https://evil.example"})):
        await citizen.post(form, answer_form(page, fields, text="伪造"), headers=headers, expect=403)
    # a case number this cookie was not granted
    other = await container.cases.create(NewCase(kind=Kind.TIPOFF, category="price", description="另一件举报：虚构原价",
                                                 channel="web", anonymous=True))
    await citizen.post(form, answer_form(page, {"number": other.number}, text="伪造"), expect=403)
    assert citizen.page.errors == [LOOK_UP_FIRST]
    assert await case_messages(container, case_id) == [] and await case_messages(container, other.id) == []
    # a closed case offers no form, and a post for it is refused
    await closed(container, case_id)
    page = await citizen.open(f"/chat/status?case={number}")
    assert not [f for f in page.forms if f.action == "/chat/status/answer"]
    await citizen.post(form, answer_form(form, {"form_id": "fresh-form-id-1"}, text="还能补充吗"), expect=409)
    assert citizen.page.errors == ["本件已经办结，不能再补充材料。如有新的问题，请在线登记。"]
    assert [m for m in await case_messages(container, case_id) if m[0] == "in"] == []


async def test_rating_on_the_status_page(citizen, container):
    number, case_id = await looked_up(citizen, container)
    await closed(container, case_id)
    page = await citizen.open(f"/chat/status?case={number}")
    assert page.details["状态"] == "已关闭"
    form = page.form("/chat/status/rate")
    assert form.fields.keys() == {"csrf_token", "number", "form_id"}
    assert [f"{n} · " in page.html for n in range(1, 6)] == [True] * 5
    await citizen.post(form, {**form.fields, "score": "4", "comment": "处理及时 <b>谢谢</b>"})
    assert citizen.page.done == ["感谢您的评价！"]
    assert citizen.page.details["您的评价"] == "4 分（满意）"
    assert not [f for f in citizen.page.forms if f.action == "/chat/status/rate"]  # rated: no form any more
    case = await stored_case(container, case_id)
    assert (case.satisfaction, case.satisfaction_comment, case.rated_at, case.status) == (
        4, "处理及时 <b>谢谢</b>", NOW, "closed")

    # the same form again does nothing; an older copy of the page with another score is refused
    await citizen.post(form, {**form.fields, "score": "1"})
    await citizen.post(form, {**form.fields, "form_id": "another-form-id", "score": "1"}, expect=409)
    assert citizen.page.errors == ["您已经评价过了，每件登记只能评价一次。谢谢！"]
    case = await stored_case(container, case_id)
    assert (case.satisfaction, case.status) == (4, "closed")


async def test_a_low_rating_on_the_status_page_reopens_the_case(citizen, container):
    number, case_id = await looked_up(citizen, container)
    await closed(container, case_id)
    page = await citizen.open(f"/chat/status?case={number}")
    form = page.form("/chat/status/rate")
    await citizen.post(form, {**form.fields, "score": "1"})
    assert citizen.page.done == ["感谢您的评价！很抱歉没能让您满意，我们已重新打开本件，由消保分局复核。"]
    assert citizen.page.details["状态"] == "办理中"
    assert citizen.page.form("/chat/status/answer")  # open again: more can be added
    case = await stored_case(container, case_id)
    assert (case.satisfaction, case.satisfaction_comment, case.status, case.closed_at) == (1, None, "in_progress", None)


async def test_bad_ratings_are_refused_and_change_nothing(citizen, container, clock):
    number, case_id = await looked_up(citizen, container)
    page = await citizen.open(f"/chat/status?case={number}")
    open_form = Form("/chat/status/rate", {k: v for k, v in page.form("/chat/status/answer").fields.items()})
    # not closed yet: no rating form, and a forged post is refused
    assert not [f for f in page.forms if f.action == "/chat/status/rate"]
    await citizen.post(open_form, {**open_form.fields, "score": "5"}, expect=409)
    assert citizen.page.errors == ["本件还没有办结，办结后才能评价。"]

    await closed(container, case_id)
    page = await citizen.open(f"/chat/status?case={number}")
    form = page.form("/chat/status/rate")
    for score in ("0", "6", "abc", "", "4.5", "-1", "５"):
        await citizen.post(form, {**form.fields, "score": score}, expect=400)
        assert citizen.page.errors == [PICK_A_SCORE], score
    await citizen.post(form, {k: v for k, v in form.fields.items()}, expect=400)  # no score at all
    await citizen.post(form, {**form.fields, "score": "3", "comment": "长" * 4097}, expect=400)
    assert citizen.page.errors == ["留言太长了，请控制在 4096 字以内。"]
    # no token, a wrong token, another site
    for data, headers in (({k: v for k, v in form.fields.items() if k != "csrf_token"}, {}),
                          ({**form.fields, "csrf_token": "0" * 64}, {}),
                          (form.fields, {"Origin": "https://evil.example"})):
        await citizen.post(form, {**data, "score": "1"}, headers=headers, expect=403)
    # a browser that typed a wrong access code holds no grant: its post is refused
    citizen.client.session.cookie_jar.clear()
    guesser = Citizen(citizen.client)
    assert (await guesser.status(number, "AAAAA-AAAAA")).errors == [NOT_FOUND]
    lookup = guesser.page.form("/chat/status")
    await guesser.post(form, {**form.fields, "csrf_token": lookup.fields["csrf_token"], "score": "1"}, expect=403)
    assert guesser.page.errors == [LOOK_UP_FIRST]
    case = await stored_case(container, case_id)
    assert (case.satisfaction, case.rated_at, case.status) == (None, None, "closed")


async def test_a_grant_expires_and_posts_are_limited(citizen, container, clock):
    number, case_id = await looked_up(citizen, container)
    await closed(container, case_id)
    page = await citizen.open(f"/chat/status?case={number}")
    form = page.form("/chat/status/rate")
    # half an hour after the look-up the page needs the code again
    clock.advance(minutes=30, seconds=1)
    assert (await citizen.open(f"/chat/status?case={number}")).details == {}
    await citizen.post(form, {**form.fields, "score": "5"}, expect=403)
    assert citizen.page.errors == [LOOK_UP_FIRST]
    # after a new look-up: at most 20 posts in ten minutes
    page = await citizen.status(number, await _new_code(container, case_id))
    form = page.form("/chat/status/rate")
    for _ in range(20):
        await citizen.post(form, {**form.fields, "score": "9"}, expect=400)
    await citizen.post(form, {**form.fields, "score": "5"}, expect=429)
    assert citizen.page.errors == ["操作太频繁，请稍后再试。"]
    assert (await stored_case(container, case_id)).satisfaction is None


async def _new_code(container, case_id: int) -> str:
    from web.chat.codes import AccessCodes, shown

    return shown(await AccessCodes(container.uow, container.clock).issue(case_id))
