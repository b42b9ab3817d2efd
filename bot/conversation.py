"""The one place where Telegram meets the conversation engine: load the draft, handle, save, reply.

The new draft and the replies still to send are saved together before anything is sent, marked with
the update they answer. If sending fails, the inbox replays that update later: it then finds the
update already applied and only sends what is left, so no answer is applied twice and no reply
(a case number!) is lost. An update replayed after the person has moved on (its handling completed, but
"handled" could not be recorded) is recognised among the chat's last applied updates and skipped.
"""

from __future__ import annotations

import logging
from typing import Any

from aiogram import Bot
from aiogram.fsm.context import FSMContext
from aiogram.types import User

from bot.keyboards import keyboard
from intake.conversation import Button, ConversationEngine, Inbound, Person, Reply
from intake.draft import Draft
from qinglang.i18n import language_of

CHANNEL = "telegram"
SEEN_UPDATES = 50  # the updates of a chat already applied, so a late replay of one is not applied again

log = logging.getLogger(__name__)


async def load_draft(state: FSMContext) -> Draft | None:
    return Draft.from_dict((await state.get_data()).get("draft"))


def person_of(user: User) -> Person:
    return Person(CHANNEL, str(user.id), language_of(user.language_code))


async def converse(engine: ConversationEngine, bot: Bot, state: FSMContext, user: User, chat_id: int,
                   event: Inbound, update_id: int) -> None:
    data = await state.get_data()
    seen = list(data.get("seen", []))
    if data.get("applied") != update_id and update_id in seen:
        # applied before, and the person has moved on since: its handling was complete but could not be
        # recorded (the process died, the database went away), so the replay brought it back
        log.info("update %s of chat %s was applied before: not again", update_id, chat_id)
        return
    if data.get("applied") != update_id:
        outcome = await engine.handle(event, Draft.from_dict(data.get("draft")), person_of(user))
        rev = outcome.draft.rev if outcome.draft else 0
        data = {"applied": update_id, "seen": [*seen, update_id][-SEEN_UPDATES:],
                "unsent": [_pack(reply, user.id, rev) for reply in outcome.replies]}
        if outcome.draft is not None:
            data["draft"] = outcome.draft.to_dict()
        await state.set_data(data)
    await _send_unsent(bot, state, chat_id, data)


async def _send_unsent(bot: Bot, state: FSMContext, chat_id: int, data: dict[str, Any]) -> None:
    unsent = list(data.get("unsent", []))
    while unsent:
        item = unsent[0]
        reply = Reply(item["text"], tuple(tuple(Button(label, value) for label, value in row) for row in item["buttons"]))
        await bot.send_message(chat_id, reply.text, reply_markup=keyboard(reply, uid=item["uid"], rev=item["rev"]))
        unsent.pop(0)
        await state.update_data(unsent=unsent)


def _pack(reply: Reply, uid: int, rev: int) -> dict[str, Any]:
    return {"text": reply.text, "uid": uid, "rev": rev,
            "buttons": [[[button.label, button.value] for button in row] for row in reply.buttons]}
