"""The web chat's pages and form posts.

    GET  /chat           the conversation so far, the latest buttons, a text box and a file upload
    POST /chat/send      a text (or /command) or a button value            -> 303 back to /chat
    POST /chat/upload    a file (multipart, streamed into the evidence store) -> 303 back to /chat
    GET  /chat/status    case number + access code form
    POST /chat/status    the case's status, or the same "没有找到" for any wrong pair (rate-limited)
    /static/chat/        chat.css, chat.js

Everything works as plain HTML forms. chat.js only sends the same forms with fetch and the header
`X-Requested-With: qinglang-chat`, to which a post answers with the rendered conversation (the
`_chat.html` fragment) instead of a redirect. Every POST needs the chat cookie, the CSRF token derived
from it, and an Origin/Referer of this site (identity.py); the app's own CSRF middleware exempts /chat.

Wrong status look-ups are counted per chat cookie and per client address (limits.py). The address is
the connection's, or behind a reverse proxy on the same machine the one it appends to X-Forwarded-For;
behind a proxy elsewhere every citizen would share the proxy's address, so deploy it on the same host
(or give the app a trusted-proxy setting first).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path

import jinja2
from aiohttp import BodyPartReader, web

from bot.storage import DatabaseStorage, build_event_isolation
from db.engine import create_session_factory
from db.models import CaseEvent
from intake.conversation import CLOCK_PHRASES, MAX_TEXT
from intake.evidence import EvidenceRejected, EvidenceTooLarge, sanitize_original_name
from intake.status import STATUS_NAMES_ZH, Status
from nlu.taxonomy import CATEGORY_IDS, Kind, category
from qinglang.i18n import LANGUAGES, N_, language_of, translations
from web.chat.identity import (
    ChatIdentity,
    client_ip,
    identity_of,
    identity_or_new,
    same_origin,
    secure_cookies,
    set_cookie,
)
from web.chat.limits import FailureLimiter
from web.chat.service import ChatService, ChatView, replay_forever
from web.keys import CONTAINER

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
SERVICE = web.AppKey("chat_service", ChatService)
LIMITER = web.AppKey("chat_limiter", FailureLimiter)
TEMPLATES = web.AppKey("chat_templates", jinja2.Environment)
LANG_COOKIE = "qinglang_lang"  # shared with the console
FETCH_HEADER = "qinglang-chat"  # X-Requested-With of chat.js
MAX_FORM = 64 * 1024  # a text message form; files go to /chat/upload
MAX_FIELD = 16 * 1024  # one non-file field of the upload form
_MESSAGE_ID = re.compile(r"^[A-Za-z0-9_.:-]{8,80}$")
KIND_NAMES = {Kind.COMPLAINT: N_("投诉"), Kind.TIPOFF: N_("举报"), Kind.CONSULTATION: N_("咨询")}


# -- set-up -----------------------------------------------------------------------------------------


def setup(app: web.Application) -> None:
    container = app[CONTAINER]
    redis = container.settings.redis.redis_url
    storage = DatabaseStorage(create_session_factory(container.engine))
    isolation = build_event_isolation(redis.get_secret_value() if redis else None, storage)
    app[SERVICE] = ChatService(container, storage, isolation)
    app[LIMITER] = FailureLimiter(storage, isolation, container.clock)
    app[TEMPLATES] = _templates()
    app.router.add_get("/chat", chat_page, name="chat")
    app.router.add_post("/chat/send", send)
    app.router.add_post("/chat/upload", upload)
    app.router.add_get("/chat/status", status_form, name="chat_status")
    app.router.add_post("/chat/status", status_lookup)
    app.router.add_static("/static/chat/", HERE / "static", name="chat_static")
    tasks: list[asyncio.Task] = []

    async def _start(_app: web.Application) -> None:
        interval = container.settings.bot.inbox_replay_seconds
        tasks.append(asyncio.create_task(replay_forever(_app[SERVICE], interval)))

    async def _stop(_app: web.Application) -> None:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await isolation.close()
        await storage.close()

    app.on_startup.append(_start)
    app.on_cleanup.insert(0, _stop)  # before the container (and its engine) is disposed


def _templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,  # complaint text, file names and staff replies are shown back: always escaped
        extensions=["jinja2.ext.i18n"],
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env


def _render(request: web.Request, name: str, lang: str, status: int = 200, **context) -> web.Response:
    env = request.app[TEMPLATES]
    # install and render without an await between them: no other request can switch the language
    env.install_gettext_translations(translations(lang), newstyle=True)
    html = env.get_template(name).render(lang=lang, day=lambda d: _day(d, lang), **context)
    response = web.Response(text=html, status=status, content_type="text/html", charset="utf-8")
    response.headers["Cache-Control"] = "no-store"
    return response


# -- language ---------------------------------------------------------------------------------------


def _language(request: web.Request) -> tuple[str, bool]:
    """(language, chosen now by ?lang=): the query, else the cookie, else Accept-Language, else zh."""
    asked = request.query.get("lang")
    if asked in LANGUAGES:
        return asked, True
    cookie = request.cookies.get(LANG_COOKIE)
    if cookie in LANGUAGES:
        return cookie, False
    accept = request.headers.get("Accept-Language", "")
    first = accept.split(",")[0].split(";")[0].strip()
    return language_of(first or None), False


def _remember_language(request: web.Request, response: web.StreamResponse, lang: str) -> None:
    response.set_cookie(LANG_COOKIE, lang, max_age=365 * 24 * 3600, path="/", samesite="Lax", httponly=True,
                        secure=secure_cookies(request))


def _day(d: date | None, lang: str) -> str:
    if d is None:
        return ""
    return d.isoformat() if lang == "en" else f"{d.year}年{d.month}月{d.day}日"


# -- the chat page ----------------------------------------------------------------------------------


async def chat_page(request: web.Request) -> web.Response:
    identity = identity_or_new(request)
    lang, chosen = _language(request)
    service = request.app[SERVICE]
    if chosen and not identity.new:
        await service.set_language(identity.user_id, lang)
    view = await service.view(identity.user_id, lang=lang) if not identity.new else ChatView([], 0, 0)
    response = _render(request, "chat.html", lang, **_chat_context(request, identity, view, lang))
    set_cookie(request, response, identity)
    if chosen:
        _remember_language(request, response, lang)
    return response


def _chat_context(request: web.Request, identity: ChatIdentity, view: ChatView, lang: str) -> dict:
    nonce = secrets.token_urlsafe(12)
    rows = [row for entry in view.latest for row in entry.buttons]
    return {
        "view": view,
        "rows": rows,
        "csrf": identity.csrf_token,
        "message_ids": {name: f"{nonce}.{name}" for name in ("buttons", "text", "upload")},
        "max_text": MAX_TEXT,
        "receipts": [_receipt_lines(r, lang) for r in view.receipts],
        "max_mb": request.app[CONTAINER].settings.storage.max_evidence_bytes // (1024 * 1024),
    }


def _receipt_lines(receipt, lang: str) -> dict:
    _ = translations(lang).gettext
    lines = []
    for clock, due_on, provisional in receipt.deadlines:
        line = _(CLOCK_PHRASES[clock]).format(date=_day(due_on, lang))
        if provisional:
            line += _("（暂定，以法定节假日安排为准）")
        lines.append(line)
    return {"number": receipt.number, "code": receipt.code, "unit": receipt.unit,
            "transfer_to": receipt.transfer_to, "deadlines": lines}


async def _answer(request: web.Request, identity: ChatIdentity, lang: str) -> web.Response:
    """After a post: the conversation fragment for chat.js, else a redirect back to the page."""
    if request.headers.get("X-Requested-With") == FETCH_HEADER:
        view = await request.app[SERVICE].view(identity.user_id, lang=lang)
        return _render(request, "_chat.html", lang, **_chat_context(request, identity, view, lang))
    raise web.HTTPSeeOther("/chat#latest")


def _refuse(request: web.Request, lang: str, status: int, text: str) -> web.Response:
    return _render(request, "refused.html", lang, status=status, message=text)


def _check_post(request: web.Request, given_csrf: str | None, lang: str) -> ChatIdentity | web.Response:
    _ = translations(lang).gettext
    identity = identity_of(request)
    if not same_origin(request):
        log.warning("web chat: cross-site POST %s refused (Origin %r, Referer %r)", request.path,
                    request.headers.get("Origin"), request.headers.get("Referer"))
        return _refuse(request, lang, 403, _("请求来源不正确，请从本网站的页面提交。"))
    if identity is None or not identity.csrf_matches(given_csrf):
        return _refuse(request, lang, 403, _("页面已过期，请刷新页面后重试。"))
    return identity


# -- posting a message ------------------------------------------------------------------------------


async def send(request: web.Request) -> web.Response:
    lang, _chosen = _language(request)
    if request.content_length is None or request.content_length > MAX_FORM:
        return _refuse(request, lang, 413, translations(lang).gettext("消息太长，请分几条发送。"))
    form = await request.post()
    checked = _check_post(request, _field(form, "csrf_token"), lang)
    if isinstance(checked, web.Response):
        return checked
    identity = checked
    message_id = _field(form, "msg_id") or ""
    if not _MESSAGE_ID.match(message_id):
        raise web.HTTPBadRequest(text="msg_id missing or malformed")
    value = _field(form, "value")
    text = (_field(form, "text") or "").strip()
    if value is not None:
        rev = _field(form, "rev")
        payload = {"type": "button", "value": value[:200], "rev": int(rev) if rev and rev.isdigit() else None}
    elif text.startswith("/") and len(text) > 1:
        name, _sep, args = text[1:].partition(" ")
        name = name.split("@")[0].lower()[:32]
        payload = {"type": "command", "value": name, "args": args.strip()[:200], "text": text[:MAX_TEXT]}
    elif text:
        payload = {"type": "text", "text": text}
    else:
        return await _answer(request, identity, lang)
    payload["lang"] = lang
    await request.app[SERVICE].send(identity.user_id, message_id, payload)
    return await _answer(request, identity, lang)


def _field(form, name: str) -> str | None:
    value = form.get(name)
    return value if isinstance(value, str) else None


async def upload(request: web.Request) -> web.Response:
    container = request.app[CONTAINER]
    service = request.app[SERVICE]
    lang, _chosen = _language(request)
    _ = translations(lang).gettext
    limit = container.settings.storage.max_evidence_bytes
    if not request.content_type.startswith("multipart/"):
        raise web.HTTPBadRequest(text="multipart/form-data expected")
    reader = await request.multipart()
    fields: dict[str, str] = {}
    stored = None
    identity: ChatIdentity | None = None
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            continue
        if part.name != "file":
            fields[part.name or ""] = await _read_field(part)
            continue
        # the file: only after the CSRF token and message id (they come first in the form)
        checked = _check_post(request, fields.get("csrf_token"), lang)
        if isinstance(checked, web.Response):
            return checked
        identity = checked
        if not _MESSAGE_ID.match(fields.get("msg_id", "")):
            raise web.HTTPBadRequest(text="msg_id missing or malformed (it must come before the file)")
        name = part.filename or ""
        if not name:
            await _drain(part)
            continue
        if request.content_length is not None and request.content_length > limit + MAX_FORM:
            await service.note(identity.user_id, _upload_line(name), str(EvidenceTooLarge(limit)))
            return await _answer(request, identity, lang)
        try:
            stored = await container.evidence.put(_chunks(part), original_name=name)
        except EvidenceRejected as exc:
            log.info("web chat upload refused: %s", exc)
            await service.note(identity.user_id, _upload_line(name), str(exc))
            return await _answer(request, identity, lang)
    if identity is None:  # no file part at all
        checked = _check_post(request, fields.get("csrf_token"), lang)
        if isinstance(checked, web.Response):
            return checked
        identity = checked
    if stored is None:
        await service.note(identity.user_id, None, _("请先选择要上传的文件（截图、照片、视频、PDF 等）。"))
        return await _answer(request, identity, lang)
    payload = {
        "type": "attachment",
        "text": fields.get("caption", "").strip()[:MAX_TEXT],
        "attachment": {"sha256": stored.sha256, "size": stored.size, "mime": stored.mime, "name": stored.original_name},
        "lang": lang,
    }
    await service.send(identity.user_id, fields["msg_id"], payload)
    return await _answer(request, identity, lang)


def _upload_line(name: str) -> str:
    return f"📎 {sanitize_original_name(name) or '?'}"


async def _read_field(part: BodyPartReader) -> str:
    data = bytearray()
    while chunk := await part.read_chunk(8192):
        if len(data) < MAX_FIELD:
            data += chunk[: MAX_FIELD - len(data)]
    return data.decode("utf-8", errors="replace")


async def _drain(part: BodyPartReader) -> None:
    while await part.read_chunk(65536):
        pass


async def _chunks(part: BodyPartReader) -> AsyncIterator[bytes]:
    while chunk := await part.read_chunk(256 * 1024):
        yield chunk


# -- the status page --------------------------------------------------------------------------------


async def status_form(request: web.Request) -> web.Response:
    identity = identity_or_new(request)
    lang, chosen = _language(request)
    response = _render(request, "status.html", lang, csrf=identity.csrf_token, number="", message=None, case=None)
    set_cookie(request, response, identity)
    if chosen:
        _remember_language(request, response, lang)
    return response


async def status_lookup(request: web.Request) -> web.Response:
    lang, _chosen = _language(request)
    _ = translations(lang).gettext
    if request.content_length is None or request.content_length > MAX_FORM:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_FORM, actual_size=request.content_length or 0)
    form = await request.post()
    checked = _check_post(request, _field(form, "csrf_token"), lang)
    if isinstance(checked, web.Response):
        return checked
    identity = checked
    number = (_field(form, "number") or "").strip()[:40]
    code = _field(form, "code") or ""
    limiter = request.app[LIMITER]
    ip = client_ip(request)
    subjects = (f"ip:{ip}", f"chat:{identity.user_id}")
    if await limiter.blocked(*subjects):
        log.warning("web chat status: look-up from %s refused, too many wrong tries", ip)
        minutes = int(limiter.window.total_seconds() // 60)
        message = _("尝试次数过多，请 {minutes} 分钟后再试。").format(minutes=minutes)
        return _render(request, "status.html", lang, status=429, csrf=identity.csrf_token, number=number,
                       message=message, case=None)
    service = request.app[SERVICE]
    case_id = await service.codes.find(number, code)
    if case_id is None:
        count = await limiter.failed(*subjects)
        log.warning("web chat status: wrong case number or access code for %r from %s (%d in %s)",
                    number, ip, count, limiter.window)
        await _audit_failure(request, number, ip)
        return _render(request, "status.html", lang, csrf=identity.csrf_token, number=number,
                       message=_("没有找到与该编号和查询码相符的登记。请检查后重新输入。"), case=None)
    case = await _case_status(request, case_id, lang)
    return _render(request, "status.html", lang, csrf=identity.csrf_token, number=number, message=None, case=case)


async def _audit_failure(request: web.Request, number: str, ip: str) -> None:
    container = request.app[CONTAINER]
    async with container.uow() as uow:
        uow.session.add(CaseEvent(case_id=None, actor_type="anonymous", action="status_lookup_failed",
                                  note=number[:40], data={"ip": ip}, created_at=container.clock.now()))
        await uow.commit()


async def _case_status(request: web.Request, case_id: int, lang: str) -> dict:
    container = request.app[CONTAINER]
    _ = translations(lang).gettext
    async with container.uow() as uow:
        case = await uow.cases.get(case_id)
        messages = [m for m in await uow.cases.messages(case_id) if m.direction == "out"]
    lead = next((a.unit for a in case.assignments if a.active and a.role == "lead"), None)
    unit = ""
    if lead is not None:
        unit = lead.name_en if lang == "en" and lead.name_en else lead.name
    cat = category(case.category) if case.category in CATEGORY_IDS else None
    tz = container.settings.tz
    return {
        "number": case.number,
        "kind": _(KIND_NAMES[Kind(case.kind)]) if case.kind in Kind.__members__.values() else case.kind,
        "status": _(STATUS_NAMES_ZH[Status(case.status)]),
        "category": (cat.en if lang == "en" else cat.zh) if cat else case.category,
        "unit": unit,
        "transfer_to": case.transfer_authority,
        "received_on": case.received_at.astimezone(tz).date(),
        "next_due_on": case.next_due_on if case.status != Status.CLOSED else None,
        "messages": [{"on": m.created_at.astimezone(tz).date(), "body": m.body, "reply": m.is_reply} for m in messages],
    }
