"""A fake Telegram Bot API server speaking real HTTP on 127.0.0.1, for tests.

Point a real aiogram ``Bot`` at it with
``AiohttpSession(api=TelegramAPIServer.from_base(fake.base_url))`` (or use ``fake.make_bot()``).
Updates are built with :meth:`FakeTelegram.message` / :meth:`callback` / ..., queued with
:meth:`push` for ``getUpdates`` long polling, and everything the bot sends is recorded in
:attr:`FakeTelegram.sent`.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

TOKEN = "123456:ABCDEFGHIJKLMNOPQRSTUVWXYZ012345678"
MAX_DOWNLOAD_SIZE = 20 * 1024 * 1024  # Bot API getFile limit
# Parameters that are always plain text; everything else is JSON-decoded when it parses.
_TEXT_KEYS = frozenset(
    {"text", "caption", "data", "callback_query_id", "file_id", "url", "secret_token",
     "language_code", "parse_mode", "emoji", "title", "description", "name", "inline_message_id"}
)
_METHODS = ("getMe", "setMyCommands", "deleteMyCommands", "getMyCommands", "setWebhook", "deleteWebhook",
            "getWebhookInfo", "sendMessage", "editMessageText", "editMessageReplyMarkup",
            "answerCallbackQuery", "sendChatAction", "sendDocument", "sendPhoto", "getFile", "deleteMessage")


@dataclass(frozen=True)
class FakeUser:
    id: int
    first_name: str
    language_code: str | None = "zh-hans"
    username: str | None = None
    last_name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"id": self.id, "is_bot": False, "first_name": self.first_name}
        for key in ("last_name", "username", "language_code"):
            if getattr(self, key) is not None:
                d[key] = getattr(self, key)
        return d

    def private_chat(self) -> dict[str, Any]:
        d = {"id": self.id, "type": "private", "first_name": self.first_name}
        return d | ({"username": self.username} if self.username else {})


@dataclass(frozen=True)
class FakeChat:
    id: int
    title: str = "测试群"
    type: str = "supergroup"

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type, "title": self.title}


@dataclass
class SentCall:
    method: str  # canonical camelCase name, e.g. "sendMessage"
    params: dict[str, Any]
    ok: bool = True
    result: Any = None
    at: float = field(default_factory=time.monotonic)  # when the fake handled it


@dataclass
class _Fault:
    status: int = 500
    description: str = ""
    retry_after: int | None = None
    close: bool = False
    times: int = 1
    after_processing: bool = False  # the method runs (the message IS sent), then the answer is lost
    delay: float = 0.0  # seconds to hold the answer (longer than the client's timeout: a timeout)


class ApiError(Exception):
    def __init__(self, code: int, description: str, **parameters: Any) -> None:
        super().__init__(description)
        self.code, self.description, self.parameters = code, description, parameters

    def payload(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ok": False, "error_code": self.code, "description": self.description}
        return body | ({"parameters": self.parameters} if self.parameters else {})


def _decode(key: str, value: Any) -> Any:
    if not isinstance(value, str) or key in _TEXT_KEYS:
        return value
    try:
        decoded = json.loads(value)
    except ValueError:
        return value
    return value if decoded is None or isinstance(decoded, str) else decoded


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _now() -> int:
    return int(time.time())


class FakeTelegram:
    def __init__(self, token: str = TOKEN, *, username: str = "qinglang_test_bot",
                 first_name: str = "清朗测试机器人") -> None:
        self.token = token
        self.bot_user = {"id": int(token.split(":", 1)[0]), "is_bot": True, "first_name": first_name,
                         "username": username, "can_join_groups": True,
                         "can_read_all_group_messages": False, "supports_inline_queries": False}
        self.port: int | None = None
        self.updates: list[dict[str, Any]] = []  # queued, not yet confirmed
        self.sent: list[SentCall] = []
        self.files: dict[str, dict[str, Any]] = {}
        self.messages: dict[tuple[int, int], dict[str, Any]] = {}
        self.commands: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.webhook: dict[str, Any] | None = None
        self.get_updates_calls = 0
        self.last_offset: int | None = None
        self._chats: dict[int, dict[str, Any]] = {}
        self._faults: dict[str, list[_Fault]] = defaultdict(list)
        self.blocked_chats: dict[int, str] = {}
        self._update_ids = itertools.count(100_001)
        self._file_ids = itertools.count(1)
        self._callback_ids = itertools.count(1)
        self._last_message_id: dict[int, int] = defaultdict(int)
        self._cond = asyncio.Condition()
        self._closing = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner: web.AppRunner | None = None
        # Telegram method names are case-insensitive; ``sent`` records the canonical spelling.
        self._methods: dict[str, Callable[[dict[str, Any]], Any]] = {
            name.lower(): getattr(self, "_" + name) for name in _METHODS}
        self._canonical = {name.lower(): name for name in (*_METHODS, "getUpdates")}

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> FakeTelegram:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle_api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._handle_file)
        self._closing = False
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True,
                                     shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        self._closing = True
        await self._notify()  # release pending long polls
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeTelegram:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        assert self.port is not None, "FakeTelegram is not started"
        return f"http://127.0.0.1:{self.port}"

    def make_bot(self, **kwargs: Any) -> Any:
        """A real aiogram Bot talking to this fake (close it with ``await bot.session.close()``)."""
        from aiogram import Bot
        from aiogram.client.session.aiohttp import AiohttpSession
        from aiogram.client.telegram import TelegramAPIServer

        session = AiohttpSession(api=TelegramAPIServer.from_base(self.base_url))
        return Bot(self.token, session=session, **kwargs)

    # ------------------------------------------------------------------ test control
    def fail_next(self, method: str, status: int = 500, *, description: str | None = None,
                  retry_after: int | None = None, times: int = 1) -> None:
        if status == 429 and retry_after is None:
            retry_after = 1
        default = {400: "Bad Request", 403: "Forbidden: bot was blocked by the user",
                   429: f"Too Many Requests: retry after {retry_after}"}.get(status, "Internal Server Error")
        self._faults[method.lower()].append(
            _Fault(status, description or default, retry_after if status == 429 else None, times=times))

    def close_next_connection(self, method: str, times: int = 1, *, after_processing: bool = False) -> None:
        """Drop the connection without an answer; `after_processing`: only after doing the work."""
        self._faults[method.lower()].append(_Fault(close=True, times=times, after_processing=after_processing))

    def delay_next(self, method: str, seconds: float, times: int = 1, *, after_processing: bool = True) -> None:
        """Hold the answer for `seconds` (a client timeout); by default the work is done first."""
        self._faults[method.lower()].append(
            _Fault(delay=seconds, times=times, after_processing=after_processing))

    def block_chat(self, chat_id: int, description: str = "Forbidden: bot was blocked by the user") -> None:
        """Every sendMessage to this chat answers 403 from now on (blocked bot, deleted account)."""
        self.blocked_chats[chat_id] = description

    def delivered(self, chat_id: int | None = None) -> list[SentCall]:
        """Successful sendMessage calls (to one chat), in the order the fake handled them."""
        return [c for c in self.sent if c.method == "sendMessage" and c.ok
                and (chat_id is None or c.params.get("chat_id") == chat_id)]

    def push(self, update: dict[str, Any]) -> dict[str, Any]:
        """Queue an update for getUpdates (wakes pending long polls)."""
        self.updates.append(update)
        try:
            task = asyncio.get_running_loop().create_task(self._notify())
        except RuntimeError:  # no loop yet: the next getUpdates sees it anyway
            return update
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return update

    def feed(self, update: dict[str, Any]) -> dict[str, Any]:
        return update

    def calls(self, method: str) -> list[SentCall]:
        return [c for c in self.sent if c.method.lower() == method.lower()]

    def messages_to(self, chat_id: int) -> list[str]:
        return [c.params["text"] for c in self.sent
                if c.ok and c.method == "sendMessage" and c.params.get("chat_id") == chat_id]

    async def wait_for(self, predicate: Callable[[SentCall], bool], timeout: float = 5) -> SentCall:
        """The first recorded call (already sent or arriving later) matching ``predicate``."""
        def find() -> SentCall | None:
            return next((c for c in self.sent if predicate(c)), None)

        try:
            async with asyncio.timeout(timeout), self._cond:
                await self._cond.wait_for(lambda: find() is not None)
        except TimeoutError:
            raise TimeoutError(f"no matching call within {timeout}s; sent: {self._summary()}") from None
        return find()  # type: ignore[return-value]

    async def wait_messages(self, chat_id: int, count: int, timeout: float = 5) -> list[str]:
        try:
            async with asyncio.timeout(timeout), self._cond:
                await self._cond.wait_for(lambda: len(self.messages_to(chat_id)) >= count)
        except TimeoutError:
            raise TimeoutError(f"expected {count} messages to {chat_id} within {timeout}s; "
                               f"sent: {self._summary()}") from None
        return self.messages_to(chat_id)

    def _summary(self) -> list[tuple[str, Any]]:
        return [(c.method, c.params.get("text", c.params.get("chat_id"))) for c in self.sent]

    async def _notify(self) -> None:
        async with self._cond:
            self._cond.notify_all()

    def add_file(self, content: bytes, *, size: int | None = None, file_name: str | None = None,
                 kind: str = "documents") -> str:
        n = next(self._file_ids)
        ext = file_name.rsplit(".", 1)[-1] if file_name and "." in file_name else "bin"
        file_id = f"BQACAgUAAxkBAAI{n:08d}"
        self.files[file_id] = {"content": content, "size": len(content) if size is None else size,
                               "path": f"{kind}/file_{n}.{ext}", "unique_id": f"AgAD{n:06d}",
                               "file_name": file_name}
        return file_id

    # ------------------------------------------------------------------ update builders
    def _chat_of(self, user: FakeUser, chat: FakeChat | dict[str, Any] | None) -> dict[str, Any]:
        d = user.private_chat() if chat is None else chat.to_dict() if isinstance(chat, FakeChat) else chat
        self._chats[d["id"]] = d
        return d

    def _new_message(self, chat: dict[str, Any], sender: dict[str, Any]) -> dict[str, Any]:
        self._last_message_id[chat["id"]] += 1
        msg = {"message_id": self._last_message_id[chat["id"]], "from": sender, "chat": chat, "date": _now()}
        self.messages[(chat["id"], msg["message_id"])] = msg
        return msg

    def _file_ref(self, value: bytes | str | bool, kind: str, *, size: int | None = None,
                  file_name: str | None = None) -> dict[str, Any]:
        if isinstance(value, str):
            file_id = value
        else:
            content = value if isinstance(value, bytes) else f"fake {kind}".encode()
            file_id = self.add_file(content, size=size, file_name=file_name, kind=kind)
        meta = self.files.get(file_id, {"unique_id": "AgAD" + file_id[-6:], "size": 0})
        return {"file_id": file_id, "file_unique_id": meta["unique_id"], "file_size": meta["size"]}

    def message(self, user: FakeUser, text: str | None = None, *, chat: FakeChat | dict[str, Any] | None = None,
                photo: bytes | str | bool | None = None, document: bytes | str | bool | None = None,
                video: bytes | str | bool | None = None, voice: bytes | str | bool | None = None,
                sticker: str | bool | None = None, location: tuple[float, float] | None = None,
                contact: dict[str, Any] | str | None = None, poll: dict[str, Any] | str | None = None,
                forward_from: FakeUser | None = None, media_group_id: str | None = None,
                caption: str | None = None, reply_to: dict[str, Any] | None = None,
                file_name: str | None = None, mime_type: str | None = None,
                size: int | None = None) -> dict[str, Any]:
        """A ``message`` update from ``user`` (private chat unless ``chat`` is given)."""
        msg = self._new_message(self._chat_of(user, chat), user.to_dict())
        if text is not None:
            msg["text"] = text
            if text.startswith("/"):
                msg["entities"] = [{"type": "bot_command", "offset": 0, "length": _utf16_len(text.split()[0])}]
        if photo is not None:
            ref = self._file_ref(photo, "photos", size=size, file_name="photo.jpg")
            thumb = self._file_ref(photo if isinstance(photo, bytes) else True, "photos")
            msg["photo"] = [thumb | {"width": 90, "height": 68}, ref | {"width": 1280, "height": 960}]
        if document is not None:
            name = file_name or "document.pdf"
            msg["document"] = self._file_ref(document, "documents", size=size, file_name=name) | {
                "file_name": name, "mime_type": mime_type or "application/pdf"}
        if video is not None:
            msg["video"] = self._file_ref(video, "videos", size=size, file_name="video.mp4") | {
                "width": 1280, "height": 720, "duration": 12, "mime_type": mime_type or "video/mp4"}
        if voice is not None:
            msg["voice"] = self._file_ref(voice, "voice", size=size, file_name="voice.oga") | {
                "duration": 5, "mime_type": "audio/ogg"}
        if sticker is not None:
            msg["sticker"] = self._file_ref(True, "stickers") | {
                "type": "regular", "width": 512, "height": 512, "is_animated": False, "is_video": False,
                "emoji": sticker if isinstance(sticker, str) else "🙂"}
        if location is not None:
            msg["location"] = {"latitude": location[0], "longitude": location[1]}
        if contact is not None:
            base = {"phone_number": "+8613800138000", "first_name": user.first_name, "user_id": user.id}
            msg["contact"] = base | (contact if isinstance(contact, dict) else {"phone_number": contact})
        if poll is not None:
            base = {"id": str(msg["message_id"] * 1000 + 7), "question": "问题",
                    "options": [{"persistent_id": str(i), "text": t, "voter_count": 0}
                                for i, t in enumerate(("是", "否"))],
                    "total_voter_count": 0, "is_closed": False, "is_anonymous": True, "type": "regular",
                    "allows_multiple_answers": False, "allows_revoting": False, "members_only": False}
            msg["poll"] = base | (poll if isinstance(poll, dict) else {"question": poll})
        if forward_from is not None:
            msg["forward_origin"] = {"type": "user", "sender_user": forward_from.to_dict(), "date": _now() - 3600}
        if media_group_id is not None:
            msg["media_group_id"] = media_group_id
        if caption is not None:
            msg["caption"] = caption
        if reply_to is not None:
            msg["reply_to_message"] = reply_to.get("message", reply_to)
        return {"update_id": next(self._update_ids), "message": msg}

    def edited_message(self, user: FakeUser, text: str | None = None, *, message_id: int | None = None,
                       chat: FakeChat | dict[str, Any] | None = None, caption: str | None = None) -> dict[str, Any]:
        """An ``edited_message`` update; defaults to the user's latest message in that chat."""
        chat_d = self._chat_of(user, chat)
        if message_id is None:
            message_id = max((mid for (cid, mid), m in self.messages.items()
                              if cid == chat_d["id"] and m["from"]["id"] == user.id), default=None)
            if message_id is None:
                raise ValueError(f"{user} has no message to edit")
        msg = copy.deepcopy(self.messages.get((chat_d["id"], message_id)) or {
            "message_id": message_id, "from": user.to_dict(), "chat": chat_d, "date": _now() - 60})
        msg.pop("entities", None)
        if text is not None:
            msg["text"] = text
        if caption is not None:
            msg["caption"] = caption
        msg["edit_date"] = _now()
        self.messages[(chat_d["id"], message_id)] = msg
        return {"update_id": next(self._update_ids), "edited_message": msg}

    def callback(self, user: FakeUser, data: str, *, message_id: int | None = None,
                 chat: FakeChat | dict[str, Any] | None = None) -> dict[str, Any]:
        """A ``callback_query`` update pressing a button on a bot message (default: the latest one)."""
        chat_d = self._chat_of(user, chat)
        bot_id = self.bot_user["id"]
        if message_id is None:
            message_id = max((mid for (cid, mid), m in self.messages.items()
                              if cid == chat_d["id"] and m["from"]["id"] == bot_id), default=None)
        msg = self.messages.get((chat_d["id"], message_id)) if message_id is not None else None
        if msg is None:
            msg = self._new_message(chat_d, self.bot_user)
            msg["text"] = "…"
        return {"update_id": next(self._update_ids), "callback_query": {
            "id": str(4_000_000_000 + next(self._callback_ids)), "from": user.to_dict(),
            "chat_instance": str(abs(hash((chat_d["id"], "chat_instance")))), "data": data, "message": copy.deepcopy(msg)}}

    # ------------------------------------------------------------------ HTTP
    async def _params(self, request: web.Request) -> dict[str, Any]:
        raw: dict[str, Any] = dict(request.query)
        files: dict[str, dict[str, Any]] = {}
        if request.content_type == "application/json":
            raw.update(await request.json())
        elif request.can_read_body:
            for key, value in (await request.post()).items():
                if isinstance(value, web.FileField):
                    files[key] = {"filename": value.filename, "content": value.file.read(),
                                  "content_type": value.content_type}
                else:
                    raw[key] = value
        params = {k: _decode(k, v) for k, v in raw.items()}
        for key, value in params.items():
            if isinstance(value, str) and value.startswith("attach://") and value[9:] in files:
                params[key] = files[value[9:]]
        return params

    def _error(self, exc: ApiError) -> web.Response:
        return web.json_response(exc.payload(), status=exc.code)

    async def _handle_api(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return self._error(ApiError(401, "Unauthorized"))
        name = request.match_info["method"].lower()
        method = self._canonical.get(name, request.match_info["method"])
        params = await self._params(request)
        faults = self._faults.get(name)
        late_fault = None
        if faults:
            fault = faults[0]
            fault.times -= 1
            if fault.times <= 0:
                faults.pop(0)
            if fault.after_processing:
                late_fault = fault
            else:
                if fault.delay:  # the client gives up before the work is done: nothing is sent
                    await asyncio.sleep(fault.delay)
                if fault.close:
                    assert request.transport is not None
                    request.transport.abort()
                    return web.Response()
                exc = ApiError(fault.status, fault.description,
                               **({"retry_after": fault.retry_after} if fault.retry_after else {}))
                await self._record(SentCall(method, params, ok=False, result=exc.payload()), name)
                return self._error(exc)
        try:
            if name == "getupdates":
                result = await self._get_updates(params)
            elif name in self._methods:
                result = self._methods[name](params)
            else:
                raise ApiError(404, "Not Found")
        except ApiError as exc:
            await self._record(SentCall(method, params, ok=False, result=exc.payload()), name)
            return self._error(exc)
        await self._record(SentCall(method, params, result=result), name)
        if late_fault is not None:
            if late_fault.delay:
                await asyncio.sleep(late_fault.delay)
            if late_fault.close:
                assert request.transport is not None
                request.transport.abort()
                return web.Response()
        return web.json_response({"ok": True, "result": result})

    async def _record(self, call: SentCall, name: str) -> None:
        if name != "getupdates":
            self.sent.append(call)
            await self._notify()

    async def _handle_file(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return self._error(ApiError(401, "Unauthorized"))
        path = request.match_info["path"]
        meta = next((m for m in self.files.values() if m["path"] == path), None)
        if meta is None:
            return self._error(ApiError(404, "Not Found"))
        return web.Response(body=meta["content"], content_type="application/octet-stream")

    # ------------------------------------------------------------------ Bot API methods
    async def _get_updates(self, p: dict[str, Any]) -> list[dict[str, Any]]:
        self.get_updates_calls += 1
        if self.webhook is not None:
            raise ApiError(409, "Conflict: can't use getUpdates method while webhook is active; "
                                "use deleteWebhook to delete the webhook first")
        offset, timeout = p.get("offset"), float(p.get("timeout") or 0)
        limit = min(max(int(p.get("limit") or 100), 1), 100)
        self.last_offset = offset
        if offset is not None:
            offset = int(offset)
            self.updates = self.updates[offset:] if offset < 0 else [
                u for u in self.updates if u["update_id"] >= offset]
        try:
            async with asyncio.timeout(timeout), self._cond:
                await self._cond.wait_for(lambda: bool(self.updates) or self._closing)
        except TimeoutError:
            pass
        return copy.deepcopy(self.updates[:limit])

    def _getMe(self, p: dict[str, Any]) -> dict[str, Any]:
        return self.bot_user

    @staticmethod
    def _commands_key(p: dict[str, Any]) -> tuple[str, str]:
        return json.dumps(p.get("scope") or {"type": "default"}, sort_keys=True), p.get("language_code") or ""

    def _setMyCommands(self, p: dict[str, Any]) -> bool:
        self.commands[self._commands_key(p)] = p["commands"]
        return True

    def _deleteMyCommands(self, p: dict[str, Any]) -> bool:
        self.commands.pop(self._commands_key(p), None)
        return True

    def _getMyCommands(self, p: dict[str, Any]) -> list[dict[str, Any]]:
        return self.commands.get(self._commands_key(p), [])

    def _setWebhook(self, p: dict[str, Any]) -> bool:
        if p.get("drop_pending_updates"):
            self.updates.clear()
        self.webhook = {k: v for k, v in p.items() if k != "drop_pending_updates"}
        return True

    def _deleteWebhook(self, p: dict[str, Any]) -> bool:
        if p.get("drop_pending_updates"):
            self.updates.clear()
        self.webhook = None
        return True

    def _getWebhookInfo(self, p: dict[str, Any]) -> dict[str, Any]:
        info = {"url": (self.webhook or {}).get("url", ""), "has_custom_certificate": False,
                "pending_update_count": len(self.updates)}
        if self.webhook and "allowed_updates" in self.webhook:
            info["allowed_updates"] = self.webhook["allowed_updates"]
        return info

    def _chat(self, chat_id: Any) -> dict[str, Any]:
        if not isinstance(chat_id, int):
            raise ApiError(400, "Bad Request: chat not found")
        return self._chats.get(chat_id) or {"id": chat_id, "type": "private" if chat_id > 0 else "supergroup",
                                            **({"first_name": "User"} if chat_id > 0 else {"title": "Group"})}

    def _outgoing(self, p: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
        msg = self._new_message(self._chat(p.get("chat_id")), self.bot_user)
        if p.get("caption"):
            fields = fields | {"caption": p["caption"]}
        msg.update(fields | self._markup(p))  # only inline keyboards are echoed back
        return copy.deepcopy(msg)

    def _sendMessage(self, p: dict[str, Any]) -> dict[str, Any]:
        if p.get("chat_id") in self.blocked_chats:
            raise ApiError(403, self.blocked_chats[p["chat_id"]])
        text = p.get("text") or ""
        if not text.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        if _utf16_len(text) > 4096:
            raise ApiError(400, "Bad Request: message is too long")
        return self._outgoing(p, {"text": text})

    def _stored(self, p: dict[str, Any], action: str) -> dict[str, Any]:
        msg = self.messages.get((p.get("chat_id"), p.get("message_id")))  # type: ignore[arg-type]
        if msg is None:
            raise ApiError(400, f"Bad Request: message to {action} not found")
        return msg

    def _edit(self, msg: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
        new = {k: v for k, v in msg.items() if k not in ("reply_markup", "edit_date")} | changes
        if {k: v for k, v in msg.items() if k != "edit_date"} == new:
            raise ApiError(400, "Bad Request: message is not modified: specified new message content and "
                                "reply markup are exactly the same as a current content and reply markup of the message")
        new["edit_date"] = _now()
        self.messages[(msg["chat"]["id"], msg["message_id"])] = new
        return new

    def _markup(self, p: dict[str, Any]) -> dict[str, Any]:
        markup = p.get("reply_markup")
        return {"reply_markup": markup} if isinstance(markup, dict) and markup.get("inline_keyboard") else {}

    def _editMessageText(self, p: dict[str, Any]) -> dict[str, Any] | bool:
        if p.get("inline_message_id"):
            return True
        return self._edit(self._stored(p, "edit"), {"text": p.get("text", "")} | self._markup(p))

    def _editMessageReplyMarkup(self, p: dict[str, Any]) -> dict[str, Any] | bool:
        if p.get("inline_message_id"):
            return True
        return self._edit(self._stored(p, "edit"), self._markup(p))

    def _deleteMessage(self, p: dict[str, Any]) -> bool:
        msg = self._stored(p, "delete")
        del self.messages[(msg["chat"]["id"], msg["message_id"])]
        return True

    def _answerCallbackQuery(self, p: dict[str, Any]) -> bool:
        return True

    _sendChatAction = _answerCallbackQuery

    def _media(self, value: Any, kind: str) -> dict[str, Any]:
        if isinstance(value, dict):  # uploaded in the multipart body
            file_id = self.add_file(value["content"], file_name=value["filename"], kind=kind)
        elif isinstance(value, str) and value in self.files:
            file_id = value
        else:
            raise ApiError(400, "Bad Request: wrong file identifier/HTTP URL specified")
        meta = self.files[file_id]
        return {"file_id": file_id, "file_unique_id": meta["unique_id"], "file_size": meta["size"]}

    def _sendDocument(self, p: dict[str, Any]) -> dict[str, Any]:
        ref = self._media(p.get("document"), "documents")
        name = self.files[ref["file_id"]]["file_name"] or "document"
        return self._outgoing(p, {"document": ref | {"file_name": name}})

    def _sendPhoto(self, p: dict[str, Any]) -> dict[str, Any]:
        ref = self._media(p.get("photo"), "photos")
        return self._outgoing(p, {"photo": [ref | {"width": 1280, "height": 960}]})

    def _getFile(self, p: dict[str, Any]) -> dict[str, Any]:
        meta = self.files.get(p.get("file_id", ""))
        if meta is None:
            raise ApiError(400, "Bad Request: invalid file_id")
        if meta["size"] > MAX_DOWNLOAD_SIZE:
            raise ApiError(400, "Bad Request: file is too big")
        return {"file_id": p["file_id"], "file_unique_id": meta["unique_id"], "file_size": meta["size"],
                "file_path": meta["path"]}
