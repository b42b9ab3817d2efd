"""/start /new /help /cancel /status /case /lang /privacy."""

from __future__ import annotations

from aiogram import Bot, Router
from aiogram.filters import Command, CommandObject, CommandStart
from aiogram.fsm.context import FSMContext
from aiogram.types import Message, Update

from bot.conversation import converse
from intake.conversation import ConversationEngine, Inbound

COMMANDS = ("new", "help", "cancel", "status", "case", "lang", "privacy")


async def start_conversation(message: Message, bot: Bot, state: FSMContext, engine: ConversationEngine,
    event_update: Update, now) -> None:
    await converse(engine, bot, state, message.from_user, message.chat.id,
                   Inbound("command", now(), value="start"), event_update.update_id)


async def run_command(message: Message, command: CommandObject, bot: Bot, state: FSMContext,
                      engine: ConversationEngine, event_update: Update, now) -> None:
    event = Inbound("command", now(), value=command.command.lower(), args=command.args or "")
    await converse(engine, bot, state, message.from_user, message.chat.id, event, event_update.update_id)


async def refuse_unknown_command(message: Message, bot: Bot, state: FSMContext, engine: ConversationEngine,
    event_update: Update, now) -> None:
    name = message.text[1:].split(maxsplit=1)[0].split("@")[0].lower()
    await converse(engine, bot, state, message.from_user, message.chat.id,
                   Inbound("command", now(), value=name), event_update.update_id)


def create_router() -> Router:
    """A fresh router (a router belongs to one dispatcher; tests build several)."""
    router = Router(name=__name__)
    router.message.register(start_conversation, CommandStart())
    router.message.register(run_command, Command(*COMMANDS))
    router.message.register(refuse_unknown_command, lambda message: bool(message.text) and message.text.startswith("/"))
    return router
