"""Attacks on the Telegram webhook (issue 8, "hold under attack").

The whole app (`web.app.create_app`) runs in webhook mode with the bot pointed at the fake Bot API
(tests/fakes/telegram.py), so /healthz and the webhook share one server, as in production. Each attack:

- a forged or missing secret token: 401, nothing stored in the inbox (table `inbox`), nothing sent;
- a caller holding the secret sending something that is not an update (broken JSON, an array, binary
  garbage, a body too large, deep nesting, missing or mistyped fields): a 4xx, never a 5xx (Telegram
  retries a 5xx for hours), nothing stored;
- odd but valid updates (an unknown update type, a text far over Telegram's 4096 characters, an
  unusual content type): handled like any other;

and afterwards the service is healthy: /healthz answers 200 and a normal /start gets the welcome.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select

from db.models import InboxUpdate
from qinglang.settings import load_settings
from tests.fakes.telegram import TOKEN, FakeTelegram, FakeUser
from web.app import create_app

SECRET = "attack-test-secret_0123456789abcdef"
HEADER = "X-Telegram-Bot-Api-Secret-Token"
WELCOME = ("您好！这里是龙湾区市场监督管理局网络直播消费投诉举报平台。\n"
           "请用几句话告诉我：在哪个直播间、买了什么、遇到了什么问题。")
TOO_LONG = "消息太长，我保存了前 4096 个字。更多内容可以分几条发送，或以文件形式发送。"


@dataclasses.dataclass
class Webhook:
    client: TestClient
    fake: FakeTelegram
    container: object
    path: str

    async def post(self, body: bytes | str | dict | list | None = None, *, secret: str | None = SECRET,
                   content_type: str = "application/json", headers: dict | None = None) -> tuple[int, str]:
        sent = {"Content-Type": content_type, **(headers or {})}
        if secret is not None:
            sent[HEADER] = secret
        if isinstance(body, (dict, list)):
            body = json.dumps(body, ensure_ascii=False)
        data = body.encode() if isinstance(body, str) else body
        response = await self.client.post(self.path, data=data, headers=sent)
        return response.status, await response.text(errors="replace")

    async def inbox(self) -> int:
        async with self.container.uow() as uow:
            return await uow.session.scalar(select(func.count()).select_from(InboxUpdate))

    async def healthy(self, user: FakeUser) -> None:
        """/healthz is 200 and a normal update is handled: stored, processed, answered."""
        response = await self.client.get("/healthz")
        assert response.status == 200 and (await response.json())["status"] == "ok"
        before = len(self.fake.messages_to(user.id))
        update = self.fake.message(user, "/start")
        status, _ = await self.post(update)
        assert status == 200
        assert self.fake.messages_to(user.id)[before:] == [WELCOME]
        async with self.container.uow() as uow:
            row = await uow.session.scalar(select(InboxUpdate).where(
                InboxUpdate.channel == "telegram", InboxUpdate.external_id == str(update["update_id"])))
        assert row is not None and row.processed_at is not None and row.error is None


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as server:
        yield server


@pytest.fixture
async def webhook(container, fake) -> AsyncIterator[Webhook]:
    settings = load_settings(env_file=None, data_dir=container.settings.storage.data_dir,
                             database_url=container.settings.database_url,
                             nlu_cache_dir=container.settings.nlu.nlu_cache_dir,
                             bot_token=TOKEN, bot_api_base=fake.base_url, bot_mode="webhook", webhook_secret=SECRET)
    app = create_app(dataclasses.replace(container, settings=settings))
    async with TestClient(TestServer(app)) as client:
        yield Webhook(client, fake, container, settings.bot.webhook_path)


ALICE = FakeUser(7001, "Alice")
BOB = FakeUser(7002, "Bob")  # the health check's own person


# -- forged and missing secrets --------------------------------------------------------------------

FORGED = [
    None,  # no header at all
    "",  # an empty header
    "wrong-" + SECRET,  # longer
    SECRET[:-1],  # one character short
    SECRET[:-1] + ("A" if SECRET[-1] != "A" else "B"),  # same length, last character wrong
    SECRET.upper(),  # case matters
    SECRET + "\u00e9",  # one more character, not ASCII (latin-1 on the wire)
    "секрет-" + SECRET,  # not even latin-1: UTF-8 bytes in the header
]


async def test_forged_secrets_are_401_and_nothing_is_stored(webhook):
    for secret in FORGED:
        update = webhook.fake.message(ALICE, "/status")
        status, _ = await webhook.post(update, secret=secret)
        assert status == 401, secret
        # broken bodies with a forged secret are refused before they are even read
        assert (await webhook.post(b"{not json", secret=secret))[0] == 401, secret
    for i in range(40):  # guessing on and on wears nothing down
        status, _ = await webhook.post(webhook.fake.message(ALICE, f"/status {i}"), secret=f"guess-{i:04d}-{SECRET}")
        assert status == 401
    assert await webhook.inbox() == 0
    assert webhook.fake.messages_to(ALICE.id) == []
    for method in ("GET", "PUT", "DELETE"):
        response = await webhook.client.request(method, webhook.path, headers={HEADER: SECRET})
        assert response.status == 405, method
    assert await webhook.inbox() == 0
    await webhook.healthy(BOB)


# -- malformed bodies from a caller holding the secret --------------------------------------------

NOT_AN_UPDATE = {
    "broken-json": b'{"update_id": 1, "message": {',
    "empty-body": b"",
    "binary-garbage": bytes(range(256)) * 4,
    "invalid-utf8": b'{"update_id": 5, "message": "\xff\xfe"}',
    "json-array": b'[{"update_id": 5}]',
    "json-string": b'"update"',
    "json-null": b"null",
    "no-update-id": json.dumps({"message": {"message_id": 1, "date": 0, "chat": {"id": 1, "type": "private"}}}).encode(),
    "update-id-is-text": json.dumps({"update_id": "one"}).encode(),
    "update-id-is-bool": b'{"update_id": true}',
    "update-id-is-float": b'{"update_id": 1.5}',
}


async def test_a_body_that_is_not_an_update_is_400_and_not_stored(webhook):
    """Telegram does not retry a 4xx; a 5xx would bring the same broken body back for hours."""
    for name, body in NOT_AN_UPDATE.items():
        status, answer = await webhook.post(body)
        assert status == 400, (name, answer)
    assert await webhook.inbox() == 0
    assert webhook.fake.calls("sendMessage") == []
    await webhook.healthy(BOB)


DEEP = b"[" * 100_000 + b"]" * 100_000


async def test_deeply_nested_json_is_400(webhook):
    status, _ = await webhook.post(DEEP)
    assert status == 400


async def test_deeply_nested_json_stores_nothing_and_service_stays_healthy(webhook):
    for body in (DEEP, b'{"update_id": 1, "message": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"):
        status, _ = await webhook.post(body)
        assert status == 400, status  # never 503: Telegram would retry a body that can never be read
    assert await webhook.inbox() == 0
    await webhook.healthy(BOB)


UNREADABLE = [
    {"update_id": 900_001, "message": 42},
    {"update_id": 900_002, "message": {"message_id": 1, "date": 0, "chat": {"type": "private"}, "text": "13612345678"}},
    {"update_id": 900_003, "message": {"message_id": 1, "date": 0, "text": ["13612345678"],
                                       "chat": {"id": 1, "type": "private"}}},
]


async def test_an_update_aiogram_cannot_read_is_kept_and_marked_not_answered(webhook, caplog):
    """It has an integer update_id, so it is stored first (nothing a citizen sent is lost); reading it
    fails, so the inbox row carries the error and nothing is sent to anyone. The error says where and what
    (pydantic's own message quotes the input: what the person typed would reach the log in clear)."""
    for body in UNREADABLE:
        status, _ = await webhook.post(body)
        assert status == 200, body
    async with webhook.container.uow() as uow:
        rows = list(await uow.session.scalars(select(InboxUpdate).order_by(InboxUpdate.id)))
    assert [r.external_id for r in rows] == ["900001", "900002", "900003"]
    assert all(r.processed_at is None and "ValidationError" in (r.error or "") for r in rows)
    assert all("13612345678" not in r.error for r in rows)
    assert "13612345678" not in caplog.text
    assert webhook.fake.calls("sendMessage") == []
    await webhook.healthy(BOB)


@pytest.fixture
async def small_webhook(container, fake) -> AsyncIterator[Webhook]:
    """The same app with a 1 MB evidence limit: the request body limit is that plus 1 MB."""
    settings = load_settings(env_file=None, data_dir=container.settings.storage.data_dir,
                             database_url=container.settings.database_url,
                             nlu_cache_dir=container.settings.nlu.nlu_cache_dir, max_evidence_bytes=1024 * 1024,
                             bot_token=TOKEN, bot_api_base=fake.base_url, bot_mode="webhook", webhook_secret=SECRET)
    app = create_app(dataclasses.replace(container, settings=settings))
    async with TestClient(TestServer(app)) as client:
        yield Webhook(client, fake, container, settings.bot.webhook_path)


async def test_a_body_over_the_size_limit_is_413_and_not_stored(small_webhook):
    update = small_webhook.fake.message(ALICE, "很" * 1_000_000)  # 3 MB of UTF-8
    status, _ = await small_webhook.post(update)
    assert status == 413

    async def chunked():  # no Content-Length: the limit holds while reading
        body = json.dumps(update).encode()
        for start in range(0, len(body), 65536):
            yield body[start:start + 65536]

    response = await small_webhook.client.post(small_webhook.path, data=chunked(),
                                               headers={HEADER: SECRET, "Content-Type": "application/json"})
    assert response.status == 413
    assert await small_webhook.inbox() == 0
    await small_webhook.healthy(BOB)


# -- odd but valid updates -------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:Detected unknown update type:RuntimeWarning")  # aiogram says so, rightly
async def test_odd_but_valid_updates_are_handled_like_any_other(webhook):
    # an update type this bot does not know: stored, handled (nothing to do), not answered
    status, _ = await webhook.post({"update_id": 900_010, "business_connection_v99": {"id": "x", "any": [1, {"a": None}]}})
    assert status == 200
    async with webhook.container.uow() as uow:
        (row,) = list(await uow.session.scalars(select(InboxUpdate)))
    assert row.external_id == "900010" and row.processed_at is not None and row.error is None
    assert webhook.fake.calls("sendMessage") == []
    # Telegram sends application/json; a body that is an update is one whatever its label
    help_update = webhook.fake.message(ALICE, "/help")
    assert (await webhook.post(help_update, content_type="text/plain"))[0] == 200
    assert len(webhook.fake.messages_to(ALICE.id)) == 1
    # the same update delivered again is answered once
    assert (await webhook.post(help_update))[0] == 200
    assert len(webhook.fake.messages_to(ALICE.id)) == 1
    assert await webhook.inbox() == 2
    await webhook.healthy(BOB)


async def test_a_text_longer_than_telegram_allows_is_cut_with_a_notice(webhook):
    text = "我在抖音直播间买的羽绒服是假货，商家不给退款。" * 800  # 19 200 characters
    status, _ = await webhook.post(webhook.fake.message(ALICE, text))
    assert status == 200
    replies = webhook.fake.messages_to(ALICE.id)
    assert replies[0] == TOO_LONG and len(replies) == 2 and replies[1].startswith("我理解的情况是：")
    assert all(len(r.encode("utf-16-le")) // 2 <= 4096 for r in replies)
    await webhook.healthy(BOB)


async def test_nul_bytes_and_lone_surrogates_in_an_update_never_break_the_webhook(webhook):
    """JSON may carry \\u0000 and an unpaired \\ud800; PostgreSQL text refuses both, UTF-8 cannot encode the
    second. The update is stored and answered (or refused with a 4xx), never a 5xx; the service stays up."""
    raw = json.dumps(webhook.fake.message(ALICE, "直播间买的\u0000羽绒服是假货，商家不给退款 \ud800 end"))
    status, _ = await webhook.post(raw.encode())
    assert status in (200, 400)
    if status == 200:
        assert len(webhook.fake.messages_to(ALICE.id)) >= 1
    await webhook.healthy(BOB)
