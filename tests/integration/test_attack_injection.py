"""SQL, template and HTML injection, NUL bytes, RTL overrides and very long strings in every text field
(issue 8, "hold under attack"): entered through the JSON API, the staff console's forms and search box,
and the web chat. Whatever comes in is stored verbatim (or, for NUL, refused or dropped, never a 500),
has no effect on the SQL (the tables are intact, a search finds only what contains the words), is never
evaluated as a template (`{{1234*5678}}` never becomes 7006652), is escaped in every page and comes back
verbatim from the JSON API. Afterwards the service is healthy.

The Telegram side is covered by test_attack_webhook.py (NUL, lone surrogates, 19 200 characters) and
test_conversation_fuzz.py (every step of the dialogue).
"""

from __future__ import annotations

import asyncio
import json
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select, text

from db.models import Case, CaseEvent, CaseMessage, Unit
from intake.draft import Draft
from intake.status import Status
from tests.integration.test_console import (  # noqa: F401 - the console fixture and its helpers
    case_at,
    console,
    csrf_in,
    find_form,
    tipoff,
)
from web.app import create_app
from web.chat.routes import SERVICE

SQL = ["' OR 1=1 --", '"; DROP TABLE cases; --', "1; DELETE FROM units WHERE 1=1; --", "' UNION SELECT password_hash FROM staff_users --"]
TEMPLATE = ["{{7*7}}", "{{1234*5678}}", "{% print 1 %}", "${7*7}", "<%= 7*7 %>", "#{7*7}", "{{ config }}", "{0.__class__}"]
HTML = ["<script>alert(1)</script>", '"><img src=x onerror=alert(1)>', "</textarea><svg onload=alert(1)>",
        "javascript:alert(1)"]
RTL = "\u202egnp.exe"
EVALUATED = "7006652"  # 1234*5678: on no page, ever
PAYLOAD = " ".join(["直播间卖假货", *SQL, *TEMPLATE, *HTML, RTL])
LONG = ("直播间虚假宣传，商家拒不退款。" * 700)[:10_000]


def escaped(html: str, raw: str) -> bool:
    """`raw` appears in the page only as escaped text (autoescape: & < > " ')."""
    return (raw.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&#34;").replace("'", "&#39;")) in html


def inert(html: str) -> None:
    assert EVALUATED not in html
    for raw in HTML[:3]:
        assert raw not in html, raw
    assert "<script>alert" not in html and "<img src=x" not in html and "<svg onload" not in html


async def tables_intact(container) -> dict[str, int]:
    async with container.engine.connect() as conn:
        return {t: (await conn.execute(text(f"SELECT count(*) FROM {t}"))).scalar_one()  # noqa: S608 - fixed names
                for t in ("cases", "units", "staff_users", "case_events")}


async def healthy(client: TestClient) -> None:
    response = await client.get("/healthz")
    assert response.status == 200 and (await response.json())["status"] == "ok"


# -- the JSON API ---------------------------------------------------------------------------------------------

API = "/api/v1"


@pytest.fixture
async def api_client(container):
    await asyncio.to_thread(container.nlu.warm_up)  # the session's cached model
    user = await container.accounts.create_user("hotline", "xiaobao", "triage", with_api_token=True)
    async with TestClient(TestServer(create_app(container, with_bot=False))) as client:
        client.headers = {"Authorization": f"Bearer {user.api_token}"}
        yield client


async def api(client, method: str, path: str, **kwargs):
    response = await client.request(method, API + path, headers=client.headers, **kwargs)
    body = await response.read()
    return response.status, (json.loads(body) if body else None)


async def test_api_stores_injection_strings_verbatim_and_searches_them_as_words(api_client, container):
    before = await tables_intact(container)
    plain_status, plain = await api(api_client, "POST", "/cases", json={
        "description": "抖音直播间主播虚构原价，平时一直卖99元", "channel": "12345", "kind": "tipoff", "category": "price"})
    assert plain_status == 201, plain
    fields = {
        "description": PAYLOAD + "\n" + LONG, "channel": "12345", "kind": "tipoff", "category": "price",
        "platform": SQL[0], "live_room": PAYLOAD[:200], "streamer": TEMPLATE[1] + RTL, "product": HTML[1],
        "merchant_name": SQL[1], "order_no": "' OR '1'='1",
        "complainant": {"name": "{{1234*5678}}<b>", "phone": "13800138000"},
    }
    status, created = await api(api_client, "POST", "/cases", json=fields)
    assert status == 201, created
    status, case = await api(api_client, "GET", f"/cases/{created['number']}")
    assert status == 200
    assert case["description"] == fields["description"]  # 10 000+ characters, RTL override and all
    assert case["facts"]["platform"] == SQL[0] and case["facts"]["live_room"] == fields["live_room"]
    assert case["facts"]["streamer"] == fields["streamer"] and case["facts"]["product"] == HTML[1]
    assert case["complainant"]["name"] == "{{1234*5678}}<b>"
    status, _ = await api(api_client, "POST", f"/cases/{created['number']}/messages", json={"text": PAYLOAD})
    assert status == 201
    # searching with SQL finds what contains those characters, nothing else
    for q in (SQL[0], SQL[1], "%", "_", "' OR '1'='1"):
        status, found = await api(api_client, "GET", "/cases?" + f"q={quote(q)}")
        assert status == 200, found
        numbers = {item["number"] for item in found["items"]}
        assert plain["number"] not in numbers, q
    status, found = await api(api_client, "GET", f"/cases?q={quote(SQL[1])}")
    assert {item["number"] for item in found["items"]} == {created["number"]}
    after = await tables_intact(container)
    assert after["units"] == before["units"] and after["staff_users"] == before["staff_users"]
    assert after["cases"] == before["cases"] + 2
    # a NUL is refused field by field with a clear message, nothing is stored
    for field in ("live_room", "product", "merchant_name"):
        status, error = await api(api_client, "POST", "/cases", json={**fields, field: "a\x00b"})
        assert status == 400 and error["error"]["field"] == field, error
    status, error = await api(api_client, "GET", "/cases?q=" + quote("a\x00b"))
    assert status == 400 and error["error"]["field"] == "q", error
    assert (await tables_intact(container))["cases"] == after["cases"]
    await healthy(api_client)


# -- the staff console ------------------------------------------------------------------------------------------


async def test_console_forms_and_search_take_injection_strings_as_text(console):
    container = console.container
    triage = await console.person("triage", "xiaobao", "triage")
    before = await tables_intact(container)
    _, other_number = await case_at(container, Status.RECEIVED)  # a case the searches must not find
    view = await container.cases.create(tipoff(description=PAYLOAD + "\n" + LONG, live_room=TEMPLATE[1],
                                               streamer=SQL[1], merchant_name=HTML[1]))
    case_id, number = view.id, view.number
    page, act = f"/cases/{number}", f"/cases/{number}/actions/"
    for action, values in (("reply", {"body": PAYLOAD}), ("request_info", {"question": PAYLOAD}),
                           ("accept", {"note": PAYLOAD}), ("message", {"body": PAYLOAD})):
        response = await triage.submit(page, act + action, values)
        assert response.status == 303, (action, await response.text())
        status, html = await triage.get(page)
        assert "操作未完成" not in html, action

    async with container.uow() as uow:
        bodies = list(await uow.session.scalars(select(CaseMessage.body).where(CaseMessage.case_id == case_id)))
        notes = list(await uow.session.scalars(select(CaseEvent.note).where(CaseEvent.case_id == case_id,
                                                                            CaseEvent.action == "accept")))
        stored = await uow.session.get(Case, case_id)
    assert bodies.count(PAYLOAD) == 3 and notes == [PAYLOAD]  # reply, information request, message; the note
    assert stored.description == PAYLOAD + "\n" + LONG and stored.live_room == TEMPLATE[1]

    status, html = await triage.get(page)
    assert status == 200
    inert(html)
    for raw in (*TEMPLATE, *SQL, *HTML, RTL):
        assert escaped(html, raw), raw
    # the queue and the search box: SQL in q= is a word to look for, not SQL
    status, html = await triage.get("/")
    assert status == 200 and number in html
    inert(html)
    for q in (SQL[1], TEMPLATE[1], HTML[0], "%", "_", "' OR '1'='1' --"):
        status, html = await triage.get("/?q=" + quote(q))
        assert status == 200, q
        inert(html)
        assert f"/cases/{other_number}" not in html, q
        assert escaped(html, q) or q in ("%", "_"), q  # the box shows what was searched, escaped
    status, html = await triage.get("/?q=" + quote(SQL[1]))
    assert f"/cases/{number}" in html
    after = await tables_intact(container)
    assert after["units"] == before["units"] and after["staff_users"] == before["staff_users"] + 1  # case_at's
    assert after["cases"] == before["cases"] + 2
    await healthy(triage.client)


async def test_console_nul_bytes_are_refused_or_dropped_never_a_500(console):
    container = console.container
    triage = await console.person("triage", "xiaobao", "triage")
    case_id, number = await case_at(container, Status.RECEIVED)
    page, act = f"/cases/{number}", f"/cases/{number}/actions/"
    response = await triage.submit(page, act + "reply", {"body": "已收到\x00正在核查"})
    assert response.status in (303, 400), await response.text()
    status, _ = await triage.get("/?q=" + quote("假货\x00"))
    assert status in (200, 400)
    async with container.uow() as uow:
        bodies = list(await uow.session.scalars(select(CaseMessage.body).where(CaseMessage.case_id == case_id)))
    assert all("\x00" not in b for b in bodies)
    await healthy(triage.client)


async def test_a_form_body_that_is_not_utf8_is_400_not_500(console):
    container = console.container
    triage = await console.person("triage", "xiaobao", "triage")
    _case_id, number = await case_at(container, Status.RECEIVED)
    token = await triage.csrf()
    broken = b"csrf_token=" + token.encode() + b"&body=\xff\xfe%E5%81%87"
    for path in (f"/cases/{number}/actions/reply", "/queue/transfer", "/password"):
        response = await triage.client.post(path, data=broken, allow_redirects=False,
                                            headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert response.status == 400, (path, response.status)
    # the login form, before any session
    stranger = await console.browser()
    login = find_form(await (await stranger.get("/login")).text(), "/login")
    response = await stranger.post("/login", data=b"csrf_token=" + login.values["csrf_token"].encode()
                                   + b"&username=\xc0\xafadmin&password=x", allow_redirects=False,
                                   headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status == 400
    async with container.uow() as uow:
        assert await uow.session.scalar(select(func.count()).select_from(CaseMessage)) == 0
    await healthy(triage.client)


async def test_login_echoes_a_hostile_username_escaped(console):
    stranger = await console.browser()
    for username in (SQL[0], TEMPLATE[1], HTML[1], "admin' --"):
        page = await stranger.get("/login")
        form = find_form(await page.text(), "/login")
        response = await stranger.post("/login", data={**form.values, "username": username, "password": "x" * 12},
                                       allow_redirects=False)
        assert response.status == 401, username
        html = await response.text()
        inert(html)
        assert "用户名或密码错误" in html and escaped(html, username), username
    async with console.container.uow() as uow:
        notes = list(await uow.session.scalars(select(CaseEvent.note).where(CaseEvent.action == "login_failed")))
    assert notes == [SQL[0], TEMPLATE[1], HTML[1], "admin' --"]  # audited as typed


# -- the web chat ----------------------------------------------------------------------------------------------


@pytest.fixture
async def chat_client(container):
    await asyncio.to_thread(container.nlu.warm_up)
    async with TestClient(TestServer(create_app(container, with_bot=False))) as client:
        yield client


async def chat_form(client) -> tuple[str, dict[str, str]]:
    html = await (await client.get("/chat")).text()
    csrf = csrf_in(html)
    msg_id = next(part.split('"')[0] for part in html.split('name="msg_id" value="')[1:])
    return html, {"csrf_token": csrf, "msg_id": msg_id}


async def test_web_chat_keeps_hostile_words_verbatim_and_shows_them_escaped(chat_client, container):
    client = chat_client
    origin = {"Origin": str(client.make_url("/")).rstrip("/")}
    _html, fields = await chat_form(client)
    words = "我在直播间买的口红是假货，商家不退款 " + PAYLOAD
    response = await client.post("/chat/send", data={**fields, "text": words + "\x00"}, headers=origin)
    assert response.status == 200
    html = await response.text()
    inert(html)
    for raw in (*TEMPLATE, *SQL, *HTML):
        assert escaped(html, raw), raw
    service = client.app[SERVICE]
    cookie = client.session.cookie_jar.filter_cookies(client.make_url("/chat"))["qinglang_chat"].value
    from web.chat.identity import ChatIdentity

    draft: Draft = await service.draft(ChatIdentity(cookie).user_id)
    assert draft is not None and draft.description == words  # verbatim, without the NUL
    # a body that is not UTF-8: 400, and the conversation goes on
    _html, fields = await chat_form(client)
    response = await client.post("/chat/send", data=b"csrf_token=" + fields["csrf_token"].encode() + b"&msg_id="
                                 + fields["msg_id"].encode() + b"&text=\xff\xfe", headers={
                                     **origin, "Content-Type": "application/x-www-form-urlencoded"})
    assert response.status == 400
    page = await client.get("/chat")
    assert page.status == 200
    inert(await page.text())
    # a status look-up with SQL in both fields finds nothing and breaks nothing
    html = await (await client.get("/chat/status")).text()
    response = await client.post("/chat/status", data={"csrf_token": csrf_in(html), "number": SQL[0],
                                                       "code": "' OR 1=1 --"}, headers=origin)
    assert response.status == 200
    inert(await response.text())
    assert "没有找到与该编号和查询码相符的登记" in await response.text()
    async with container.uow() as uow:
        assert await uow.session.scalar(select(func.count()).select_from(Unit)) > 0
    await healthy(client)


MALFORMED_FORMS = {
    "no boundary": ("multipart/form-data", b"--x\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--x--\r\n"),
    "header without a colon": ("multipart/form-data; boundary=x",
                               b"--x\r\nContent-Disposition form-data name=a\r\n\r\n1\r\n--x--\r\n"),
    "NUL in a filename": ("multipart/form-data; boundary=x",
                          b"--x\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a\x00b.png\"\r\n\r\n1\r\n--x--\r\n"),
    "cut short": ("multipart/form-data; boundary=x", b"--x\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1"),
}


@pytest.mark.parametrize("kind", MALFORMED_FORMS)
async def test_a_malformed_multipart_form_on_the_console_is_400_not_500(console, caplog, kind):
    """The web chat answered these with a 500 and a traceback (issue 14, finding 8); the console's forms and
    the login form, read by aiohttp's request.post(), did the same, before and after a login."""
    content_type, body = MALFORMED_FORMS[kind]
    triage = await console.person("triage", "xiaobao", "triage")
    _case_id, number = await case_at(console.container, Status.RECEIVED)
    stranger = await console.browser()
    for client, path in ((triage.client, f"/cases/{number}/actions/reply"), (triage.client, "/password"),
                         (stranger, "/login")):
        response = await client.post(path, data=body, allow_redirects=False, headers={"Content-Type": content_type})
        assert response.status == 400, (path, response.status)
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    async with console.container.uow() as uow:
        assert await uow.session.scalar(select(func.count()).select_from(CaseMessage)) == 0
    await healthy(triage.client)


async def test_a_huge_form_is_refused_before_it_is_read(console):
    """Found by the probe: a url-encoded POST announcing a gigabyte, to /login or a page that does not
    exist, was read into memory up to the 51 MiB request limit before anyone was signed in."""
    stranger = await console.browser()
    for path in ("/login", "/no-such-page", "/password"):
        response = await stranger.post(path, data=b"a=" + b"x" * (5 * 1024 * 1024), allow_redirects=False,
                                       headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert response.status in (404, 405, 413), (path, response.status)
        assert response.status != 404 or path == "/no-such-page"
    assert (await stranger.get("/healthz")).status == 200
