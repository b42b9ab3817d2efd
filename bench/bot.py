"""N concurrent complete conversations through the bot's dispatcher against the fake Bot API.

    .venv/bin/python bench/bot.py [-n 50] [--database-url URL]

Each conversation is a complaint told from the first message to the case number (11 updates:
text, buttons, a photo, name, phone, consent, submit). Prints conversations per second and the
per-update latency (p50/p95) on the database given (SQLite in a temporary directory by default).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select, text  # noqa: E402

from bot.runner import TelegramChannel  # noqa: E402
from db import migrate  # noqa: E402
from db.models import Base, Case  # noqa: E402
from qinglang.bootstrap import build_container  # noqa: E402
from qinglang.settings import load_settings  # noqa: E402
from routing.sync import sync_units  # noqa: E402
from tests.fakes.telegram import FakeTelegram, FakeUser  # noqa: E402
from tests.fakes.images import png  # noqa: E402

STORY = "我昨天在抖音「好物严选」直播间花了399元买了一件羊绒衫，收到后送检根本不含羊绒，以假充真，我要投诉退款"


def last_buttons(fake: FakeTelegram, chat_id: int) -> dict[str, str]:
    for call in reversed(fake.sent):
        if call.method == "sendMessage" and int(call.params["chat_id"]) == chat_id and call.params.get("reply_markup"):
            return {b["text"]: b["callback_data"] for row in call.params["reply_markup"]["inline_keyboard"] for b in row}
    raise AssertionError(f"no buttons sent to {chat_id}")


async def conversation(fake, channel, user_id: int, latencies: list[float]) -> None:
    user = FakeUser(user_id, f"用户{user_id}")
    image = png(user_id % 250)

    async def feed(update):
        started = time.perf_counter()
        await channel.dispatcher.feed_raw_update(channel.bot, update)
        latencies.append((time.perf_counter() - started) * 1000)

    async def press(label):
        await feed(fake.callback(user, last_buttons(fake, user_id)[label]))

    await feed(fake.message(user, STORY))
    await press("对，继续")
    await feed(fake.message(user, f"DY{user_id:013d}"))
    await press("在龙湾区")
    await press("永中街道")
    await feed(fake.message(user, photo=image))
    await press("发送完毕")
    await feed(fake.message(user, "张三"))
    await feed(fake.message(user, "13812345678"))
    await press("同意")
    await press("✅ 提交")


async def run(n: int, database_url: str | None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        overrides = {"data_dir": Path(tmp) / "data"}
        if database_url:
            overrides["database_url"] = database_url
        container = build_container(load_settings(env_file=None, **overrides))
        await migrate.upgrade(container.engine)
        if database_url:  # start from empty tables on a shared server
            tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
            async with container.engine.begin() as conn:
                await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        await sync_units(container.uow, container.directory)
        container.nlu.warm_up()
        async with FakeTelegram() as fake:
            channel = TelegramChannel(container, bot=fake.make_bot())
            latencies: list[float] = []
            started = time.perf_counter()
            await asyncio.gather(*(conversation(fake, channel, 50_000 + i, latencies) for i in range(n)))
            elapsed = time.perf_counter() - started
            await channel.bot.session.close()
        async with container.uow() as uow:
            cases = await uow.session.scalar(select(func.count()).select_from(Case))
        backend = container.engine.dialect.name
        await container.close()
    latencies.sort()
    return {
        "database": backend,
        "conversations": n,
        "cases_created": cases,
        "updates": len(latencies),
        "seconds": round(elapsed, 2),
        "conversations_per_s": round(n / elapsed, 2),
        "update_p50_ms": round(statistics.median(latencies), 1),
        "update_p95_ms": round(latencies[int(0.95 * (len(latencies) - 1))], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=50, help="concurrent conversations")
    parser.add_argument("--database-url", action="append", default=None,
                        help="repeatable; default: SQLite in a temporary directory")
    args = parser.parse_args()
    for url in args.database_url or [None]:
        print(json.dumps(asyncio.run(run(args.n, url)), ensure_ascii=False))


if __name__ == "__main__":
    main()
