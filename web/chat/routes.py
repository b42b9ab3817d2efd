"""The web chat's pages and form posts.

    GET  /chat           the conversation so far, the latest buttons, a text box and a file upload
    POST /chat/send      a text (or /command) or a button value            -> 303 back to /chat
    POST /chat/upload    a file (multipart, streamed into the evidence store) -> 303 back to /chat
    GET  /chat/status    case number + access code form; ?case=NUMBER shows a case this cookie may see
    POST /chat/status    a right pair grants the cookie the case (303 to ?case=), else the same
                         "没有找到" for any wrong pair (rate-limited)
    POST /chat/status/answer  words and/or a file for a granted open case (multipart) -> 303 to ?case=
    POST /chat/status/rate    the satisfaction rating of a granted closed case        -> 303 to ?case=
    /static/chat/        chat.css, chat.js

Everything works as plain HTML forms. chat.js only sends the same forms with fetch and the header
`X-Requested-With: qinglang-chat`, to which a post answers with the rendered conversation (the
`_chat.html` fragment) instead of a redirect. Every POST needs the chat cookie, the CSRF token derived
from it, and an Origin/Referer of this site (identity.py); the app's own CSRF middleware exempts /chat.

The status page shows the case's notices (the outbox rows of channel "web" the notifier delivered),
the messages between the complainant and the handling unit, a form to add words and files (the answer
to an information request) while the case is open, and, once it is closed, the satisfaction rating.
Those two forms act only on a case the cookie was granted by a right number + code (grants.py), are
limited in posts per cookie (QINGLANG_STATUS_POSTS_PER_COOKIE), and carry a one-time form id.

Status look-ups are counted per client address, per chat cookie and per case number (unless the cookie
knows the case: granted it before, or filed it) before the code is checked, and files sent in the chat
per cookie, per address and for everyone per day (limits.py; an IPv6 address counts as its /64). The
address is the connection's, or behind a trusted reverse proxy (QINGLANG_TRUSTED_PROXIES: loopback by
default; the compose file's nginx) the one that proxy appends to X-Forwarded-For.

A malformed form (web/forms.py) is a 400 page and an evidence store that cannot take a file a 503 page;
either way nothing of the request is kept: a file it stored is taken back (EvidenceStore.discard).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import jinja2
from aiohttp import web

from bot.storage import DatabaseStorage, build_event_isolation
from db.engine import create_session_factory
from sqlalchemy import select

from db.models import Case, CaseEvent, OutboxMessage
from intake.cases import Actor, CaseNotFound, EvidenceItem
from intake.conversation import CLOCK_PHRASES, MAX_TEXT, RATING_LABELS
from intake.counters import RateCounters, Taken
from intake.evidence import (
    EvidenceRejected,
    EvidenceStoreUnavailable,
    EvidenceTooLarge,
    StoredFile,
    sanitize_original_name,
)
from intake.evidence_sweep import referenced_by_a_case
from intake.status import STATUS_NAMES_ZH, DomainError, Status
from nlu.taxonomy import CATEGORY_IDS, Kind, category
from qinglang.i18n import LANGUAGES, N_, language_of, translations
from web.chat.identity import (
    CHANNEL,
    ChatIdentity,
    client_ip,
    identity_of,
    identity_or_new,
    same_origin,
    secure_cookies,
    set_cookie,
)
from web.chat.codes import normalise_number
from web.forms import (
    FileOverQuota,
    MalformedForm,
    chunks,
    drain,
    next_part,
    open_parts,
    post_data,
    read_field,
)
from web.chat.grants import StatusGrants
from web.chat.limits import ChatLimits
from web.chat.service import ChatService, ChatView, replay_forever
from web.keys import CONTAINER

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
SERVICE = web.AppKey("chat_service", ChatService)
LIMITS = web.AppKey("chat_limits", ChatLimits)
GRANTS = web.AppKey("chat_status_grants", StatusGrants)
TEMPLATES = web.AppKey("chat_templates", jinja2.Environment)
LANG_COOKIE = "qinglang_lang"  # shared with the console
FETCH_HEADER = "qinglang-chat"  # X-Requested-With of chat.js
MAX_FORM = 64 * 1024  # a text message form; files go to /chat/upload
MAX_FIELD = 16 * 1024  # one non-file field of the upload form
_MESSAGE_ID = re.compile(r"^[A-Za-z0-9_.:-]{8,80}$")
KIND_NAMES = {Kind.COMPLAINT: N_("投诉"), Kind.TIPOFF: N_("举报"), Kind.CONSULTATION: N_("咨询")}
MALFORMED = N_("上传的内容格式不正确，请返回页面后重新选择文件上传。")
STORE_DOWN = N_("文件暂时无法保存，请稍后再试。您的对话和已填写的内容都还在。")
STORE_RETRY_SECONDS = 60  # a disk that takes no file: try again in a minute, as the API says
NOT_RATED_OUTCOMES = ("withdrawn", "duplicate")  # no survey for these (CaseService._plan_survey)


# -- set-up -----------------------------------------------------------------------------------------


def setup(app: web.Application) -> None:
    container = app[CONTAINER]
    redis = container.settings.redis.redis_url
    storage = DatabaseStorage(create_session_factory(container.engine))
    isolation = build_event_isolation(redis.get_secret_value() if redis else None, storage,
                                      lock_seconds=container.settings.bot.chat_lock_seconds)
    app[SERVICE] = ChatService(container, storage, isolation)
    limits = ChatLimits(RateCounters(container.uow, container.clock), container.settings.limits)
    app[LIMITS] = limits
    app[GRANTS] = StatusGrants(storage, isolation, container.clock)
    app[TEMPLATES] = _templates()
    app[TEMPLATES].globals.update(lookup_tries=limits.lookup_tries, lookup_minutes=limits.lookup_minutes,
                                  upload_files=limits.upload_files_per_cookie, upload_mb=limits.upload_mb_per_cookie)
    app.router.add_get("/chat", chat_page, name="chat")
    app.router.add_post("/chat/send", send)
    app.router.add_post("/chat/upload", upload)
    app.router.add_get("/chat/status", status_form, name="chat_status")
    app.router.add_post("/chat/status", status_lookup)
    app.router.add_post("/chat/status/answer", status_answer)
    app.router.add_post("/chat/status/rate", status_rate)
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


def _moment(moment: datetime, lang: str) -> str:
    return f"{_day(moment.date(), lang)} {moment:%H:%M}"


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


def _retry_later(response: web.Response) -> web.Response:
    """A 503 tells when to try again, as the API's does."""
    response.headers["Retry-After"] = str(STORE_RETRY_SECONDS)
    return response


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
    try:
        form = await post_data(request)
    except MalformedForm as exc:
        return _malformed(request, lang, exc)
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
    """A text field of a form, without NUL (no database stores it; PostgreSQL refuses the whole row)."""
    value = form.get(name)
    return value.replace("\x00", "") if isinstance(value, str) else None


@dataclass
class _Upload:
    """The file one request stored: taken back when the request does not end by handing it on.

    `attached` is set before the call that may commit a row naming the file (the inbox row of a chat
    message, a case's evidence row), and unset only on an outcome known to have committed nothing: a
    cancellation or an error inside that call keeps the file. A file taken back is still kept if an
    evidence row names it (asked while the file is moved aside)."""

    stored: StoredFile | None = None
    attached: bool = False
    extra_files: int = 0  # further file parts, read past and not stored

    async def settle(self, request: web.Request) -> None:
        if self.stored is None or self.attached:
            return
        container = request.app[CONTAINER]
        try:
            await container.evidence.discard(self.stored, referenced=functools.partial(referenced_by_a_case,
                                                                                       container.uow))
        except Exception:
            log.warning("web chat: an upload not attached was not taken back (the sweep removes it)", exc_info=True)


_FilePost = Callable[[web.Request, str, _Upload], Awaitable[web.Response]]


def _one_file_post(handler: _FilePost) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A multipart form with one file: a malformed one is a 400 page, and a file the request stored but
    did not hand on is taken back, however the request ends."""

    @functools.wraps(handler)
    async def post(request: web.Request) -> web.Response:
        lang, _chosen = _language(request)
        if not request.content_type.startswith("multipart/"):
            return _refuse(request, lang, 400, translations(lang).gettext(MALFORMED))
        state = _Upload()
        try:
            return await handler(request, lang, state)
        except MalformedForm as exc:
            return _malformed(request, lang, exc)
        finally:
            await state.settle(request)

    return post


async def _upload(request: web.Request, lang: str, state: _Upload) -> web.Response:
    container = request.app[CONTAINER]
    service = request.app[SERVICE]
    limits = request.app[LIMITS]
    _ = translations(lang).gettext
    limit = container.settings.storage.max_evidence_bytes
    reader = await open_parts(request)
    fields: dict[str, str] = {}
    identity: ChatIdentity | None = None
    message_id = ""
    tried = False
    while (part := await next_part(reader)) is not None:
        if part.name != "file":
            fields[part.name or ""] = await read_field(part, MAX_FIELD)
            continue
        if identity is None:
            # the file: only after the CSRF token and message id (they come first in the form)
            checked = _check_post(request, fields.get("csrf_token"), lang)
            if isinstance(checked, web.Response):
                return checked
            identity = checked
            message_id = fields.get("msg_id", "")
            if not _MESSAGE_ID.match(message_id):
                raise web.HTTPBadRequest(text="msg_id missing or malformed (it must come before the file)")
        name = part.filename or ""
        if not name or tried:  # no file chosen; or a further file part: the form has one, nothing stored
            state.extra_files += bool(name)
            await drain(part)
            continue
        tried = True
        if request.content_length is not None and request.content_length > limit + MAX_FORM:
            await service.note(identity.user_id, _upload_line(name), str(EvidenceTooLarge(limit)))
            return await _answer(request, identity, lang)
        ip = client_ip(request, container.settings.web.trusted_proxy_networks)
        quota = await limits.reserve_upload(identity.user_id, ip, min(request.content_length or 0, limit) or None)
        if not quota.allowed:
            return _over_quota(request, lang, quota.taken, ip)
        try:
            state.stored = await container.evidence.put(chunks(part, quota.may_stream), original_name=name)
        except BaseException as exc:
            with contextlib.suppress(Exception):  # nothing was kept: its bytes are not counted
                await limits.settle_upload(quota, identity.user_id, ip, 0)
            if isinstance(exc, FileOverQuota):
                return _over_quota(request, lang, limits.over_stream(quota), ip)
            if isinstance(exc, EvidenceRejected):
                log.info("web chat upload refused: %s", exc)
                await service.note(identity.user_id, _upload_line(name), str(exc))
                return await _answer(request, identity, lang)
            if isinstance(exc, EvidenceStoreUnavailable):
                log.error("web chat upload: the evidence store cannot take a file (%s)", exc.reason)
                return _retry_later(_refuse(request, lang, 503, _(STORE_DOWN)))
            raise
        refused = await limits.settle_upload(quota, identity.user_id, ip, state.stored.size)
        if refused is not None:
            return _over_quota(request, lang, refused, ip)
    if identity is None:  # no file part at all
        checked = _check_post(request, fields.get("csrf_token"), lang)
        if isinstance(checked, web.Response):
            return checked
        identity = checked
    if state.stored is None:
        await service.note(identity.user_id, None, _("请先选择要上传的文件（截图、照片、视频、PDF 等）。"))
        return await _answer(request, identity, lang)
    stored = state.stored
    payload = {
        "type": "attachment",
        "text": fields.get("caption", "").strip()[:MAX_TEXT],
        "attachment": {"sha256": stored.sha256, "size": stored.size, "mime": stored.mime, "name": stored.original_name},
        "lang": lang,
    }
    state.attached = True  # send commits the inbox row naming the file before it handles the message
    sent = await service.send(identity.user_id, message_id, payload)
    if sent.status == "duplicate":  # stored before, with that message's file: no row names this one
        state.attached = False
    if state.extra_files:
        log.info("web chat upload: %d further file parts not stored", state.extra_files)
        await service.note(identity.user_id, None, _("一次只能上传一个文件，其余的没有保存，请逐个上传。"))
    return await _answer(request, identity, lang)


upload = _one_file_post(_upload)


def _over_quota(request: web.Request, lang: str, taken: Taken, ip: str) -> web.Response:
    """A file over the day's quota: nothing of it is kept; the page says which quota and until when."""
    _ = translations(lang).gettext
    limits = request.app[LIMITS]
    wait = _wait(taken, lang)
    if limits.is_own_quota(taken):
        text = _("本次对话今天上传的文件已达上限（每天最多 {files} 个、共 {size} MB），请 {wait}后再试。").format(
            files=limits.upload_files_per_cookie, size=limits.upload_mb_per_cookie, wait=wait)
    elif limits.is_address_quota(taken):
        text = _("您所在的网络今天上传的文件已达上限，请 {wait}后再试。").format(wait=wait)
    else:
        text = _("今天网上登记收到的文件已达上限，请 {wait}后再试。").format(wait=wait)
    log.warning("web chat upload from %s refused: over the quota %s", ip,
                taken.refused_by.limit.name if taken.refused_by else "?")
    return _refuse(request, lang, 429, text + _("也可以先完成登记，之后凭编号和查询码在进度查询页补充材料。"))


def _minutes(taken: Taken) -> int:
    """Minutes until the limit's window ends (Taken.until_reset), rounded up."""
    return max(1, math.ceil(taken.until_reset().total_seconds() / 60))


def _wait(taken: Taken, lang: str) -> str:
    """How long until the limit's window ends, rounded up: "3 小时", "12 分钟"."""
    _ = translations(lang).gettext
    minutes = _minutes(taken)
    if minutes > 60:
        return _("{hours} 小时").format(hours=math.ceil(minutes / 60))
    return _("{minutes} 分钟").format(minutes=minutes)


def _malformed(request: web.Request, lang: str, exc: MalformedForm) -> web.Response:
    log.info("web chat: malformed form on %s refused (%s)", request.path, exc)
    return _refuse(request, lang, 400, translations(lang).gettext(MALFORMED))


def _upload_line(name: str) -> str:
    return f"📎 {sanitize_original_name(name) or '?'}"


# -- the status page --------------------------------------------------------------------------------


async def status_form(request: web.Request) -> web.Response:
    """The look-up form; with ?case=NUMBER and a current grant for it, that case's page."""
    identity = identity_or_new(request)
    lang, chosen = _language(request)
    number = normalise_number(request.query.get("case", ""))
    case_id = await request.app[GRANTS].case_id(identity.user_id, number) if number and not identity.new else None
    if case_id is not None:
        response = await _status_page(request, identity, lang, number, case_id)
    else:
        response = _render(request, "status.html", lang, csrf=identity.csrf_token, number=number, message=None,
                           case=None)
    set_cookie(request, response, identity)
    if chosen:
        _remember_language(request, response, lang)
    return response


async def status_lookup(request: web.Request) -> web.Response:
    lang, _chosen = _language(request)
    _ = translations(lang).gettext
    if request.content_length is None or request.content_length > MAX_FORM:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_FORM, actual_size=request.content_length or 0)
    try:
        form = await post_data(request)
    except MalformedForm as exc:
        return _malformed(request, lang, exc)
    checked = _check_post(request, _field(form, "csrf_token"), lang)
    if isinstance(checked, web.Response):
        return checked
    identity = checked
    number = (_field(form, "number") or "").strip()[:40]
    code = _field(form, "code") or ""
    limits = request.app[LIMITS]
    ip = client_ip(request, request.app[CONTAINER].settings.web.trusted_proxy_networks)
    normalised = normalise_number(number)
    known = await _knows_case(request, identity, normalised)
    # counted before the code is hashed: concurrent tries cannot all pass on the same count
    taken = await limits.lookup(ip, identity.user_id, normalised, known_case=known)
    if not taken.allowed:
        log.warning("web chat status: look-up from %s refused, too many tries (%s)", ip, taken.refused_by.limit.name)
        if limits.is_case_limit(taken):
            message = _("编号 {number} 最近有多次来自别处的错误查询，为防止有人猜测查询码，暂停用查询码查询这个编号，"
                        "请 {wait}后再试。在登记或查询过本件的浏览器上仍可以查询；通过 Telegram 登记的，可以在 "
                        "Telegram 中发送 /status；也可以拨打 12345 热线咨询。").format(
                number=normalised, wait=_wait(taken, lang))
        else:
            message = _("尝试次数过多，请 {minutes} 分钟后再试。").format(minutes=_minutes(taken))
        return _render(request, "status.html", lang, status=429, csrf=identity.csrf_token, number=number,
                       message=message, case=None)
    service = request.app[SERVICE]
    case_id = await service.codes.find(number, code)
    if case_id is None:
        left = taken.remaining()
        log.warning("web chat status: wrong case number or access code for %r from %s (%d tries left)",
                    number, ip, left)
        await _audit_failure(request, number, ip)
        return _render(request, "status.html", lang, csrf=identity.csrf_token, number=number,
                       message=_("没有找到与该编号和查询码相符的登记。请检查后重新输入。"), case=None,
                       tries_left=left, retry_minutes=_minutes(taken))
    await request.app[GRANTS].grant(identity.user_id, case_id, normalised)
    raise web.HTTPSeeOther(_status_url(normalised))


async def _knows_case(request: web.Request, identity: ChatIdentity, number: str) -> bool:
    """The cookie knows this case already: it was granted it before, or it filed it (its receipt was shown
    in this chat). Its look-ups are then not held back by the case's tries, which anyone can use up."""
    if not number:
        return False
    if await request.app[GRANTS].knows(identity.user_id, number):
        return True
    try:
        await request.app[CONTAINER].cases.case_of(CHANNEL, identity.user_id, number)
    except CaseNotFound:
        return False
    return True


def _status_url(number: str) -> str:
    return f"/chat/status?case={number}"  # A-Z, digits and "-" only (codes._NUMBER)


async def _audit_failure(request: web.Request, number: str, ip: str) -> None:
    container = request.app[CONTAINER]
    async with container.uow() as uow:
        uow.session.add(CaseEvent(case_id=None, actor_type="anonymous", action="status_lookup_failed",
                                  note=number[:40], data={"ip": ip}, created_at=container.clock.now()))
        await uow.commit()


async def _status_page(request: web.Request, identity: ChatIdentity, lang: str, number: str, case_id: int, *,
                       status: int = 200, error: str | None = None, answer: str = "") -> web.Response:
    """A granted case's page: its details, notices, messages and the forms that apply to it now."""
    flash = await request.app[GRANTS].take_flash(identity.user_id, number) if status == 200 else None
    case = await _case_status(request, case_id, lang)
    forms = {name: secrets.token_urlsafe(12) for name in ("answer", "rate")}
    return _render(request, "status.html", lang, status=status, csrf=identity.csrf_token, number=number,
                   message=None, case=case, flash=flash, error=error, form_ids=forms, answer=answer,
                   max_text=MAX_TEXT, ratings=[(score, translations(lang).gettext(label))
                                               for score, label in RATING_LABELS.items()],
                   max_mb=request.app[CONTAINER].settings.storage.max_evidence_bytes // (1024 * 1024))


async def _case_status(request: web.Request, case_id: int, lang: str) -> dict:
    container = request.app[CONTAINER]
    _ = translations(lang).gettext
    async with container.uow() as uow:
        case = await uow.cases.get(case_id)
        messages = list(await uow.cases.messages(case_id))
        notices = list(await uow.session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.case_id == case_id, OutboxMessage.channel == "web",
                   OutboxMessage.audience == "complainant", OutboxMessage.status == "sent",
                   OutboxMessage.sent_at.is_not(None))
            .order_by(OutboxMessage.sent_at, OutboxMessage.id)))
    lead = next((a.unit for a in case.assignments if a.active and a.role == "lead"), None)
    unit = ""
    if lead is not None:
        unit = lead.name_en if lang == "en" and lead.name_en else lead.name
    cat = category(case.category) if case.category in CATEGORY_IDS else None
    tz = container.settings.tz
    closed = case.status == Status.CLOSED
    # the latest information request not followed by anything from the complainant
    question = None
    for m in messages:
        if m.direction == "out" and m.info_request:
            question = m.body
        elif m.direction == "in":
            question = None
    return {
        "number": case.number,
        "kind": _(KIND_NAMES[Kind(case.kind)]) if case.kind in Kind.__members__.values() else case.kind,
        "status": _(STATUS_NAMES_ZH[Status(case.status)]),
        "category": (cat.en if lang == "en" else cat.zh) if cat else case.category,
        "unit": unit,
        "transfer_to": case.transfer_authority,
        "received_on": case.received_at.astimezone(tz).date(),
        "next_due_on": case.next_due_on if not closed else None,
        "notices": [{"at": _moment(n.sent_at.astimezone(tz), lang), "body": n.body or ""} for n in notices],
        "messages": [{"on": m.created_at.astimezone(tz).date(), "at": _moment(m.created_at.astimezone(tz), lang),
                      "body": m.body, "reply": m.is_reply, "request": m.info_request, "mine": m.direction == "in"}
                     for m in messages],
        "question": None if closed else question,
        "can_answer": not closed,
        "can_rate": _may_rate(case),
        "satisfaction": case.satisfaction,
        "satisfaction_label": _(RATING_LABELS[case.satisfaction]) if case.satisfaction in RATING_LABELS else "",
    }


def _may_rate(case: Case) -> bool:
    """Closed, not rated yet, and a case the satisfaction survey is for (CaseService._plan_survey)."""
    return (case.status == Status.CLOSED and case.satisfaction is None and case.rated_at is None
            and not case.anonymous and case.outcome not in NOT_RATED_OUTCOMES)


async def _granted(request: web.Request, csrf: str | None, number: str | None,
                   lang: str) -> tuple[ChatIdentity, str, int] | web.Response:
    """A post of the status page's forms: right origin and token, a current grant for the case, and
    within the cookie's post limit. (identity, number, case id), or the refusal to send."""
    _ = translations(lang).gettext
    checked = _check_post(request, csrf, lang)
    if isinstance(checked, web.Response):
        return checked
    identity = checked
    number = normalise_number(number or "")
    case_id = await request.app[GRANTS].case_id(identity.user_id, number) if number else None
    if case_id is None:
        return _render(request, "status.html", lang, status=403, csrf=identity.csrf_token, number=number,
                       message=_("请先输入编号和查询码查询（查询 30 分钟后需要重新输入）。"), case=None)
    if not (await request.app[LIMITS].status_post(identity.user_id)).allowed:  # counts every post
        log.warning("web chat status: posts for %s refused, over the limit", number)
        return _render(request, "status.html", lang, status=429, csrf=identity.csrf_token, number=number,
                       message=_("操作太频繁，请稍后再试。"), case=None)
    return identity, number, case_id


def _form_id(value: str | None) -> str | None:
    return value if value and _MESSAGE_ID.match(value) else None


async def _status_answer(request: web.Request, lang: str, state: _Upload) -> web.Response:
    """Words and/or one file added to a granted open case: the answer to an information request."""
    container = request.app[CONTAINER]
    _ = translations(lang).gettext
    limit = container.settings.storage.max_evidence_bytes
    reader = await open_parts(request)
    fields: dict[str, str] = {}
    granted: tuple[ChatIdentity, str, int] | None = None
    tried = False
    while (part := await next_part(reader)) is not None:
        if part.name != "file":
            fields[part.name or ""] = await read_field(part, MAX_FIELD)
            continue
        # the file: only after the token, the case number and the form id (they come first in the form)
        if granted is None:
            checked = await _granted(request, fields.get("csrf_token"), fields.get("number"), lang)
            if isinstance(checked, web.Response):
                return checked
            granted = checked
        identity, number, case_id = granted
        name = part.filename or ""
        too_long = len(fields.get("text", "").strip()) > MAX_TEXT  # refused below: keep no file for it
        if not name or tried or too_long:  # no file chosen; a further file part (the form has one)
            await drain(part)
            continue
        tried = True
        if request.content_length is not None and request.content_length > limit + MAX_FORM:
            return await _status_page(request, identity, lang, number, case_id, status=413,
                                      error=str(EvidenceTooLarge(limit)), answer=fields.get("text", ""))
        try:
            state.stored = await container.evidence.put(chunks(part), original_name=name)
        except EvidenceRejected as exc:
            log.info("web chat status: file refused: %s", exc)
            return await _status_page(request, identity, lang, number, case_id, status=400, error=str(exc),
                                      answer=fields.get("text", ""))
        except EvidenceStoreUnavailable as exc:
            log.error("web chat status: the evidence store cannot take a file (%s)", exc.reason)
            return _retry_later(await _status_page(request, identity, lang, number, case_id, status=503,
                                                   error=_(STORE_DOWN), answer=fields.get("text", "")))
    if granted is None:  # no file part at all
        checked = await _granted(request, fields.get("csrf_token"), fields.get("number"), lang)
        if isinstance(checked, web.Response):
            return checked
        granted = checked
    identity, number, case_id = granted
    stored = state.stored
    form_id = _form_id(fields.get("form_id"))
    if form_id is None:
        raise web.HTTPBadRequest(text="form_id missing or malformed")
    text = fields.get("text", "").strip()
    if len(text) > MAX_TEXT:
        return await _status_page(request, identity, lang, number, case_id, status=400, answer=text[:MAX_TEXT],
                                  error=_("内容太长了，请控制在 {limit} 字以内，或分几次发送。").format(limit=MAX_TEXT))
    if not text and stored is None:
        return await _status_page(request, identity, lang, number, case_id, status=400,
                                  error=_("请填写要补充的内容，或选择一个文件。"))
    if not await request.app[GRANTS].first_use(identity.user_id, form_id):
        raise web.HTTPSeeOther(_status_url(number))  # the same form again (double click, reload): done once
    items = (EvidenceItem(stored.sha256, stored.size, stored.mime, stored.original_name, "web"),) if stored else ()
    state.attached = True  # the evidence rows are committed inside; what fails there may have committed them
    try:
        await container.cases.add_from_complainant(case_id, Actor("complainant"), text=text or None, evidence=items)
    except DomainError as exc:  # raised before the service's commit (closed, not found, nothing to add)
        state.attached = False
        log.info("web chat status: addition to %s refused: %s", number, exc)
        return await _status_page(request, identity, lang, number, case_id, status=409, answer=text,
                                  error=_("本件已经办结，不能再补充材料。如有新的问题，请在线登记。"))
    await request.app[GRANTS].flash(identity.user_id, number,
                                    _("已收到您的补充，已附到 {number}，承办人员会看到。").format(number=number))
    raise web.HTTPSeeOther(_status_url(number))


status_answer = _one_file_post(_status_answer)


async def status_rate(request: web.Request) -> web.Response:
    """The satisfaction rating (1-5, an optional comment) of a granted closed case."""
    container = request.app[CONTAINER]
    lang, _chosen = _language(request)
    _ = translations(lang).gettext
    if request.content_length is None or request.content_length > MAX_FORM:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_FORM, actual_size=request.content_length or 0)
    try:
        form = await post_data(request)
    except MalformedForm as exc:
        return _malformed(request, lang, exc)
    checked = await _granted(request, _field(form, "csrf_token"), _field(form, "number"), lang)
    if isinstance(checked, web.Response):
        return checked
    identity, number, case_id = checked
    form_id = _form_id(_field(form, "form_id"))
    if form_id is None:
        raise web.HTTPBadRequest(text="form_id missing or malformed")
    score = _field(form, "score") or ""
    comment = (_field(form, "comment") or "").strip()
    if score not in ("1", "2", "3", "4", "5"):
        return await _status_page(request, identity, lang, number, case_id, status=400,
                                  error=_("请选择 1 到 5 分。"))
    if len(comment) > MAX_TEXT:
        return await _status_page(request, identity, lang, number, case_id, status=400,
                                  error=_("留言太长了，请控制在 {limit} 字以内。").format(limit=MAX_TEXT))
    if not await request.app[GRANTS].first_use(identity.user_id, form_id):
        raise web.HTTPSeeOther(_status_url(number))
    async with container.uow() as uow:
        case = await uow.session.get(Case, case_id)
        refusal = None
        if case.satisfaction is not None or case.rated_at is not None:
            refusal = _("您已经评价过了，每件登记只能评价一次。谢谢！")
        elif case.status != Status.CLOSED:
            refusal = _("本件还没有办结，办结后才能评价。")
        elif not _may_rate(case):
            refusal = _("本件不需要评价。")
    if refusal is None:
        try:
            view = await container.cases.rate(case_id, Actor("complainant"), int(score), comment=comment or None)
        except DomainError as exc:
            log.info("web chat status: rating of %s refused: %s", number, exc)
            refusal = _("评价没有成功，请刷新页面后再试。")
    if refusal is not None:
        return await _status_page(request, identity, lang, number, case_id, status=409, error=refusal)
    thanks = _("感谢您的评价！")
    if view.status != Status.CLOSED:  # a low rating reopened the case
        thanks += _("很抱歉没能让您满意，我们已重新打开本件，由消保分局复核。")
    await request.app[GRANTS].flash(identity.user_id, number, thanks)
    raise web.HTTPSeeOther(_status_url(number))
