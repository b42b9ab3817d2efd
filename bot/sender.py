"""Notices as Telegram messages, with each Bot API answer sorted into the outbox's outcomes.

- 200: delivered (Telegram's message_id kept).
- 429: retry after `retry_after`, and the whole bot pauses that long.
- 403 (bot blocked, user deactivated, kicked from the group), 400 (chat not found, bad request), 404:
  undeliverable — retrying would not help; the case goes on the staff call list.
- 5xx, 401 (token being rotated), no connection: retry with backoff; nothing reached Telegram.
- timeout or connection lost after the request was written: unconfirmed — Telegram may have sent it,
  and a second send would be a duplicate the person sees.
"""

from __future__ import annotations

from aiogram import Bot
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramNetworkError,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup

from bot.callbacks import Choice
from intake.delivery import Delivered, Outgoing, Result, Retry, Unconfirmed, Undeliverable

# aiohttp errors raised before anything was written to the socket
NOT_SENT_ERRORS = ("ClientConnectorError", "ClientConnectorDNSError", "ClientProxyConnectionError", "InvalidURL")


class TelegramTransport:
    def __init__(self, bot: Bot, timeout: float = 10.0) -> None:
        self._bot = bot
        self._timeout = timeout

    async def send(self, item: Outgoing) -> Result:
        if not item.recipient:
            return Undeliverable("no Telegram chat for this recipient")
        try:
            chat_id = int(item.recipient)
        except ValueError:
            return Undeliverable(f"not a Telegram chat id: {item.recipient[:40]!r}")
        try:
            message = await self._bot.send_message(
                chat_id, item.notice.text, reply_markup=_keyboard(item, chat_id),
                request_timeout=max(1, round(self._timeout)),
            )
        except TelegramRetryAfter as exc:
            return Retry(f"429: {exc.message}", after=float(exc.retry_after), pause_channel=True)
        except TelegramMigrateToChat as exc:
            return Undeliverable(f"the group became supergroup {exc.migrate_to_chat_id}: update the chat id")
        except (TelegramForbiddenError, TelegramBadRequest, TelegramNotFound) as exc:
            return Undeliverable(f"{type(exc).__name__}: {exc.message}"[:500])
        except (TelegramServerError, TelegramUnauthorizedError) as exc:
            return Retry(f"{type(exc).__name__}: {exc.message}"[:500])
        except TelegramNetworkError as exc:
            if exc.message.startswith(NOT_SENT_ERRORS):
                return Retry(f"network: {exc.message}"[:500])
            return Unconfirmed(f"network: {exc.message}"[:500])
        except TelegramAPIError as exc:  # another answer of the API: not sent, try again later
            return Retry(f"{type(exc).__name__}: {exc.message}"[:500])
        return Delivered(str(message.message_id))


def _keyboard(item: Outgoing, chat_id: int) -> InlineKeyboardMarkup | None:
    """Buttons only in a private chat (the chat id is the person's user id, which the press checks)."""
    if not item.notice.buttons or chat_id < 0:
        return None
    rows = [[InlineKeyboardButton(text=b.label, callback_data=Choice(uid=chat_id, rev=0, value=b.value).pack())
             for b in row] for row in item.notice.buttons]
    return InlineKeyboardMarkup(inline_keyboard=rows)
