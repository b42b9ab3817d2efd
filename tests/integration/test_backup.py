"""`qinglang backup` and `qinglang restore`: data made by the real services goes out and comes back identical,
on SQLite and PostgreSQL; every bad input ends in a clear error before anything is changed.

PostgreSQL needs pg_dump and pg_restore (Debian: postgresql-client; scripts/test.sh installs it when it
runs as root). Without them the PostgreSQL cases skip locally and FAIL in CI (CI=true).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select, text

from db.engine import create_engine
from db.models import Case, Complainant
from intake.cases import Actor, ComplainantInfo, EvidenceItem, NewCase
from nlu.taxonomy import Kind
from qinglang.backup import BackupError, check_backup, make_backup, restore_backup
from qinglang.bootstrap import build_container
from qinglang.datakey import key_file_path
from qinglang.settings import load_settings
from routing.rules import MerchantLocation
from tests.fakes.images import png

IN_YONGZHONG = MerchantLocation(in_district=True, street="永中街道", province="浙江省")
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
# the tables compared row by row after a restore, with the columns that identify a row
COMPARED = {
    "cases": "id", "case_events": "id", "evidence": "id", "complainants": "id", "case_units": "id",
    "case_deadlines": "id", "outbox": "id", "staff_users": "id",
}


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture
def pg_tools(backend) -> None:
    if backend != "postgresql":
        return
    missing = [tool for tool in ("pg_dump", "pg_restore") if shutil.which(tool) is None]
    if not missing:
        return
    message = f"backing up PostgreSQL needs {', '.join(missing)}"
    if in_ci():
        pytest.fail(message + " (CI=true: failing instead of skipping; scripts/test.sh installs postgresql-client "
                              "with apt-get when it runs as root)", pytrace=False)
    pytest.skip(message + " (install with: apt-get install postgresql-client)")


def settings_for(tmp_path: Path, name: str, database_url: str, nlu_cache_dir: Path, **overrides):
    return load_settings(env_file=None, data_dir=tmp_path / name, database_url=database_url,
                         nlu_cache_dir=nlu_cache_dir, **overrides)


async def stored(container, content: bytes, name: str) -> EvidenceItem:
    put = await container.evidence.put(content, original_name=name)
    return EvidenceItem(put.sha256, put.size, put.mime, name, "upload")


async def populate(container) -> dict[str, str]:
    """Two cases with evidence, a link, a reply and a walk through statuses; a file of an unfinished
    conversation in the store. Returns {label: case number}."""
    user = await container.accounts.create_user("triage1", "xiaobao", "triage")
    actor = Actor("staff", user.id)
    screenshot, order = await stored(container, png(1), "截图.png"), await stored(container, PDF, "订单.pdf")
    link = EvidenceItem("ab" * 32, 23, "text/uri-list", "https://v.douyin.com/abc", "link")
    tip = await container.cases.create(NewCase(
        kind=Kind.TIPOFF, category="price", channel="web", description="主播说原价999现在99，其实平时一直卖99",
        complainant=ComplainantInfo(name="李四", phone="13912345678"), merchant=IN_YONGZHONG, platform="抖音",
        evidence=(screenshot, order, link),
    ))
    await container.cases.accept(tip.id, actor)
    await container.cases.message(tip.id, actor, "请补充订单截图")
    complaint = await container.cases.create(NewCase(
        kind=Kind.COMPLAINT, category="consumer_rights", channel="telegram", description="羽绒服七天无理由退货不给退款",
        complainant=ComplainantInfo(channel_user_id="42", name="张三", phone="13800138000"), merchant=IN_YONGZHONG,
        platform="快手", evidence=(screenshot,),
    ))
    await container.evidence.put(png(2), original_name="draft.png")  # sent in a conversation not finished yet
    return {"tip": tip.number, "complaint": complaint.number}


async def snapshot(database_url: str) -> dict[str, list[tuple]]:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            return {table: [tuple(row) for row in await conn.execute(text(f"SELECT * FROM {table} ORDER BY {key}"))]
                    for table, key in COMPARED.items()}
    finally:
        await engine.dispose()


def store_contents(data_dir: Path) -> dict[str, bytes]:
    root = data_dir / "evidence"
    return {path.name: path.read_bytes() for path in root.glob("??/??/*") if path.is_file()}


async def test_backup_then_restore_into_an_empty_installation(
    container, settings, backend, pg_tools, fresh_database_url, tmp_path, nlu_cache_dir
):
    numbers = await populate(container)
    before = await snapshot(settings.database_url)

    report = await make_backup(settings, tmp_path / "backup", with_key=True)

    manifest = report.manifest
    assert manifest.problems == ()
    assert manifest.database.kind == backend and manifest.database.alembic_revision
    assert manifest.database.row_counts["cases"] == 2 and manifest.database.row_counts["evidence"] == 4
    assert {e.sha256 for e in manifest.evidence} == set(store_contents(settings.storage.data_dir))
    assert len(manifest.evidence) == 3  # the screenshot once, the order, the draft's file; no file for the link
    written = json.loads((tmp_path / "backup" / "manifest.json").read_text())
    assert written["created_at"].endswith("+00:00") and written["format_version"] == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".backup.partial")]

    target = settings_for(tmp_path, "restored", fresh_database_url, nlu_cache_dir)
    restored = await restore_backup(target, tmp_path / "backup")

    assert restored.problems == ()
    assert restored.evidence_copied == 3 and restored.key_installed == key_file_path(target.storage.data_dir)
    assert await snapshot(fresh_database_url) == before
    assert store_contents(target.storage.data_dir) == store_contents(settings.storage.data_dir)
    # the restored installation works: cases read back, complainants decrypt with the restored key
    service = build_container(target)
    try:
        async with service.uow() as uow:
            names = (await uow.session.execute(select(Complainant.name).order_by(Complainant.id))).scalars().all()
            case_numbers = (await uow.session.execute(select(Case.number).order_by(Case.id))).scalars().all()
        assert names == ["李四", "张三"] and case_numbers == [numbers["tip"], numbers["complaint"]]
        assert all(service.evidence.verify(sha) for sha in store_contents(target.storage.data_dir))
    finally:
        await service.close()


async def test_restore_refuses_a_database_with_data_unless_forced(container, settings, pg_tools, tmp_path):
    await populate(container)
    await make_backup(settings, tmp_path / "backup")
    before = await snapshot(settings.database_url)
    await container.cases.create(NewCase(
        kind=Kind.CONSULTATION, category="other", channel="web", description="直播间的优惠券怎么用",
        complainant=ComplainantInfo(name="王五"),
    ))

    with pytest.raises(BackupError, match=r"already holds data \(3 cases\).*--force"):
        await restore_backup(settings, tmp_path / "backup")
    assert len((await snapshot(settings.database_url))["cases"]) == 3

    await container.engine.dispose()  # the service stops before a restore
    report = await restore_backup(settings, tmp_path / "backup", force=True)
    assert report.problems == () and report.evidence_present == 3 and report.evidence_copied == 0
    assert await snapshot(settings.database_url) == before


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_restore_needs_the_data_key_of_the_backup(container, settings, tmp_path, nlu_cache_dir):
    await populate(container)
    report = await make_backup(settings, tmp_path / "backup")  # without the key, as it should be kept
    key_text = key_file_path(settings.storage.data_dir).read_text().strip()
    assert len(report.manifest.data_key_ids) == 1
    assert not (tmp_path / "backup" / "secrets").exists()

    target_db = tmp_path / "target.db"
    target = settings_for(tmp_path, "restored", f"sqlite+aiosqlite:///{target_db}", nlu_cache_dir)
    with pytest.raises(BackupError, match=f"data key {report.manifest.data_key_ids[0]}.*nothing was restored"):
        await restore_backup(target, tmp_path / "backup")
    assert not target_db.exists() and not (target.storage.data_dir / "evidence").exists()

    target = settings_for(tmp_path, "restored", f"sqlite+aiosqlite:///{target_db}", nlu_cache_dir,
                          old_data_keys=key_text)
    assert (await restore_backup(target, tmp_path / "backup")).problems == ()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_sqlite_backup_runs_beside_a_writer_and_copies_only_what_was_committed(
    container, settings, tmp_path
):
    await populate(container)
    writer = sqlite3.connect(settings.database_url.removeprefix("sqlite+aiosqlite:///"), isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("INSERT INTO holiday_overrides (day, is_workday, note) VALUES ('2026-12-31', 0, 'x')")
        report = await make_backup(settings, tmp_path / "backup")  # does not wait for the writer
        writer.execute("COMMIT")
    finally:
        writer.close()
    assert report.manifest.database.row_counts["holiday_overrides"] == 0
    assert report.manifest.database.row_counts["cases"] == 2


async def test_restore_refuses_an_altered_backup_before_touching_anything(container, settings, tmp_path):
    await populate(container)
    await make_backup(settings, tmp_path / "backup")
    victim = next((tmp_path / "backup" / "evidence").glob("??/??/*"))
    victim.write_bytes(victim.read_bytes() + b"\x00")
    rows_before = await snapshot(settings.database_url)
    store_before = store_contents(settings.storage.data_dir)

    with pytest.raises(BackupError, match=f"damaged, nothing was restored: evidence/.*{victim.name} does not match"):
        await restore_backup(settings, tmp_path / "backup", force=True)
    with pytest.raises(BackupError, match="damaged"):
        check_backup(tmp_path / "backup")
    assert await snapshot(settings.database_url) == rows_before
    assert store_contents(settings.storage.data_dir) == store_before


# -- the command line ------------------------------------------------------------------------------------


def run(args, env, timeout=120):
    return subprocess.run([sys.executable, "-m", "qinglang.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=env["HOME"])


@pytest.fixture
def env(tmp_path, settings):
    base = {k: v for k, v in os.environ.items() if not k.startswith("QINGLANG_")}
    base.update(HOME=str(tmp_path), QINGLANG_DATA_DIR=str(settings.storage.data_dir),
                QINGLANG_DATABASE_URL=settings.database_url)
    return base


def one_line_error(result, code, *fragments):
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("qinglang: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_cli_backup_names_missing_and_damaged_evidence_and_keeps_the_rest(container, settings, env, tmp_path):
    numbers = await populate(container)
    store = settings.storage.data_dir / "evidence"
    order = next(p for p in store.glob("??/??/*") if p.read_bytes() == PDF)
    order.unlink()
    screenshot = next(p for p in store.glob("??/??/*") if p.read_bytes() == png(1))
    screenshot.write_bytes(png(3))

    result = run(["backup", "--out", str(tmp_path / "backup")], env)

    assert result.returncode == 1, result.stderr
    errors = result.stderr.strip().splitlines()
    assert any(order.name in line and numbers["tip"] in line and "missing" in line for line in errors), errors
    assert any(screenshot.name in line and numbers["tip"] in line and numbers["complaint"] in line
               and "damaged" in line for line in errors), errors
    assert "backup written to" in result.stdout
    manifest = check_backup(tmp_path / "backup")  # complete and intact, with its problems recorded
    assert {p.problem for p in manifest.problems} == {"missing", "damaged"}
    assert len(manifest.evidence) == 1 and (tmp_path / "backup" / "database.sqlite3").is_file()

    checked = run(["restore", "--from", str(tmp_path / "backup"), "--check"], env)
    assert checked.returncode == 1 and "intact" in checked.stdout, checked.stderr

    env["QINGLANG_DATA_DIR"], env["QINGLANG_DATABASE_URL"] = str(tmp_path / "new"), ""
    env["QINGLANG_OLD_DATA_KEYS"] = key_file_path(settings.storage.data_dir).read_text().strip()
    restored = run(["restore", "--from", str(tmp_path / "backup")], env)
    assert restored.returncode == 1
    assert "already when the backup was made" in restored.stderr and order.name in restored.stderr


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_cli_round_trip_and_check(container, settings, env, tmp_path):
    await populate(container)
    made = run(["backup", "--out", str(tmp_path / "backup"), "--with-key"], env)
    assert made.returncode == 0, made.stderr
    assert "evidence: 3 files" in made.stdout

    checked = run(["restore", "--from", str(tmp_path / "backup"), "--check"], env)
    assert checked.returncode == 0 and "is intact" in checked.stdout, checked.stderr

    env["QINGLANG_DATA_DIR"], env["QINGLANG_DATABASE_URL"] = str(tmp_path / "new"), ""
    restored = run(["restore", "--from", str(tmp_path / "backup")], env)
    assert restored.returncode == 0, restored.stderr
    assert "evidence files copied: 3" in restored.stdout and "data key file restored" in restored.stdout
    again = run(["restore", "--from", str(tmp_path / "backup")], env)
    one_line_error(again, 2, "already holds data (2 cases)", "--force")


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_cli_backup_refuses_a_directory_that_is_not_empty(env, tmp_path):
    out = tmp_path / "backup"
    out.mkdir()
    (out / "old.txt").write_text("something")
    one_line_error(run(["backup", "--out", str(out)], env), 2, "is not empty")
    assert sorted(p.name for p in out.iterdir()) == ["old.txt"]
    assert [p.name for p in tmp_path.iterdir() if ".partial-" in p.name] == []


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (None, "manifest.json is missing: .* is not a complete qinglang backup"),
        ('{"format": "qinglang-backup", "format_version": 1,', "is not valid JSON"),
        ('{"format": "qinglang-backup", "format_version": 7}', "format version 7 is not supported"),
        ('["a list"]', "not a qinglang backup manifest"),
    ],
)
async def test_restore_rejects_a_bad_manifest(settings, tmp_path, content, fragment):
    backup = tmp_path / "backup"
    backup.mkdir()
    if content is not None:
        (backup / "manifest.json").write_text(content)
    database = Path(settings.database_url.removeprefix("sqlite+aiosqlite:///"))
    before = database.read_bytes()
    with pytest.raises(BackupError, match=fragment):
        check_backup(backup)
    with pytest.raises(BackupError, match=fragment):
        await restore_backup(settings, backup, force=True)
    assert database.read_bytes() == before


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_cli_restore_of_a_garbled_manifest_is_a_one_line_error(env, tmp_path):
    (tmp_path / "backup").mkdir()
    (tmp_path / "backup" / "manifest.json").write_text("{not json")
    one_line_error(run(["restore", "--from", str(tmp_path / "backup")], env), 2, "is not valid JSON")


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_cli_unreachable_database_and_missing_pg_dump(env, tmp_path):
    env["QINGLANG_DATABASE_URL"] = "postgresql+asyncpg://postgres:secret@127.0.0.1:1/none"
    missing_tools = dict(env, PATH=str(tmp_path / "empty-path"))
    one_line_error(run(["backup", "--out", str(tmp_path / "b1")], missing_tools), 2,
                   "pg_dump not found on PATH", "postgresql-client")
    if shutil.which("pg_dump"):
        failed = run(["backup", "--out", str(tmp_path / "b2")], env)
        one_line_error(failed, 2, "cannot reach the database postgresql+asyncpg://postgres:***@127.0.0.1:1/none")
        assert "secret" not in failed.stderr
    assert not (tmp_path / "b1").exists() and not (tmp_path / "b2").exists()


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_cli_pg_dump_older_than_the_server(env, tmp_path, pg_tools):
    fake = tmp_path / "old-bin"
    fake.mkdir()
    (fake / "pg_dump").write_text("#!/bin/sh\necho 'pg_dump (PostgreSQL) 9.6.24'\n")
    (fake / "pg_dump").chmod(0o755)
    env["PATH"] = f"{fake}:{env['PATH']}"
    one_line_error(run(["backup", "--out", str(tmp_path / "backup")], env), 2,
                   "pg_dump 9", "is older than the database server")
    assert not (tmp_path / "backup").exists()
