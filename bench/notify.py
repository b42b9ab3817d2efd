"""Sustained sending of notices against the fake Bot API, through the real notifier worker.

    .venv/bin/python bench/notify.py [-n 600] [--chats 600] [--workers 1] [--database-url URL]

Queues n notices spread over `chats` private chats (n > chats: several per chat, so the per-chat
limit of one message a second also binds), runs the worker(s) until all are sent, and prints what
the fake Telegram server saw: the sustained rate, the most messages in any one-second window (the
limit is 30) and the shortest gap between two messages to one chat (the limit is 1 s).
With several workers each takes a share of the 30 messages/s (QINGLANG_NOTIFY_RATE = 30 / workers).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import threading
import time
from bisect import bisect_right
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select, text  # noqa: E402

from bot.sender import TelegramTransport  # noqa: E402
from db import migrate  # noqa: E402
from db.models import Base, OutboxMessage  # noqa: E402
from intake.delivery import WebInbox  # noqa: E402
from intake.notice_templates import NoticeRenderer  # noqa: E402
from intake.notifier import Notifier, NotifierConfig  # noqa: E402
from intake.ratelimit import SendRate  # noqa: E402
from qinglang.bootstrap import build_container  # noqa: E402
from qinglang.settings import load_settings  # noqa: E402
from tests.fakes.telegram import FakeTelegram  # noqa: E402

LIMIT_PER_SECOND = 30
CHAT_INTERVAL = 1.0


async def queue(container, n: int, chats: int) -> None:
    now = datetime.now(UTC)
    async with container.uow() as uow:
        for i in range(n):
            chat = 700_000 + i % chats
            uow.session.add(OutboxMessage(
                idempotency_key=f"bench:{i}", audience="complainant", channel="telegram", recipient=str(chat),
                language="zh", template="staff_message",
                payload={"number": f"LW-2026-{i:06d}", "kind": "complaint", "body": f"第 {i} 条进展通知"},
                status="pending", attempts=0, next_attempt_at=now, created_at=now))
        await uow.commit()


class FakeInItsOwnThread:
    """The fake Bot API on its own event loop, so its work does not slow the worker being measured
    (the real Telegram is another machine)."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-telegram", daemon=True)

    def start(self) -> FakeTelegram:
        self._thread.start()

        async def build() -> FakeTelegram:
            return await FakeTelegram().start()

        self.fake = asyncio.run_coroutine_threadsafe(build(), self._loop).result()
        return self.fake

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.fake.stop(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()


def max_in_window(times: list[float], window: float = 1.0) -> int:
    best = 0
    for i, start in enumerate(times):
        best = max(best, bisect_right(times, start + window - 1e-9) - i)
    return best


async def run(n: int, chats: int, workers: int, database_url: str | None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        overrides = {"data_dir": Path(tmp) / "data"}
        if database_url:
            overrides["database_url"] = database_url
        container = build_container(load_settings(env_file=None, **overrides))
        await migrate.upgrade(container.engine)
        if database_url:
            tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
            async with container.engine.begin() as conn:
                await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        server = FakeInItsOwnThread()
        fake = server.start()
        bots = [fake.make_bot() for _ in range(workers)]
        try:
            await queue(container, n, chats)
            notifiers = [
                Notifier(container.uow, container.clock, NoticeRenderer(container.directory),
                         {"telegram": TelegramTransport(bot), "web": WebInbox()},
                         SendRate(LIMIT_PER_SECOND / workers, CHAT_INTERVAL),
                         NotifierConfig(poll_interval=0.05, chat_interval=CHAT_INTERVAL), worker_id=f"bench-{k}")
                for k, bot in enumerate(bots)
            ]
            stop = asyncio.Event()
            started = time.perf_counter()
            tasks = [asyncio.create_task(notifier.run(stop)) for notifier in notifiers]
            while True:
                async with container.uow() as uow:
                    left = await uow.session.scalar(select(func.count()).select_from(OutboxMessage)
                                                    .where(OutboxMessage.status.in_(("pending", "claimed", "sending"))))
                if not left:
                    break
                await asyncio.sleep(0.2)
            elapsed = time.perf_counter() - started
            stop.set()
            await asyncio.gather(*tasks)
            async with container.uow() as uow:
                statuses = dict((await uow.session.execute(
                    select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status))).all())
        finally:
            for bot in bots:
                await bot.session.close()
            server.stop()
            await container.close()
    sent = sorted(fake.delivered(), key=lambda c: c.at)
    times = [c.at for c in sent]
    by_chat: dict[int, list[float]] = defaultdict(list)
    for call in sent:
        by_chat[call.params["chat_id"]].append(call.at)
    gaps = [b - a for ts in by_chat.values() for a, b in zip(ts, ts[1:])]
    keys = [c.params["text"] for c in sent]
    span = times[-1] - times[0] if len(times) > 1 else float("nan")
    return {
        "notices": n, "chats": chats, "workers": workers, "statuses": statuses,
        "delivered": len(sent), "duplicates": len(keys) - len(set(keys)),
        "elapsed_s": elapsed, "rate": (len(sent) - 1) / span if span == span and span > 0 else float("nan"),
        "max_in_1s": max_in_window(times), "min_chat_gap_s": min(gaps) if gaps else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=600, help="notices to send (default 600: 20 s at 30/s)")
    parser.add_argument("--chats", type=int, default=None, help="distinct chats (default: n, one notice each)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--database-url", default=None, help="e.g. postgresql+asyncpg://postgres@127.0.0.1:5432/bench")
    args = parser.parse_args()
    result = asyncio.run(run(args.n, args.chats or args.n, args.workers, args.database_url))
    print(f"notices {result['notices']} to {result['chats']} chats, {result['workers']} worker(s): "
          f"delivered {result['delivered']}, duplicates {result['duplicates']}, outbox {result['statuses']}")
    print(f"sustained rate {result['rate']:.2f} msg/s ({result['rate'] / LIMIT_PER_SECOND:.1%} of {LIMIT_PER_SECOND}/s); "
          f"max in any 1 s window {result['max_in_1s']} (limit {LIMIT_PER_SECOND}); "
          f"min gap in one chat {result['min_chat_gap_s'] if result['min_chat_gap_s'] is None else round(result['min_chat_gap_s'], 3)} s "
          f"(limit {CHAT_INTERVAL} s); wall {result['elapsed_s']:.1f} s")
    ok = (result["delivered"] == result["notices"] and result["duplicates"] == 0
          and result["max_in_1s"] <= LIMIT_PER_SECOND
          and (result["min_chat_gap_s"] is None or result["min_chat_gap_s"] >= CHAT_INTERVAL))
    print("limits kept" if ok else "LIMITS BROKEN")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
