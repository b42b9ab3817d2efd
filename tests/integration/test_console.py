"""The staff console over real HTTP (aiohttp test client): login, the queue, the case page, evidence files,
every case action through its form, the access-control matrix, CSRF, escaping and keyset pagination.

Each staff member has an own client (own cookie jar). Forms are read from the rendered pages (with their
hidden csrf_token) and submitted as a browser would. The clock is fixed at Monday 2026-11-16 10:00 in
Shanghai (tests/conftest.py).

Units: a tip-off about prices by a merchant in 永中街道 goes to 价竞分局 (jiajing, lead ★) with 网监分局
(wangjian) and 综合执法队 (zongzhi) as co-units; a complaint about consumer rights goes to 永中市场监督管理所.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html.parser import HTMLParser

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select

from db.models import Case, CaseEvent, CaseMessage, CaseSubject, CaseUnit, StaffSession, Subject, Unit
from intake.cases import Actor, ComplainantInfo, EvidenceItem, NewCase
from intake.status import Status
from nlu.taxonomy import Kind
from routing.rules import MerchantLocation
from web.app import create_app
from tests.fakes.images import png

IN_YONGZHONG = MerchantLocation(in_district=True, street="永中街道", province="浙江省")
SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'
SCRIPT_ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
IMG_ESCAPED = "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;"
NOT_FOUND_TEXT = "没有这个案件，或者您无权查看。"

# who is who: role in the test -> (unit code, account role)
STAFF = {
    "triage": ("xiaobao", "triage"),  # 消保分局
    "lead": ("jiajing", "handler"),  # 价竞分局: lead unit of the tip-offs below
    "co": ("wangjian", "handler"),  # 网监分局: co-unit
    "other": ("zhiliang", "handler"),  # 质量监管科: no part in them
    "leader": ("bangongshi", "leader"),
    "admin": ("bangongshi", "admin"),
}


# -- HTML forms as a browser sees them --------------------------------------------------------------


@dataclass
class Form:
    action: str
    method: str
    attrs: dict[str, str]
    values: dict[str, str] = field(default_factory=dict)  # hidden inputs (and pre-filled text)
    names: set[str] = field(default_factory=set)  # every field the form has
    options: dict[str, list[str]] = field(default_factory=dict)  # select / checkbox name -> option values
    selected: dict[str, str] = field(default_factory=dict)  # select name -> the option a browser sends
    checked: dict[str, list[str]] = field(default_factory=dict)  # checkbox name -> the ticked values
    checkboxes: set[str] = field(default_factory=set)

    def data(self, values: dict[str, str | list[str]]) -> list[tuple[str, str]]:
        """What a browser sends with `values` filled in: hidden fields, the selected option of each
        select, the ticked checkboxes, then the given values (a list for several checkboxes)."""
        base = {**self.selected, **self.values}
        pairs = [(k, v) for k, v in base.items() if k not in values]
        pairs += [(k, v) for k, ticked in self.checked.items() if k not in values for v in ticked]
        for name, value in values.items():
            pairs += [(name, v) for v in value] if isinstance(value, list) else [(name, value)]
        return pairs


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []
        self._form: Form | None = None
        self._select: str | None = None

    def handle_starttag(self, tag, attrs):
        a = {k: (v or "") for k, v in attrs}
        if tag == "form":
            self._form = Form(a.get("action", ""), a.get("method", "get").lower(), a)
            self.forms.append(self._form)
        elif self._form is None:
            return
        elif tag == "input" and "name" in a and "form" not in a and a.get("type") in ("checkbox", "radio"):
            self._form.names.add(a["name"])
            self._form.checkboxes.add(a["name"])
            self._form.options.setdefault(a["name"], []).append(a.get("value", "on"))
            if "checked" in a:
                self._form.checked.setdefault(a["name"], []).append(a.get("value", "on"))
        elif tag == "input" and "name" in a and "form" not in a:
            self._form.names.add(a["name"])
            if a.get("type") == "hidden" or a.get("value"):
                self._form.values[a["name"]] = a.get("value", "")
        elif tag == "textarea":
            self._form.names.add(a["name"])
        elif tag == "select":
            self._select = a["name"]
            self._form.names.add(a["name"])
            self._form.options[a["name"]] = []
        elif tag == "option" and self._select:
            self._form.options[self._select].append(a.get("value", ""))
            if "selected" in a or self._select not in self._form.selected:
                self._form.selected[self._select] = a.get("value", "")

    def handle_endtag(self, tag):
        if tag == "form":
            self._form = None
        elif tag == "select":
            self._select = None


def forms_in(html: str) -> list[Form]:
    parser = _FormParser()
    parser.feed(html)
    return parser.forms


def find_form(html: str, action: str, **hidden: str) -> Form | None:
    for form in forms_in(html):
        if form.action == action and all(form.values.get(k) == v for k, v in hidden.items()):
            return form
    return None


def csrf_in(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no csrf_token in the page"
    return match.group(1)


def case_numbers(html: str) -> list[str]:
    return re.findall(r'<td class="nowrap"><a href="/cases/(LW-\d{4}-\d{6})">', html)


# -- the app and the people using it ------------------------------------------------------------------


class Staff:
    """One person at one browser: own cookies; reads forms from pages and submits them."""

    def __init__(self, client: TestClient, username: str, password: str, user_id: int) -> None:
        self.client, self.username, self.password, self.id = client, username, password, user_id

    async def login(self, password: str | None = None) -> ClientResponse:
        page = await self.client.get("/login")
        form = find_form(await page.text(), "/login")
        assert form is not None and {"username", "password", "csrf_token"} <= form.names
        return await self.client.post("/login", allow_redirects=False, data={
            **form.values, "username": self.username, "password": password or self.password})

    async def get(self, path: str) -> tuple[int, str]:
        response = await self.client.get(path, allow_redirects=False)
        return response.status, await response.text(errors="replace")

    async def csrf(self) -> str:
        status, html = await self.get("/password")
        assert status == 200
        return csrf_in(html)

    async def submit(self, page: str, action: str, values: dict[str, str | list[str]] | None = None,
                     **hidden: str) -> ClientResponse:
        """Fill in the form posting to `action` on `page` and send it, as a browser does."""
        status, html = await self.get(page)
        assert status == 200, (page, status)
        form = find_form(html, action, **hidden)
        assert form is not None, f"no form to {action} on {page}"
        return await self.send(form, values)

    async def send(self, form: Form, values: dict[str, str | list[str]] | None = None) -> ClientResponse:
        values = values or {}
        missing = set(values) - form.names
        assert not missing, f"the form to {form.action} has no field {missing}"
        for name, value in values.items():
            if name in form.options:
                for one in (value if isinstance(value, list) else [value]):
                    assert one in form.options[name], f"{one!r} is not an option of {name}"
        return await self.client.post(form.action, data=form.data(values), allow_redirects=False)

    async def post(self, path: str, values: dict[str, str] | None = None, *, csrf: str | None = "auto") -> ClientResponse:
        data = dict(values or {})
        if csrf == "auto":
            data["csrf_token"] = await self.csrf()
        elif csrf is not None:
            data["csrf_token"] = csrf
        return await self.client.post(path, data=data, allow_redirects=False)


@dataclass
class Console:
    container: object
    server: TestServer
    clients: list[TestClient]
    staff: dict[str, Staff] = field(default_factory=dict)

    async def browser(self) -> TestClient:
        client = TestClient(self.server)
        await client.start_server()
        self.clients.append(client)
        return client

    async def person(self, name: str, unit: str, role: str, *, login: bool = True) -> Staff:
        user = await self.container.accounts.create_user(name, unit, role)
        person = Staff(await self.browser(), name, user.password, user.id)
        if login:
            response = await person.login()
            assert response.status == 303, await response.text()
        self.staff[name] = person
        return person

    async def everyone(self) -> dict[str, Staff]:
        for key, (unit, role) in STAFF.items():
            if key not in self.staff:
                self.staff[key] = await self.person(key, unit, role)
        return {key: self.staff[key] for key in STAFF}


@pytest.fixture
async def console(container, monkeypatch) -> AsyncIterator[Console]:
    # the classifier is not needed by the console; training it would only slow every test down
    monkeypatch.setattr(container.nlu, "warm_up", lambda: None)
    server = TestServer(create_app(container, with_bot=False))
    await server.start_server()
    console = Console(container, server, [])
    yield console
    for client in console.clients:
        await client.close()
    await server.close()


# -- cases ------------------------------------------------------------------------------------------




PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


async def stored(container, content: bytes, name: str | None) -> EvidenceItem:
    put = await container.evidence.put(content, original_name="upload.bin")
    return EvidenceItem(put.sha256, put.size, put.mime, name, "upload")


def tipoff(**overrides) -> NewCase:
    values = dict(
        kind=Kind.TIPOFF, category="price", channel="web",
        description="主播说原价999现在99，其实平时一直卖99，虚假折扣",
        complainant=ComplainantInfo(name="李四", phone="13912345678"),
        merchant=IN_YONGZHONG, platform="抖音", live_room="好物直播间",
        nlu_category="price", nlu_confidence=0.83,
    )
    values.update(overrides)
    return NewCase(**values)


def complaint(**overrides) -> NewCase:
    values = dict(
        kind=Kind.COMPLAINT, category="consumer_rights", channel="telegram",
        description="直播间买的羽绒服七天无理由退货，商家一直不给退款",
        complainant=ComplainantInfo(channel_user_id="42", name="张三", phone="13800138000"),
        merchant=IN_YONGZHONG, platform="快手",
    )
    values.update(overrides)
    return NewCase(**values)


async def system_actor(container) -> Actor:
    """Walking cases to a status in the setup is done by a triage account of its own."""
    async with container.uow() as uow:
        user = await uow.users.by_username("setup")
    if user is None:
        user = await container.accounts.create_user("setup", "xiaobao", "triage")
    return Actor("staff", user.id)


async def case_at(container, status: Status, new: NewCase | None = None) -> tuple[int, str]:
    """A tip-off (lead 价竞分局) walked by the service to `status`."""
    cases, actor = container.cases, await system_actor(container)
    view = await cases.create(new or tipoff())
    if status in (Status.ACCEPTED, Status.IN_PROGRESS, Status.RESOLVED, Status.CLOSED):
        await cases.accept(view.id, actor)
    if status in (Status.RESOLVED, Status.CLOSED):
        await cases.resolve(view.id, actor, "not_filed", "经核查，未发现价格违法行为。")
    if status == Status.CLOSED:
        await cases.close(view.id, actor)
    assert (await cases.get(view.id)).status == status
    return view.id, view.number


@dataclass(frozen=True)
class Snapshot:
    status: str
    category: str
    lead: str | None
    events: int
    messages: int
    version: int
    co_units: tuple[str, ...] = ()
    subjects: tuple[int, ...] = ()
    satisfaction: int | None = None
    duplicate_of: int | None = None


async def snapshot(container, case_id: int) -> Snapshot:
    async with container.uow() as uow:
        case = await uow.session.get(Case, case_id)
        lead = await uow.session.scalar(
            select(Unit.code).join(CaseUnit, CaseUnit.unit_id == Unit.id)
            .where(CaseUnit.case_id == case_id, CaseUnit.active.is_(True), CaseUnit.role == "lead"))
        co_units = (await uow.session.scalars(
            select(Unit.code).join(CaseUnit, CaseUnit.unit_id == Unit.id)
            .where(CaseUnit.case_id == case_id, CaseUnit.active.is_(True), CaseUnit.role == "co"))).all()
        subjects = (await uow.session.scalars(select(CaseSubject.subject_id).where(CaseSubject.case_id == case_id))).all()
        events = await uow.session.scalar(select(func.count()).select_from(CaseEvent).where(CaseEvent.case_id == case_id,
                                                                                           CaseEvent.action != "view_personal_data"))
        messages = await uow.session.scalar(select(func.count()).select_from(CaseMessage).where(CaseMessage.case_id == case_id))
        return Snapshot(case.status, case.category, lead, events, messages, case.version, tuple(sorted(co_units)),
                        tuple(sorted(subjects)), case.satisfaction, case.duplicate_of_id)


async def events_of(container, case_id: int, action: str) -> list[CaseEvent]:
    async with container.uow() as uow:
        return list((await uow.session.scalars(
            select(CaseEvent).where(CaseEvent.case_id == case_id, CaseEvent.action == action).order_by(CaseEvent.id))).all())


async def assert_flash(person: Staff, response: ClientResponse, location: str, text: str) -> str:
    assert response.status == 303, await response.text()
    assert response.headers["Location"] == location
    status, html = await person.get(location)
    assert status == 200
    assert text in html, html
    return html


# -- login, logout, password --------------------------------------------------------------------------


async def test_pages_need_a_login(console):
    client = await console.browser()
    for path in ("/", "/cases/LW-2026-000001", "/password", "/cases/LW-2026-000001/evidence/" + "0" * 64):
        response = await client.get(path, allow_redirects=False)
        assert response.status == 303
        assert response.headers["Location"].startswith("/login?next=")
    response = await client.post("/cases/LW-2026-000001/actions/accept", data={}, allow_redirects=False)
    assert response.status == 303 and response.headers["Location"].startswith("/login")


async def test_login_logout_and_session_cookie(console):
    triage = await console.person("triage", "xiaobao", "triage", login=False)
    response = await triage.login()
    assert response.status == 303 and response.headers["Location"] == "/"
    cookie = next(v for v in response.headers.getall("Set-Cookie") if v.startswith("qinglang_session="))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain http in the test and no setting asks for it
    status, html = await triage.get("/")
    assert status == 200 and "待办队列" in html and "triage" in html

    # already logged in: the login page sends the person on
    status, _ = await triage.get("/login")
    assert status == 303

    response = await triage.submit("/", "/logout")
    await assert_flash(triage, response, "/login", "您已退出登录。")
    status, _ = await triage.get("/")
    assert status == 303  # the session has ended
    async with console.container.uow() as uow:
        assert await uow.session.scalar(select(func.count()).select_from(StaffSession)) == 0


async def test_login_failure_shows_the_authenticators_message(console):
    person = await console.person("handler1", "jiajing", "handler", login=False)
    response = await person.login(password="wrong password")
    assert response.status == 401
    html = await response.text()
    assert "用户名或密码错误" in html and "qinglang_session=" not in "".join(response.headers.getall("Set-Cookie", []))
    # an unknown user gets the same answer
    page = await person.client.get("/login")
    form = find_form(await page.text(), "/login")
    response = await person.client.post("/login", data={**form.values, "username": "nobody", "password": "x" * 12})
    assert response.status == 401 and "用户名或密码错误" in await response.text()


async def test_login_form_is_not_a_login_csrf_hole(console):
    victim = await console.person("victim", "jiajing", "handler", login=False)
    attacker_browser = await console.browser()
    # an attacker's own form token does not match the victim's cookie (or the victim has none)
    page = await attacker_browser.get("/login")
    attacker_token = find_form(await page.text(), "/login").values["csrf_token"]
    for token in (None, "", attacker_token, "forged.token"):
        data = {"username": victim.username, "password": victim.password}
        if token is not None:
            data["csrf_token"] = token
        response = await victim.client.post("/login", data=data, allow_redirects=False)
        assert response.status == 403, token
        assert "qinglang_session=" not in "".join(response.headers.getall("Set-Cookie", []))
    # a cookie that the server did not sign is refused even when the field matches it
    victim.client.session.cookie_jar.update_cookies({"qinglang_login_csrf": "made-up"}, victim.client.make_url("/login"))
    response = await victim.client.post("/login", data={"username": victim.username, "password": victim.password,
                                                         "csrf_token": "made-up"}, allow_redirects=False)
    assert response.status == 403
    assert (await victim.login()).status == 303


async def test_lockout_after_five_wrong_passwords(console):
    person = await console.person("handler1", "jiajing", "handler", login=False)
    for _ in range(5):
        response = await person.login(password="wrong password")
        assert response.status == 401
    response = await person.login()  # the right password, sixth attempt: still refused
    assert response.status == 401
    assert "锁定" in await response.text()
    assert "qinglang_session=" not in "".join(response.headers.getall("Set-Cookie", []))
    status, _ = await person.get("/")
    assert status == 303


async def test_password_change(console):
    person = await console.person("handler1", "jiajing", "handler")
    elsewhere = Staff(await console.browser(), person.username, person.password, person.id)
    assert (await elsewhere.login()).status == 303

    response = await person.submit("/password", "/password", {
        "current_password": "not the password", "new_password": "a-new-passw0rd", "new_password_again": "a-new-passw0rd"})
    assert response.status == 400 and "原密码不正确" in await response.text()
    response = await person.submit("/password", "/password", {
        "current_password": person.password, "new_password": "a-new-passw0rd", "new_password_again": "different-passw0rd"})
    assert response.status == 400 and "两次输入的新密码不一致" in await response.text()
    response = await person.submit("/password", "/password", {
        "current_password": person.password, "new_password": "short", "new_password_again": "short"})
    assert response.status == 400 and "至少 10 个字符" in await response.text()

    response = await person.submit("/password", "/password", {
        "current_password": person.password, "new_password": "a-new-passw0rd", "new_password_again": "a-new-passw0rd"})
    await assert_flash(person, response, "/", "密码已修改")
    status, _ = await person.get("/")
    assert status == 200  # this browser goes on with a fresh session
    status, _ = await elsewhere.get("/")
    assert status == 303  # the other session ended
    assert (await elsewhere.login()).status == 401  # the old password is gone
    assert (await elsewhere.login(password="a-new-passw0rd")).status == 303


async def test_csrf_missing_or_wrong_is_refused_and_changes_nothing(console):
    triage = await console.person("triage", "xiaobao", "triage")
    other = await console.person("other", "jiajing", "handler")
    case_id, number = await case_at(console.container, Status.RECEIVED)
    before = await snapshot(console.container, case_id)
    action = f"/cases/{number}/actions/accept"
    for csrf in (None, "", "wrong", await other.csrf()):  # missing, empty, made up, someone else's
        response = await triage.post(action, {"note": "x"}, csrf=csrf)
        assert response.status == 403, csrf
    for csrf in (None, "wrong"):
        response = await triage.post("/queue/transfer", {"case": number, "unit": "zhiliang"}, csrf=csrf)
        assert response.status == 403
        response = await triage.post("/password", {"current_password": triage.password, "new_password": "x" * 12,
                                                   "new_password_again": "x" * 12}, csrf=csrf)
        assert response.status == 403
        response = await triage.post("/logout", csrf=csrf)
        assert response.status == 403
    assert await snapshot(console.container, case_id) == before
    status, _ = await triage.get("/")
    assert status == 200  # still logged in, password unchanged
    assert (await triage.post(action, {"note": "x"})).status == 303  # with the right token it works
    assert (await snapshot(console.container, case_id)).status == Status.ACCEPTED


# -- every action through its form --------------------------------------------------------------------


async def test_every_action_through_the_forms(console):
    container = console.container
    triage = await console.person("triage", "xiaobao", "triage")
    handler = await console.person("handler", "suo_yongzhong", "handler")  # lead unit of the complaints

    # a complaint: accept, start, reply, resolve, close, reopen (by triage and the lead unit's handler)
    view = await container.cases.create(complaint())
    page, act = f"/cases/{view.number}", f"/cases/{view.number}/actions/"
    await assert_flash(handler, await handler.submit(page, act + "accept", {"note": "材料齐全"}), page, "已受理。")
    await assert_flash(handler, await handler.submit(page, act + "start"), page, "已开始办理。")
    html = await assert_flash(handler, await handler.submit(page, act + "reply", {"body": "已联系商家，请耐心等待。"}),
                              page, "答复已记录。")
    assert "已联系商家，请耐心等待。" in html
    await assert_flash(handler, await handler.submit(page, act + "resolve", {"outcome": "mediated", "reply": "经调解，商家同意退款。"}),
                       page, "已办结，答复已记录。")
    await assert_flash(handler, await handler.submit(page, act + "close"), page, "案件已关闭。")
    await assert_flash(triage, await triage.submit(page, act + "reopen", {"reason": "投诉人反映商家未退款"}),
                       page, "案件已重新打开。")
    case = await container.cases.get(view.id)
    assert case.status == Status.IN_PROGRESS
    actions = [e.action for e in await _events(container, view.id)]
    assert actions == ["create", "accept", "start", "reply", "resolve", "close", "reopen"]

    # a complaint rejected with a ground and a reply
    view = await container.cases.create(complaint(description="想咨询一下直播间的商品怎么退"))
    page, act = f"/cases/{view.number}", f"/cases/{view.number}/actions/"
    await assert_flash(triage, await triage.submit(page, act + "reject", {"ground": "not_consumer_dispute", "reply": "不属于消费者权益争议。"}),
                       page, "已决定不予受理")
    async with container.uow() as uow:
        rejected = await uow.session.get(Case, view.id)
        assert (rejected.status, rejected.rejection_ground) == ("rejected", "not_consumer_dispute")
    await assert_flash(triage, await triage.submit(page, act + "close"), page, "案件已关闭。")

    # a tip-off: deadline extended with approval, reclassified, transferred to a unit, then outside
    case_id, number = await case_at(container, Status.RECEIVED)
    page, act = f"/cases/{number}", f"/cases/{number}/actions/"
    before = {d.clock: d.due_on for d in (await container.cases.get(case_id)).deadlines}
    await assert_flash(triage, await triage.submit(page, act + "extend", {"clock": "tipoff_check", "approval": "王局长批准：线索复杂"}),
                       page, "期限已延长。")
    after = {d.clock: d.due_on for d in (await container.cases.get(case_id)).deadlines}
    assert after["tipoff_check"] > before["tipoff_check"]
    status, html = await triage.get(page)
    assert f'action="/cases/{number}/actions/extend"' not in html  # extended once: no second time

    await assert_flash(triage, await triage.submit(page, act + "reclassify", {"category": "advertising", "note": "实为虚假宣传"}),
                       page, "类别已更改。")
    (event,) = await events_of(container, case_id, "reclassify")
    assert event.actor_type == "staff" and event.actor_id == triage.id
    assert event.data == {"from": "price", "to": "advertising", "nlu_category": "price", "nlu_confidence": 0.83,
                          "kind": "tipoff"}
    assert event.note == "实为虚假宣传"
    assert (await snapshot(container, case_id)).category == "advertising"

    await assert_flash(triage, await triage.submit(page, act + "transfer", {"unit": "zhiliang", "note": "涉及产品质量"},
                                                   target="unit"), page, "已转办。")
    assert (await snapshot(container, case_id)).lead == "zhiliang"
    response = await triage.submit(page, act + "transfer", {"authority": "上海市市场监督管理局", "scope": "out_of_province"},
                                   target="authority")
    await assert_flash(triage, response, page, "已转办。")
    async with container.uow() as uow:
        moved = await uow.session.get(Case, case_id)
        assert (moved.transfer_authority, moved.transfer_scope) == ("上海市市场监督管理局", "out_of_province")
    await assert_flash(triage, await triage.submit(page, act + "reply", {"body": "已移送上海市市场监督管理局处理。"}), page, "答复已记录。")
    await assert_flash(triage, await triage.submit(page, act + "close"), page, "案件已关闭。")
    assert (await snapshot(container, case_id)).status == Status.CLOSED


async def _events(container, case_id: int) -> list[CaseEvent]:
    async with container.uow() as uow:
        return [e for e in await uow.cases.events(case_id) if e.action != "view_personal_data"]


async def test_domain_errors_and_illegal_status(console):
    container = console.container
    triage = await console.person("triage", "xiaobao", "triage")
    case_id, number = await case_at(container, Status.RECEIVED)
    page, act = f"/cases/{number}", f"/cases/{number}/actions/"
    before = await snapshot(container, case_id)

    # a rule of the service (a rejection needs a reply): flash, nothing changed
    response = await triage.submit(page, act + "reject", {"ground": "no_clue", "reply": "  "})
    await assert_flash(triage, response, page, "操作未完成")
    # illegal for the status: 409 page, and the form is not offered
    status, html = await triage.get(page)
    assert f'action="{act}start"' not in html and f'action="{act}close"' not in html
    for action in ("start", "resolve", "close", "reopen"):
        response = await triage.post(act + action, {"outcome": "not_filed", "reply": "x", "reason": "x"})
        assert response.status == 409, action
        assert "当前状态不能执行此操作" in await response.text()
    response = await triage.post(act + "withdraw", {"reply": "x"})  # the complainant's action, not the console's
    assert response.status == 404
    assert await snapshot(container, case_id) == before


# -- access control -----------------------------------------------------------------------------------

A = "allowed"  # the form is on the page, and posting it changes the case (303)
NEW_ACTIONS = ("message", "request_info", "duplicate", "reassign", "link_subject", "unlink_subject", "rate")


# role -> (the queue lists the case, case page, evidence file, {action: expected})
MATRIX = {
    "triage": (True, 200, 200, {"accept": A, "reject": A, "transfer": A, "start": A, "resolve": A, "reply": A,
                                "close": A, "reopen": A, "extend": A, "reclassify": A,
                                **{a: A for a in NEW_ACTIONS}}),
    "lead": (True, 200, 200, {"accept": A, "reject": A, "transfer": A, "start": A, "resolve": A, "reply": A,
                              "close": A, "reopen": 403, "extend": 403, "reclassify": 403,
                              "message": A, "request_info": A, "duplicate": 403, "reassign": 403,
                              "link_subject": A, "unlink_subject": A, "rate": A}),
    "co": (True, 200, 200, {"accept": 403, "reject": 403, "transfer": 403, "start": 403, "resolve": 403, "reply": 403,
                            "close": 403, "reopen": 403, "extend": 403, "reclassify": 403,
                            **{a: 403 for a in NEW_ACTIONS}}),
    "other": (False, 404, 404, {"accept": 404, "reject": 404, "transfer": 404, "start": 404, "resolve": 404,
                                "reply": 404, "close": 404, "reopen": 404, "extend": 404, "reclassify": 404,
                                **{a: 404 for a in NEW_ACTIONS}}),
    "leader": (True, 200, 200, {"accept": 403, "reject": 403, "transfer": 403, "start": 403, "resolve": 403,
                                "reply": 403, "close": 403, "reopen": 403, "extend": 403, "reclassify": 403,
                                **{a: 403 for a in NEW_ACTIONS}}),
    "admin": (True, 200, 200, {"accept": 403, "reject": 403, "transfer": 403, "start": 403, "resolve": 403,
                               "reply": 403, "close": 403, "reopen": 403, "extend": 403, "reclassify": 403,
                               **{a: 403 for a in NEW_ACTIONS}}),
}
# action -> (the status the case is walked to first, what the form is filled in with, hidden fields that pick
# the form). "{original}" is the number of another case, "{subject}" a subject of the case's platform not yet
# linked to it, "{linked}" the platform subject every such case is linked to.
ACTIONS = {
    "accept": (Status.RECEIVED, {"note": "受理"}, {}),
    "reject": (Status.RECEIVED, {"ground": "no_clue", "reply": "线索不具体，无法核查。"}, {}),
    "transfer": (Status.RECEIVED, {"unit": "zhiliang"}, {"target": "unit"}),
    "start": (Status.ACCEPTED, {}, {}),
    "resolve": (Status.ACCEPTED, {"outcome": "not_filed", "reply": "核查后不予立案。"}, {}),
    "reply": (Status.RECEIVED, {"body": "已收到，正在核查。"}, {}),
    "close": (Status.RESOLVED, {}, {}),
    "reopen": (Status.CLOSED, {"reason": "举报人补充了新线索"}, {}),
    "extend": (Status.RECEIVED, {"clock": "tipoff_check", "approval": "分管领导批准"}, {}),
    "reclassify": (Status.RECEIVED, {"category": "advertising"}, {}),
    "message": (Status.ACCEPTED, {"body": "正在核查，请耐心等待。"}, {}),
    "request_info": (Status.RECEIVED, {"question": "请提供订单截图。"}, {}),
    "duplicate": (Status.RECEIVED, {"original": "{original}", "reply": "与前案为同一事项，已并案处理。"}, {}),
    "reassign": (Status.RECEIVED, {"lead": "zhiliang", "co_units": ["wangjian"]}, {}),
    "link_subject": (Status.RECEIVED, {"subject_id": "{subject}"}, {}),
    "unlink_subject": (Status.RECEIVED, {}, {"subject_id": "{linked}"}),
    "rate": (Status.CLOSED, {"score": "4", "comment": "处理及时"}, {}),
}


def _fill(values: dict, known: dict[str, str]) -> dict:
    def one(value):
        return [one(v) for v in value] if isinstance(value, list) else known.get(value, value)
    return {k: one(v) for k, v in values.items()}


async def platform_subjects(container, platform: str = "抖音") -> dict[str, str]:
    """The platform's own subject (linked to every tip-off below) and another live room on it."""
    await container.cases.create(tipoff(live_room="另一个直播间"))
    async with container.uow() as uow:
        ids = dict((await uow.session.execute(select(Subject.name, Subject.id).where(
            Subject.name.in_((platform, "另一个直播间"))))).all())
    return {"{linked}": str(ids[platform]), "{subject}": str(ids["另一个直播间"])}


@pytest.mark.parametrize("role", list(MATRIX))
async def test_access_matrix(console, role, caplog):
    container = console.container
    person = await console.person(role, *STAFF[role])
    lists_case, case_status, evidence_status, expected_actions = MATRIX[role]

    image = await stored(container, png(1), "直播截图.png")
    case_id, number = await case_at(container, Status.RECEIVED, tipoff(evidence=(image,)))
    known = {"{original}": number, **await platform_subjects(container)}
    # the queue
    status, html = await person.get("/")
    assert status == 200
    assert (number in case_numbers(html)) is lists_case
    # the case page and its evidence file
    status, html = await person.get(f"/cases/{number}")
    assert status == case_status
    if status == 404:
        assert NOT_FOUND_TEXT in html
    status, _ = await person.get(f"/cases/{number}/evidence/{image.sha256}")
    assert status == evidence_status

    # each action on a case of its own, walked to a status where the action is legal
    for action, expected in expected_actions.items():
        setup_status, values, hidden = ACTIONS[action]
        values, hidden = _fill(values, known), _fill(hidden, known)
        case_id, number = await case_at(container, setup_status)
        page, path = f"/cases/{number}", f"/cases/{number}/actions/{action}"
        before = await snapshot(container, case_id)
        if case_status == 200:
            status, html = await person.get(page)
            assert (find_form(html, path, **hidden) is not None) is (expected == A), (role, action)
        if expected == A:
            response = await person.submit(page, path, values, **hidden)
            assert response.status == 303, (role, action, await response.text())
            assert response.headers["Location"] == page
            status, html = await person.get(page)
            assert "操作未完成" not in html, (role, action)
            after = await snapshot(container, case_id)
            assert after.version > before.version or after.events > before.events, (role, action)
            (event,) = [e for e in await _events(container, case_id)][-1:]
            assert event.action == action and event.actor_id == person.id
        else:
            caplog.clear()
            response = await person.post(path, {**values, **hidden})
            assert response.status == expected, (role, action)
            assert await snapshot(container, case_id) == before, (role, action)
            refusals = [r.getMessage() for r in caplog.records if r.name == "qinglang.console"]
            assert any(f"console refused {action} {number} -> {expected}" in m and role in m for m in refusals), \
                (role, action, refusals)


async def test_guessing_numbers_and_evidence_urls_finds_nothing(console):
    container = console.container
    people = await console.everyone()
    mine = await stored(container, png(2), "a.png")
    theirs = await stored(container, png(3), "b.png")
    _, tip_number = await case_at(container, Status.RECEIVED, tipoff(evidence=(mine,)))  # 价竞分局 leads
    quality = await container.cases.create(complaint(evidence=(theirs,)))  # 永中所 leads: 价竞分局 has no part
    other = people["lead"]
    for path in (f"/cases/{quality.number}", f"/cases/{quality.number}/evidence/{theirs.sha256}",
                 "/cases/LW-2026-999999", f"/cases/LW-2026-999999/evidence/{theirs.sha256}"):
        status, html = await other.get(path)
        assert status == 404 and NOT_FOUND_TEXT in html, path
    response = await other.post(f"/cases/{quality.number}/actions/accept")
    assert response.status == 404
    # a file of another case under a case in scope: not found, even for triage
    for person in (other, people["triage"]):
        status, _ = await person.get(f"/cases/{tip_number}/evidence/{theirs.sha256}")
        assert status == 404
        status, _ = await person.get(f"/cases/{tip_number}/evidence/not-a-digest")
        assert status == 404
    status, _ = await other.get(f"/cases/{tip_number}/evidence/{mine.sha256}")
    assert status == 200


async def test_bulk_transfer_by_triage(console):
    container = console.container
    people = await console.everyone()
    triage, lead = people["triage"], people["lead"]
    first = await case_at(container, Status.RECEIVED)
    second = await case_at(container, Status.RECEIVED)
    closed = await case_at(container, Status.CLOSED)
    status, html = await triage.get("/?status=received")
    form = next(f for f in forms_in(html) if f.action == "/queue/transfer")
    assert set(re.findall(r'name="case" value="([^"]+)" form="bulk"', html)) == {first[1], second[1]}
    response = await triage.client.post("/queue/transfer", allow_redirects=False, data=[
        *form.values.items(), ("unit", "zhiliang"), ("case", first[1]), ("case", second[1]), ("case", closed[1])])
    html = await assert_flash(triage, response, "/?status=received", "已将 2 件转办至 质量监管科")
    assert f"{closed[1]}（当前状态不能转办）" in html
    assert [(await snapshot(container, cid)).lead for cid, _ in (first, second, closed)] == ["zhiliang", "zhiliang", "jiajing"]
    # nobody else may
    status, html = await lead.get("/")
    assert 'action="/queue/transfer"' not in html
    third = await case_at(container, Status.RECEIVED)
    response = await lead.post("/queue/transfer", {"case": third[1], "unit": "zhiliang"})
    assert response.status == 403
    assert (await snapshot(container, third[0])).lead == "jiajing"


# -- personal data --------------------------------------------------------------------------------------


async def test_identity_is_shown_only_to_those_who_act_and_every_view_is_audited(console):
    container = console.container
    people = await console.everyone()
    case_id, number = await case_at(container, Status.RECEIVED)  # real-name informant 李四 13912345678
    anon_id, anon_number = await case_at(container, Status.RECEIVED, tipoff(anonymous=True, complainant=None))

    status, html = await people["triage"].get("/")
    assert "139****5678" in html and "13912345678" not in html  # masked in the list
    for role in ("triage", "lead"):
        status, html = await people[role].get(f"/cases/{number}")
        assert "李四" in html and "13912345678" in html, role
    status, html = await people["lead"].get("/")
    assert "139****5678" in html
    for role in ("co", "leader", "admin"):  # a co-unit's handler may not act: sees the case, not the person
        status, html = await people[role].get(f"/cases/{number}")
        assert status == 200 and "李四" not in html and "13912345678" not in html, role
        assert "投诉举报人身份仅受理和承办人员可见" in html
        status, html = await people[role].get("/")
        assert "5678" not in html
    views = await events_of(container, case_id, "view_personal_data")
    assert [(e.actor_type, e.actor_id) for e in views] == [("staff", people[r].id) for r in ("triage", "lead")]
    assert views[0].data == {"fields": ["name", "phone"]}

    status, html = await people["triage"].get(f"/cases/{anon_number}")
    assert "匿名举报" in html
    assert await events_of(container, anon_id, "view_personal_data") == []


# -- evidence files -------------------------------------------------------------------------------------


async def test_evidence_files_are_served_safely(console):
    container = console.container
    triage = await console.person("triage", "xiaobao", "triage")
    image = await stored(container, png(4), "截图.png")
    pdf = await stored(container, PDF, "订单.pdf")
    _, number = await case_at(container, Status.RECEIVED, tipoff(evidence=(image, pdf), links=("https://v.douyin.com/abc/",)))

    status, html = await triage.get(f"/cases/{number}")
    assert f'<img src="/cases/{number}/evidence/{image.sha256}"' in html
    assert f'href="/cases/{number}/evidence/{pdf.sha256}"' in html and f'<img src="/cases/{number}/evidence/{pdf.sha256}"' not in html
    assert image.sha256 in html and pdf.sha256 in html and f"{len(PDF)} B" in html
    assert 'href="https://v.douyin.com/abc/"' in html

    response = await triage.client.get(f"/cases/{number}/evidence/{image.sha256}")
    assert response.status == 200 and await response.read() == png(4)
    assert response.headers["Content-Type"] == "image/png"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Content-Disposition"].startswith("inline;")

    response = await triage.client.get(f"/cases/{number}/evidence/{pdf.sha256}")
    assert response.status == 200 and await response.read() == PDF
    assert response.headers["Content-Type"] == "application/pdf"
    assert response.headers["Content-Disposition"].startswith("attachment;")
    assert "filename*=UTF-8''%E8%AE%A2%E5%8D%95.pdf" in response.headers["Content-Disposition"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in response.headers["Content-Security-Policy"]


# -- escaping -------------------------------------------------------------------------------------------


async def test_untrusted_text_is_escaped_everywhere(console):
    container = console.container
    triage = await console.person("triage", "xiaobao", "triage")
    payload = f"买了假货 {SCRIPT} {IMG}"
    image = await stored(container, png(5), f"{SCRIPT}{IMG}.png")
    text = await stored(container, b"chat log\n", f"{IMG}.txt")
    view = await container.cases.create(complaint(
        description=payload, live_room=f"{SCRIPT}{IMG}", streamer=IMG, product=SCRIPT, merchant_name=IMG,
        evidence=(image, text), links=(f"javascript:alert(1)//{IMG}",),
        complainant=ComplainantInfo(channel_user_id="7", name=f"{SCRIPT}", phone="13912345678")))
    number = view.number
    page, act = f"/cases/{number}", f"/cases/{number}/actions/"
    await triage.submit(page, act + "reply", {"body": f"回复 {SCRIPT}{IMG}"})
    await triage.submit(page, act + "transfer", {"authority": f"{SCRIPT}{IMG}", "scope": "in_province"}, target="authority")

    for path in (page, "/", f"/?q={SCRIPT}"):
        status, html = await triage.get(path)
        assert status == 200, path
        assert SCRIPT not in html and IMG not in html and "<img src=x" not in html, path
        assert SCRIPT_ESCAPED in html and IMG_ESCAPED in html, path
    status, html = await triage.get(page)
    assert 'href="javascript:' not in html
    assert html.count("&lt;script&gt;") >= 5  # description, live room, product, name, file names, reply, authority

    # a flash carrying a service message with the user's input is escaped too
    response = await triage.submit(page, act + "reclassify", {"category": "advertising"})
    response = await triage.client.post(act + "transfer", allow_redirects=False,
                                        data={"csrf_token": await triage.csrf(), "target": "unit", "unit": SCRIPT})
    status, html = await triage.get(page)
    assert SCRIPT not in html and "操作未完成" in html


# -- the queue ------------------------------------------------------------------------------------------


async def test_keyset_pagination_returns_every_case_once_in_due_order(console):
    container = console.container
    triage = await console.person("triage", "xiaobao", "triage")
    received = ["2026-11-02", "2026-11-16", "2026-11-09", "2026-11-16", "2026-10-20", "2026-11-12", "2026-12-21",
                "2026-11-09"]  # even: tip-offs (15 working days), odd: complaints (7); the 12-21 one runs into 2027
    for i, day in enumerate(received):
        at = datetime.fromisoformat(day + "T02:00:00").replace(tzinfo=UTC)
        new = complaint(received_at=at, complainant=ComplainantInfo(channel_user_id=str(i), name="王五", phone="13700000000")) \
            if i % 2 else tipoff(received_at=at)
        await container.cases.create(new)
    async with container.uow() as uow:
        expected = list((await uow.session.scalars(select(Case.number).order_by(Case.next_due_on, Case.id))).all())
    assert len(expected) == 8

    seen, path, pages = [], "/?limit=3", 0
    while path:
        status, html = await triage.get(path)
        assert status == 200
        seen += case_numbers(html)
        pages += 1
        match = re.search(r'<a href="([^"]+)" rel="next">下一页</a>', html)
        path = match.group(1).replace("&amp;", "&") if match else None
    assert pages == 3
    assert seen == expected

    # badges: the oldest are overdue, the one whose deadline runs into 2027 is provisional (暂定)
    status, html = await triage.get("/?due=overdue")
    assert "已超期" in html and len(case_numbers(html)) >= 1
    status, html = await triage.get("/?due=provisional")
    assert case_numbers(html) and "暂定" in html
    # counts per status and a filter
    status, html = await triage.get("/?kind=tipoff")
    assert len(case_numbers(html)) == 4
    assert re.search(r"已接收 <b>4</b>", html)
    # a broken cursor or date is told, not a server error
    status, html = await triage.get("/?cursor=%%%&received_from=yesterday")
    assert status == 200 and "page cursor is not valid" in html and "YYYY-MM-DD" in html


async def test_queue_filters(console):
    container = console.container
    triage = await console.person("triage", "xiaobao", "triage")
    first = await container.cases.create(tipoff(live_room="山海好物直播间"))
    second = await container.cases.create(complaint(platform="快手"))
    for query, numbers in (
        ("q=山海", [first.number]), ("platform=快手", [second.number]), ("kind=complaint", [second.number]),
        ("category=price", [first.number]), ("unit=suo_yongzhong", [second.number]), ("channel=web", [first.number]),
        ("status=closed", []), ("received_from=2026-11-17", []), ("received_to=2026-11-16", [first.number, second.number]),
    ):
        status, html = await triage.get("/?" + query)
        assert status == 200 and sorted(case_numbers(html)) == sorted(numbers), query


async def test_english_pages(console):
    triage = await console.person("triage", "xiaobao", "triage")
    status, html = await triage.get("/?lang=en")
    assert status == 200 and '<html lang="en">' in html
    status, html = await triage.get("/")
    assert '<html lang="en">' in html  # remembered in a cookie
