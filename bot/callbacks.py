"""Typed callback data of the conversation's buttons."""

from __future__ import annotations

from aiogram.filters.callback_data import CallbackData


class Choice(CallbackData, prefix="q", sep="|"):
    """A button of the conversation: whose draft (uid), which turn of it (rev), and the engine's value."""

    uid: int
    rev: int
    value: str
