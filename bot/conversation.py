"""The one place where Telegram meets the conversation engine: load the draft, handle, save, reply."""

from __future__ import annotations

from aiogram import Bot
from aiogram.fsm.context import FSMContext
from aiogram.types import User

from bot.keyboards import keyboard
from intake.conversation import ConversationEngine, Inbound, Outcome, Person
from intake.draft import Draft
from qinglang.i18n import language_of

CHANNEL = "telegram"


async def load_draft(state: FSMContext) -> Draft | None:
    return Draft.from_dict((await state.get_data()).get("draft"))


def person_of(user: User) -> Person:
    return Person(CHANNEL, str(user.id), language_of(user.language_code))


async def converse(engine: ConversationEngine, bot: Bot, state: FSMContext, user: User, chat_id: int,
                   event: Inbound) -> Outcome:
    draft = await load_draft(state)
    outcome = await engine.handle(event, draft, person_of(user))
    # the draft is saved before anything is sent: a failed send never loses an answer
    if outcome.draft is None:
        await state.clear()
    else:
        await state.set_data({"draft": outcome.draft.to_dict()})
    rev = outcome.draft.rev if outcome.draft else 0
    for reply in outcome.replies:
        await bot.send_message(chat_id, reply.text, reply_markup=keyboard(reply, uid=user.id, rev=rev))
    return outcome
