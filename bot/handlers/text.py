"""Words typed by the person (forwarded text counts as theirs, with a note)."""

from __future__ import annotations

from aiogram import Bot, F, Router
from aiogram.fsm.context import FSMContext
from aiogram.types import Message, Update
from aiogram.utils.i18n import gettext as _

from bot.conversation import converse
from intake.conversation import ConversationEngine, Inbound



async def handle_text(message: Message, bot: Bot, state: FSMContext, engine: ConversationEngine,
    event_update: Update, now) -> None:
    if message.forward_origin is not None:
        await message.answer(_("（这是一条转发的消息，我把它当作您提供的说明。）"))
    await converse(engine, bot, state, message.from_user, message.chat.id,
                   Inbound("text", now(), text=message.text), event_update.update_id)


def create_router() -> Router:
    """A fresh router (a router belongs to one dispatcher; tests build several)."""
    router = Router(name=__name__)
    router.message.register(handle_text, F.text)
    return router
