"""Button presses. A press on someone else's draft, on an old message or with unreadable data
changes nothing and gets a short answer."""

from __future__ import annotations

import contextlib

from aiogram import Bot, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Update
from aiogram.utils.i18n import gettext as _

from bot.callbacks import Choice
from bot.conversation import converse, load_draft
from intake.conversation import ConversationEngine, Inbound

# buttons about a stored case stay valid after the conversation moved on (they also come on notices,
# which carry rev 0): look at a case, add to it, withdraw it, rate it ("rate:<number>:<1-5>")
CASE_ACTIONS = ("case", "add", "withdraw", "rate")


async def press_button(query: CallbackQuery, callback_data: Choice, bot: Bot, state: FSMContext,
                       engine: ConversationEngine, event_update: Update, now) -> None:
    replay = (await state.get_data()).get("applied") == event_update.update_id
    if not replay:  # a replayed press was checked when it first came; only its replies are left to send
        if callback_data.uid != query.from_user.id:
            await query.answer(_("这不是您的登记，无法操作。"), show_alert=True)
            return
        draft = await load_draft(state)
        current = draft.rev if draft else 0
        action = callback_data.value.partition(":")[0]
        if callback_data.rev != current and action not in CASE_ACTIONS:
            await query.answer(_("这个按钮已经过期了，请按最新的提示操作。"))
            return
    with contextlib.suppress(TelegramBadRequest):  # a replay may come after the query expired
        await query.answer()
    chat_id = query.message.chat.id if query.message else query.from_user.id
    event = Inbound("button", now(), value=callback_data.value)
    await converse(engine, bot, state, query.from_user, chat_id, event, event_update.update_id)


async def refuse_unknown_button(query: CallbackQuery) -> None:
    await query.answer(_("这个按钮已经失效了。"), show_alert=True)


def create_router() -> Router:
    """A fresh router (a router belongs to one dispatcher; tests build several)."""
    router = Router(name=__name__)
    router.callback_query.register(press_button, Choice.filter())
    router.callback_query.register(refuse_unknown_button)
    return router
