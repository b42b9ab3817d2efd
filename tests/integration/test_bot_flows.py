"""Complete conversations through the fake Telegram Bot API over real HTTP, with long polling."""

from __future__ import annotations

import asyncio
import hashlib
import io
import struct
import zlib

import pytest
from sqlalchemy import select

from bot.runner import TelegramChannel
from db.models import Case, Evidence
from tests.fakes.telegram import FakeTelegram, FakeUser
from tests.integration.bot_driver import Person


def png(seed: int) -> bytes:
    raw = b"".join(b"\x00" + bytes([(seed + x) % 256 for x in range(8)]) * 3 for _ in range(8))
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


@pytest.fixture
async def fake():
    async with FakeTelegram() as server:
        yield server


@pytest.fixture
async def channel(container, fake):
    bot = fake.make_bot()
    channel = TelegramChannel(container, bot=bot)
    polling = asyncio.create_task(channel.dispatcher.start_polling(bot, handle_signals=False, close_bot_session=False,
                                                                   polling_timeout=1))
    yield channel
    await channel.dispatcher.stop_polling()
    await asyncio.wait_for(polling, 10)
    await bot.session.close()


@pytest.fixture
def alice(fake, channel):
    async def deliver(update):
        fake.push(update)
    return Person(fake, FakeUser(1001, "Alice", language_code="zh-hans"), deliver)


async def test_complaint_with_photos_and_album(fake, channel, alice, container):
    replies = await alice.send("我昨天在抖音「好物严选」直播间花了399元买了一件羊绒衫，收到后送检根本不含羊绒，以假充真，我要投诉退款")
    assert replies[0].startswith("我理解的情况是：\n问题类别：产品质量违法\n平台：抖音\n直播间/主播：好物严选\n商品：羊绒衫\n金额：399 元")
    assert (await alice.press("对，继续")) == ["订单号是多少？（在订单详情页可以复制）"]
    assert (await alice.send("DY2026111500123")) == ["商家（发货或经营地）在龙湾区吗？这决定由哪个部门处理。"]
    assert (await alice.press("在龙湾区")) == ["商家在龙湾区哪个街道？"]
    assert (await alice.press("永中街道"))[0].startswith("请发送相关证据")
    photo_1, photo_2, photo_3 = png(1), png(2), png(3)
    assert (await alice.send(photo=photo_1))[0].startswith("已收到 1 个文件")
    await alice.send(photo=photo_2, media_group_id="album-1")
    assert (await alice.send(photo=photo_3, media_group_id="album-1", caption="三张都是商品页"))[0].startswith("已收到 3 个文件")
    assert (await alice.press("发送完毕"))[0].endswith("请输入您的姓名：")
    await alice.send("张三")
    assert (await alice.send("13812345678"))[0].startswith("隐私说明")
    summary = (await alice.press("同意"))[0]
    assert "订单号：DY2026111500123" in summary and "证据：3 个文件" in summary
    receipt = (await alice.press("✅ 提交"))[0]
    assert receipt.startswith("✅ 已登记，编号 LW-2026-000001。\n承办单位：永中市场监督管理所。")
    async with container.uow() as uow:
        case = (await uow.session.scalars(select(Case))).one()
        hashes = {e.sha256 for e in (await uow.session.scalars(select(Evidence))).all()}
    assert (case.kind, case.category, case.order_number) == ("complaint", "product_quality", "DY2026111500123")
    assert hashes == {hashlib.sha256(p).hexdigest() for p in (photo_1, photo_2, photo_3)}
    for digest in hashes:
        assert container.evidence.exists(digest)


async def test_same_update_twice_creates_one_case_message(fake, channel, alice, container):
    update = fake.message(alice.user, "/start")
    await alice.deliver(update)
    fake.push(update)  # Telegram delivers the same update again
    await asyncio.sleep(0.5)
    assert len(fake.messages_to(alice.chat_id)) == 1
