"""The `qinglang` command line as a user runs it: real processes, real database, one-line errors."""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.net import free_port

ROOT = Path(__file__).resolve().parents[2]


def run(args, env, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "qinglang.cli", *args],
        env=env, capture_output=True, text=True, timeout=timeout, cwd=env["HOME"],
    )


@pytest.fixture
def env(tmp_path, database_url):
    base = {k: v for k, v in os.environ.items() if not k.startswith("QINGLANG_")}
    base.update(HOME=str(tmp_path), QINGLANG_DATA_DIR=str(tmp_path / "data"), QINGLANG_DATABASE_URL=database_url)
    return base


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("qinglang: error: ")
    for fragment in fragments:
        assert fragment in lines[0]


def test_migrate_then_units_and_users(env):
    migrated = run(["migrate"], env)
    assert migrated.returncode == 0, migrated.stderr
    assert "database at head" in migrated.stdout

    units = run(["units", "list"], env)
    assert units.returncode == 0
    codes = [line.split("\t")[0] for line in units.stdout.splitlines()]
    assert {"xiaobao", "jiajing", "suo_yongzhong"} <= set(codes)

    name = f"u{uuid.uuid4().hex[:8]}"
    created = run(["users", "create", name, "--unit", "消保分局", "--role", "triage"], env)
    assert created.returncode == 0, created.stderr
    assert "password: " in created.stdout

    again = run(["users", "create", name, "--unit", "xiaobao", "--role", "triage"], env)
    assert_one_line_error(again, "exists already")


def test_users_create_with_api_token_prints_token_last(env):
    assert run(["migrate"], env).returncode == 0
    name = f"bot{uuid.uuid4().hex[:8]}"
    created = run(["users", "create", name, "--unit", "jiajing", "--role", "handler", "--api-token"], env)
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip().splitlines()[-1]
    assert len(token) >= 40 and " " not in token
    # the token is stored only as its hash
    import asyncio

    from db.engine import create_engine
    from sqlalchemy import text

    async def stored():
        engine = create_engine(env["QINGLANG_DATABASE_URL"])
        async with engine.connect() as conn:
            row = (await conn.execute(text("SELECT api_token_hash, password_hash FROM staff_users WHERE username=:u"),
                                      {"u": name})).one()
        await engine.dispose()
        return row

    token_hash, password_hash = asyncio.run(stored())
    assert token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert password_hash.startswith("$argon2id$")


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--unit", "天文台", "--role", "handler"], ["unknown unit '天文台'", "qinglang units list"]),
        (["--unit", "xiaobao", "--role", "boss"], ["unknown role 'boss'", "admin, triage, handler, leader"]),
    ],
)
def test_users_create_bad_input(env, args, fragments):
    assert run(["migrate"], env).returncode == 0
    name = f"x{uuid.uuid4().hex[:8]}"
    result = run(["users", "create", name, *args], env)
    assert_one_line_error(result, *fragments)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_malformed_database_url(env):
    env["QINGLANG_DATABASE_URL"] = "postgres//oops"
    assert_one_line_error(run(["migrate"], env), "QINGLANG_DATABASE_URL")


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_unreachable_database(env):
    env["QINGLANG_DATABASE_URL"] = "postgresql+asyncpg://postgres@127.0.0.1:1/none"
    assert_one_line_error(run(["migrate"], env), "cannot migrate the database")


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_unwritable_data_directory(env, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    env["QINGLANG_DATA_DIR"] = str(blocker / "data")
    env.pop("QINGLANG_DATABASE_URL")
    assert_one_line_error(run(["migrate"], env), "data directory", "QINGLANG_DATA_DIR")


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("variable", "content", "fragments"),
    [
        ("QINGLANG_ROUTING_FILE", "rules:\n  - id: a\n    match: {kind: [complaint]}\n    route: {lead: nowhere}\n",
         ["rules.yaml:4:", "nowhere"]),
        ("QINGLANG_DEADLINES_FILE",
         "clocks:\n  - id: x\n    labels: {zh: 甲, en: a}\n    applies_to: [complaint]\n    starts_at: whenever\n"
         "    versions:\n      - {effective_from: 2020-01-01, length: 7, unit: working_days, basis: b}\n",
         ["deadlines.yaml:5:", "whenever"]),
        ("QINGLANG_UNITS_FILE", "district: {name: 龙湾区}\nunits: [\n", ["units.yaml:", "YAML"]),
    ],
)
def test_bad_rule_files_are_one_line_errors_and_write_nothing(env, tmp_path, variable, content, fragments):
    name = {"QINGLANG_ROUTING_FILE": "rules.yaml", "QINGLANG_DEADLINES_FILE": "deadlines.yaml",
            "QINGLANG_UNITS_FILE": "units.yaml"}[variable]
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    env[variable] = str(path)
    env.pop("QINGLANG_DATABASE_URL")
    assert_one_line_error(run(["migrate"], env), *fragments)
    assert not (tmp_path / "data").exists()



def test_serve_answers_healthz(env):
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "qinglang.cli", "serve", "--port", str(port)],
        env=env, cwd=env["HOME"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        body = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and body is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                    body = json.loads(response.read())
            except OSError:
                if process.poll() is not None:
                    pytest.fail(f"serve exited: {process.stderr.read()}")
                time.sleep(0.2)
        assert body is not None, "no answer from /healthz"
        import qinglang

        assert body == {"status": "ok", "version": qinglang.__version__}
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as response:
            assert json.loads(response.read()) == {"status": "ok", "version": qinglang.__version__, "database": "ok"}
        process.terminate()  # SIGTERM: a graceful stop, exit status 0
        assert process.wait(timeout=40) == 0, process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=20)


async def _truncate_everything(url: str) -> None:
    from db.engine import create_engine
    from tests.conftest import _truncate

    engine = create_engine(url)
    try:
        await _truncate(engine)
    finally:
        await engine.dispose()


def test_worker_runs_the_daily_jobs_and_stops_on_sigterm(env):
    import asyncio
    import signal

    from sqlalchemy import delete, select

    from db.engine import create_engine
    from db.models import ScheduledRun

    assert run(["migrate"], env).returncode == 0
    if env["QINGLANG_DATABASE_URL"].startswith("postgresql"):
        # the shared database may hold an earlier test's complainants, encrypted with that test's data key
        asyncio.run(_truncate_everything(env["QINGLANG_DATABASE_URL"]))
        assert run(["migrate"], env).returncode == 0  # the units again
    port = free_port()
    env = {**env, "QINGLANG_SCHEDULE_TIME": "00:00", "QINGLANG_SCHEDULE_POLL": "0.2",
           "QINGLANG_WORKER_PORT": str(port)}

    async def runs(*, forget: bool = False) -> list[tuple[str, str]]:
        engine = create_engine(env["QINGLANG_DATABASE_URL"])
        try:
            async with engine.begin() as conn:
                if forget:  # a shared PostgreSQL database may hold the runs of an earlier `serve`
                    await conn.execute(delete(ScheduledRun))
                return [tuple(r) for r in (await conn.execute(select(ScheduledRun.job, ScheduledRun.status))).all()]
        finally:
            await engine.dispose()

    assert asyncio.run(runs(forget=True)) == []
    process = subprocess.Popen([sys.executable, "-m", "qinglang.cli", "worker"], env=env, cwd=env["HOME"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert f"metrics on http://127.0.0.1:{port}/metrics" in process.stdout.readline()
        assert "running" in process.stdout.readline()  # printed once it listens for SIGTERM
        deadline = time.monotonic() + 60
        done: list[tuple[str, str]] = []
        while time.monotonic() < deadline and len(done) < 7:
            if process.poll() is not None:
                pytest.fail(f"worker exited: {process.stderr.read()}")
            time.sleep(0.3)
            done = asyncio.run(runs())
        assert sorted(done) == sorted((job, "done") for job in
                                      ("reminders", "escalation", "halfway", "surveys", "consultations",
                                       "rate_counters", "evidence_sweep"))
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as response:
            assert json.loads(response.read())["database"] == "ok"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            metrics = response.read().decode()
        for job in ("reminders", "escalation", "halfway", "surveys", "consultations", "rate_counters",
                    "evidence_sweep"):
            assert f'qinglang_scheduled_jobs_total{{job="{job}",outcome="done"}} 1.0' in metrics
        assert "qinglang_database_up 1.0" in metrics
        assert 'qinglang_outbox_depth{status="pending"}' in metrics
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "Traceback" not in err


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_purge_from_the_command_line(env):
    """The purge itself is tested in test_personal_data.py; here: the command's words and refusals."""
    assert run(["migrate"], env).returncode == 0
    result = run(["purge", "--dry-run"], {**env, "QINGLANG_RETENTION_DAYS": "0"})
    assert result.returncode == 0, result.stderr
    assert "no retention period is set" in result.stdout
    result = run(["purge", "--dry-run"], env)  # the default period, nothing closed yet
    assert result.returncode == 0, result.stderr
    assert re.search(r"^would purge the personal data of 0 cases closed before \d{4}-\d\d-\d\d", result.stdout)
    assert_one_line_error(run(["purge", "--before", "2999-01-01"], env))
    result = run(["purge", "--before", "yesterday"], env)
    assert result.returncode == 2 and "'yesterday' does not match the format '%Y-%m-%d'" in result.stderr


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_bot_replica_needs_a_token(env):
    assert_one_line_error(run(["serve", "--only", "bot", "--no-migrate"], env), "--only bot needs QINGLANG_BOT_TOKEN")


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_worker_refuses_a_port_in_use(env):
    assert run(["migrate"], env).returncode == 0
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run(["worker", "--port", str(port)], env)
    assert_one_line_error(result, f"cannot listen on 127.0.0.1:{port}", "QINGLANG_WORKER_PORT")
