"""The notifier against a fake Bot API that injects faults: every notice ends delivered exactly once,
or visibly undeliverable / unconfirmed; nothing is lost, nothing is sent twice."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from ipaddress import ip_network

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from bot.sender import TelegramTransport
from db.models import OutboxMessage
from intake.callback import CallbackTransport
from intake.cases import Actor, ComplainantInfo, NewCase
from intake.delivery import NoChannel, WebInbox
from intake.notice_templates import NoticeRenderer
from intake.notifier import Notifier, NotifierConfig
from intake.outbound import OutboundGuard, OutboundPolicy
from intake.ratelimit import SendRate
from nlu.taxonomy import Kind
from routing.rules import MerchantLocation
from tests.fakes.telegram import FakeTelegram

STAFF = Actor("staff", 1)
CHAT = 4242


@pytest.fixture(autouse=True)
async def staff_user(container):
    await container.accounts.create_user("triage1", "xiaobao", "triage")


@pytest.fixture
async def fake():
    server = await FakeTelegram().start()
    yield server
    await server.stop()


@pytest.fixture
async def bot(fake):
    bot = fake.make_bot()
    yield bot
    await bot.session.close()


def make_notifier(container, bot, *, worker_id="w1", timeout=2.0, chat_interval=0.0, on_result=None,
                  **config) -> Notifier:
    transports = {"telegram": TelegramTransport(bot, timeout=timeout), "web": WebInbox(), "none": NoChannel()}
    settings = dict(backoff_base=1.0, backoff_cap=4.0, chat_interval=chat_interval, max_attempts=4) | config
    return Notifier(container.uow, container.clock, NoticeRenderer(container.directory), transports,
                    SendRate(30, chat_interval), NotifierConfig(**settings), worker_id=worker_id, on_result=on_result)


def loopback_callback() -> CallbackTransport:
    """The callback transport, with the test receiver (http on 127.0.0.1) allowed as an administrator would."""
    return CallbackTransport(timeout=2, guard=OutboundGuard(OutboundPolicy(
        allow_http=True, allowed_networks=(ip_network("127.0.0.1/32"),))))


def complaint(user_id: str = str(CHAT), **overrides) -> NewCase:
    values = dict(
        kind=Kind.COMPLAINT, category="consumer_rights", channel="telegram",
        description="直播间买的羽绒服七天无理由退货，商家一直不给退款",
        complainant=ComplainantInfo(channel_user_id=user_id, name="张三", phone="13800138000"),
        merchant=MerchantLocation(in_district=True, street="永中街道", province="浙江省"), platform="抖音",
    )
    return NewCase(**(values | overrides))


async def drain(notifier: Notifier, clock, *, rounds: int = 60) -> None:
    """Run the notifier until nothing is pending, moving the fixed clock over every backoff
    (and waiting in real time while the bot is paused by a 429)."""
    for _ in range(rounds):
        if not await notifier.run_once():
            await asyncio.sleep(0.05)
        async with notifier._uow() as uow:
            waiting = (await uow.session.scalars(
                select(OutboxMessage.next_attempt_at).where(OutboxMessage.status == "pending"))).all()
        if not waiting:
            return
        later = [w for w in waiting if w > clock.at]  # the rest wait behind an earlier one of their chat
        if later:
            clock.at = min(later) + timedelta(milliseconds=1)
    raise AssertionError("the outbox did not drain")


async def rows(container) -> list[OutboxMessage]:
    async with container.uow() as uow:
        return list((await uow.session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))).all())


async def accepted_case(container) -> int:
    view = await container.cases.create(complaint())
    await container.cases.accept(view.id, STAFF)
    return view.id


# -- what gets queued -------------------------------------------------------------------------------


async def test_each_step_queues_its_notice_in_order(container):
    cases = container.cases
    view = await cases.create(complaint())
    await cases.accept(view.id, STAFF)
    await cases.start(view.id, STAFF)
    await cases.request_information(view.id, STAFF, "请补充订单截图")
    await cases.message(view.id, STAFF, "商家已联系，正在协商")
    await cases.resolve(view.id, STAFF, "mediated", "经调解，商家同意全额退款")
    await cases.close(view.id, STAFF)
    await cases.reopen(view.id, STAFF, "投诉人反映退款未到账")
    queued = await rows(container)
    # the conversation gave the receipt itself: no "received" notice for a Telegram case
    assert [r.template for r in queued] == ["accepted", "started", "info_requested", "staff_message", "reply",
                                            "closed", "reopened"]
    assert {(r.channel, r.recipient, r.status) for r in queued} == {("telegram", str(CHAT), "pending")}
    assert queued[2].payload["question"] == "请补充订单截图"
    assert len({r.idempotency_key for r in queued}) == len(queued)


async def test_refused_action_queues_nothing(container):
    view = await container.cases.create(complaint())
    with pytest.raises(Exception):
        await container.cases.close(view.id, STAFF)  # illegal from received
    assert await rows(container) == []


async def test_anonymous_informant_is_never_contacted(container):
    view = await container.cases.create(NewCase(
        kind=Kind.TIPOFF, category="price", channel="telegram", anonymous=True,
        complainant=ComplainantInfo(channel_user_id="77"), description="主播虚构原价，先涨后降"))
    await container.cases.accept(view.id, STAFF)
    assert await rows(container) == []


async def test_api_case_without_callback_goes_to_the_call_list(container, bot):
    view = await container.cases.create(complaint(channel="api", complainant=ComplainantInfo(name="李四", phone="13900000000")))
    queued = await rows(container)
    assert [(r.template, r.channel) for r in queued] == [("received", "none")]
    assert queued[0].payload["unit"] == view.lead_unit
    await drain(make_notifier(container, bot), container.clock)
    [row] = await rows(container)
    assert row.status == "undeliverable" and "call" in row.last_error


# -- delivery ---------------------------------------------------------------------------------------


async def test_delivers_every_notice_in_order_with_buttons(container, fake, bot):
    case_id = await accepted_case(container)
    await container.cases.request_information(case_id, STAFF, "请补充<b>订单</b>截图")
    await drain(make_notifier(container, bot), container.clock)
    sent = fake.delivered(CHAT)
    assert len(sent) == 2
    assert "已受理" in sent[0].params["text"]
    assert "请补充<b>订单</b>截图" in sent[1].params["text"]  # plain text: no parse mode, nothing interpreted
    assert "parse_mode" not in sent[1].params
    number = (await container.cases.get(case_id)).number
    buttons = [b["callback_data"] for row in sent[1].params["reply_markup"]["inline_keyboard"] for b in row]
    assert f"q|{CHAT}|0|add:{number}" in buttons
    assert [(r.status, r.attempts, r.external_id is not None) for r in await rows(container)] == [("sent", 1, True)] * 2
    assert all(r.body for r in await rows(container))


async def test_english_speaker_gets_english(container, fake, bot):
    view = await container.cases.create(complaint(
        complainant=ComplainantInfo(channel_user_id=str(CHAT), name="Ann", phone="13800138000", language="en")))
    await container.cases.accept(view.id, STAFF)
    await drain(make_notifier(container, bot), container.clock)
    [sent] = fake.delivered(CHAT)
    assert "accepted" in sent.params["text"].lower()


async def test_server_error_is_retried_and_delivered_once(container, fake, bot):
    await accepted_case(container)
    fake.fail_next("sendMessage", 500, times=2)
    await drain(make_notifier(container, bot), container.clock)
    assert len(fake.delivered(CHAT)) == 1
    [row] = await rows(container)
    assert (row.status, row.attempts) == ("sent", 3)


async def test_send_attempts_are_counted_for_the_metrics(container, fake, bot):
    from prometheus_client import CollectorRegistry

    from web.metrics import WorkerCounters

    registry = CollectorRegistry()
    counters = WorkerCounters(registry)
    await accepted_case(container)
    fake.fail_next("sendMessage", 500, times=2)
    await drain(make_notifier(container, bot, on_result=counters.observe_notice), container.clock)

    def sends(outcome: str) -> float | None:
        return registry.get_sample_value("qinglang_notice_sends_total", {"channel": "telegram", "outcome": outcome})

    assert (sends("retry"), sends("sent")) == (2.0, 1.0)
    assert registry.get_sample_value("qinglang_notice_send_duration_seconds_count", {"channel": "telegram"}) == 3.0


async def test_429_waits_retry_after_for_the_whole_bot(container, fake, bot):
    await accepted_case(container)
    fake.fail_next("sendMessage", 429, retry_after=1)
    notifier = make_notifier(container, bot)
    await notifier.run_once()
    [row] = await rows(container)
    assert row.status == "pending" and "429" in row.last_error
    assert row.next_attempt_at == container.clock.now() + timedelta(seconds=1)
    assert notifier._rate.paused_for() > 0.5
    started = asyncio.get_running_loop().time()
    await drain(notifier, container.clock)
    assert asyncio.get_running_loop().time() - started >= 0.5  # the pause was kept
    assert len(fake.delivered(CHAT)) == 1


async def test_blocked_bot_is_undeliverable_at_once(container, fake, bot):
    await accepted_case(container)
    fake.block_chat(CHAT)
    await drain(make_notifier(container, bot), container.clock)
    [row] = await rows(container)
    assert (row.status, row.attempts) == ("undeliverable", 1)
    assert "blocked" in row.last_error
    assert fake.delivered(CHAT) == []


async def test_deleted_account_is_undeliverable(container, fake, bot):
    await accepted_case(container)
    fake.block_chat(CHAT, "Forbidden: user is deactivated")
    await drain(make_notifier(container, bot), container.clock)
    [row] = await rows(container)
    assert row.status == "undeliverable" and "deactivated" in row.last_error


async def test_chat_not_found_is_undeliverable(container, fake, bot):
    await accepted_case(container)
    fake.fail_next("sendMessage", 400, description="Bad Request: chat not found")
    await drain(make_notifier(container, bot), container.clock)
    [row] = await rows(container)
    assert row.status == "undeliverable" and "chat not found" in row.last_error


async def test_timeout_after_telegram_sent_is_never_sent_again(container, fake, bot):
    await accepted_case(container)
    fake.delay_next("sendMessage", 3.0)  # the message goes out, the answer comes after the client gave up
    await drain(make_notifier(container, bot, timeout=1.0), container.clock)
    [row] = await rows(container)
    assert row.status == "unconfirmed" and "timeout" in row.last_error.lower()
    await drain(make_notifier(container, bot), container.clock)  # later runs leave it alone
    assert len(fake.delivered(CHAT)) == 1


async def test_connection_closed_after_sending_is_never_sent_again(container, fake, bot):
    await accepted_case(container)
    fake.close_next_connection("sendMessage", after_processing=True)
    await drain(make_notifier(container, bot), container.clock)
    [row] = await rows(container)
    assert row.status == "unconfirmed"
    assert len(fake.delivered(CHAT)) == 1


async def test_no_connection_at_all_is_retried_until_delivered(container, fake, bot):
    await accepted_case(container)
    dead = FakeTelegram()
    await dead.start()
    unreachable = dead.make_bot()
    await dead.stop()  # the port is closed now: connecting fails before anything is written
    try:
        notifier = make_notifier(container, unreachable)
        await notifier.run_once()
        [row] = await rows(container)
        assert row.status == "pending" and "network" in row.last_error
    finally:
        await unreachable.session.close()
    await drain(make_notifier(container, bot), container.clock)
    [row] = await rows(container)
    assert (row.status, row.attempts) == ("sent", 2)
    assert len(fake.delivered(CHAT)) == 1


async def test_persistent_failure_ends_undeliverable_after_max_attempts(container, fake, bot):
    await accepted_case(container)
    fake.fail_next("sendMessage", 502, times=100)
    await drain(make_notifier(container, bot, max_attempts=3), container.clock)
    [row] = await rows(container)
    assert (row.status, row.attempts) == ("undeliverable", 3)
    assert row.last_error.startswith("gave up after 3 attempts")


async def test_backoff_grows_with_jitter(container, fake, bot):
    await accepted_case(container)
    fake.fail_next("sendMessage", 500, times=3)
    notifier = make_notifier(container, bot, backoff_base=10, backoff_cap=1000, max_attempts=10)
    waits = []
    for _ in range(3):
        before = container.clock.now()
        await notifier.run_once()
        [row] = await rows(container)
        waits.append((row.next_attempt_at - before).total_seconds())
        container.clock.at = row.next_attempt_at
    assert 5 <= waits[0] <= 10 and 10 <= waits[1] <= 20 and 20 <= waits[2] <= 40


async def test_database_away_after_sending_does_not_resend(container, fake, bot):
    await accepted_case(container)
    notifier = make_notifier(container, bot, record_retry_interval=0.01)
    real_write, failures = notifier._write, []

    async def flaky_write(item, result):
        if len(failures) < 3:
            failures.append(result)
            raise OperationalError("UPDATE outbox", {}, ConnectionError("server closed the connection"))
        await real_write(item, result)

    notifier._write = flaky_write
    await notifier.run_once()
    [row] = await rows(container)
    assert row.status == "sent" and len(failures) == 3
    assert len(fake.delivered(CHAT)) == 1


async def test_worker_killed_between_send_and_commit(container, fake, bot):
    await accepted_case(container)
    doomed = make_notifier(container, bot, worker_id="doomed")

    async def killed(item, result):
        raise asyncio.CancelledError  # the process dies after Telegram answered, before the commit

    doomed._write = killed
    with pytest.raises(asyncio.CancelledError):
        await doomed.run_once()
    [row] = await rows(container)
    assert (row.status, row.worker) == ("sending", "doomed")
    assert len(fake.delivered(CHAT)) == 1

    survivor = make_notifier(container, bot, worker_id="survivor")
    await survivor.recover()
    [row] = await rows(container)
    assert row.status == "sending"  # the lease is still running: maybe the worker is only slow
    container.clock.advance(minutes=3)
    assert await survivor.recover() == 1
    await drain(survivor, container.clock)
    [row] = await rows(container)
    assert row.status == "unconfirmed" and "may have been delivered" in row.last_error
    assert len(fake.delivered(CHAT)) == 1


async def test_worker_killed_before_sending_leaves_the_notice_to_be_sent(container, fake, bot):
    await accepted_case(container)
    doomed = make_notifier(container, bot, worker_id="doomed")
    assert len(await doomed.claim()) == 1  # the process dies here, holding the claim, having sent nothing
    [row] = await rows(container)
    assert (row.status, row.worker) == ("claimed", "doomed")

    survivor = make_notifier(container, bot, worker_id="survivor")
    assert await survivor.recover() == 0  # the lease is still running
    container.clock.advance(minutes=3)
    assert await survivor.recover() == 1
    [row] = await rows(container)
    assert (row.status, row.worker) == ("pending", None)  # never went out: retried, not flagged
    await drain(survivor, container.clock)
    [row] = await rows(container)
    assert row.status == "sent"
    assert len(fake.delivered(CHAT)) == 1


async def test_claimed_notice_taken_over_is_not_sent_by_its_first_worker(container, fake, bot):
    await accepted_case(container)
    slow = make_notifier(container, bot, worker_id="slow")
    [item] = await slow.claim()
    claimed_at = container.clock.at
    container.clock.advance(minutes=3)
    survivor = make_notifier(container, bot, worker_id="survivor")
    assert await survivor.recover() == 1
    await drain(survivor, container.clock)
    # the first worker goes on as if its lease were still running (a clock behind the database's):
    # the mark before the request finds the row no longer its own, and nothing is sent
    container.clock.at = claimed_at
    await slow._deliver(item)
    [row] = await rows(container)
    assert row.status == "sent"
    assert len(fake.delivered(CHAT)) == 1


async def test_web_notice_of_a_dead_worker_is_simply_redone(container, bot):
    view = await container.cases.create(complaint(channel="web", complainant=ComplainantInfo(
        channel_user_id="web-1", name="王五", phone="13700000000")))
    await container.cases.accept(view.id, STAFF)
    doomed = make_notifier(container, bot, worker_id="doomed")

    async def killed(item, result):
        raise asyncio.CancelledError

    doomed._write = killed
    with pytest.raises(asyncio.CancelledError):
        await doomed.run_once()
    container.clock.advance(minutes=3)
    survivor = make_notifier(container, bot, worker_id="survivor")
    await survivor.recover()
    await drain(survivor, container.clock)
    [row] = await rows(container)
    assert (row.channel, row.recipient, row.status) == ("web", view.number, "sent")
    assert "已受理" in row.body


async def test_messages_to_one_chat_keep_order_and_pace(container, fake, bot):
    case_id = await accepted_case(container)
    for n in range(3):
        await container.cases.message(case_id, STAFF, f"进展 {n}")
    notifier = make_notifier(container, bot, chat_interval=0.3)
    for _ in range(40):
        await notifier.run_once()
        if len(fake.delivered(CHAT)) == 4:
            break
        await asyncio.sleep(0.05)
        container.clock.advance(seconds=0.1)
    sent = fake.delivered(CHAT)
    assert [s.params["text"].splitlines()[-1] for s in sent[1:]] == ["进展 0", "进展 1", "进展 2"]
    gaps = [b.at - a.at for a, b in zip(sent, sent[1:])]
    assert min(gaps) >= 0.3


async def test_unit_group_gets_new_cases_without_buttons(container, fake, bot):
    async with container.uow() as uow:
        unit = await uow.units.by_code("suo_yongzhong")
        unit.telegram_chat_id = "-1001234"
        await uow.commit()
    view = await container.cases.create(complaint())
    assert view.lead_unit == "suo_yongzhong"
    await drain(make_notifier(container, bot), container.clock)
    [sent] = fake.delivered(-1001234)
    assert view.number in sent.params["text"] and "reply_markup" not in sent.params


async def test_two_workers_send_each_notice_once(container, fake, bot):
    people = [str(5000 + n) for n in range(40)]
    for person in people:
        view = await container.cases.create(complaint(user_id=person))
        await container.cases.accept(view.id, STAFF)
        await container.cases.message(view.id, STAFF, f"给 {person} 的消息")
    first, second = make_notifier(container, bot, worker_id="a"), make_notifier(container, bot, worker_id="b")

    async def work(notifier):
        for _ in range(30):
            if not await notifier.run_once():
                await asyncio.sleep(0.02)
            if len(fake.delivered()) >= 2 * len(people):
                return

    await asyncio.gather(work(first), work(second))
    texts = [(c.params["chat_id"], c.params["text"]) for c in fake.delivered()]
    assert len(texts) == len(set(texts)) == 2 * len(people)
    done = await rows(container)
    assert {r.status for r in done} == {"sent"} and len(done) == 2 * len(people)


async def test_the_worker_delivers_in_the_background_and_stops_cleanly(container, fake, bot):
    from qinglang.worker import Worker

    worker = Worker(container, bot=bot, worker_id="bg")
    worker.start()
    try:
        await accepted_case(container)
        worker.notifier.wake()
        for _ in range(100):
            if fake.delivered(CHAT):
                break
            await asyncio.sleep(0.05)
    finally:
        await worker.stop()
    [sent] = fake.delivered(CHAT)
    assert "已受理" in sent.params["text"]
    [row] = await rows(container)
    assert (row.status, row.worker, row.lease_until) == ("sent", None, None)


async def test_api_case_callback_retries_with_the_same_key_until_accepted(container, bot):
    from aiohttp import web
    from aiohttp.test_utils import TestServer

    received, answers = [], [503, 200]

    async def hook(request):
        received.append((request.headers.get("Idempotency-Key"), await request.json()))
        return web.Response(status=answers.pop(0) if answers else 200)

    app = web.Application()
    app.router.add_post("/hook", hook)
    server = TestServer(app)
    await server.start_server()
    callback = loopback_callback()
    try:
        view = await container.cases.create(complaint(
            channel="api", complainant=ComplainantInfo(name="李四", phone="13900000000"),
            callback_url=str(server.make_url("/hook"))))
        await container.cases.accept(view.id, STAFF)
        notifier = make_notifier(container, bot)
        notifier._transports["callback"] = callback
        await drain(notifier, container.clock)
    finally:
        await callback.close()
        await server.close()
    done = await rows(container)
    assert [(r.template, r.status) for r in done] == [("received", "sent"), ("accepted", "sent")]
    keys = [key for key, _ in received]
    assert keys[0] == keys[1] == done[0].idempotency_key  # the retry of "received" carried the same key
    assert [body["event"] for _, body in received] == ["received", "received", "accepted"]
    assert received[0][1]["case"] == view.number and "已登记" in received[0][1]["text"]


async def test_api_case_callback_refusing_for_good_is_undeliverable(container, bot):
    from aiohttp import web
    from aiohttp.test_utils import TestServer

    async def hook(request):
        return web.Response(status=410)

    app = web.Application()
    app.router.add_post("/hook", hook)
    server = TestServer(app)
    await server.start_server()
    callback = loopback_callback()
    try:
        await container.cases.create(complaint(
            channel="api", complainant=ComplainantInfo(name="李四", phone="13900000000"),
            callback_url=str(server.make_url("/hook"))))
        notifier = make_notifier(container, bot)
        notifier._transports["callback"] = callback
        await drain(notifier, container.clock)
    finally:
        await callback.close()
        await server.close()
    [row] = await rows(container)
    assert (row.status, row.last_error) == ("undeliverable", "callback answered 410")
