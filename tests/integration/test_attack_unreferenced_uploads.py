"""Issue 14, finding 6 (the clean-up half): uploads nothing refers to are removed by the daily job.

The probe: thirty fresh chat cookies each uploaded a distinct file and nothing ever removed them (no case
refers to them). Now the worker's daily `evidence_sweep` job removes the files no case (evidence row), no
conversation draft (bot_states, or the bot's drafts in Redis) and no web chat message still to be handled
refers to, once no upload has stored or claimed them for the grace period (48 h by default), with their
staff copies, and the leftovers of interrupted uploads in `.incoming` older than an hour. A file a case or a
live draft refers to is kept however old; so is a fresh one. (The chat's upload quotas, the other half of
the defence, are tested with the chat.)
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.storage import DatabaseStorage
from db.engine import create_session_factory
from db.models import InboxUpdate, ScheduledRun
from intake.cases import Actor, EvidenceItem, NewCase
from intake.draft import Draft
from intake.inbox import Inbox
from nlu.taxonomy import Kind
from qinglang.worker import Worker
from routing.rules import MerchantLocation
from tests.fakes.images import photo, png
from web.chat.identity import CHANNEL, storage_key_of

TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL")
TEXT = "订单 20261116-0042：已付款 399 元，商家不发货\n".encode()


def aged(container, path: Path, **delta: float) -> None:
    """Make `path` look last written that long before the (fixed) clock's now."""
    moment = (container.clock.now() - timedelta(**delta)).timestamp()
    os.utime(path, (moment, moment))


def item(stored) -> dict:
    return {"sha256": stored.sha256, "size": stored.size, "mime": stored.mime, "name": stored.original_name}


async def a_case_with(container, stored) -> None:
    await container.cases.create(NewCase(
        kind=Kind.TIPOFF, category="price", description="直播间虚假原价，截图为证", channel="webform",
        merchant=MerchantLocation(True, "永中街道", "浙江省"),
        evidence=(EvidenceItem(stored.sha256, stored.size, stored.mime, stored.original_name, "webform"),),
    ), Actor("staff", 1))


async def job_result(container, day: str) -> dict:
    async with container.uow() as uow:
        run = await uow.session.scalar(
            select(ScheduledRun).where(ScheduledRun.job == "evidence_sweep", ScheduledRun.run_key == day))
    assert run is not None and run.status == "done", run and (run.status, run.error)
    return run.result


@pytest.fixture
async def worker(container):
    worker = Worker(container)
    yield worker
    await worker.stop()


async def test_the_daily_job_removes_what_nothing_refers_to_past_the_grace(container, worker):
    store = container.evidence
    orphan = await store.put(photo(), original_name="orphan.jpg")  # with a copy for staff
    young = await store.put(TEXT, original_name="young.txt")
    in_case = await store.put(png(1), original_name="case.png")
    in_draft = await store.put(png(2), original_name="draft.png")
    in_message = await store.put(png(3), original_name="message.png")
    await a_case_with(container, in_case)
    drafts = DatabaseStorage(create_session_factory(container.engine))  # the web chat's and the bot's
    person = storage_key_of(uuid.uuid4().hex)
    await drafts.set_data(person, {"draft": Draft(description="主播虚假宣传", evidence=[item(in_draft)]).to_dict(),
                                   "turn": 3})
    inbox = Inbox(container.uow, container.clock)
    assert await inbox.store(CHANNEL, "m-1", {"type": "attachment", "attachment": item(in_message), "user": "u1"})
    for stored in (orphan, in_case, in_draft, in_message):
        aged(container, stored.path, days=5)
    aged(container, store.staff_path_for(orphan.sha256), days=5)
    aged(container, young.path, hours=47)
    killed = store.root / ".incoming" / "put-killed.part"  # a process killed while it received an upload
    killed.write_bytes(b"\x00" * 4096)
    aged(container, killed, hours=2)
    receiving = store.root / ".incoming" / "put-receiving.part"
    receiving.write_bytes(b"\x00" * 100)
    aged(container, receiving, minutes=10)
    orphan_bytes = orphan.size + store.staff_path_for(orphan.sha256).stat().st_size

    ran = await worker.scheduler.tick()
    assert not orphan.path.exists() and not store.staff_path_for(orphan.sha256).exists()
    assert not killed.exists()
    for kept in (young, in_case, in_draft, in_message):
        assert store.verify(kept.sha256), kept.original_name
    assert receiving.exists()
    assert "evidence_sweep" in ran
    result = await job_result(container, "2026-11-16")
    assert (result["files"], result["bytes"], result["incoming"], result["incoming_bytes"]) == (
        1, orphan_bytes, 1, 4096)
    assert "evidence_sweep" not in await worker.scheduler.tick()  # once a day, however often it ticks

    await drafts.set_data(person, {})  # the person gave up; the message is still to be handled
    container.clock.advance(days=1)  # and the young file is now 71 hours old
    assert "evidence_sweep" in await worker.scheduler.tick()
    assert not in_draft.path.exists() and not young.path.exists()
    assert store.verify(in_case.sha256) and store.verify(in_message.sha256)
    assert (await job_result(container, "2026-11-17"))["files"] == 2


async def test_a_new_upload_of_an_old_file_starts_its_grace_again(container, worker):
    store = container.evidence
    first = await store.put(TEXT)
    aged(container, first.path, days=5)
    again = await store.put(TEXT)  # another person sends the same file, to attach it now
    assert again.duplicate is True
    await worker.scheduler.tick()
    assert store.verify(first.sha256)


async def test_a_case_written_after_the_first_look_keeps_its_file(container, monkeypatch):
    """The check and the removal do not race with a submission: the evidence rows are asked again right
    before a file goes (here the first answer is made stale on purpose)."""
    from intake.evidence_sweep import build_evidence_sweep

    store = container.evidence
    stored = await store.put(png(7))
    aged(container, stored.path, days=5)
    await a_case_with(container, stored)
    sweep = build_evidence_sweep(container)

    async def stale(candidates: list[str]) -> set[str]:
        return set()

    monkeypatch.setattr(sweep, "references", stale)
    result = await sweep.run()
    assert result.files == 0 and store.verify(stored.sha256)


async def test_a_dry_run_only_counts(container):
    from intake.evidence_sweep import build_evidence_sweep

    stored = await container.evidence.put(TEXT)
    aged(container, stored.path, days=5)
    result = await build_evidence_sweep(container).run(dry_run=True)
    assert (result.files, result.bytes, result.dry_run) == (1, stored.size, True)
    assert container.evidence.verify(stored.sha256)



async def test_a_replay_between_the_sweeps_reads_keeps_the_file_its_draft_needs(container):
    """A reference moves from a web chat message not handled yet to the draft (the replay writes the draft,
    then empties the message's payload). Here the web chat's replay of a failed message runs right after the
    sweep's first read: read in the order references move (messages first), the sweep still sees the file
    in the message; drafts first, it would see it in neither and remove a file the draft now holds."""
    from aiogram.fsm.storage.memory import SimpleEventIsolation

    from intake.evidence_sweep import EvidenceSweep
    from web.chat.service import ChatService

    store = container.evidence
    stored = await store.put(png(9), original_name="screenshot.png")
    aged(container, stored.path, days=5)  # past the grace: only a reference keeps it
    drafts = DatabaseStorage(create_session_factory(container.engine))
    chat = ChatService(container, drafts, SimpleEventIsolation())
    user = uuid.uuid4().hex
    inbox = Inbox(container.uow, container.clock)
    row_id = await inbox.store(CHANNEL, f"{user[:16]}:m-1", {"type": "attachment", "attachment": item(stored),
                                                            "user": user, "lang": "zh"})
    await inbox.failed(row_id, "RuntimeError: database went away")  # left for the replay
    replayed: list[int] = []

    @contextlib.asynccontextmanager
    async def uow_then_replay():
        async with container.uow() as uow:
            yield uow
        if not replayed:  # between the sweep's first read and the next one
            replayed.append(await chat.replay())

    sweep = EvidenceSweep(store, uow_then_replay, container.clock, timedelta(hours=48))
    result = await sweep.run()
    assert replayed == [1]
    draft = await chat.draft(user)
    assert draft is not None and [e["sha256"] for e in draft.evidence] == [stored.sha256]  # moved to the draft
    async with container.uow() as uow:
        assert (await uow.session.get(InboxUpdate, row_id)).payload is None  # and left the message
    assert result.files == 0 and store.verify(stored.sha256)

@pytest.mark.redis
@pytest.mark.skipif(not TEST_REDIS_URL, reason="TEST_REDIS_URL is not set")
async def test_a_bots_draft_in_redis_keeps_its_file(container):
    from aiogram.fsm.storage.base import StorageKey
    from redis.asyncio import Redis

    from bot.storage import build_storage
    from db.crypto import bound_cipher
    from intake.evidence_sweep import EvidenceSweep, RedisDrafts

    store, cipher = container.evidence, bound_cipher(container.engine)
    prefix = f"qinglang-test:{uuid.uuid4().hex[:10]}"
    drafts = build_storage(TEST_REDIS_URL, None, redis_prefix=prefix, cipher=cipher)
    key = StorageKey(bot_id=7000000001, chat_id=42, user_id=42)
    stored = await store.put(png(8))
    aged(container, stored.path, days=5)
    sweep = EvidenceSweep(store, container.uow, container.clock, timedelta(hours=48),
                          redis_drafts=RedisDrafts(TEST_REDIS_URL, cipher, prefix=prefix))
    client = Redis.from_url(TEST_REDIS_URL)
    try:
        await drafts.set_data(key, {"draft": Draft(description="假货", evidence=[item(stored)]).to_dict()})
        stored_values = [await client.get(name) or b"" async for name in client.scan_iter(f"{prefix}:*")]
        assert stored_values and not any(stored.sha256.encode() in value for value in stored_values)  # sealed
        assert (await sweep.run()).files == 0 and store.verify(stored.sha256)  # read through the data key
        await drafts.set_data(key, {})
        assert (await sweep.run()).files == 1 and not stored.path.exists()
    finally:
        async for name in client.scan_iter(f"{prefix}:*"):
            await client.delete(name)
        await client.aclose()
        await drafts.close()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_the_sweep_from_the_command_line(tmp_path, database_url):
    env = {k: v for k, v in os.environ.items() if not k.startswith("QINGLANG_")}
    env.update(HOME=str(tmp_path), QINGLANG_DATA_DIR=str(tmp_path / "data"), QINGLANG_DATABASE_URL=database_url,
               PYTHONPATH=str(Path(__file__).resolve().parents[2]))  # this checkout's code, not another install

    def run(*args, env=env):
        return subprocess.run([sys.executable, "-m", "qinglang.cli", *args], env=env, capture_output=True,
                              text=True, timeout=120, cwd=tmp_path)

    assert run("migrate").returncode == 0
    sha256 = hashlib.sha256(TEXT).hexdigest()
    path = tmp_path / "data" / "evidence" / sha256[:2] / sha256[2:4] / sha256
    path.parent.mkdir(parents=True)
    path.write_bytes(TEXT)
    old = path.stat().st_mtime - 72 * 3600
    os.utime(path, (old, old))
    database_down = {**env, "QINGLANG_DATABASE_URL": "postgresql+asyncpg://postgres@127.0.0.1:1/none"}
    result = run("evidence", "sweep", env=database_down)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("qinglang: error: cannot sweep the evidence store: ") and path.exists()
    result = run("evidence", "sweep", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(
        f"would remove 1 unreferenced evidence files and 0 staff copies ({len(TEXT)} bytes)")
    assert path.exists()
    result = run("evidence", "sweep")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("removed 1 unreferenced evidence files") and not path.exists()
    env["QINGLANG_UNREFERENCED_GRACE_HOURS"] = "0.5"
    result = run("evidence", "sweep")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "QINGLANG_UNREFERENCED_GRACE_HOURS" in result.stderr and "Traceback" not in result.stderr
