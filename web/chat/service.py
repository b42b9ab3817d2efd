"""One message of the web chat: stored in the inbox first, handled by the conversation engine, and
written to the citizen's transcript.

What is kept per citizen (FSM storage data under identity.storage_key_of(user_id)):

    {"draft": {...},            the engine's Draft (absent when there is none)
     "turn": 12,                how many events were handled
     "log": [entry, ...],       the last LOG_LENGTH lines of the conversation
     "receipts": [{...}]}       cases submitted whose receipt (with a new access code) is not shown yet

An entry is {"who": "me" | "bot", "text": str, "turn": int, "buttons": [[[label, value], ...], ...]}.
Only the buttons of the latest turn are offered; a pressed value must be one of them (or a button
about a stored case from an earlier turn, as the bot allows), and the draft must not have moved on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from aiogram.fsm.storage.base import BaseEventIsolation, BaseStorage
from sqlalchemy import select

from bot.handlers.buttons import CASE_ACTIONS
from db.models import InboxUpdate
from intake.cases import CaseNotFound
from intake.conversation import MAX_TEXT, Attachment, CLOCK_PHRASES, Inbound, Person
from intake.draft import Draft
from intake.inbox import Inbox
from qinglang.bootstrap import Container
from qinglang.i18n import translations
from web.chat.codes import AccessCodes, shown
from web.chat.identity import CHANNEL, storage_key_of

log = logging.getLogger(__name__)

LOG_LENGTH = 80
MAX_RECEIPTS = 5


@dataclass(frozen=True)
class Entry:
    who: str
    text: str
    turn: int
    buttons: tuple[tuple[tuple[str, str], ...], ...] = ()


@dataclass(frozen=True)
class Receipt:
    """A case just submitted, with the access code made for this one showing."""

    number: str
    code: str | None  # ABCDE-FGHJK; None if it could not be made
    unit: str
    transfer_to: str | None
    deadlines: tuple[tuple[str, date, bool], ...]  # (clock, due on, provisional)


@dataclass
class ChatView:
    entries: list[Entry]
    turn: int
    rev: int
    receipts: list[Receipt] = field(default_factory=list)

    @property
    def latest(self) -> list[Entry]:
        """The bot's messages of the latest turn: theirs are the buttons to offer."""
        return [e for e in self.entries if e.turn == self.turn and e.who == "bot"]


@dataclass(frozen=True)
class Sent:
    status: str  # handled | duplicate | failed
    receipts: int = 0


class ChatService:
    def __init__(self, container: Container, storage: BaseStorage, isolation: BaseEventIsolation) -> None:
        self._container = container
        self._storage = storage
        self._isolation = isolation
        lease = timedelta(seconds=container.settings.bot.inbox_lease_seconds)
        self.inbox = Inbox(container.uow, container.clock, lease=lease)
        self.codes = AccessCodes(container.uow, container.clock)

    # -- reading ----------------------------------------------------------------------------------

    async def view(self, user_id: str, *, lang: str) -> ChatView:
        """The transcript; receipts waiting to be shown get their access code now, and are shown once."""
        key = storage_key_of(user_id)
        data = await self._storage.get_data(key)
        receipts: list[Receipt] = []
        if data.get("receipts"):
            async with self._isolation.lock(key):
                data = await self._storage.get_data(key)
                pending = data.pop("receipts", [])
                for item in pending[-MAX_RECEIPTS:]:
                    receipts.append(await self._receipt(item, lang))
                await self._storage.set_data(key, data)
        return self._view(data, receipts)

    async def draft(self, user_id: str) -> Draft | None:
        return Draft.from_dict((await self._storage.get_data(storage_key_of(user_id))).get("draft"))

    async def set_language(self, user_id: str, lang: str) -> None:
        """The page's language chosen explicitly: the draft (so the engine's replies) follows it."""
        key = storage_key_of(user_id)
        async with self._isolation.lock(key):
            data = await self._storage.get_data(key)
            if data.get("draft") and data["draft"].get("lang") != lang:
                data["draft"]["lang"] = lang
                await self._storage.set_data(key, data)

    # -- writing ----------------------------------------------------------------------------------

    async def send(self, user_id: str, message_id: str, payload: dict[str, Any]) -> Sent:
        """Store the message in the inbox, then handle it. A message id seen before is dropped, unless
        its handling failed: then it is handled again (the citizen pressed send again)."""
        payload = {**payload, "user": user_id, "at": self._container.clock.now().isoformat()}
        external_id = f"{user_id[:16]}:{message_id}"
        row_id = await self.inbox.store(CHANNEL, external_id, payload)
        if row_id is None:
            row = await self._inbox_row(external_id)
            if row is None or row.processed_at is not None or row.error is None:
                log.info("web chat message %s sent again: ignored", external_id)
                return Sent("duplicate")
            row_id, payload = row.id, row.payload
        return await self._process(row_id, payload)

    async def note(self, user_id: str, mine: str | None, reply: str) -> None:
        """A line from the person and an answer that did not need the engine (a refused upload)."""
        key = storage_key_of(user_id)
        async with self._isolation.lock(key):
            data = await self._storage.get_data(key)
            turn = int(data.get("turn", 0)) + 1
            lines = ([{"who": "me", "text": mine, "turn": turn}] if mine else [])
            lines.append({"who": "bot", "text": reply, "turn": turn, "buttons": self._buttons_of_turn(data)})
            data["turn"] = turn
            data["log"] = [*data.get("log", []), *lines][-LOG_LENGTH:]
            await self._storage.set_data(key, data)

    async def replay(self) -> int:
        """Handle again the web messages whose handling failed (or was cut off by a restart: the lease ran
        out)."""
        tried = 0
        for item in await self.inbox.claim(CHANNEL):
            if isinstance(item.payload.get("user"), str):
                tried += 1
                await self._process(item.id, item.payload)
        return tried

    # -- handling ---------------------------------------------------------------------------------

    async def _process(self, row_id: int, payload: dict[str, Any]) -> Sent:
        user_id = payload["user"]
        key = storage_key_of(user_id)
        lang = payload.get("lang") or "zh"
        try:
            async with self._isolation.lock(key):
                data = await self._storage.get_data(key)
                created = await self._handle(data, payload)
                await self._storage.set_data(key, data)
        except Exception as exc:
            log.exception("web chat message %s failed; kept in the inbox for another try", row_id)
            await self.inbox.failed(row_id, f"{type(exc).__name__}: {exc}")
            _ = translations(lang).gettext
            with contextlib.suppress(Exception):  # the apology is a courtesy; the message is in the inbox
                await self.note(user_id, None, _("抱歉，系统暂时出了点问题。您发送的内容已经保存，我们会尽快处理，不需要重新发送。"))
            return Sent("failed")
        await self.inbox.processed(row_id)
        return Sent("handled", created)

    async def _handle(self, data: dict[str, Any], payload: dict[str, Any]) -> int:
        """Run one event through the engine, changing `data` in place; returns how many cases it made."""
        lang = payload.get("lang") or "zh"
        draft = Draft.from_dict(data.get("draft"))
        turn = int(data.get("turn", 0)) + 1
        lines: list[dict[str, Any]] = []
        kind = payload.get("type")
        _ = translations(draft.lang if draft else lang).gettext
        if kind == "button":
            value = str(payload.get("value", ""))
            button = self._offered(data, value)
            current = draft.rev if draft else 0
            if button is None:
                return self._refuse(data, turn, _("这个按钮已经失效了。"))
            label, case_action = button
            if not case_action and payload.get("rev") != current:
                return self._refuse(data, turn, _("这个按钮已经过期了，请按最新的提示操作。"))
            lines.append({"who": "me", "text": label, "turn": turn})
            event = Inbound("button", self._at(payload), value=value)
        elif kind == "attachment":
            item = payload["attachment"]
            attachment = Attachment(item["sha256"], int(item["size"]), item["mime"], item.get("name"))
            caption = str(payload.get("text", ""))[:MAX_TEXT]
            lines.append({"who": "me", "text": _file_line(attachment, caption), "turn": turn})
            event = Inbound("attachment", self._at(payload), text=caption, attachment=attachment)
        elif kind == "command":
            lines.append({"who": "me", "text": str(payload.get("text", ""))[:MAX_TEXT], "turn": turn})
            event = Inbound("command", self._at(payload), value=str(payload.get("value", "")),
                            args=str(payload.get("args", "")))
        else:
            text = str(payload.get("text", ""))
            lines.append({"who": "me", "text": text[:MAX_TEXT], "turn": turn})
            event = Inbound("text", self._at(payload), text=text)
        outcome = await self._container.conversation.handle(event, draft, Person(CHANNEL, payload["user"], lang))
        for reply in outcome.replies:
            rows = [[[b.label, b.value] for b in row] for row in reply.buttons]
            lines.append({"who": "bot", "text": reply.text, "turn": turn, "buttons": rows})
        if outcome.draft is None:
            data.pop("draft", None)
        else:
            data["draft"] = outcome.draft.to_dict()
        data["turn"] = turn
        ended = draft is not None and draft.has_content and (outcome.draft is None or not outcome.draft.has_content)
        # a draft submitted or cancelled: the transcript of it goes too (names, phone numbers), as the
        # engine promises on cancel; what was submitted lives on in the case, under its access rules
        data["log"] = ([] if ended else data.get("log", [])) + lines
        data["log"] = data["log"][-LOG_LENGTH:]
        if outcome.case is not None:
            data["receipts"] = [*data.get("receipts", []), {"case_id": outcome.case.id, "number": outcome.case.number}]
            return 1
        return 0

    def _refuse(self, data: dict[str, Any], turn: int, text: str) -> int:
        """A button that is not (or no longer) on offer: say so, and offer the latest buttons again."""
        still_offered = self._buttons_of_turn(data)
        data["turn"] = turn
        data["log"] = [*data.get("log", []),
                       {"who": "bot", "text": text, "turn": turn, "buttons": still_offered}][-LOG_LENGTH:]
        return 0

    @staticmethod
    def _buttons_of_turn(data: dict[str, Any]) -> list:
        """The buttons of the latest turn, to stay on offer after a line that has none of its own."""
        turn = int(data.get("turn", 0))
        rows: list = []
        for entry in data.get("log", []):
            if entry.get("turn") == turn and entry.get("who") == "bot":
                rows.extend(entry.get("buttons") or [])
        return rows

    @staticmethod
    def _offered(data: dict[str, Any], value: str) -> tuple[str, bool] | None:
        """(label, is a case action) of a button value on offer, else None."""
        case_action = value.partition(":")[0] in CASE_ACTIONS
        turn = int(data.get("turn", 0))
        for entry in reversed(data.get("log", [])):
            if entry.get("who") != "bot" or (entry.get("turn") != turn and not case_action):
                continue
            for row in entry.get("buttons") or []:
                for label, offered in row:
                    if offered == value:
                        return label, case_action
        return None

    def _at(self, payload: dict[str, Any]) -> datetime:
        try:
            return datetime.fromisoformat(payload["at"])
        except (KeyError, TypeError, ValueError):
            return self._container.clock.now()

    # -- receipts ---------------------------------------------------------------------------------

    async def _receipt(self, item: dict[str, Any], lang: str) -> Receipt:
        container = self._container
        try:
            view = await container.cases.get(int(item["case_id"]))
        except (CaseNotFound, KeyError, ValueError):
            return Receipt(str(item.get("number", "")), None, "", None, ())
        try:
            code = shown(await self.codes.issue(view.id))
        except Exception:
            log.exception("could not make the access code of %s", view.number)
            code = None
        unit = ""
        if view.lead_unit and container.directory.has_unit(view.lead_unit):
            u = container.directory.unit(view.lead_unit)
            unit = u.name_en if lang == "en" and u.name_en else u.name
        transfer = view.routing.transfer.name if view.routing and view.routing.transfer else None
        if transfer is None and view.transfer_authority:
            transfer = view.transfer_authority
        deadlines = tuple((d.clock, d.due_on, d.provisional) for d in view.deadlines
                          if not d.met and d.clock in CLOCK_PHRASES)
        return Receipt(view.number, code, unit, transfer, deadlines)

    async def _inbox_row(self, external_id: str) -> InboxUpdate | None:
        async with self._container.uow() as uow:
            return await uow.session.scalar(
                select(InboxUpdate).where(InboxUpdate.channel == CHANNEL, InboxUpdate.external_id == external_id))

    @staticmethod
    def _view(data: dict[str, Any], receipts: list[Receipt]) -> ChatView:
        entries = []
        for item in data.get("log", []):
            rows = tuple(tuple((str(label), str(value)) for label, value in row) for row in item.get("buttons") or [])
            who, text = str(item.get("who", "bot")), str(item.get("text", ""))
            entries.append(Entry(who, text, int(item.get("turn", 0)), rows))
        draft = data.get("draft") or {}
        return ChatView(entries, int(data.get("turn", 0)), int(draft.get("rev", 0)), receipts)


def _file_line(attachment: Attachment, caption: str) -> str:
    size = f"{max(1, round(attachment.size / 1024))} KB" if attachment.size < 1024 * 1024 else \
        f"{attachment.size / 1024 / 1024:.1f} MB"
    line = f"📎 {attachment.name or attachment.mime} ({size})"
    return f"{line}\n{caption}" if caption else line


async def replay_forever(service: ChatService, interval: float) -> None:
    """Every `interval` seconds, messages that failed or whose handling was cut off are handled again
    (Inbox.claim: never one another web process is handling right now)."""
    while True:
        await asyncio.sleep(interval)
        try:
            await service.replay()
        except Exception:
            log.exception("web chat inbox replay failed; trying again later")
