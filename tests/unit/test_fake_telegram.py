"""The fake Telegram Bot API server, driven by a real aiogram Bot over real HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiogram import Bot, Dispatcher, Router
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramConflictError,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.filters import CommandStart
from aiogram.types import (
    BotCommand,
    BufferedInputFile,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    Update,
)

from tests.fakes.telegram import MAX_DOWNLOAD_SIZE, FakeChat, FakeTelegram, FakeUser

pytestmark = pytest.mark.timeout(30)

USER = FakeUser(424242, "张三")
KEYBOARD = InlineKeyboardMarkup(
    inline_keyboard=[[InlineKeyboardButton(text="确认", callback_data="confirm:1")]]
)


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as server:
        yield server


@pytest.fixture
async def bot(fake: FakeTelegram) -> AsyncIterator[Bot]:
    bot = fake.make_bot()
    assert bot.token == "123456:ABCDEFGHIJKLMNOPQRSTUVWXYZ012345678"
    try:
        yield bot
    finally:
        await bot.session.close()


async def test_get_me(bot: Bot) -> None:
    me = await bot.get_me()
    assert me.id == 123456 and me.is_bot and me.username == "qinglang_test_bot"


async def test_send_message_with_inline_keyboard_is_recorded(fake: FakeTelegram, bot: Bot) -> None:
    first = await bot.send_message(USER.id, "您好", reply_markup=KEYBOARD)
    second = await bot.send_message(USER.id, "第二条")
    assert second.message_id == first.message_id + 1
    assert first.chat.id == USER.id and first.text == "您好" and first.date is not None
    assert first.reply_markup.model_dump() == KEYBOARD.model_dump()
    call = fake.calls("sendMessage")[0]
    assert call.params["chat_id"] == USER.id
    assert call.params["reply_markup"] == {
        "inline_keyboard": [[{"text": "确认", "callback_data": "confirm:1"}]]
    }
    assert fake.messages_to(USER.id) == ["您好", "第二条"]
    assert await fake.wait_messages(USER.id, 2, timeout=1) == ["您好", "第二条"]


async def test_get_updates_long_polls_until_an_update_is_pushed(fake: FakeTelegram, bot: Bot) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await bot.get_updates(timeout=1) == []
    assert loop.time() - started >= 0.9

    started = loop.time()
    poll = asyncio.create_task(bot.get_updates(timeout=10))
    await asyncio.sleep(1)
    assert not poll.done()
    pushed = fake.push(fake.message(USER, "有人在吗"))
    updates = await asyncio.wait_for(poll, 2)
    assert 1 <= loop.time() - started < 3
    assert [u.update_id for u in updates] == [pushed["update_id"]]
    assert updates[0].message is not None and updates[0].message.text == "有人在吗"
    assert fake.get_updates_calls == 2


async def test_get_updates_offset_confirms_and_limit(fake: FakeTelegram, bot: Bot) -> None:
    ids = [fake.push(fake.message(USER, f"第{i}条"))["update_id"] for i in range(3)]
    assert ids == sorted(ids) and len(set(ids)) == 3
    assert [u.update_id for u in await bot.get_updates(limit=2, timeout=0)] == ids[:2]
    # Not confirmed yet: the same updates come back.
    assert [u.update_id for u in await bot.get_updates(timeout=0)] == ids
    assert [u.update_id for u in await bot.get_updates(offset=ids[1], timeout=0)] == ids[1:]
    assert [u["update_id"] for u in fake.updates] == ids[1:]
    assert await bot.get_updates(offset=ids[2] + 1, timeout=0) == []
    assert fake.updates == [] and fake.last_offset == ids[2] + 1
    assert fake.get_updates_calls == 4


async def test_dispatcher_polling_answers_start(fake: FakeTelegram, bot: Bot) -> None:
    router = Router()

    @router.message(CommandStart())
    async def start(message: Message) -> None:
        await message.answer(f"欢迎，{message.from_user.first_name}", reply_markup=KEYBOARD)

    dp = Dispatcher()
    dp.include_router(router)
    fake.push(fake.message(USER, "/start"))
    polling = asyncio.create_task(dp.start_polling(bot, polling_timeout=1, handle_signals=False))
    try:
        assert await fake.wait_messages(USER.id, 1) == ["欢迎，张三"]
        fake.push(fake.message(USER, "/start"))
        assert await fake.wait_messages(USER.id, 2) == ["欢迎，张三"] * 2
    finally:
        await dp.stop_polling()
        await asyncio.wait_for(polling, 5)
    assert fake.updates == []  # both confirmed through the offset
    assert fake.last_offset is not None and fake.get_updates_calls >= 2


async def test_feed_for_webhook_style_processing(fake: FakeTelegram, bot: Bot) -> None:
    dp = Dispatcher()

    @dp.message(CommandStart())
    async def start(message: Message) -> None:
        await message.answer("webhook ok")

    update = fake.message(USER, "/start")
    assert fake.feed(update) is update
    await dp.feed_raw_update(bot, fake.feed(update))
    assert fake.messages_to(USER.id) == ["webhook ok"]


async def test_download_registered_file(fake: FakeTelegram, bot: Bot) -> None:
    content = b"%PDF-1.7 evidence"
    file_id = fake.add_file(content, file_name="证据.pdf")
    assert (await bot.download(file_id)).read() == content

    update = Update.model_validate(fake.message(USER, document=b"from a user", caption="截图"))
    assert update.message.document.file_name == "document.pdf"
    assert (await bot.download(update.message.document)).read() == b"from a user"


async def test_get_file_too_big(fake: FakeTelegram, bot: Bot) -> None:
    file_id = fake.add_file(b"tiny", size=MAX_DOWNLOAD_SIZE + 1)
    with pytest.raises(TelegramBadRequest, match="file is too big"):
        await bot.get_file(file_id)
    with pytest.raises(TelegramBadRequest, match="invalid file_id"):
        await bot.get_file("nope")


async def test_send_document_upload_is_recorded_and_downloadable(fake: FakeTelegram, bot: Bot) -> None:
    sent = await bot.send_document(USER.id, BufferedInputFile(b"a,b\n1,2\n", "report.csv"), caption="周报")
    assert sent.document.file_name == "report.csv" and sent.caption == "周报"
    call = fake.calls("sendDocument")[0]
    assert call.params["document"]["content"] == b"a,b\n1,2\n"
    assert (await bot.download(sent.document)).read() == b"a,b\n1,2\n"
    photo = await bot.send_photo(USER.id, sent.document.file_id)
    assert photo.photo[-1].file_id == sent.document.file_id


async def test_fail_next_429_retry_after(fake: FakeTelegram, bot: Bot) -> None:
    fake.fail_next("sendMessage", 429, retry_after=7)
    with pytest.raises(TelegramRetryAfter) as info:
        await bot.send_message(USER.id, "太快了")
    assert info.value.retry_after == 7
    await bot.send_message(USER.id, "再试一次")
    assert fake.messages_to(USER.id) == ["再试一次"]
    assert [c.ok for c in fake.calls("sendMessage")] == [False, True]


async def test_fail_next_403_and_500(fake: FakeTelegram, bot: Bot) -> None:
    fake.fail_next("sendMessage", 403, times=2)
    for _ in range(2):
        with pytest.raises(TelegramForbiddenError, match="bot was blocked by the user"):
            await bot.send_message(USER.id, "hi")
    fake.fail_next("sendMessage", 500)
    with pytest.raises(TelegramServerError):
        await bot.send_message(USER.id, "hi")
    await bot.send_message(USER.id, "hi")
    assert fake.messages_to(USER.id) == ["hi"]


async def test_close_next_connection(fake: FakeTelegram, bot: Bot) -> None:
    fake.close_next_connection("sendMessage")
    with pytest.raises(TelegramNetworkError):
        await bot.send_message(USER.id, "lost")
    await bot.send_message(USER.id, "ok")
    assert fake.messages_to(USER.id) == ["ok"]


async def test_edit_delete_and_callback(fake: FakeTelegram, bot: Bot) -> None:
    sent = await bot.send_message(USER.id, "请选择", reply_markup=KEYBOARD)
    update = Update.model_validate(fake.callback(USER, "confirm:1"), context={"bot": bot})
    query = update.callback_query
    assert query.data == "confirm:1" and query.message.message_id == sent.message_id
    assert await bot.answer_callback_query(query.id, text="已确认")

    edited = await bot.edit_message_text("已确认", chat_id=USER.id, message_id=sent.message_id)
    assert edited.text == "已确认" and edited.reply_markup is None and edited.edit_date
    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_text("已确认", chat_id=USER.id, message_id=sent.message_id)
    edited = await bot.edit_message_reply_markup(
        chat_id=USER.id, message_id=sent.message_id, reply_markup=KEYBOARD
    )
    assert edited.reply_markup.model_dump() == KEYBOARD.model_dump()
    assert await bot.send_chat_action(USER.id, "typing")
    assert fake.sent[-1].method == "sendChatAction" and fake.sent[-1].params["action"] == "typing"
    answer = await fake.wait_for(lambda c: c.method == "answerCallbackQuery", timeout=1)
    assert answer.params == {"callback_query_id": query.id, "text": "已确认"}
    assert await bot.delete_message(USER.id, sent.message_id)
    with pytest.raises(TelegramBadRequest, match="message to delete not found"):
        await bot.delete_message(USER.id, sent.message_id)


async def test_commands_and_webhook(fake: FakeTelegram, bot: Bot) -> None:
    commands = [BotCommand(command="start", description="开始"), BotCommand(command="help", description="帮助")]
    assert await bot.set_my_commands(commands)
    assert [c.model_dump() for c in await bot.get_my_commands()] == [c.model_dump() for c in commands]
    assert await bot.get_my_commands(language_code="en") == []
    assert await bot.delete_my_commands()
    assert await bot.get_my_commands() == []

    fake.push(fake.message(USER, "pending"))
    assert await bot.set_webhook("https://example.test/tg", secret_token="s3cret")
    info = await bot.get_webhook_info()
    assert info.url == "https://example.test/tg" and info.pending_update_count == 1
    with pytest.raises(TelegramConflictError):
        await bot.get_updates(timeout=0)
    assert await bot.delete_webhook(drop_pending_updates=True)
    assert (await bot.get_webhook_info()).url == "" and fake.updates == []


async def test_unknown_method_and_bad_token(fake: FakeTelegram) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{fake.base_url}/bot{fake.token}/noSuchMethod", data={"a": "1"}) as resp:
            assert resp.status == 404
            assert await resp.json() == {"ok": False, "error_code": 404, "description": "Not Found"}
        async with http.get(f"{fake.base_url}/bot123:wrong/getMe") as resp:
            assert resp.status == 401 and (await resp.json())["ok"] is False
        async with http.get(f"{fake.base_url}/bot{fake.token}/getMe?x=1") as resp:
            assert (await resp.json())["result"]["id"] == 123456


@pytest.mark.parametrize(
    "kwargs",
    [
        {"text": "/start abc"},
        {"photo": b"jpeg", "caption": "直播间截图", "media_group_id": "album1"},
        {"document": b"pdf", "file_name": "发票.pdf"},
        {"video": True},
        {"voice": True},
        {"sticker": "😡"},
        {"location": (30.27, 120.15)},
        {"contact": "+8613800138000"},
        {"poll": "是否满意？"},
        {"text": "转发的内容", "forward_from": FakeUser(7, "李四")},
        {"text": "群里举报", "chat": FakeChat(-1001234567890)},
    ],
)
async def test_builders_make_valid_updates(fake: FakeTelegram, bot: Bot, kwargs: dict) -> None:
    raw = fake.message(USER, **kwargs)
    update = Update.model_validate(raw, context={"bot": bot})
    assert update.message is not None and update.message.from_user.id == USER.id
    assert update.message.from_user.language_code == "zh-hans"
    if kwargs.get("text", "").startswith("/"):
        assert update.message.entities[0].type == "bot_command"
        assert update.message.entities[0].length == len("/start")
    edited_raw = fake.edited_message(USER, "改过了", chat=kwargs.get("chat"))
    edited = Update.model_validate(edited_raw, context={"bot": bot})
    assert edited.update_id == update.update_id + 1
    assert edited.edited_message.message_id == update.message.message_id
    assert edited.edited_message.edit_date


async def test_stop_releases_pending_long_poll(fake: FakeTelegram, bot: Bot) -> None:
    poll = asyncio.create_task(bot.get_updates(timeout=30))
    await asyncio.sleep(0.2)
    await asyncio.wait_for(fake.stop(), 5)
    assert await asyncio.wait_for(poll, 5) == []
