"""No lost update: Telegram's update is acknowledged only once the inbox holds it (issue 8).

- Webhook: 200 only after the inbox commit; 503 while it cannot be stored (Telegram delivers it again);
  a repeated delivery is answered 200 and handled once; a shutdown waits for the update in hand.
- Polling: the offset moves past an update only once it is stored; while the database is down the poller
  waits and asks Telegram for nothing more.
- /healthz (alive), /readyz (database, Redis, not shutting down) and /metrics.
The database outage here is an error raised by the inbox's commit; tests/integration/test_faults.py cuts a
real PostgreSQL connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import re
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import create_async_engine

from bot.polling import Poller
from bot.runner import TelegramChannel
from bot.throttle import MemoryWindow, RedisWindow
from db.models import InboxUpdate, OutboxMessage
from intake.inbox import DEFAULT_LEASE, Inbox
from qinglang.settings import load_settings
from tests.fakes.telegram import TOKEN, FakeTelegram, FakeUser
from tests.integration.bot_driver import inbox_row, inbox_rows
from tests.integration.test_bot_flows import CASHMERE, CASHMERE_CONFIRM, WELCOME
from web.app import create_app
from web.keys import DRAINING, METRICS

TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL")
SECRET = "delivery-secret_0123456789"
HEADERS = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
ALICE = FakeUser(2001, "Alice")
BOB = FakeUser(2002, "Bob")


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as server:
        yield server


def webhook_container(container, **bot_settings):
    settings = load_settings(env_file=None, data_dir=container.settings.storage.data_dir,
                             database_url=container.settings.database_url, nlu_cache_dir=container.settings.nlu.nlu_cache_dir,
                             bot_mode="webhook", webhook_secret=SECRET, **bot_settings)
    return dataclasses.replace(container, settings=settings)


@contextlib.asynccontextmanager
async def webhook_app(container, fake) -> AsyncIterator[tuple[TestClient, TelegramChannel]]:
    await asyncio.to_thread(container.nlu.warm_up)
    app = web.Application()
    channel = TelegramChannel(webhook_container(container), bot=fake.make_bot())
    channel.attach(app)
    async with TestClient(TestServer(app)) as client:
        yield client, channel


def database_down(inbox, times: int):
    """The inbox's next `times` commits fail as they do when PostgreSQL is unreachable."""
    real_store = inbox.store
    failures = []

    async def store(*args, **kwargs):
        if len(failures) < times:
            failures.append(args)
            raise OperationalError("INSERT INTO inbox ...", {}, ConnectionRefusedError("connection refused"))
        return await real_store(*args, **kwargs)

    inbox.store = store
    return failures


async def count_inbox(container) -> int:
    async with container.uow() as uow:
        return await uow.session.scalar(select(func.count()).select_from(InboxUpdate))


# -- webhook ------------------------------------------------------------------------------------------

async def test_webhook_answers_503_until_the_update_is_stored_then_handles_it_once(container, fake):
    async with webhook_app(container, fake) as (client, channel):
        failures = database_down(channel.inbox, times=2)
        update = fake.message(ALICE, "/start")
        for _attempt in range(2):  # Telegram keeps delivering what was not acknowledged
            response = await client.post(channel.settings.webhook_path, json=update, headers=HEADERS)
            assert response.status == 503
            assert response.headers["Retry-After"] == "5"
            assert await count_inbox(container) == 0
        assert fake.messages_to(ALICE.id) == []
        response = await client.post(channel.settings.webhook_path, json=update, headers=HEADERS)
        assert response.status == 200
        assert len(failures) == 2
        assert fake.messages_to(ALICE.id) == [WELCOME]
        row = await inbox_row(container.uow, update["update_id"])
        assert row.processed_at is not None and row.attempts == 0

        # delivered once more (Telegram did not see the 200): acknowledged, not handled again
        response = await client.post(channel.settings.webhook_path, json=update, headers=HEADERS)
        assert response.status == 200
        assert fake.messages_to(ALICE.id) == [WELCOME]
        assert len(await inbox_rows(container.uow)) == 1


async def test_an_update_stored_though_its_commit_looked_failed_is_handled_at_the_next_delivery(container, fake):
    """The commit reached the database but its answer did not (the connection dropped): 503, Telegram
    delivers again, and the stored update is handled then, in order, not by the replay a lease later."""
    async with webhook_app(container, fake) as (client, channel):
        real_store = channel.inbox.store

        async def store_then_lose_the_answer(*args, **kwargs):
            await real_store(*args, **kwargs)
            raise OperationalError("COMMIT", {}, ConnectionResetError("connection reset by peer"))

        channel.inbox.store = store_then_lose_the_answer
        update = fake.message(ALICE, "/start")
        assert (await client.post(channel.settings.webhook_path, json=update, headers=HEADERS)).status == 503
        assert fake.messages_to(ALICE.id) == []
        channel.inbox.store = real_store
        assert (await client.post(channel.settings.webhook_path, json=update, headers=HEADERS)).status == 200
        assert fake.messages_to(ALICE.id) == [WELCOME]
        assert (await inbox_row(container.uow, update["update_id"])).processed_at is not None
        # a third delivery finds it handled: nothing more
        assert (await client.post(channel.settings.webhook_path, json=update, headers=HEADERS)).status == 200
        assert fake.messages_to(ALICE.id) == [WELCOME]
        assert await channel.replay() == 0


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b'{"update_id": "7"}', b'{"message": {}}',
                                  "\ud800".encode("utf-8", "surrogatepass"), b'{"update_id": true}'])
async def test_webhook_refuses_what_is_not_an_update_with_400(container, fake, body):
    async with webhook_app(container, fake) as (client, channel):
        response = await client.post(channel.settings.webhook_path, data=body, headers=HEADERS)
        assert response.status == 400
        assert (await response.json())["ok"] is False
        assert await count_inbox(container) == 0
        update = fake.message(ALICE, "/start")  # the next real update is fine
        assert (await client.post(channel.settings.webhook_path, json=update, headers=HEADERS)).status == 200
        assert fake.messages_to(ALICE.id) == [WELCOME]


async def test_an_update_aiogram_cannot_read_is_stored_and_kept_for_staff(container, fake):
    async with webhook_app(container, fake) as (client, channel):
        odd = {"update_id": 424242, "message": {"message_id": "not a number", "text": "我要投诉"}}
        response = await client.post(channel.settings.webhook_path, json=odd, headers=HEADERS)
        assert response.status == 200  # stored: nothing is lost, and Telegram must not resend it forever
        row = await inbox_row(container.uow, 424242)
        assert row.payload == odd and row.processed_at is None
        assert row.error.startswith("ValidationError") and row.attempts == 1


async def test_shutdown_waits_for_the_update_being_handled(container, fake, monkeypatch):
    await asyncio.to_thread(container.nlu.warm_up)
    app = web.Application()
    webhook = webhook_container(container)
    channel = TelegramChannel(webhook, bot=fake.make_bot())
    channel.attach(app)
    engine = webhook.conversation
    real_handle = engine.handle
    started = asyncio.Event()

    async def slow_handle(event, draft, who):
        started.set()
        await asyncio.sleep(0.5)
        return await real_handle(event, draft, who)

    monkeypatch.setattr(engine, "handle", slow_handle)
    client = TestClient(TestServer(app))
    await client.start_server()
    update = fake.message(ALICE, CASHMERE)
    posting = asyncio.create_task(client.post(channel.settings.webhook_path, json=update, headers=HEADERS))
    await asyncio.wait_for(started.wait(), 30)
    await client.close()  # on_shutdown drains before on_cleanup closes the bot and the database
    with contextlib.suppress(Exception):
        await posting
    row = await inbox_row(container.uow, update["update_id"])
    assert row.processed_at is not None
    assert fake.messages_to(ALICE.id) == [CASHMERE_CONFIRM]


# -- polling ------------------------------------------------------------------------------------------

async def test_polling_moves_the_offset_only_past_stored_updates(container, fake):
    await asyncio.to_thread(container.nlu.warm_up)
    channel = TelegramChannel(container, bot=fake.make_bot())
    failures = database_down(channel.inbox, times=3)
    first, second = fake.push(fake.message(ALICE, "/start")), fake.push(fake.message(BOB, "/start"))
    stop = asyncio.Event()
    poller = Poller(channel.flow, timeout=1, backoff_start=0.05)
    task = asyncio.create_task(poller.run(stop))
    try:
        while len(failures) < 3:
            # while the database refuses, Telegram still holds both updates: nothing was confirmed
            assert [u["update_id"] for u in fake.updates] == [first["update_id"], second["update_id"]]
            assert poller.offset is None
            await asyncio.sleep(0.01)
        await fake.wait_messages(ALICE.id, 1)
        await fake.wait_messages(BOB.id, 1)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await channel.bot.session.close()
        await channel.storage.close()
    assert poller.offset == second["update_id"] + 1
    assert fake.messages_to(ALICE.id) == [WELCOME] and fake.messages_to(BOB.id) == [WELCOME]
    assert len(await inbox_rows(container.uow)) == 2


async def test_polling_stopped_during_an_outage_leaves_the_update_with_telegram(container, fake):
    channel = TelegramChannel(container, bot=fake.make_bot())
    failures = database_down(channel.inbox, times=1000)
    update = fake.push(fake.message(ALICE, "/start"))
    stop = asyncio.Event()
    task = asyncio.create_task(Poller(channel.flow, timeout=1, backoff_start=0.05).run(stop))
    while not failures:
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(task, 10)  # stops promptly, though the update was never stored
    await channel.bot.session.close()
    await channel.storage.close()
    assert await count_inbox(container) == 0
    # the next process (database back) gets the same update from Telegram and handles it
    restarted = TelegramChannel(container, bot=fake.make_bot())
    await asyncio.to_thread(container.nlu.warm_up)
    stop = asyncio.Event()
    task = asyncio.create_task(Poller(restarted.flow, timeout=1).run(stop))
    try:
        await fake.wait_messages(ALICE.id, 1)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await restarted.bot.session.close()
        await restarted.storage.close()
    assert fake.messages_to(ALICE.id) == [WELCOME]
    assert (await inbox_row(container.uow, update["update_id"])).processed_at is not None


# -- the replay when there are several replicas -----------------------------------------------------------

async def test_a_stored_update_is_replayed_by_one_replica_once_its_lease_runs_out(container, clock):
    replicas = [Inbox(container.uow, clock), Inbox(container.uow, clock)]
    in_flight = await replicas[0].store("telegram", "1", {"update_id": 1})
    failed = await replicas[0].store("telegram", "2", {"update_id": 2})
    await replicas[0].failed(failed, "RuntimeError: boom")
    # the failed one is free at once; the one being handled is nobody else's business until its lease ends
    first, second = await asyncio.gather(replicas[0].claim("telegram"), replicas[1].claim("telegram"))
    assert sorted(item.id for item in first + second) == [failed]
    clock.advance(seconds=DEFAULT_LEASE.total_seconds() - 1)
    assert await replicas[1].claim("telegram") == []  # the replay's own claim on `failed` runs too
    clock.advance(seconds=2)  # both leases ran out: the first process died mid-way
    first, second = await asyncio.gather(replicas[0].claim("telegram"), replicas[1].claim("telegram"))
    assert sorted(item.id for item in first + second) == [in_flight, failed]
    await replicas[1].processed(in_flight)
    clock.advance(seconds=DEFAULT_LEASE.total_seconds() + 1)
    assert [item.id for item in await replicas[0].claim("telegram")] == [failed]


# -- throttling shared by replicas ----------------------------------------------------------------------

async def test_memory_window_counts_per_person():
    now = [0.0]
    window = MemoryWindow(limit=2, seconds=10, monotonic=lambda: now[0])
    assert [await window.hit(1), await window.hit(1), await window.hit(1), await window.hit(2)] == [
        True, True, False, True]
    now[0] = 10.5
    assert await window.hit(1) is True


@pytest.mark.skipif(not TEST_REDIS_URL, reason="TEST_REDIS_URL is not set")
async def test_redis_window_is_shared_by_two_replicas():
    prefix = f"qinglang:test-throttle:{id(object())}"
    clock = lambda: 1_000_000.0  # noqa: E731 - one fixed window
    replicas = [RedisWindow(Redis.from_url(TEST_REDIS_URL), limit=3, seconds=10, prefix=prefix, clock=clock)
                for _ in range(2)]
    try:
        answers = [await replicas[i % 2].hit(7) for i in range(5)]
        assert answers == [True, True, True, False, False]  # three in all, not three each
        assert await replicas[0].hit(8) is True
    finally:
        for replica in replicas:
            await replica.close()


# -- health, readiness, metrics -------------------------------------------------------------------------

async def test_readyz_follows_the_database_and_the_shutdown(container):
    app = create_app(container, with_bot=False)
    async with TestClient(TestServer(app)) as client:
        assert (await client.get("/healthz")).status == 200
        response = await client.get("/readyz")
        assert response.status == 200 and (await response.json())["database"] == "ok"
        app[DRAINING].set()
        response = await client.get("/readyz")
        assert response.status == 503 and (await response.json())["shutdown"] == "draining"

    unreachable = create_async_engine("postgresql+asyncpg://postgres@127.0.0.1:1/none")
    broken = dataclasses.replace(container, engine=unreachable)
    async with TestClient(TestServer(create_app(broken, with_bot=False))) as client:
        response = await client.get("/readyz")
        body = await response.json()
        assert response.status == 503 and body["status"] == "unavailable"
        assert body["database"].startswith("error:")
        assert (await client.get("/healthz")).status == 200  # alive: no restart for a database outage
    await unreachable.dispose()


def metric(text: str, name: str, labels: str = "") -> float:
    match = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.MULTILINE)
    assert match, f"{name}{labels} not in /metrics"
    return float(match.group(1))


async def test_metrics_count_updates_and_read_the_outbox(container, fake):
    webhook = webhook_container(container, bot_token=TOKEN, bot_api_base=fake.base_url)
    app = create_app(webhook)
    async with TestClient(TestServer(app)) as client:
        path = webhook.settings.bot.webhook_path
        update = fake.message(ALICE, "/start")
        assert (await client.post(path, json=update, headers=HEADERS)).status == 200
        assert (await client.post(path, json=update, headers=HEADERS)).status == 200  # a repeat
        assert (await client.post(path, json=fake.message(BOB, CASHMERE), headers=HEADERS)).status == 200
        await client.get("/cases/123")  # a console route with an id: counted under its pattern
        response = await client.get("/metrics")
        assert response.status == 200 and response.content_type == "text/plain"
        text = await response.text()
    async with container.uow() as uow:
        pending = await uow.session.scalar(select(func.count()).select_from(OutboxMessage)
                                           .where(OutboxMessage.status == "pending"))
    assert metric(text, "qinglang_updates_total", '{outcome="handled"}') == 2
    assert 'qinglang_updates_total{outcome="duplicate"}' not in text  # the repeat never reached the dispatcher
    assert metric(text, "qinglang_update_duration_seconds_count") == 2
    assert metric(text, "qinglang_outbox_depth", '{status="pending"}') == pending
    assert metric(text, "qinglang_inbox_unhandled") == 0
    assert metric(text, "qinglang_overdue_cases") == 0
    assert metric(text, "qinglang_database_up") == 1
    assert metric(text, "qinglang_nlu_fallbacks_total") == 0
    assert metric(text, "qinglang_http_requests_total",
                  f'{{method="POST",route="{webhook.settings.bot.webhook_path}",status="200"}}') == 3
    assert 'route="/cases/{' in text and 'route="/cases/123"' not in text


async def test_the_worker_has_its_own_health_and_metrics(container):
    from web.metrics import WorkerMetrics
    from web.worker_app import create_worker_app

    metrics, stopping = WorkerMetrics(container), asyncio.Event()
    metrics.counters.observe_notice("telegram", "sent", 0.02)
    metrics.counters.observe_notice("telegram", "unconfirmed", 10.0)
    metrics.counters.observe_job("reminders", "done")
    async with TestClient(TestServer(create_worker_app(container, metrics, stopping))) as client:
        assert (await client.get("/healthz")).status == 200
        response = await client.get("/readyz")
        assert response.status == 200 and (await response.json())["database"] == "ok"
        text = await (await client.get("/metrics")).text()
        stopping.set()  # SIGTERM: the worker finishes its sends; not ready meanwhile
        assert (await client.get("/readyz")).status == 503
    assert metric(text, "qinglang_notice_sends_total", '{channel="telegram",outcome="sent"}') == 1
    assert metric(text, "qinglang_notice_sends_total", '{channel="telegram",outcome="unconfirmed"}') == 1
    assert metric(text, "qinglang_notice_send_duration_seconds_count", '{channel="telegram"}') == 2
    assert metric(text, "qinglang_scheduled_jobs_total", '{job="reminders",outcome="done"}') == 1
    assert metric(text, "qinglang_database_up") == 1
    assert 'qinglang_outbox_depth{status="pending"}' in text
    assert "qinglang_http_requests_total" not in text  # a worker serves no traffic of its own


async def test_serve_with_the_worker_inside_reports_its_sends(container):
    app = create_app(container, with_bot=False)
    app[METRICS].worker_counters().observe_notice("web", "sent", 0.001)
    async with TestClient(TestServer(app)) as client:
        text = await (await client.get("/metrics")).text()
    assert metric(text, "qinglang_notice_sends_total", '{channel="web",outcome="sent"}') == 1


async def test_a_submit_handled_again_files_no_second_case(container, fake, monkeypatch):
    """The case was committed but the reply state could not be saved (Redis went away): the update fails,
    the replay handles it again, and the same submission finds its case instead of filing another."""
    from tests.integration.test_bot_flows import reach_complaint_summary, stored_cases
    from tests.integration.bot_driver import Person

    async with webhook_app(container, fake) as (client, channel):
        async def deliver(update):
            response = await client.post(channel.settings.webhook_path, json=update, headers=HEADERS)
            assert response.status == 200

        alice = Person(fake, ALICE, deliver, storage=channel.storage, uow=container.uow)
        await reach_complaint_summary(alice)
        real_set_data = channel.storage.set_data
        failures = []

        async def set_data_failing_once(key, data):
            if not failures and "applied" in data:
                failures.append(key)
                raise ConnectionError("Redis went away")
            return await real_set_data(key, data)

        monkeypatch.setattr(channel.storage, "set_data", set_data_failing_once)
        submit = fake.callback(alice.user, alice.last_buttons()["✅ 提交"])
        await alice.deliver(submit)
        assert failures and len(await stored_cases(container)) == 1  # filed, but the receipt was not saved
        assert await channel.replay() == 1
        cases = await stored_cases(container)
        assert len(cases) == 1
        receipts = [text for text in fake.messages_to(ALICE.id) if text.startswith("✅ 已登记")]
        assert len(receipts) == 1 and cases[0].row.number in receipts[0]


async def test_an_update_handled_but_not_recorded_is_not_applied_again_by_the_replay(container, fake, clock):
    """Handled and answered, but "processed" could not be written (the database went away): the lease runs
    out and the replay brings the update back after the person has moved on. It is not applied again."""
    from tests.integration.test_bot_flows import ORDER_Q

    async with webhook_app(container, fake) as (client, channel):
        real_processed = channel.inbox.processed
        lost = []

        async def processed_lost_once(row_id):
            if not lost:
                lost.append(row_id)
                raise OperationalError("UPDATE inbox ...", {}, ConnectionResetError("connection reset"))
            return await real_processed(row_id)

        channel.inbox.processed = processed_lost_once
        path = channel.settings.webhook_path
        first = fake.message(ALICE, CASHMERE)
        assert (await client.post(path, json=first, headers=HEADERS)).status == 200
        assert fake.messages_to(ALICE.id) == [CASHMERE_CONFIRM]
        assert lost and (await inbox_row(container.uow, first["update_id"])).processed_at is None
        confirm = fake.callback(ALICE, next(b["callback_data"] for row in fake.calls("sendMessage")[-1]
                                              .params["reply_markup"]["inline_keyboard"] for b in row
                                              if b["text"] == "对，继续"))
        assert (await client.post(path, json=confirm, headers=HEADERS)).status == 200
        assert fake.messages_to(ALICE.id) == [CASHMERE_CONFIRM, ORDER_Q]
        draft_before = await channel.storage.get_data(_draft_key(ALICE))

        clock.advance(seconds=DEFAULT_LEASE.total_seconds() + 1)
        assert await channel.replay() == 1  # the lease of the first update ran out
        assert fake.messages_to(ALICE.id) == [CASHMERE_CONFIRM, ORDER_Q]  # nothing said again
        assert (await channel.storage.get_data(_draft_key(ALICE)))["draft"] == draft_before["draft"]
        assert (await inbox_row(container.uow, first["update_id"])).processed_at is not None


def _draft_key(user):
    from tests.integration.bot_driver import draft_key

    return draft_key(user.id)
