"""Load: N simulated Telegram users through complete conversations against webhook replicas on
PostgreSQL + Redis, then a check that nothing was lost or done twice.

    .venv/bin/python bench/load.py [--users 500] [--replicas 2] [--duration S] [--steps K]
                                   [--database-url ADMIN_URL] [--redis-url URL] [--keep] [--json FILE]

What runs (each in its own process, as in production):
- the fake Telegram Bot API (tests/fakes/telegram_process.py), standing in for Telegram;
- a fresh database `qinglang_load_<random>` (created here, dropped at the end unless --keep), migrated
  and given its units as `qinglang migrate` does (in this process), and a triage account with an API token;
- `--replicas` × `qinglang serve --only bot --no-migrate` in webhook mode (own ports, shared data dir,
  shared Redis for drafts and per-user locks), one `qinglang serve --only web` (the staff's JSON API)
  and one `qinglang worker --port P` (the outbox; its /metrics gives the send counts in the report),
  as docker-compose.yml runs them;
- this process: the users, a round-robin load balancer in front of the replicas (like nginx: a refused
  connection goes to the next replica at once; a dropped connection, a timeout or a 5xx goes back to
  "Telegram", which delivers the update again after a back-off), and "staff" accepting each new case
  through the JSON API of the web process (so the worker has a notice to deliver for every case).

Each user: describe the problem → confirm → order number → merchant in the district → street → a
photo → done → name → phone → consent → submit → case number (11 updates, as tests/integration/
bot_driver.py), waiting for the bot's reply (read from the fake Bot API) before the next step.

Measured: webhook response time and reply latency (update sent → reply recorded by the fake) p50/p95/
p99, throughput, errors (non-2xx, dropped connections, timeouts, missing or unexpected replies), RSS
and CPU of every process each second, and what the app's PostgreSQL sessions wait on (pg_stat_activity).

Checked at the end (DB + Redis + the fake's record): every text each user sent is in their case or their
draft, every case number is unique, each user has at most one case (exactly one after a receipt), no old
update is applied again after the receipt, every inbox row is handled, every notice is sent once or
flagged (undeliverable/unconfirmed) and none reached Telegram twice. Exit status 1 if anything was lost
or duplicated (or, with --strict, on any error).

Faults (tests/integration/test_faults.py) reuse this machinery: Cluster.kill_replica/kill_worker,
TcpProxy in front of PostgreSQL/Redis (Options.pg_proxy/redis_proxy), a stand-in Rasa server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import itertools
import json
import os
import random
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
from aiogram.fsm.storage.base import StorageKey  # noqa: E402
from redis.asyncio import Redis  # noqa: E402
from sqlalchemy import select, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from sqlalchemy.ext.asyncio import create_async_engine  # noqa: E402

from bot.storage import build_storage  # noqa: E402
from db import migrate  # noqa: E402
from db.crypto import bound_cipher, new_key_text  # noqa: E402
from db.models import Case, Complainant, Evidence, InboxUpdate, OutboxMessage  # noqa: E402
from qinglang.bootstrap import build_container  # noqa: E402
from qinglang.settings import load_settings, normalise_database_url  # noqa: E402
from routing.sync import sync_units  # noqa: E402
from tests.fakes.images import png  # noqa: E402
from tests.fakes.rasa import FakeRasa  # noqa: E402
from tests.fakes.tcp_proxy import TcpProxy  # noqa: E402
from tests.net import free_port  # noqa: E402

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
WEBHOOK_PATH = "/telegram/webhook"

# -- the dialogue (tests/integration/test_bot_flows.py) ----------------------------------------------

STORY = "我昨天在抖音「好物严选」直播间花了399元买了一件羊绒衫，收到后送检根本不含羊绒，以假充真，我要投诉退款"
CONFIRM_PREFIX = "我理解的情况是：\n问题类别：产品质量违法"
ORDER_Q = "订单号是多少？（在订单详情页可以复制）"
MERCHANT_Q = "商家（发货或经营地）在龙湾区吗？这决定由哪个部门处理。"
STREET_Q = "商家在龙湾区哪个街道？"
EVIDENCE_Q = "请发送相关证据：商品或订单截图、聊天记录、直播录屏、照片，或直播间/商品链接。全部发完请点“发送完毕”。"
PHOTO_PREFIX = "已收到 1 个文件"
NAME_Q = "投诉需要您的真实姓名和联系电话，以便调解和告知结果。\n请输入您的姓名："
PHONE_Q = "请输入您的手机号："
CONSENT_PREFIX = "隐私说明："
SUMMARY_PREFIX = "请核对登记内容：\n问题类别：产品质量违法"
RECEIPT_PREFIX = "✅ 已登记，编号 "
# not answers: the bot apologises when handling failed (the update is kept and replayed), or throttles
APOLOGY = "抱歉，系统暂时出了点问题。"
THROTTLED = "您发送得太快了"
CASE_NUMBER = re.compile(r"[A-Z]{1,6}-\d{4}-\d{6}")


@dataclass(frozen=True)
class Step:
    name: str
    kind: str  # text | press | photo
    value: str  # the text, the button label, or "" for the photo
    expect: str  # the reply, exactly or (when `prefix`) its beginning
    prefix: bool = False
    field: str | None = None  # where the text must be found afterwards (case or draft)

    def matches(self, text: str) -> bool:
        return text.startswith(self.expect) if self.prefix else text == self.expect


def conversation(uid: int) -> list[Step]:
    order, phone = f"DY{uid % 10**13:013d}", f"139{uid % 10**8:08d}"
    return [
        Step("describe", "text", STORY, CONFIRM_PREFIX, True, "description"),
        Step("confirm", "press", "对，继续", ORDER_Q),
        Step("order", "text", order, MERCHANT_Q, field="order_number"),
        Step("in_district", "press", "在龙湾区", STREET_Q),
        Step("street", "press", "永中街道", EVIDENCE_Q),
        Step("photo", "photo", "", PHOTO_PREFIX, True, "evidence"),
        Step("evidence_done", "press", "发送完毕", NAME_Q),
        Step("name", "text", "张三", PHONE_Q, field="name"),
        Step("phone", "text", phone, CONSENT_PREFIX, True, "phone"),
        Step("consent", "press", "同意", SUMMARY_PREFIX, True),
        Step("submit", "press", "✅ 提交", RECEIPT_PREFIX, True),
    ]


# -- options ------------------------------------------------------------------------------------------

@dataclass
class Options:
    users: int = 500  # concurrent simulated users
    replicas: int = 2
    duration: float = 0.0  # > 0: each user slot starts new conversations (new people) until then
    steps: int | None = None  # only the first K steps of each conversation (the rest stay a draft)
    think: float = 0.0  # seconds between a reply and the user's next update
    ramp: float = 5.0  # users start spread over this many seconds
    database_url: str | None = None  # admin URL of the PostgreSQL server; a database is created on it
    redis_url: str | None = None
    keep: bool = False  # keep the database, Redis keys and run directory
    photo: bool = True
    accept: bool = True  # staff accept each case through the API: a notice per case for the worker
    worker: bool = True
    max_connections: int = 100  # Telegram's webhook max_connections (1-100)
    post_timeout: float = 60.0  # Telegram gives up on a webhook request after about a minute
    redeliver_for: float = 600.0  # how long "Telegram" keeps delivering an unacknowledged update
    reply_timeout: float = 120.0  # a user gives up waiting for a reply
    settle_timeout: float = 120.0  # after the traffic: wait for the inbox and the outbox to be done
    inbox_replay_seconds: float | None = None  # QINGLANG_INBOX_REPLAY_SECONDS of the replicas
    notify_poll: float = 0.5
    pg_proxy: bool = False  # PostgreSQL through a TcpProxy (fault tests)
    redis_proxy: bool = False
    rasa: bool = False  # NLU backend rasa, pointing at a FakeRasa run here
    rasa_timeout: float = 1.0
    sample_every: float = 1.0
    extra_env: dict[str, str] = field(default_factory=dict)
    run_dir: Path | None = None
    quiet: bool = False
    seed: int | None = None


def _admin_url(opts: Options) -> str:
    url = opts.database_url or os.environ.get("TEST_DATABASE_URL") or "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
    return normalise_database_url(url)


def _redis_url(opts: Options) -> str:
    return opts.redis_url or os.environ.get("TEST_REDIS_URL") or "redis://127.0.0.1:6379/0"



def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def _log(opts: Options, message: str) -> None:
    if not opts.quiet:
        print(f"[load {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- processes -------------------------------------------------------------------------------------

class Proc:
    """A child process with its output in a log file; restartable under the same name."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], cwd: Path, log_path: Path) -> None:
        self.name, self.argv, self.env, self.cwd, self.log_path = name, argv, env, cwd, log_path
        self.popen: subprocess.Popen | None = None
        self.starts = 0
        self.kills = 0

    def start(self, *, stdout_pipe: bool = False) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it
        log.write(f"\n===== start {self.starts + 1} of {self.name} at {time.strftime('%H:%M:%S')} =====\n".encode())
        log.flush()
        self.popen = subprocess.Popen(self.argv, env=self.env, cwd=self.cwd, start_new_session=True,
                                      stdout=subprocess.PIPE if stdout_pipe else log, stderr=log)
        log.close()
        self.starts += 1

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen is not None and self.popen.poll() is None else None

    @property
    def alive(self) -> bool:
        return self.pid is not None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        os.kill(self.popen.pid, sig)
        if sig == signal.SIGKILL:
            self.popen.wait()
            self.kills += 1

    async def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout`; the exit code."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.popen.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.to_thread(self.popen.wait), timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.popen.pid, signal.SIGKILL)
                await asyncio.to_thread(self.popen.wait)
        return self.popen.returncode

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _proc_stats(pid: int) -> tuple[float, float] | None:
    """(RSS in MiB, CPU seconds) of a process, from /proc."""
    try:
        with open(f"/proc/{pid}/status") as f:
            rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        with open(f"/proc/{pid}/stat") as f:
            parts = f.read().rsplit(")", 1)[1].split()
        ticks = int(parts[11]) + int(parts[12])
        return rss / 1024, ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, StopIteration, ValueError, IndexError):
        return None


class Sampler:
    """RSS and CPU of every process, each `every` seconds, with events (kills, outages) on the time line."""

    def __init__(self, procs: dict[str, Any], every: float = 1.0) -> None:
        self.procs = procs  # name -> Proc or "self"
        self.every = every
        self.samples: list[tuple[float, dict[str, float | None]]] = []
        self.cpu: dict[str, list[tuple[float, float]]] = defaultdict(list)
        self.events: list[tuple[float, str]] = []
        self.t0 = time.monotonic()
        self._task: asyncio.Task | None = None

    def event(self, what: str) -> None:
        self.events.append((time.monotonic() - self.t0, what))

    def sample(self) -> None:
        now = time.monotonic() - self.t0
        row: dict[str, float | None] = {}
        for name, proc in self.procs.items():
            pid = os.getpid() if proc == "self" else proc.pid
            stats = _proc_stats(pid) if pid else None
            row[name] = stats[0] if stats else None
            if stats:
                self.cpu[name].append((now, stats[1]))
        with contextlib.suppress(OSError):
            with open("/proc/loadavg") as f:
                row["load1"] = float(f.read().split()[0])
        self.samples.append((now, row))

    async def _run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self.every)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.sample()

    def table(self, rows: int = 16) -> str:
        names = [*self.procs, "load1"]
        if not self.samples:
            return "(no samples)"
        step = max(1, len(self.samples) // rows)
        chosen = self.samples[::step]
        if chosen[-1] is not self.samples[-1]:
            chosen.append(self.samples[-1])
        head = f"{'t (s)':>7} " + " ".join(f"{n:>10}" for n in names) + "   events"
        lines = [head + "   (RSS MiB; load1 = the machine's 1-minute load average)"]
        last_t = -1.0
        for t, row in chosen:
            events = "; ".join(what for et, what in self.events if last_t < et <= t)
            cells = " ".join(f"{row[n]:>10.1f}" if row.get(n) is not None else f"{'-':>10}" for n in names)
            lines.append(f"{t:>7.1f} {cells}   {events}")
            last_t = t
        peak = " ".join(f"{max((r.get(n) or 0) for _, r in self.samples):>10.1f}" for n in names)
        lines.append(f"{'peak':>7} {peak}")
        return "\n".join(lines)

    def cpu_percent(self) -> dict[str, float]:
        out = {}
        for name, points in self.cpu.items():
            if len(points) >= 2 and points[-1][0] > points[0][0]:
                # restarts reset the counter: add up the increasing runs
                used = sum(max(0.0, b[1] - a[1]) for a, b in itertools.pairwise(points))
                out[name] = round(100 * used / (points[-1][0] - points[0][0]), 1)
        return out

    def as_dict(self) -> dict[str, Any]:
        return {"samples": [{"t": round(t, 1), **{k: (round(v, 1) if v else None) for k, v in row.items()}}
                            for t, row in self.samples],
                "events": [{"t": round(t, 1), "what": w} for t, w in self.events],
                "cpu_percent": self.cpu_percent()}


# -- the fake Bot API (control port) ----------------------------------------------------------------

class FakeControl:
    def __init__(self, session: aiohttp.ClientSession, port: int) -> None:
        self.session, self.base = session, f"http://127.0.0.1:{port}"

    async def add_file(self, content: bytes, name: str) -> dict[str, Any]:
        async with self.session.post(f"{self.base}/files", params={"name": name}, data=content) as r:
            r.raise_for_status()
            return await r.json()

    async def wait(self, chat_id: int, after: int, timeout: float) -> list[dict[str, Any]]:
        async with self.session.get(f"{self.base}/wait", params={"chat_id": chat_id, "after": after, "timeout": timeout},
                                    timeout=aiohttp.ClientTimeout(total=timeout + 30)) as r:
            r.raise_for_status()
            return (await r.json())["messages"]

    async def sent(self, method: str | None = None) -> list[dict[str, Any]]:
        params = {"method": method} if method else {}
        async with self.session.get(f"{self.base}/sent", params=params) as r:
            r.raise_for_status()
            return (await r.json())["calls"]

    async def fault(self, **spec: Any) -> None:
        async with self.session.post(f"{self.base}/fault", json=spec) as r:
            r.raise_for_status()

    async def clear_faults(self) -> None:
        async with self.session.post(f"{self.base}/faults/clear") as r:
            r.raise_for_status()

    async def stats(self) -> dict[str, int]:
        async with self.session.get(f"{self.base}/stats") as r:
            r.raise_for_status()
            return await r.json()


# -- the cluster -------------------------------------------------------------------------------------

class ClusterError(RuntimeError):
    pass


class Cluster:
    """Everything the users talk to; an async context manager that cleans up after itself."""

    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.admin_url = _admin_url(opts)
        self.redis_base = _redis_url(opts)
        self.db_name = f"qinglang_load_{uuid.uuid4().hex[:10]}"
        self.db_url = make_url(self.admin_url).set(database=self.db_name).render_as_string(hide_password=False)
        self.bot_id = random.SystemRandom().randint(10**9, 9 * 10**9)  # namespaces the Redis keys of this run
        self.token = f"{self.bot_id}:{secrets.token_urlsafe(30)}"
        self.secret = secrets.token_urlsafe(32).replace("-", "_")
        self.data_key = new_key_text()
        self._own_run_dir = opts.run_dir is None
        self.run_dir = Path(opts.run_dir or tempfile.mkdtemp(prefix="qinglang-load-"))
        self.data_dir = self.run_dir / "data"
        self.nlu_cache = Path(tempfile.gettempdir()) / "qinglang-load-nlu-cache"
        self.session: aiohttp.ClientSession | None = None
        self.fake_proc: Proc | None = None
        self.fake: FakeControl | None = None
        self.fake_api_port = 0
        self.replicas: list[Proc] = []
        self.ports: list[int] = []
        self.worker: Proc | None = None
        self.web: Proc | None = None
        self.web_port = 0
        self.worker_port = 0
        self.pg_proxy: TcpProxy | None = None
        self.redis_proxy: TcpProxy | None = None
        self.rasa: FakeRasa | None = None
        self.sampler: Sampler | None = None
        self.staff_token: str | None = None
        self.updates = Updates(self.bot_id)
        self.container = None  # the product's wiring, in this process, for the checks (decrypts personal data)
        self._db_created = False
        self.exit_codes: dict[str, Any] = {}
        self._pg_task: asyncio.Task | None = None
        self.pg_activity: Counter = Counter()
        self.pg_samples = 0

    # -- environment
    def app_db_url(self) -> str:
        if self.pg_proxy is None:
            return self.db_url
        return make_url(self.db_url).set(host="127.0.0.1", port=self.pg_proxy.port).render_as_string(hide_password=False)

    def app_redis_url(self) -> str:
        if self.redis_proxy is None:
            return self.redis_base
        from urllib.parse import urlsplit, urlunsplit

        parts = urlsplit(self.redis_base)
        auth = parts.netloc.rpartition("@")[0]
        netloc = (auth + "@" if auth else "") + f"127.0.0.1:{self.redis_proxy.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    def env(self, **more: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("QINGLANG_")}
        env.update({
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
            "QINGLANG_DATA_DIR": str(self.data_dir),
            "QINGLANG_DATABASE_URL": self.app_db_url(),
            "QINGLANG_REDIS_URL": self.app_redis_url(),
            "QINGLANG_BOT_TOKEN": self.token,
            "QINGLANG_BOT_API_BASE": f"http://127.0.0.1:{self.fake_api_port}",
            "QINGLANG_BOT_MODE": "webhook",
            "QINGLANG_WEBHOOK_SECRET": self.secret,
            "QINGLANG_WEBHOOK_PATH": WEBHOOK_PATH,
            "QINGLANG_SECRET_KEY": "load-" + self.secret,
            "QINGLANG_DATA_KEY": self.data_key,
            "QINGLANG_NLU_CACHE_DIR": str(self.nlu_cache),
            "QINGLANG_NOTIFY_POLL": str(self.opts.notify_poll),
            "QINGLANG_HOST": "127.0.0.1",
        })
        if self.opts.inbox_replay_seconds is not None:
            env["QINGLANG_INBOX_REPLAY_SECONDS"] = str(self.opts.inbox_replay_seconds)
        if self.rasa is not None:
            env.update({"QINGLANG_NLU_BACKEND": "rasa", "QINGLANG_RASA_URL": self.rasa.url,
                        "QINGLANG_RASA_TIMEOUT": str(self.opts.rasa_timeout)})
        env.update(self.opts.extra_env)
        env.update(more)
        return env

    def _cli(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "qinglang.cli", *args]

    # -- lifecycle
    async def __aenter__(self) -> Cluster:
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        opts = self.opts
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.nlu_cache.mkdir(parents=True, exist_ok=True)
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        _log(opts, f"run directory {self.run_dir}; database {self.db_name}; bot id {self.bot_id}")
        await self._create_database()
        await self._check_redis()
        if opts.pg_proxy:
            u = make_url(self.db_url)
            self.pg_proxy = await TcpProxy(u.host or "127.0.0.1", u.port or 5432, name="postgresql").start()
        if opts.redis_proxy:
            from urllib.parse import urlsplit

            u = urlsplit(self.redis_base)
            self.redis_proxy = await TcpProxy(u.hostname or "127.0.0.1", u.port or 6379, name="redis").start()
        if opts.rasa:
            self.rasa = await FakeRasa().start()
        started = time.monotonic()
        # the product's wiring in this process: migrates, makes the staff account, and reads for the checks
        # (it decrypts personal data with the same key as the replicas)
        self.container = build_container(load_settings(env_file=None, database_url=self.db_url,
                                                       data_dir=self.run_dir / "bench-data", data_key=self.data_key,
                                                       nlu_cache_dir=self.nlu_cache))
        await asyncio.gather(self._start_fake(), self._migrate())
        self.staff_token = await self._staff_token()
        _log(opts, f"database migrated, staff token made ({time.monotonic() - started:.1f}s)")
        started = time.monotonic()
        self.ports = [free_port() for _ in range(opts.replicas)]
        for i in range(opts.replicas):  # as in docker-compose.yml: bot-1, bot-2 (webhook), app (staff), worker
            self.replicas.append(Proc(f"replica-{i}", self._cli("serve", "--only", "bot", "--no-migrate", "--port",
                                                                 str(self.ports[i])),
                                      self.env(QINGLANG_PORT=str(self.ports[i])), self.run_dir,
                                      self.run_dir / f"replica-{i}.log"))
        self.web_port = free_port()
        self.web = Proc("web", self._cli("serve", "--only", "web", "--no-migrate", "--port", str(self.web_port)),
                        self.env(QINGLANG_PORT=str(self.web_port)), self.run_dir, self.run_dir / "web.log")
        for proc in (*self.replicas, self.web):
            proc.start()
        if opts.worker:
            self.worker_port = free_port()
            self.worker = Proc("worker", self._cli("worker", "--port", str(self.worker_port)), self.env(),
                               self.run_dir, self.run_dir / "worker.log")
            self.worker.start()
        await asyncio.gather(*(self.wait_ready(i) for i in range(opts.replicas)), self._wait_web())
        if self.worker is not None:
            await self.wait_worker()
        procs: dict[str, Any] = {p.name: p for p in self.replicas}
        procs["web"] = self.web
        if self.worker is not None:
            procs["worker"] = self.worker
        procs["fake-tg"] = self.fake_proc
        procs["bench"] = "self"
        self.sampler = Sampler(procs, opts.sample_every)
        self.sampler.start()
        self._pg_task = asyncio.create_task(self._sample_postgres())
        _log(opts, f"{opts.replicas} replicas on ports {self.ports}" + (", worker" if self.worker else "")
             + f" ready ({time.monotonic() - started:.1f}s)")

    async def _sample_postgres(self) -> None:
        """What the app's PostgreSQL sessions are doing, each second: active ones by wait event and query."""
        sql = ("SELECT coalesce(wait_event_type || ':' || wait_event, 'cpu') AS wait, left(regexp_replace(query, "
               "'\\s+', ' ', 'g'), 70) AS q FROM pg_stat_activity WHERE datname = :db AND state = 'active' "
               "AND pid <> pg_backend_pid()")
        while True:
            try:
                for wait, query in await self.rows(sql, db=self.db_name):
                    self.pg_activity[(wait, query)] += 1
                self.pg_samples += 1
            except Exception:  # the database may be away on purpose (fault tests)
                pass
            await asyncio.sleep(self.opts.sample_every)

    def pg_summary(self, top: int = 8) -> list[str]:
        """The most seen (wait, query) pairs: on average how many sessions were in each."""
        n = max(1, self.pg_samples)
        return [f"{count / n:5.1f} sessions  {wait:<28} {query}" for (wait, query), count in self.pg_activity.most_common(top)]

    async def close(self) -> None:
        if self._pg_task is not None:
            self._pg_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pg_task
        if self.sampler is not None:
            await self.sampler.stop()
        started = time.monotonic()
        procs = [*self.replicas, *([self.web] if self.web else []), *([self.worker] if self.worker else [])]
        codes = await asyncio.gather(*(p.stop() for p in procs), return_exceptions=True)
        self.exit_codes = {p.name: c for p, c in zip(procs, codes, strict=True)}
        _log(self.opts, f"stopped with SIGTERM in {time.monotonic() - started:.1f}s, exit codes {self.exit_codes}")
        if self.fake_proc is not None:
            with contextlib.suppress(Exception):
                await self.fake_proc.stop(5)
        if self.container is not None:
            with contextlib.suppress(Exception):
                await self.container.close()
        for proxy in (self.pg_proxy, self.redis_proxy):
            if proxy is not None:
                with contextlib.suppress(Exception):
                    await proxy.stop()
        if self.rasa is not None:
            with contextlib.suppress(Exception):
                await self.rasa.stop()
        if not self.opts.keep:
            with contextlib.suppress(Exception):
                await self._drop_redis_keys()
            if self._db_created:
                with contextlib.suppress(Exception):
                    await self._drop_database()
            if self._own_run_dir:
                import shutil

                shutil.rmtree(self.run_dir, ignore_errors=True)
        else:
            _log(self.opts, f"kept: database {self.db_url}, Redis keys *:{self.bot_id}:*, {self.run_dir}")
        if self.session is not None:
            await self.session.close()

    async def _create_database(self) -> None:
        admin = create_async_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        try:
            async with admin.connect() as conn:
                await conn.execute(text(f'CREATE DATABASE "{self.db_name}"'))
            self._db_created = True
        finally:
            await admin.dispose()

    async def _drop_database(self) -> None:
        admin = create_async_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        try:
            async with admin.connect() as conn:
                await conn.execute(text(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)'))
        finally:
            await admin.dispose()

    async def _check_redis(self) -> None:
        client = Redis.from_url(self.redis_base)
        try:
            await client.ping()
        finally:
            await client.aclose()

    async def _drop_redis_keys(self) -> None:
        client = Redis.from_url(self.redis_base)
        try:
            keys = [k async for k in client.scan_iter(match=f"*:{self.bot_id}:*", count=1000)]
            for i in range(0, len(keys), 500):
                await client.delete(*keys[i:i + 500])
        finally:
            await client.aclose()

    async def _start_fake(self) -> None:
        self.fake_proc = Proc("fake-tg", [sys.executable, "-m", "tests.fakes.telegram_process", "--token", self.token],
                              {**os.environ, "PYTHONPATH": str(ROOT)}, self.run_dir, self.run_dir / "fake-telegram.log")
        self.fake_proc.start(stdout_pipe=True)
        assert self.fake_proc.popen is not None and self.fake_proc.popen.stdout is not None
        try:
            line = await asyncio.wait_for(asyncio.to_thread(self.fake_proc.popen.stdout.readline), 30)
            ports = json.loads(line)
        except (TimeoutError, ValueError):
            raise ClusterError(f"the fake Bot API did not start: {self.fake_proc.tail()}") from None
        self.fake_api_port = ports["api_port"]
        assert self.session is not None
        self.fake = FakeControl(self.session, ports["control_port"])

    async def _migrate(self) -> None:
        """What `qinglang migrate` does (qinglang/cli.py), in this process: the schema, then the units."""
        await migrate.upgrade(self.container.engine)
        await sync_units(self.container.uow, self.container.directory)

    async def _staff_token(self) -> str:
        """A 消保分局 triage account with an API token (`qinglang users create ... --api-token`)."""
        user = await self.container.accounts.create_user("loadstaff", "xiaobao", "triage", with_api_token=True)
        return user.api_token

    # -- replicas and worker
    def url(self, i: int) -> str:
        return f"http://127.0.0.1:{self.ports[i]}"

    @property
    def web_url(self) -> str:
        """The staff side (`serve --only web`): console and JSON API."""
        return f"http://127.0.0.1:{self.web_port}"

    async def probe(self, i: int, path: str = "/readyz") -> int | None:
        """HTTP status of a replica's probe; None when it does not answer."""
        return await self._status(self.url(i) + path)

    async def _status(self, url: str) -> int | None:
        assert self.session is not None
        try:
            async with self.session.get(url, timeout=aiohttp.ClientTimeout(total=5)) as r:
                return r.status
        except (aiohttp.ClientError, TimeoutError):
            return None

    async def _wait_ready(self, proc: Proc, readyz: str, timeout: float) -> None:
        """Until the process's /readyz answers 200; a ClusterError with its log's tail if it exits first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not proc.alive:
                raise ClusterError(f"{proc.name} exited: {proc.tail()}")
            if await self._status(readyz) == 200:
                return
            await asyncio.sleep(0.2)
        raise ClusterError(f"{proc.name} not ready within {timeout}s: {proc.tail()}")

    async def _wait_web(self, timeout: float = 90) -> None:
        assert self.web is not None
        await self._wait_ready(self.web, self.web_url + "/readyz", timeout)

    async def worker_metrics(self) -> dict[str, float]:
        """The worker's own /metrics (qinglang worker --port), as {sample with labels: value}."""
        if self.worker is None or not self.worker_port or self.session is None:
            return {}
        try:
            async with self.session.get(f"http://127.0.0.1:{self.worker_port}/metrics",
                                        timeout=aiohttp.ClientTimeout(total=5)) as r:
                body = await r.text()
        except (aiohttp.ClientError, TimeoutError):
            return {}
        samples = {}
        for line in body.splitlines():
            if line.startswith(("qinglang_notice_sends_total", "qinglang_outbox_depth")):
                name, _, value = line.rpartition(" ")
                samples[name] = float(value)
        return samples

    async def wait_ready(self, i: int, timeout: float = 90) -> None:
        await self._wait_ready(self.replicas[i], self.url(i) + "/readyz", timeout)

    async def wait_worker(self, timeout: float = 60) -> None:
        assert self.worker is not None
        await self._wait_ready(self.worker, f"http://127.0.0.1:{self.worker_port}/readyz", timeout)

    def event(self, what: str) -> None:
        if self.sampler is not None:
            self.sampler.event(what)
        _log(self.opts, what)

    def kill_replica(self, i: int, sig: int = signal.SIGKILL) -> None:
        self.event(f"kill -{int(sig)} {self.replicas[i].name}")
        self.replicas[i].kill(sig)

    async def restart_replica(self, i: int) -> None:
        self.replicas[i].start()
        await self.wait_ready(i)
        self.event(f"{self.replicas[i].name} restarted")

    def kill_worker(self, sig: int = signal.SIGKILL) -> None:
        assert self.worker is not None
        self.event(f"kill -{int(sig)} worker")
        self.worker.kill(sig)

    async def restart_worker(self) -> None:
        assert self.worker is not None
        self.worker.start()
        await self.wait_worker()
        self.event("worker restarted")

    # -- database access for the checks
    async def scalar(self, sql: str, **params: Any) -> Any:
        async with self.container.engine.connect() as conn:
            return (await conn.execute(text(sql), params)).scalar()

    async def execute(self, sql: str, **params: Any) -> None:
        async with self.container.engine.begin() as conn:
            await conn.execute(text(sql), params)

    async def rows(self, sql: str, **params: Any) -> list[Any]:
        async with self.container.engine.connect() as conn:
            return list((await conn.execute(text(sql), params)).all())


# -- the load balancer ("nginx" in front of the replicas, "Telegram" behind it) ------------------------

class GaveUp(Exception):
    pass


@dataclass
class Traffic:
    webhook_ms: list[float] = field(default_factory=list)  # every answered POST, any status
    statuses: Counter = field(default_factory=Counter)  # HTTP status -> count
    refused: int = 0  # connection refused: rerouted at once to another replica (not seen by Telegram)
    dropped: int = 0  # connection dropped / reset after the request was sent (Telegram redelivers)
    timeouts: int = 0
    redeliveries: int = 0  # deliveries of an update after the first
    gave_up: int = 0
    per_replica: Counter = field(default_factory=Counter)
    log: list[tuple[float, str, int | None]] = field(default_factory=list)  # (t, outcome, status) sampled

    @property
    def non_2xx(self) -> int:
        return sum(n for s, n in self.statuses.items() if not 200 <= s < 300)

    @property
    def ok(self) -> int:
        return sum(n for s, n in self.statuses.items() if 200 <= s < 300)


class Balancer:
    def __init__(self, cluster: Cluster, session: aiohttp.ClientSession, opts: Options) -> None:
        self.cluster, self.session, self.opts = cluster, session, opts
        self.traffic = Traffic()
        self._next = itertools.count()
        self._down_until: dict[int, float] = {}
        self._slots = asyncio.Semaphore(opts.max_connections)  # Telegram's max_connections to the webhook

    def _order(self) -> list[int]:
        n = len(self.cluster.ports)
        start = next(self._next) % n
        order = [(start + k) % n for k in range(n)]
        now = time.monotonic()
        up = [i for i in order if self._down_until.get(i, 0) <= now]
        return up + [i for i in order if i not in up]

    async def post_once(self, path: str, payload: Any, headers: dict[str, str]) -> tuple[int | None, str]:
        """One delivery through the balancer: (status, outcome). A refused connection is tried on the
        next replica at once (nginx proxy_next_upstream error); anything else is the answer."""
        for i in self._order():
            started = time.monotonic()
            try:
                async with self.session.post(self.cluster.url(i) + path, json=payload, headers=headers,
                                             timeout=aiohttp.ClientTimeout(total=self.opts.post_timeout)) as r:
                    await r.read()
                    status = r.status
            except aiohttp.ClientConnectorError:
                self.traffic.refused += 1
                self._down_until[i] = time.monotonic() + 2.0  # nginx fail_timeout
                continue
            except TimeoutError:
                self.traffic.timeouts += 1
                self.traffic.log.append((time.monotonic(), "timeout", None))
                return None, "timeout"
            except (aiohttp.ClientError, OSError):
                self.traffic.dropped += 1
                self.traffic.log.append((time.monotonic(), "dropped", None))
                return None, "dropped"
            self.traffic.webhook_ms.append((time.monotonic() - started) * 1000)
            self.traffic.statuses[status] += 1
            self.traffic.per_replica[i] += 1
            if not 200 <= status < 300:
                self.traffic.log.append((time.monotonic(), "status", status))
            return status, "answered"
        return None, "refused"

    async def deliver(self, update: dict[str, Any]) -> int:
        """Deliver an update as Telegram does: again and again until a 2xx; the number of deliveries."""
        headers = {SECRET_HEADER: self.cluster.secret}
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            if attempt > 1:
                self.traffic.redeliveries += 1
            async with self._slots:
                status, outcome = await self.post_once(WEBHOOK_PATH, update, headers)
            if status is not None and 200 <= status < 300:
                return attempt
            if time.monotonic() - started > self.opts.redeliver_for:
                self.traffic.gave_up += 1
                raise GaveUp(f"update {update['update_id']}: last outcome {outcome} {status}")
            await asyncio.sleep(min(0.5 * 2 ** (attempt - 1), 5.0) * random.uniform(0.8, 1.2))

    async def api(self, method: str, path: str, payload: Any = None, *, deadline: float = 120) -> tuple[int, Any]:
        """A staff API call to the web process, retried on 5xx/connection errors (not on 4xx)."""
        headers = {"Authorization": f"Bearer {self.cluster.staff_token}"}
        started = time.monotonic()
        while True:
            try:
                async with self.session.request(method, self.cluster.web_url + path, json=payload, headers=headers,
                                                timeout=aiohttp.ClientTimeout(total=self.opts.post_timeout)) as r:
                    body = await r.json(content_type=None) if r.content_length != 0 else None
                    if r.status < 500:
                        return r.status, body
            except (aiohttp.ClientError, TimeoutError, ValueError):
                pass
            if time.monotonic() - started > deadline:
                raise GaveUp(f"{method} {path}")
            await asyncio.sleep(1.0)


# -- the users -----------------------------------------------------------------------------------------

class Updates:
    """Telegram updates as the real API would send them, numbered for this run."""

    def __init__(self, bot_id: int) -> None:
        self._update_ids = itertools.count(1)
        self._message_ids: dict[int, itertools.count] = defaultdict(lambda: itertools.count(1_000_001))
        self._callback_ids = itertools.count(1)

    @staticmethod
    def user(uid: int) -> dict[str, Any]:
        return {"id": uid, "is_bot": False, "first_name": f"用户{uid % 100000}", "language_code": "zh-hans"}

    def message(self, uid: int, *, text: str | None = None, photo: dict[str, Any] | None = None) -> dict[str, Any]:
        msg: dict[str, Any] = {"message_id": next(self._message_ids[uid]), "from": self.user(uid),
                               "chat": {"id": uid, "type": "private", "first_name": f"用户{uid % 100000}"},
                               "date": int(time.time())}
        if text is not None:
            msg["text"] = text
        if photo is not None:
            ref = {"file_id": photo["file_id"], "file_unique_id": photo["file_unique_id"], "file_size": photo["size"]}
            msg["photo"] = [ref | {"width": 90, "height": 68}, ref | {"width": 1280, "height": 960}]
        return {"update_id": next(self._update_ids), "message": msg}

    def callback(self, uid: int, data: str, bot_message: dict[str, Any]) -> dict[str, Any]:
        return {"update_id": next(self._update_ids), "callback_query": {
            "id": str(5_000_000_000 + next(self._callback_ids)), "from": self.user(uid),
            "chat_instance": str(uid * 7 + 3), "data": data, "message": bot_message}}


@dataclass
class UserRecord:
    uid: int
    steps: list[Step]
    n: int = 0  # the user's number in the run (picks the photo)
    next_step: int = 0
    bot_message: dict[str, Any] | None = None  # the latest reply (its buttons are pressed next)
    last_text: str | None = None
    photo_sha: str | None = None
    acked: list[tuple[int, str]] = field(default_factory=list)  # (update_id, step name) answered 2xx
    texts: dict[str, str] = field(default_factory=dict)  # field -> what the user sent (acked)
    completed: bool = False
    case_number: str | None = None
    accepted: bool = False
    error: str | None = None
    seen: int = 0  # messages read from the bot so far
    apologies: int = 0
    throttled: int = 0
    repeated_replies: int = 0  # the same reply again (a reply sent twice)
    started_at: float = 0.0
    finished_at: float = 0.0


@dataclass
class Progress:
    steps: int = 0
    conversations: int = 0
    started: int = 0
    _waiters: list[tuple[int, asyncio.Future]] = field(default_factory=list)

    def step_done(self) -> None:
        self.steps += 1
        for target, fut in list(self._waiters):
            if self.steps >= target and not fut.done():
                fut.set_result(None)

    async def wait_steps(self, n: int, timeout: float = 120) -> None:
        if self.steps >= n:
            return
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append((n, fut))
        await asyncio.wait_for(fut, timeout)


class LoadRun:
    """The users' traffic against a started Cluster; `await run.run()` returns when all users are done."""

    def __init__(self, cluster: Cluster, opts: Options | None = None) -> None:
        self.cluster = cluster
        self.opts = opts or cluster.opts
        assert cluster.session is not None
        self.balancer = Balancer(cluster, cluster.session, self.opts)
        self.updates = cluster.updates  # update ids unique across runs on one cluster (the inbox dedupes by id)
        self.users: list[UserRecord] = []
        self.reply_ms: list[float] = []
        self.reply_ms_by_step: dict[str, list[float]] = defaultdict(list)
        self.progress = Progress()
        self.errors: Counter = Counter()  # missing_reply, unexpected_reply, gave_up, accept_failed
        self.error_samples: list[str] = []
        self.t_start = self.t_end = 0.0
        rng = random.Random(self.opts.seed)
        self._uid_base = rng.randint(10**9, 4 * 10**9)
        self._uids = itertools.count(self._uid_base)
        self._photos: dict[int, dict[str, Any]] = {}

    def _error(self, kind: str, detail: str) -> None:
        self.errors[kind] += 1
        if len(self.error_samples) < 30:
            self.error_samples.append(f"{kind}: {detail}")

    async def _photo(self, n: int) -> tuple[dict[str, Any], str]:
        content = png(n % 256, width=8 + n // 256, height=8)
        if n not in self._photos:
            assert self.cluster.fake is not None
            self._photos[n] = await self.cluster.fake.add_file(content, f"photo_{n}.png")
        return self._photos[n], hashlib.sha256(content).hexdigest()

    async def _await_reply(self, user: UserRecord, step: Step, sent_at: float, last: str | None) -> dict[str, Any] | None:
        fake = self.cluster.fake
        assert fake is not None
        deadline = time.monotonic() + self.opts.reply_timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self._error("missing_reply", f"user {user.uid} step {step.name}: no reply within {self.opts.reply_timeout}s")
                return None
            messages = await fake.wait(user.uid, user.seen, min(left, 20.0))
            for m in messages:
                user.seen += 1
                text = m["text"] or ""
                if step.matches(text):
                    latency = (m["at"] - sent_at) * 1000
                    self.reply_ms.append(latency)
                    self.reply_ms_by_step[step.name].append(latency)
                    return m
                if text.startswith(APOLOGY):
                    user.apologies += 1
                elif text.startswith(THROTTLED):
                    user.throttled += 1
                elif last is not None and text == last:
                    user.repeated_replies += 1
                else:
                    self._error("unexpected_reply", f"user {user.uid} step {step.name}: {text[:80]!r}")
                    return None

    async def _user(self, n: int) -> UserRecord:
        uid = next(self._uids)
        steps = conversation(uid)
        if not self.opts.photo:
            steps = [s for s in steps if s.kind != "photo"]
            steps = [Step(s.name, s.kind, "没有证据", s.expect, s.prefix, s.field) if s.name == "evidence_done" else s
                     for s in steps]
        user = UserRecord(uid, steps, n=n, started_at=time.monotonic())
        self.users.append(user)
        self.progress.started += 1
        await self._steps(user, self.opts.steps)
        return user

    async def _steps(self, user: UserRecord, upto: int | None) -> None:
        """Take the user's next steps, up to step number `upto` (all when None), each after the last reply."""
        uid = user.uid
        try:
            while user.error is None and user.next_step < min(len(user.steps), upto or len(user.steps)):
                step = user.steps[user.next_step]
                if self.opts.think and user.bot_message is not None:
                    await asyncio.sleep(self.opts.think)
                if step.kind == "text":
                    update = self.updates.message(uid, text=step.value)
                elif step.kind == "photo":
                    photo, user.photo_sha = await self._photo(user.n)
                    update = self.updates.message(uid, photo=photo)
                else:
                    assert user.bot_message is not None
                    buttons = {b["text"]: b["callback_data"] for row in (user.bot_message.get("reply_markup") or {})
                               .get("inline_keyboard", []) for b in row}
                    if step.value not in buttons:
                        self._error("unexpected_reply",
                                    f"user {uid} step {step.name}: no button {step.value!r} in {list(buttons)}")
                        user.error = "no button"
                        return
                    update = self.updates.callback(uid, buttons[step.value], user.bot_message)
                sent_at = time.monotonic()
                try:
                    await self.balancer.deliver(update)
                except GaveUp as exc:
                    self._error("gave_up", str(exc))
                    user.error = "gave up delivering"
                    return
                user.acked.append((update["update_id"], step.name))
                if step.field:
                    user.texts[step.field] = step.value if step.kind == "text" else (user.photo_sha or "")
                reply = await self._await_reply(user, step, sent_at, user.last_text)
                if reply is None:
                    user.error = f"no reply at {step.name}"
                    return
                user.next_step += 1
                self.progress.step_done()
                user.last_text = reply["text"]
                user.bot_message = reply["message"]
                if step.name == "submit":
                    user.completed = True
                    self.progress.conversations += 1
                    match = CASE_NUMBER.search(user.last_text or "")
                    user.case_number = match.group(0) if match else None
                    if self.opts.accept and user.case_number:
                        await self._accept(user)
        finally:
            user.finished_at = time.monotonic()

    async def resume(self, upto: int | None = None) -> None:
        """Every user of this run who stopped short (Options.steps) takes the next steps, all at once."""
        started = time.monotonic()
        await asyncio.gather(*(self._steps(u, upto) for u in self.users if u.error is None))
        self.t_end += time.monotonic() - started  # the run's traffic time includes the resumed part

    async def _accept(self, user: UserRecord) -> None:
        path = f"/api/v1/cases/{user.case_number}/transitions"
        try:
            status, body = await self.balancer.api("POST", path, {"action": "accept"})
        except GaveUp as exc:
            self._error("accept_failed", str(exc))
            return
        if status == 200:
            user.accepted = True
        elif status == 409:  # an earlier try went through before its answer was lost
            status, body = await self.balancer.api("GET", f"/api/v1/cases/{user.case_number}")
            user.accepted = status == 200 and isinstance(body, dict) and body.get("status") == "accepted"
            if not user.accepted:
                self._error("accept_failed", f"{user.case_number}: 409 then {status} {str(body)[:200]}")
        else:
            self._error("accept_failed", f"{user.case_number}: {status} {str(body)[:200]}")

    async def accept_cases(self) -> None:
        """Staff accept every case of this run not accepted yet (each queues a notice to its complainant)."""
        await asyncio.gather(*(self._accept(u) for u in self.users if u.case_number and not u.accepted))

    async def _slot(self, n: int, delay: float) -> None:
        await asyncio.sleep(delay)
        await self._user(n)
        if self.opts.duration > 0:
            k = 1
            while time.monotonic() - self.t_start < self.opts.duration:
                await self._user(n + k * self.opts.users)
                k += 1

    async def run(self) -> None:
        _log(self.opts, f"{self.opts.users} users start (ramp {self.opts.ramp}s)")
        self.cluster.event(f"{self.opts.users} users start")
        self.t_start = time.monotonic()
        spread = self.opts.ramp / max(1, self.opts.users)
        await asyncio.gather(*(self._slot(n, n * spread) for n in range(self.opts.users)))
        self.t_end = time.monotonic()
        self.cluster.event("users done")
        _log(self.opts, f"traffic done in {self.t_end - self.t_start:.1f}s: "
                        f"{self.progress.conversations}/{len(self.users)} conversations complete")


# -- after the traffic: settle, then check -----------------------------------------------------------

async def settle(cluster: Cluster, timeout: float) -> dict[str, int]:
    """Wait until the inbox has nothing unhandled and the outbox nothing pending or in flight."""
    deadline = time.monotonic() + timeout
    while True:
        state = {
            "inbox_unhandled": await cluster.scalar("SELECT count(*) FROM inbox WHERE processed_at IS NULL"),
            "outbox_open": await cluster.scalar("SELECT count(*) FROM outbox WHERE status IN ('pending', 'claimed', 'sending')"),
        }
        if not any(state.values()) or time.monotonic() > deadline:
            return state
        await asyncio.sleep(0.5)


@dataclass
class Check:
    users: int = 0
    completed: int = 0
    cases: int = 0
    drafts_checked: int = 0
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    inbox: dict[str, int] = field(default_factory=dict)
    outbox: dict[str, int] = field(default_factory=dict)
    notices_sent_to_telegram: int = 0
    notice_latency_ms: dict[str, float | None] = field(default_factory=dict)
    nlu: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.lost and not self.duplicated


async def verify(cluster: Cluster, run: LoadRun) -> Check:
    """For every user: each text sent (and acknowledged) is in their case or their draft; one case per
    person, unique numbers; the inbox all handled; each notice sent once or flagged."""
    check = Check(users=len(run.users))
    async with cluster.container.uow() as uow:
        s = uow.session
        cases = list(await s.scalars(select(Case)))
        people = {p.id: p for p in await s.scalars(select(Complainant))}
        evidence: dict[int, list[Evidence]] = defaultdict(list)
        for e in await s.scalars(select(Evidence)):
            evidence[e.case_id].append(e)
        inbox = list(await s.scalars(select(InboxUpdate)))
        outbox = list(await s.scalars(select(OutboxMessage)))
    check.cases = len(cases)
    numbers = Counter(c.number for c in cases)
    for number, n in numbers.items():
        if n > 1:
            check.duplicated.append(f"case number {number} used {n} times")
    by_user: dict[str, list[Case]] = defaultdict(list)
    for c in cases:
        person = people.get(c.complainant_id)
        if person is not None and person.channel == "telegram":
            by_user[person.channel_user_id].append(c)

    assert cluster.fake is not None
    calls = [c for c in await cluster.fake.sent("sendMessage") if c["ok"]]
    by_chat: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for c in calls:
        by_chat[str(c["chat_id"])].append(c)

    storage = build_storage(cluster.redis_base, None, cipher=bound_cipher(cluster.container.engine))
    try:
        for user in run.users:
            key = StorageKey(bot_id=cluster.bot_id, chat_id=user.uid, user_id=user.uid)
            if user.completed:
                # After the receipt the bot has nothing more to say but the staff's notices about the case;
                # any other message answers an old update handled again (a stale replay), and a draft with
                # content means an old update was applied to a new conversation.
                later = [c["text"] or "" for c in by_chat.get(str(user.uid), [])[user.seen:]]
                stray = [t for t in later if not (user.case_number and user.case_number in t)]
                if stray:
                    check.duplicated.append(f"user {user.uid}: {len(stray)} message(s) after the conversation ended "
                                            f"(an old update handled again): {[t[:50] for t in stray[:3]]}")
                leftover = (await storage.get_data(key)).get("draft") or {}
                if leftover.get("description") or leftover.get("slots") or leftover.get("evidence"):
                    check.duplicated.append(f"user {user.uid}: a new draft after the case (an old update applied "
                                            f"again): step {leftover.get('step')}, {str(leftover.get('description'))[:40]!r}")
            mine = by_user.pop(str(user.uid), [])
            if user.completed:
                check.completed += 1
            if len(mine) > 1:
                check.duplicated.append(f"user {user.uid}: {len(mine)} cases {[c.number for c in mine]}")
            if user.completed and not mine:
                check.lost.append(f"user {user.uid}: receipt {user.case_number} but no case stored")
                continue
            if mine:
                case = next((c for c in mine if c.number == user.case_number), mine[0])
                if user.completed and user.case_number != case.number:
                    check.lost.append(f"user {user.uid}: receipt says {user.case_number}, stored {case.number}")
                if not user.completed:
                    check.notes.append(f"user {user.uid}: case {case.number} stored, but the user saw no receipt"
                                       f" ({user.error})")
                person = people.get(case.complainant_id)
                found = {
                    "description": case.description == STORY,  # exactly: nothing replayed into it either
                    "order_number": case.order_number == user.texts.get("order_number"),
                    "name": person is not None and person.name == user.texts.get("name"),
                    "phone": person is not None and person.phone == user.texts.get("phone"),
                    "evidence": user.texts.get("evidence") in {e.sha256 for e in evidence.get(case.id, [])},
                }
                missing = [f for f in user.texts if not found.get(f, False)]
                if missing:
                    check.lost.append(f"user {user.uid}: case {case.number} differs from what was sent in {missing}")
                continue
            # no case: every acknowledged text must be in the draft
            check.drafts_checked += 1
            data = await storage.get_data(key)
            draft = data.get("draft") or {}
            found = {
                "description": STORY in (draft.get("description") or ""),
                "order_number": (draft.get("slots") or {}).get("order_number") == user.texts.get("order_number"),
                "name": draft.get("name") == user.texts.get("name"),
                "phone": draft.get("phone") == user.texts.get("phone"),
                "evidence": user.texts.get("evidence") in {e.get("sha256") for e in draft.get("evidence") or []},
            }
            missing = [f for f in user.texts if not found.get(f, False)]
            if missing:
                check.lost.append(f"user {user.uid} (no case; {user.error}): draft lacks {missing}")
    finally:
        await storage.close()
    if by_user:
        check.notes.append(f"{len(by_user)} Telegram complainants not among the simulated users")

    # the inbox: every acknowledged update stored, and handled
    rows = {r.external_id: r for r in inbox if r.channel == "telegram"}
    acked = [(update_id, step) for user in run.users for update_id, step in user.acked]
    missing_rows = [f"{update_id}:{step}" for update_id, step in acked if str(update_id) not in rows]
    if missing_rows:
        check.lost.append(f"{len(missing_rows)} acknowledged updates not in the inbox, e.g. {missing_rows[:5]}")
    unhandled = [r for r in rows.values() if r.processed_at is None]  # of any run on this cluster
    this_run = [rows[str(update_id)] for update_id, _ in acked if str(update_id) in rows]
    check.inbox = {"rows": len(this_run), "acknowledged_updates": len(acked), "unhandled": len(unhandled),
                   "failed_at_least_once": sum(1 for r in this_run if (r.attempts or 0) > 0)}
    if unhandled:
        check.lost.append(f"{len(unhandled)} inbox rows never handled, e.g. "
                          f"{[(r.external_id, r.attempts, (r.error or '')[:80]) for r in unhandled[:3]]}")

    # the outbox against what reached the fake Telegram
    by_chat_text: Counter = Counter((str(c["chat_id"]), c["text"]) for c in calls)
    status_count = Counter(r.status for r in outbox)
    check.outbox = dict(status_count) | {"rows": len(outbox)}
    latencies = []
    number_of_case = {c.id: c.number for c in cases}
    for row in outbox:
        if row.status in ("pending", "claimed", "sending"):
            check.lost.append(f"outbox {row.id} ({row.template}) still {row.status} after settling")
            continue
        if row.channel != "telegram":
            continue
        number = number_of_case.get(row.case_id, "")
        # the notices about this case that reached this chat (the conversation's receipt excluded)
        reached = [c for c in by_chat.get(row.recipient or "", [])
                   if number and number in (c["text"] or "") and not (c["text"] or "").startswith(RECEIPT_PREFIX)]
        same_case_rows = [r for r in outbox if r.case_id == row.case_id and r.channel == "telegram"
                          and r.recipient == row.recipient]
        if row.status == "sent":
            check.notices_sent_to_telegram += 1
            if row.body and by_chat_text[(row.recipient, row.body)] != 1:
                check.duplicated.append(f"outbox {row.id} ({number}) reached Telegram "
                                        f"{by_chat_text[(row.recipient, row.body)]} times")
            if row.sent_at and row.created_at:
                latencies.append((row.sent_at - row.created_at).total_seconds() * 1000)
        elif row.status == "unconfirmed" and len(same_case_rows) == 1 and len(reached) > 1:
            check.duplicated.append(f"outbox {row.id} ({number}) unconfirmed but reached Telegram {len(reached)} times")
        if len(same_case_rows) == 1 and len(reached) > 1 and row.status == "sent" and not row.body:
            check.duplicated.append(f"outbox {row.id} ({number}) reached Telegram {len(reached)} times")
    accepted = [u for u in run.users if u.accepted]
    accepted_rows = {number_of_case.get(r.case_id) for r in outbox if r.template == "accepted"}
    no_notice = [u.case_number for u in accepted if u.case_number not in accepted_rows]
    if no_notice:
        check.lost.append(f"{len(no_notice)} accepted cases without an 'accepted' notice, e.g. {no_notice[:5]}")
    check.notice_latency_ms = {"p50": percentile(latencies, 0.5), "p95": percentile(latencies, 0.95),
                               "p99": percentile(latencies, 0.99)}
    if cluster.rasa is not None:
        mine = {str(u.uid) for u in run.users}
        confidences = Counter("rasa" if c.nlu_confidence is not None
                              and abs(c.nlu_confidence - cluster.rasa.expected_confidence) < 1e-6 else "embedded"
                              for c in cases if (people.get(c.complainant_id) or Complainant()).channel_user_id in mine)
        check.nlu = dict(confidences)
    return check


# -- the report ---------------------------------------------------------------------------------------

@dataclass
class Report:
    options: dict[str, Any]
    seconds: float
    users: int
    completed: int
    updates_acknowledged: int
    throughput_updates_per_s: float
    conversations_per_min: float
    webhook_ms: dict[str, float | None]
    reply_ms: dict[str, float | None]
    reply_ms_by_step: dict[str, dict[str, float | None]]
    http: dict[str, Any]
    errors: dict[str, int]
    error_samples: list[str]
    user_side: dict[str, int]
    settle: dict[str, int]
    check: dict[str, Any]
    memory: dict[str, Any]
    fake_stats: dict[str, int]
    worker_metrics: dict[str, float] = field(default_factory=dict)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values()) + self.http["non_2xx"] + self.http["dropped"] + self.http["timeouts"]

    @property
    def ok(self) -> bool:
        return not self.check["lost"] and not self.check["duplicated"]


def _pcts(values: list[float]) -> dict[str, float | None]:
    r = lambda v: None if v is None else round(v, 1)  # noqa: E731
    return {"n": len(values), "p50": r(percentile(values, 0.5)), "p95": r(percentile(values, 0.95)),
            "p99": r(percentile(values, 0.99)), "max": r(max(values) if values else None)}


async def report(cluster: Cluster, run: LoadRun, settled: dict[str, int], check: Check) -> Report:
    seconds = max(1e-9, run.t_end - run.t_start)
    acked = sum(len(u.acked) for u in run.users)
    t = run.balancer.traffic
    assert cluster.sampler is not None and cluster.fake is not None
    return Report(
        options={k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(run.opts).items()},
        seconds=round(seconds, 2),
        users=len(run.users),
        completed=sum(1 for u in run.users if u.completed),
        updates_acknowledged=acked,
        throughput_updates_per_s=round(acked / seconds, 1),
        conversations_per_min=round(sum(1 for u in run.users if u.completed) / seconds * 60, 1),
        webhook_ms=_pcts(t.webhook_ms),
        reply_ms=_pcts(run.reply_ms),
        reply_ms_by_step={k: _pcts(v) for k, v in run.reply_ms_by_step.items()},
        http={"statuses": {str(k): v for k, v in sorted(t.statuses.items())}, "non_2xx": t.non_2xx,
              "refused_rerouted": t.refused, "dropped": t.dropped, "timeouts": t.timeouts,
              "redeliveries": t.redeliveries, "gave_up": t.gave_up,
              "per_replica": {cluster.replicas[i].name: n for i, n in sorted(t.per_replica.items())}},
        errors=dict(run.errors),
        error_samples=run.error_samples,
        user_side={"apologies": sum(u.apologies for u in run.users),
                   "throttled": sum(u.throttled for u in run.users),
                   "repeated_replies": sum(u.repeated_replies for u in run.users),
                   "accepted_by_staff": sum(1 for u in run.users if u.accepted)},
        settle=settled,
        check=asdict(check) | {"ok": check.ok},
        memory=cluster.sampler.as_dict(),
        fake_stats=await cluster.fake.stats(),
        worker_metrics=await cluster.worker_metrics(),
    )


def format_report(rep: Report, cluster: Cluster) -> str:
    def pc(d: dict[str, Any]) -> str:
        return (f"p50 {d['p50']} ms  p95 {d['p95']} ms  p99 {d['p99']} ms  max {d['max']} ms  (n={d['n']})")

    c = rep.check
    lines = [
        "",
        f"== load: {rep.users} users, {rep.options['replicas']} replicas (webhook) + "
        f"{'worker' if rep.options['worker'] else 'no worker'}, PostgreSQL + Redis ==",
        f"conversations completed  {rep.completed}/{rep.users} in {rep.seconds} s",
        f"throughput               {rep.throughput_updates_per_s} updates/s, {rep.conversations_per_min} conversations/min",
        f"webhook response         {pc(rep.webhook_ms)}",
        f"reply latency            {pc(rep.reply_ms)}",
        "  by step                " + ", ".join(f"{k} {v['p50']}/{v['p95']}" for k, v in rep.reply_ms_by_step.items())
        + "  (p50/p95 ms)",
        f"HTTP                     {rep.http['statuses']}  refused->rerouted {rep.http['refused_rerouted']}  "
        f"dropped {rep.http['dropped']}  timeouts {rep.http['timeouts']}  redeliveries {rep.http['redeliveries']}  "
        f"gave up {rep.http['gave_up']}  per replica {rep.http['per_replica']}",
        f"errors                   {rep.error_count} (user side: {rep.errors or 0}; "
        f"apologies {rep.user_side['apologies']}, throttled {rep.user_side['throttled']}, "
        f"repeated replies {rep.user_side['repeated_replies']})",
        f"notices                  {rep.user_side['accepted_by_staff']} cases accepted by staff; outbox {c['outbox']}; "
        f"queued->sent p50 {c['notice_latency_ms'].get('p50') and round(c['notice_latency_ms']['p50'])} ms, "
        f"p95 {c['notice_latency_ms'].get('p95') and round(c['notice_latency_ms']['p95'])} ms",
        f"inbox                    {c['inbox']}",
        f"worker /metrics          {_sends(rep.worker_metrics)}",
        f"after settling           {rep.settle}",
        f"CPU % (of one core)      {rep.memory['cpu_percent']}",
        "memory over time:",
        cluster.sampler.table() if cluster.sampler else "",
        "PostgreSQL, active sessions of the app (average per sample):",
        *("  " + line for line in cluster.pg_summary()),
        f"check                    users {c['users']}, cases {c['cases']}, drafts checked {c['drafts_checked']}, "
        f"lost {len(c['lost'])}, duplicated {len(c['duplicated'])}" + (f", NLU {c['nlu']}" if c["nlu"] else ""),
    ]
    lines += [f"  LOST: {x}" for x in c["lost"][:20]]
    lines += [f"  DUPLICATED: {x}" for x in c["duplicated"][:20]]
    lines += [f"  note: {x}" for x in c["notes"][:10]]
    lines += [f"  error: {x}" for x in rep.error_samples[:10]]
    lines.append("RESULT: " + ("OK - nothing lost or duplicated" if rep.ok else "FAILED - lost or duplicated"))
    return "\n".join(lines)


def _sends(samples: dict[str, float]) -> str:
    """'telegram sent 500, ...' from the worker's qinglang_notice_sends_total samples."""
    parts = []
    for name, value in sorted(samples.items()):
        if name.startswith("qinglang_notice_sends_total{"):
            labels = dict(part.split("=", 1) for part in name[name.index("{") + 1:-1].split(","))
            parts.append(f"{labels['channel'].strip(chr(34))} {labels['outcome'].strip(chr(34))} {value:g}")
    return ", ".join(parts) or "no sends counted"


async def finish(cluster: Cluster, run: LoadRun) -> Report:
    settled = await settle(cluster, run.opts.settle_timeout)
    check = await verify(cluster, run)
    return await report(cluster, run, settled, check)


async def run_load(opts: Options) -> tuple[Report, str]:
    async with Cluster(opts) as cluster:
        run = LoadRun(cluster)
        await run.run()
        rep = await finish(cluster, run)
        text = format_report(rep, cluster)
    return rep, text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--duration", type=float, default=0.0,
                        help="seconds; each user slot keeps starting new conversations until then (default: one each)")
    parser.add_argument("--steps", type=int, default=None, help="only the first K of the 11 steps (the rest stay drafts)")
    parser.add_argument("--think", type=float, default=0.0, help="seconds between a reply and the next update")
    parser.add_argument("--ramp", type=float, default=5.0, help="users start spread over this many seconds")
    parser.add_argument("--database-url", default=None, help="admin URL of PostgreSQL (default TEST_DATABASE_URL)")
    parser.add_argument("--redis-url", default=None, help="default TEST_REDIS_URL or redis://127.0.0.1:6379/0")
    parser.add_argument("--reply-timeout", type=float, default=120.0, help="seconds a user waits for a reply")
    parser.add_argument("--max-connections", type=int, default=100, help="concurrent webhook requests (Telegram: 1-100)")
    parser.add_argument("--no-photo", action="store_true", help="answer 没有证据 instead of sending a photo")
    parser.add_argument("--no-accept", action="store_true", help="staff do not accept the cases (no notices)")
    parser.add_argument("--keep", action="store_true", help="keep the database, Redis keys and logs")
    parser.add_argument("--strict", action="store_true", help="exit 1 on any error, not only on lost/duplicated")
    parser.add_argument("--json", type=Path, default=None, help="write the whole report as JSON here")
    args = parser.parse_args(argv)
    opts = Options(users=args.users, replicas=args.replicas, duration=args.duration, steps=args.steps,
                   think=args.think, ramp=args.ramp, database_url=args.database_url, redis_url=args.redis_url,
                   keep=args.keep, photo=not args.no_photo, accept=not args.no_accept,
                   max_connections=args.max_connections, reply_timeout=args.reply_timeout)
    rep, text = asyncio.run(run_load(opts))
    print(text)
    if args.json:
        args.json.write_text(json.dumps(asdict(rep), ensure_ascii=False, indent=1, default=str))
    if not rep.ok:
        return 1
    return 1 if args.strict and rep.error_count else 0


if __name__ == "__main__":
    sys.exit(main())
