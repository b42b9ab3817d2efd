"""Photos, albums, videos, audio and documents: downloaded into the evidence store, then given to the
conversation. Over Telegram's 20 MB download limit or of a refused type: a reply saying what to do.

When the store cannot take the file now (disk full, directory not writable) the person is told so and
asked to send it again later, and the update counts as handled. Left to the inbox's replay it would first
get the generic apology ("no need to send it again") and then, maybe hours later, add the file to
whatever step the conversation has reached by then: two surprises."""

from __future__ import annotations

import io
import logging

from aiogram import Bot, F, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.fsm.context import FSMContext
from aiogram.types import Message, Update
from aiogram.utils.i18n import gettext as _

from bot.conversation import converse
from intake.conversation import Attachment, ConversationEngine, Inbound
from intake.evidence import EvidenceRejected, EvidenceStore, EvidenceStoreUnavailable

TELEGRAM_DOWNLOAD_LIMIT = 20 * 1024 * 1024

log = logging.getLogger(__name__)


def media_of(message: Message) -> tuple[str, int | None, str | None] | None:
    """(file_id, size, file name) of the message's file; the largest size of a photo."""
    if message.photo:
        largest = message.photo[-1]
        return largest.file_id, largest.file_size, None
    for item in (message.document, message.video, message.audio, message.animation):
        if item is not None:
            return item.file_id, item.file_size, getattr(item, "file_name", None)
    return None


async def receive_evidence(message: Message, bot: Bot, state: FSMContext, engine: ConversationEngine, event_update: Update,
                           evidence: EvidenceStore, now) -> None:
    file_id, size, name = media_of(message)
    too_big = _("这个文件超过了 20 MB，无法通过 Telegram 接收。请压缩或截取关键部分后再发送，或者在网页版登记时上传。")
    if size is not None and size > TELEGRAM_DOWNLOAD_LIMIT:
        await message.answer(too_big)
        return
    buffer = io.BytesIO()
    try:
        await bot.download(file_id, destination=buffer)
    except TelegramBadRequest as exc:
        if "too big" in str(exc).lower():
            await message.answer(too_big)
            return
        raise
    try:
        stored = await evidence.put(buffer.getvalue(), original_name=name)
    except EvidenceRejected as exc:
        await message.answer(str(exc))
        return
    except EvidenceStoreUnavailable as exc:
        log.warning("update %s: evidence not kept, the store is unavailable (%s); the person is asked to send "
                    "it again later", event_update.update_id, exc.reason)
        await message.answer(_("文件暂时无法保存，请稍后再试。您的对话和已填写的内容都还在。"))
        return
    attachment = Attachment(stored.sha256, stored.size, stored.mime, stored.original_name)
    event = Inbound("attachment", now(), text=message.caption or "", attachment=attachment)
    await converse(engine, bot, state, message.from_user, message.chat.id, event, event_update.update_id)


def create_router() -> Router:
    """A fresh router (a router belongs to one dispatcher; tests build several)."""
    router = Router(name=__name__)
    router.message.register(receive_evidence, F.photo | F.document | F.video | F.audio | F.animation)
    return router
