"""Both NLU backends side by side on the same labelled data: quality, latency per message, memory.

    .venv/bin/python bench/nlu.py [--data FILE.jsonl ...] [--rasa-url URL]

Without --rasa-url the script starts the Rasa server itself (scripts/rasa.sh serve, which sets up the
venv and trains the model when needed) on a free port and stops it afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nlu.classifier import EmbeddedBackend, RasaBackend  # noqa: E402
from nlu.evaluate import metrics, read_labelled  # noqa: E402

DEFAULT_DATA = [ROOT.parent / "shared" / "data" / "dev.jsonl", ROOT / "tests" / "data" / "nlu_holdout.jsonl"]


def rss_mb(pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def tree_rss_mb(pid: int) -> float:
    """RSS of a process and its children (rasa.sh execs rasa, which may fork)."""
    total = rss_mb(pid)
    for child in Path(f"/proc/{pid}/task").glob("*/children"):
        for child_pid in child.read_text().split():
            total += tree_rss_mb(int(child_pid))
    return total


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_rasa() -> tuple[subprocess.Popen, str]:
    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix="rasa-bench-", suffix=".log", delete=False)
    process = subprocess.Popen(
        ["bash", str(ROOT / "scripts" / "rasa.sh"), "all", "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the Rasa server exited; see {log.name}")
        try:
            with urllib.request.urlopen(url + "/status", timeout=2):
                return process, url
        except OSError:
            time.sleep(1)
    raise SystemExit(f"the Rasa server did not start in time; see {log.name}")


async def measure(backend, rows, now) -> dict:
    for row in rows[:10]:  # warm-up
        await backend.parse(row.text, now=now)
    latencies, predicted = [], []
    for row in rows:
        started = time.perf_counter()
        result = await backend.parse(row.text, now=now)
        latencies.append((time.perf_counter() - started) * 1000)
        predicted.append(result.category)
        if result.fallback_reason:
            raise SystemExit(f"{backend.name} fell back: {result.fallback_reason}")
    report = metrics([r.category for r in rows], predicted)
    latencies.sort()
    return {
        "accuracy": report["accuracy"],
        "macro_f1": report["macro_f1"],
        "p50_ms": round(statistics.median(latencies), 3),
        "p95_ms": round(latencies[int(0.95 * (len(latencies) - 1))], 3),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, action="append", help="labelled JSON lines (repeatable)")
    parser.add_argument("--rasa-url", help="a running Rasa server; otherwise one is started")
    parser.add_argument("--embedded-only", action="store_true")
    args = parser.parse_args()
    datasets = args.data or DEFAULT_DATA
    now = datetime.now(UTC)

    before = rss_mb()
    started = time.perf_counter()
    embedded = EmbeddedBackend(cache_dir=None, progress=False)
    embedded.warm_up()
    train_s = time.perf_counter() - started
    embedded_memory = rss_mb() - before

    process = None
    rasa = None
    if not args.embedded_only:
        url = args.rasa_url
        if url is None:
            process, url = start_rasa()
        rasa = RasaBackend(url, embedded, timeout=30)

    results = {"embedded": {"train_s": round(train_s, 2), "memory_mb": round(embedded_memory, 1)}}
    if rasa:
        results["rasa"] = {"memory_mb": round(tree_rss_mb(process.pid), 1) if process else None}
    try:
        for path in datasets:
            rows = read_labelled(path)
            results["embedded"][path.name] = await measure(embedded, rows, now)
            if rasa:
                results["rasa"][path.name] = await measure(rasa, rows, now)
        if rasa and process:
            results["rasa"]["memory_mb"] = round(tree_rss_mb(process.pid), 1)
    finally:
        if process:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=60)
    print(json.dumps(results, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
