"""What the conversation cannot use: each gets a specific, friendly answer and changes nothing,
except a shared contact at the phone step, which answers that step."""

from __future__ import annotations

from aiogram import Bot, F, Router
from aiogram.fsm.context import FSMContext
from aiogram.types import Message, Update
from aiogram.utils.i18n import gettext as _

from bot.conversation import converse, load_draft
from intake.conversation import ConversationEngine, Inbound
from intake.draft import Step



async def receive_contact(message: Message, bot: Bot, state: FSMContext, engine: ConversationEngine,
    event_update: Update, now) -> None:
    draft = await load_draft(state)
    own = message.contact.user_id == message.from_user.id
    if draft is not None and draft.step == Step.PHONE and own:
        event = Inbound("text", now(), text=message.contact.phone_number.lstrip("+").removeprefix("86"))
        await converse(engine, bot, state, message.from_user, message.chat.id, event, event_update.update_id)
        return
    await message.answer(_("为保护个人信息，请不要发送联系人名片。需要联系电话时我会单独询问。"))


async def answer_sticker(message: Message) -> None:
    await message.answer(_("收到表情了 🙂 请用文字描述您遇到的问题，或发送截图、视频作为证据。"))


async def answer_voice(message: Message) -> None:
    await message.answer(_("暂时不能识别语音。请用文字描述；如果这段录音是证据，请以文件形式发送。"))


async def answer_location(message: Message) -> None:
    await message.answer(_("收到位置。请用文字告诉我商家所在的区县和街道，例如：龙湾区永中街道。"))


async def answer_poll(message: Message) -> None:
    await message.answer(_("这里不能使用投票。请直接描述您遇到的问题。"))


async def answer_anything_else(message: Message) -> None:
    await message.answer(_("这种消息我暂时处理不了。请发送文字、图片、视频或文件。"))


async def answer_edit(message: Message) -> None:
    await message.answer(_("您修改了之前的消息，修改不会自动生效。如需更正，请在核对登记内容时点击对应的“改”按钮，或直接发送更正后的内容。"))


def create_router() -> Router:
    """A fresh router (a router belongs to one dispatcher; tests build several)."""
    router = Router(name=__name__)
    router.message.register(receive_contact, F.contact)
    router.message.register(answer_sticker, F.sticker | F.dice)
    router.message.register(answer_voice, F.voice | F.video_note)
    router.message.register(answer_location, F.location | F.venue)
    router.message.register(answer_poll, F.poll)
    router.message.register(answer_anything_else)
    router.edited_message.register(answer_edit)
    return router
