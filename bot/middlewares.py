"""Middlewares: the inbox (store first, drop duplicates, never lose a failed update), per-user
throttling, and the language of each update."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware, Bot
from aiogram.dispatcher.event.bases import UNHANDLED
from aiogram.types import TelegramObject, Update
from aiogram.utils.i18n import I18nMiddleware

from bot.throttle import RateWindow
from intake.draft import Draft
from intake.inbox import Inbox
from qinglang.i18n import language_of

log = logging.getLogger(__name__)
CHANNEL = "telegram"

Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]
UpdateObserver = Callable[[str, float], None]  # outcome (handled, failed, throttled, duplicate), seconds


class InboxMiddleware(BaseMiddleware):
    """Outer middleware on updates. `inbox_id` in the data: the update is stored already (by the webhook,
    the poller or the replay); without it the update is stored here first."""

    def __init__(self, inbox: Inbox, observe: UpdateObserver | None = None) -> None:
        self._inbox = inbox
        self._observe = observe or (lambda outcome, seconds: None)

    async def __call__(self, handler: Handler, event: Update, data: dict[str, Any]) -> Any:
        started = time.perf_counter()
        row_id = data.get("inbox_id")
        if row_id is None:
            row_id = await self._inbox.store(CHANNEL, str(event.update_id), event.model_dump(mode="json", exclude_none=True))
            if row_id is None:
                log.info("update %s delivered again: ignored", event.update_id)
                self._observe("duplicate", time.perf_counter() - started)
                return UNHANDLED
        try:
            result = await handler(event, data)
        except Exception as exc:
            throttled = isinstance(exc, ThrottledError)
            if not throttled:
                log.exception("update %s failed; kept in the inbox for another try", event.update_id)
            await self._inbox.failed(row_id, f"{type(exc).__name__}: {exc}")
            self._observe("throttled" if throttled else "failed", time.perf_counter() - started)
            await _apologise(data.get("bot"), event, throttled=throttled)
            return UNHANDLED
        await self._inbox.processed(row_id)
        self._observe("handled", time.perf_counter() - started)
        return result


async def _apologise(bot: Bot | None, event: Update, *, throttled: bool) -> None:
    chat = None
    if event.message:
        chat = event.message.chat.id
        user = event.message.from_user
    elif event.callback_query and event.callback_query.message:
        chat = event.callback_query.message.chat.id
        user = event.callback_query.from_user
    if bot is None or chat is None:
        return
    from qinglang.i18n import translations

    _ = translations(language_of(user.language_code if user else None)).gettext
    if throttled:
        text = _("您发送得太快了，请稍等片刻。刚才的内容已经保存，稍后会按顺序处理。")
    else:
        text = _("抱歉，系统暂时出了点问题。您发送的内容已经保存，我们会尽快处理，不需要重新发送。")
    try:
        await bot.send_message(chat, text)
    except Exception:  # the apology is a courtesy; the update itself is safe in the inbox
        log.warning("could not send the apology to chat %s", chat)


class ThrottlingMiddleware(BaseMiddleware):
    """At most `limit` messages per window per user (counted by `window`, shared by every replica when it
    is kept in Redis). Excess updates are not dropped: they fail, stay in the inbox, and are handled by
    the next replay, once the person has slowed down; a replay itself is not counted again."""

    def __init__(self, window: RateWindow) -> None:
        self._window = window

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        user = data.get("event_from_user")
        if user is None or data.get("replay"):
            return await handler(event, data)
        if not await self._window.hit(user.id):
            raise ThrottledError(f"user {user.id} sent more than {self._window.limit} messages "
                                 f"in {self._window.seconds:g} s")
        return await handler(event, data)


class ThrottledError(Exception):
    pass


class DraftI18nMiddleware(I18nMiddleware):
    """The language of the person's draft (/lang), else of their Telegram client, else Chinese."""

    async def get_locale(self, event: TelegramObject, data: dict[str, Any]) -> str:
        state = data.get("state")
        if state is not None:
            draft = Draft.from_dict((await state.get_data()).get("draft"))
            if draft is not None:
                return draft.lang
        user = data.get("event_from_user")
        return language_of(user.language_code if user else None)
