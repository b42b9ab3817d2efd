"""The engine's buttons as Telegram inline keyboards."""

from __future__ import annotations

from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup

from bot.callbacks import Choice
from intake.conversation import Reply


def keyboard(reply: Reply, *, uid: int, rev: int) -> InlineKeyboardMarkup | None:
    if not reply.buttons:
        return None
    rows = [
        [
            InlineKeyboardButton(text=button.label, callback_data=Choice(uid=uid, rev=rev, value=button.value).pack())
            for button in row
        ]
        for row in reply.buttons
    ]
    return InlineKeyboardMarkup(inline_keyboard=rows)
