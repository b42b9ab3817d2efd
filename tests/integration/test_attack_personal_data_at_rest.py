"""Personal data at rest, read by someone without the data key (issue 14, finding 2).

The attacker has a copy of the database (the SQLite file with its -wal and -shm, or a pg_dump of the
PostgreSQL database) or of a backup written by `qinglang backup`, but not the data key. A person who files
a complaint through the web chat or the Telegram bot types a name and a mobile number at those steps;
neither may be found in any of these copies, in UTF-8 or as JSON escapes it, while the conversation runs
(the draft, the web chat's transcript, an update waiting in the inbox for the replay) nor after it (the case,
the inbox of handled updates). The service goes on working with them: a stored message is replayed after a
restart, the person reads their status, staff see the name on the case page (an audited reveal).

Migration 0014 seals what an older version stored in clear and leaves no old copy in the file: not in a
page it rewrote, nor in a free block an older SQLite without secure delete left behind. Drafts kept in
Redis are sealed the same way, and `qinglang rekey` covers them.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from aiogram.fsm.storage.base import StorageKey
from aiohttp.test_utils import TestServer
from sqlalchemy import select
from sqlalchemy.engine import make_url

from bot.storage import build_storage
from db import migrate
from db.crypto import DataCipher
from db.drafts import reencrypt_redis_drafts
from db.engine import create_engine
from db.models import BotState, Case, CaseEvent, Complainant, InboxUpdate
from qinglang.backup import make_backup
from qinglang.backup.pgtools import database_conninfo, environment, find_tool
from qinglang.bootstrap import build_container
from qinglang.settings import load_settings
from tests.fakes.telegram import FakeUser
from tests.integration.bot_driver import Person
from tests.integration.test_backup import pg_tools  # noqa: F401 - the fixture
from tests.integration.test_bot_flows import (
    COMPLAINT_NAME_Q,
    CONSENT_Q,
    EVIDENCE_Q,
    PHONE_Q,
    STREET_Q,
    fake,  # noqa: F401 - the fixture
    polling,
    reach_merchant_step,
)
from tests.integration.test_chat import RECEIPT, Citizen, running, to_evidence_step
from tests.integration.test_console import Console
from web.app import create_app
from web.chat.routes import SERVICE

TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL")
APOLOGY = "抱歉，系统暂时出了点问题。您发送的内容已经保存，我们会尽快处理，不需要重新发送。"


@dataclass(frozen=True)
class Secrets:
    name: str
    phone: str
    others: tuple[str, ...] = ()  # e.g. the Telegram account's display name

    @property
    def all(self) -> tuple[str, ...]:
        return (self.name, self.phone, *self.others)


WEB = Secrets("欧阳青岚", "13609876543")
TELEGRAM = Secrets("上官明玥", "15923456781", ("Mingyue", "Shangguan", "shangguan_my_1987"))
TELEGRAM_USER = FakeUser(7654321, "Mingyue", username="shangguan_my_1987", last_name="Shangguan")


# -- what an attacker reads ---------------------------------------------------------------------------


def spellings(secret: str) -> set[bytes]:
    """How a string can sit in a file: UTF-8, JSON's \\u escapes (ensure_ascii), and those escapes as a
    plain pg_dump writes them (COPY doubles every backslash)."""
    escaped = json.dumps(secret)[1:-1]
    return {secret.encode(), escaped.encode(), escaped.replace("\\", "\\\\").encode()}


def found_in(blob: bytes, secrets: Secrets | tuple[str, ...]) -> list[str]:
    wanted = secrets.all if isinstance(secrets, Secrets) else secrets
    return [secret for secret in wanted if any(form in blob for form in spellings(secret))]


def sqlite_files(url: str) -> list[Path]:
    path = Path(make_url(url).database)
    return [p for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")) if p.exists()]


async def run_tool(name: str, *args: str, env: dict[str, str] | None = None) -> bytes:
    tool = find_tool(name)
    process = await asyncio.create_subprocess_exec(tool.path, *args, env=env, stdin=asyncio.subprocess.DEVNULL,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode(errors="replace")
    return out


async def database_bytes(url: str) -> bytes:
    """The SQLite file with its -wal and -shm, or a plain-text pg_dump of the PostgreSQL database."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return b"".join(path.read_bytes() for path in sqlite_files(url))
    return await run_tool("pg_dump", "--format=plain", "--no-password", database_conninfo(parsed.database),
                          env=environment(parsed))


async def nowhere_in_the_database(url: str, secrets: Secrets) -> None:
    assert found_in(await database_bytes(url), secrets) == []


async def nowhere_in_a_backup(settings, out: Path, secrets: Secrets) -> None:
    """Every file of a `qinglang backup`; a PostgreSQL dump (compressed) also as the SQL it restores."""
    report = await make_backup(settings, out)
    files = [path for path in out.rglob("*") if path.is_file()]
    assert out / report.manifest.database.file.path in files
    for path in files:
        assert found_in(path.read_bytes(), secrets) == [], path
    if report.manifest.database.kind == "postgresql":
        script = await run_tool("pg_restore", "--file=-", str(out / report.manifest.database.file.path))
        assert b"CREATE TABLE public.inbox" in script and found_in(script, secrets) == []


async def staff_see_the_person(container, server: TestServer, number: str, secrets: Secrets) -> None:
    """Staff who may see the identity do, on the case page, and the reveal is audited."""
    console = Console(container, server, [])
    try:
        triage = await console.person(f"t{uuid.uuid4().hex[:6]}", "xiaobao", "triage")
        status, html = await triage.get(f"/cases/{number}")
        assert status == 200 and secrets.name in html and secrets.phone in html
    finally:
        for client in console.clients:
            await client.close()
    async with container.uow() as uow:
        case = await uow.session.scalar(select(Case).where(Case.number == number))
        person = await uow.session.get(Complainant, case.complainant_id)
        reveals = (await uow.session.scalars(select(CaseEvent.data).where(
            CaseEvent.case_id == case.id, CaseEvent.action == "view_personal_data"))).all()
    assert (person.name, person.phone) == (secrets.name, secrets.phone)
    assert reveals and "phone" in reveals[-1]["fields"]


# -- the web chat --------------------------------------------------------------------------------------


async def test_the_web_chat_leaves_no_name_or_phone_in_the_database_or_a_backup(
        container, settings, clock, pg_tools, tmp_path, monkeypatch):
    async with running(container) as client:
        citizen = Citizen(client)
        await citizen.start()
        await to_evidence_step(citizen)
        assert await citizen.press("发送完毕") == [COMPLAINT_NAME_Q]
        assert await citizen.send(WEB.name) == [PHONE_Q]
        # the draft and the transcript hold the name now
        await nowhere_in_the_database(settings.database_url, WEB)

        async def gone(*args, **kwargs):
            raise ConnectionError("the database went away")

        with monkeypatch.context() as patch:  # the phone is stored, and its handling fails
            patch.setattr(container.conversation, "handle", gone)
            assert APOLOGY in await citizen.send(WEB.phone)
        cookies = client.session.cookie_jar.filter_cookies(client.make_url("/chat"))
    async with container.uow() as uow:
        (waiting,) = (await uow.session.scalars(select(InboxUpdate).where(InboxUpdate.processed_at.is_(None)))).all()
    assert waiting.payload["text"] == WEB.phone and "ConnectionError" in waiting.error
    await nowhere_in_the_database(settings.database_url, WEB)

    second = build_container(settings, clock=clock)  # a restart: a new process on the same database and key
    try:
        async with running(second) as client:
            client.session.cookie_jar.update_cookies(cookies, client.make_url("/chat"))
            assert await client.app[SERVICE].replay() == 1
            citizen = Citizen(client)
            assert (await citizen.open()).messages[-1] == ("bot", CONSENT_Q)
            (summary,) = await citizen.press("同意")
            assert f"联系方式：{WEB.name} 136****6543" in summary
            assert await citizen.press("✅ 提交") == [RECEIPT]
            number, code = citizen.page.receipt["编号"], citizen.page.receipt["查询码"]
            assert (await citizen.status(number, code)).details["状态"] == "已接收"
            await staff_see_the_person(second, client.server, number, WEB)
        async with second.uow() as uow:
            rows = (await uow.session.scalars(select(InboxUpdate))).all()
        assert rows and all(row.processed_at is not None and row.payload is None for row in rows)
        await nowhere_in_the_database(settings.database_url, WEB)
        await nowhere_in_a_backup(settings, tmp_path / "backup", WEB)
    finally:
        await second.close()


# -- the Telegram bot ----------------------------------------------------------------------------------


async def test_the_telegram_bot_leaves_no_name_or_phone_in_the_database_or_a_backup(
        container, settings, clock, fake, pg_tools, tmp_path):
    async def push(update):
        fake.push(update)

    async with polling(container, fake) as channel:
        someone = Person(fake, TELEGRAM_USER, push, storage=channel.storage, uow=container.uow)
        await reach_merchant_step(someone)
        assert await someone.press("在龙湾区") == [STREET_Q]
        assert await someone.press("永中街道") == [EVIDENCE_Q]
        assert await someone.press("没有证据") == [COMPLAINT_NAME_Q]
        assert await someone.send(TELEGRAM.name) == [PHONE_Q]
        assert (await someone.draft())["name"] == TELEGRAM.name
        await nowhere_in_the_database(settings.database_url, TELEGRAM)
        # the phone reaches the inbox, and the process dies before handling it
        assert await channel.flow.store(fake.message(TELEGRAM_USER, TELEGRAM.phone)) is not None
    await nowhere_in_the_database(settings.database_url, TELEGRAM)

    clock.advance(seconds=settings.bot.inbox_lease_seconds + 1)  # the dead process's lease runs out
    async with polling(container, fake) as restarted:
        someone.storage = restarted.storage
        assert await restarted.replay() == 1
        assert await someone.wait() == [CONSENT_Q]
        (summary,) = await someone.press("同意")
        assert f"联系方式：{TELEGRAM.name} 159****6781" in summary
        (receipt,) = await someone.press("✅ 提交")
        number = receipt.split("编号 ", 1)[1].split("。", 1)[0]
        (listing,) = await someone.send("/status")
        assert number in listing
    async with container.uow() as uow:
        rows = (await uow.session.scalars(select(InboxUpdate))).all()
    assert len(rows) == 11 and all(row.processed_at is not None and row.payload is None for row in rows)
    server = TestServer(create_app(container, with_bot=False))
    await server.start_server()
    try:
        await staff_see_the_person(container, server, number, TELEGRAM)
    finally:
        await server.close()
    await nowhere_in_the_database(settings.database_url, TELEGRAM)
    await nowhere_in_a_backup(settings, tmp_path / "backup", TELEGRAM)


# -- migration 0014 ------------------------------------------------------------------------------------

OLD = Secrets("司马清扬", "13712345098", ("周若兰", "18811112222"))  # what an older version stored in clear
RECEIVED = datetime(2026, 11, 10, 2, tzinfo=UTC)
PENDING = {"type": "text", "text": OLD.phone, "user": "ab" * 32, "at": RECEIVED.isoformat()}
HANDLED = {"update_id": 5, "message": {"message_id": 9, "text": OLD.name, "from": {"id": 1, "first_name": OLD.name}}}
STUCK = {"update_id": 6, "message": {"message_id": "x", "text": OLD.phone}}
STUCK_ERROR = f"ValidationError: message.chat Field required [input_value={{'text': '{OLD.phone}'}}]"
DRAFT = {"draft": {"step": "consent", "name": OLD.name, "phone": OLD.phone},
         "log": [{"who": "me", "text": OLD.name, "turn": 3}, {"who": "me", "text": OLD.phone, "turn": 4}]}


def inbox_table(payload_type):
    return sa.table("inbox", sa.column("id"), sa.column("channel"), sa.column("external_id"),
                    sa.column("payload", payload_type), sa.column("received_at"), sa.column("processed_at"),
                    sa.column("error"), sa.column("attempts"))


def drafts_table(data_type):
    return sa.table("bot_states", sa.column("key"), sa.column("state"), sa.column("data", data_type),
                    sa.column("updated_at"))


async def store_as_0013_did(url: str) -> sqlite3.Connection | None:
    """The rows an older version wrote; on SQLite also a connection of another process that stays open, so the
    rows' pages stay in the write-ahead log too (the last connection to close would fold it into the file)."""
    engine = create_engine(url)
    other_process = None
    try:
        await migrate.upgrade(engine, "0013")
        if make_url(url).get_backend_name() == "sqlite":
            other_process = sqlite3.connect(make_url(url).database)
            other_process.execute("SELECT count(*) FROM inbox").fetchall()
        async with engine.begin() as conn:
            await conn.execute(sa.insert(inbox_table(sa.JSON())), [
                {"channel": "web", "external_id": "abababab:m1", "payload": PENDING, "received_at": RECEIVED,
                 "processed_at": None, "error": None, "attempts": 0},
                {"channel": "telegram", "external_id": "5", "payload": HANDLED, "received_at": RECEIVED,
                 "processed_at": RECEIVED, "error": None, "attempts": 0},
                {"channel": "telegram", "external_id": "6", "payload": STUCK, "received_at": RECEIVED,
                 "processed_at": None, "error": STUCK_ERROR, "attempts": 5},
            ])
            await conn.execute(sa.insert(drafts_table(sa.JSON())), [
                {"key": "web-1", "state": None, "data": DRAFT, "updated_at": RECEIVED},
                # the old web chat limiter's count of wrong look-ups, replaced by the rate_counters table
                {"key": OLD_LIMITER_KEY, "state": None, "data": {"failures": [1764547200.0]}, "updated_at": RECEIVED}])
    finally:
        await engine.dispose()
    if make_url(url).get_backend_name() == "sqlite":
        # what an SQLite built without secure delete leaves behind: a draft and a person deleted, their words
        # still in a free block of their pages (in a table 0014 does not touch, too)
        raw = sqlite3.connect(make_url(url).database)
        try:
            raw.execute("PRAGMA secure_delete=OFF")
            with raw:
                raw.execute("INSERT INTO bot_states (key, data, updated_at) VALUES ('gone', ?, '2026-11-01')",
                            (json.dumps({"draft": {"name": OLD.others[0]}}, ensure_ascii=False),))
                raw.execute("DELETE FROM bot_states WHERE key = 'gone'")
                raw.execute("INSERT INTO complainants (channel, name, phone, language, created_at) "
                            "VALUES ('web', ?, ?, 'zh', '2026-11-01')", (OLD.others[0], OLD.others[1]))
                raw.execute("DELETE FROM complainants")
        finally:
            raw.close()
    return other_process


OLD_LIMITER_KEY = '[0,0,0,null,null,"web-status-failures:' + "ab" * 32 + '"]'


async def raw_rows(url: str) -> tuple[list[tuple], list[tuple]]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            inbox = (await conn.execute(sa.text(
                "SELECT external_id, CAST(payload AS TEXT), error FROM inbox ORDER BY id"))).all()
            drafts = (await conn.execute(sa.text("SELECT key, CAST(data AS TEXT) FROM bot_states ORDER BY key"))).all()
    finally:
        await engine.dispose()
    return [tuple(r) for r in inbox], [tuple(r) for r in drafts]


async def test_migration_0014_seals_what_was_stored_in_clear_and_leaves_no_old_copy(
        backend, fresh_database_url, pg_tools, tmp_path, nlu_cache_dir):
    other_process = await store_as_0013_did(fresh_database_url)
    try:
        await migration_0014(backend, fresh_database_url, tmp_path, nlu_cache_dir)
    finally:
        if other_process is not None:
            other_process.close()


async def migration_0014(backend, fresh_database_url, tmp_path, nlu_cache_dir) -> None:
    before = await database_bytes(fresh_database_url)
    expected = OLD.all if backend == "sqlite" else (OLD.name, OLD.phone)
    assert found_in(before, expected) == list(expected)  # the attack works on what 0013 stored
    if backend == "sqlite":
        assert found_in(Path(make_url(fresh_database_url).database + "-wal").read_bytes(), OLD) != []

    bare = create_engine(fresh_database_url)
    try:
        with pytest.raises(RuntimeError, match="no data key was given"):
            await migrate.upgrade(bare)  # rows to seal and no key: nothing changes
        assert await migrate.current_revision(bare) == "0013"
    finally:
        await bare.dispose()

    settings = load_settings(env_file=None, data_dir=tmp_path / "data", database_url=fresh_database_url,
                             nlu_cache_dir=nlu_cache_dir)
    container = build_container(settings)  # as `qinglang migrate` does: the engine carries the data key
    try:
        await migrate.upgrade(container.engine)
        assert found_in(await database_bytes(fresh_database_url), OLD) == []
        if backend == "sqlite":
            wal = Path(make_url(fresh_database_url).database + "-wal")
            assert wal.stat().st_size == 0  # nothing of before the migration waits in the log
        inbox, drafts = await raw_rows(fresh_database_url)
        assert [external_id for external_id, _, _ in inbox] == ["abababab:m1", "5", "6"]
        assert all(value is None or value.startswith("v1.") for _, *values in inbox for value in values)
        assert [key for key, _ in drafts] == ["web-1"] and drafts[0][1].startswith("v1.")  # the limiter's row went
        async with container.uow() as uow:  # the service reads them as they were
            rows = (await uow.session.scalars(select(InboxUpdate).order_by(InboxUpdate.id))).all()
            draft = await uow.session.get(BotState, "web-1")
        assert [(r.payload, r.error) for r in rows] == [(PENDING, None), (None, None), (STUCK, STUCK_ERROR)]
        assert draft.data == DRAFT

        await migrate.downgrade(container.engine, "0013")
        inbox, drafts = await raw_rows(fresh_database_url)
        assert [(json.loads(payload), error) for _, payload, error in inbox] == [
            (PENDING, None), ({}, None), (STUCK, STUCK_ERROR)]  # a handled update's payload is gone for good
        assert json.loads(drafts[0][1]) == DRAFT
        await migrate.upgrade(container.engine)
        assert found_in(await database_bytes(fresh_database_url), (OLD.name, OLD.phone)) == []
        async with container.uow() as uow:
            assert (await uow.session.get(BotState, "web-1")).data == DRAFT
    finally:
        await container.close()


# -- drafts in Redis -----------------------------------------------------------------------------------


@pytest.mark.redis
@pytest.mark.skipif(not TEST_REDIS_URL, reason="TEST_REDIS_URL is not set")
async def test_drafts_in_redis_are_sealed_and_rekey_seals_them_again():
    from redis.asyncio import Redis

    prefix = f"qinglang-test:{uuid.uuid4().hex[:10]}"
    old_key, new_key = os.urandom(32), os.urandom(32)
    client = Redis.from_url(TEST_REDIS_URL)
    storage = build_storage(TEST_REDIS_URL, None, redis_prefix=prefix, cipher=DataCipher(old_key))
    sealed_draft = {"draft": {"step": "consent", "name": TELEGRAM.name, "phone": TELEGRAM.phone}}
    clear_draft = {"draft": {"step": "phone", "name": WEB.name}}
    first, second = (StorageKey(bot_id=1, chat_id=n, user_id=n) for n in (1, 2))
    try:
        await storage.set_data(first, sealed_draft)
        names = [name async for name in client.scan_iter(f"{prefix}:*")]
        assert len(names) == 1 and found_in(await client.get(names[0]), TELEGRAM) == []
        assert await storage.get_data(first) == sealed_draft
        # a draft written in clear by a version before drafts were sealed is still read
        await client.set(storage.key_builder.build(second, "data"), json.dumps(clear_draft))
        assert await storage.get_data(second) == clear_draft

        rotated = DataCipher(new_key, [old_key])
        assert await reencrypt_redis_drafts(TEST_REDIS_URL, rotated, redis_prefix=prefix) == 2
        assert await reencrypt_redis_drafts(TEST_REDIS_URL, rotated, redis_prefix=prefix) == 0
        values = [await client.get(name) async for name in client.scan_iter(f"{prefix}:*")]
        assert len(values) == 2 and all(v.decode().startswith(f"v1.{rotated.current_id}.") for v in values)
        assert found_in(b" ".join(values), (*TELEGRAM.all, *WEB.all)) == []
        retired = build_storage(TEST_REDIS_URL, None, redis_prefix=prefix, cipher=DataCipher(new_key))
        try:
            assert (await retired.get_data(first), await retired.get_data(second)) == (sealed_draft, clear_draft)
        finally:
            await retired.close()
    finally:
        async for name in client.scan_iter(f"{prefix}:*"):
            await client.delete(name)
        await client.aclose()
        await storage.close()
