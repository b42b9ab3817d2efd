"""The fake Telegram Bot API (tests/fakes/telegram.py) in a process of its own, with a control port.

    .venv/bin/python -m tests.fakes.telegram_process [--token T]

prints one JSON line ``{"api_port": P, "control_port": C}`` and serves until SIGTERM/SIGINT. The app
processes talk to the API port as if it were Telegram; the load bench (bench/load.py) uses the control
port to register photo files, to long-poll for what the bot sent to a chat, to read every recorded
call, and to inject faults. Telegram is another machine: in its own process the fake neither competes
with the bench's simulated users for the GIL nor slows the replicas being measured.

Control API (JSON):
- ``POST /files?name=photo.jpg`` (raw body) -> ``{"file_id", "file_unique_id", "size"}``
- ``GET /wait?chat_id=C&after=N&timeout=T`` -> ``{"messages": [...]}`` the successful sendMessage calls to
  chat C from the (N+1)-th on, waiting up to T seconds for at least one; each item has ``text``,
  ``message`` (the Message the fake returned, with ``reply_markup``) and ``at`` (time.monotonic() of
  the fake, which on Linux is the same clock in every process of the machine).
- ``GET /sent?method=sendMessage&since=I`` -> ``{"calls": [...], "next": J}`` recorded calls (all methods
  without ``method``), each with ``method``, ``ok``, ``chat_id``, ``text``, ``message_id``, ``at``.
- ``POST /fault`` ``{"method": "sendMessage", "kind": "fail"|"close"|"delay", "status": 500,
  "times": 1, "seconds": 5, "after_processing": true}``
- ``GET /stats`` -> counts by method.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from collections import defaultdict
from typing import Any

from aiohttp import web

from tests.fakes.telegram import TOKEN, FakeTelegram, SentCall


class IndexedFakeTelegram(FakeTelegram):
    """FakeTelegram that also indexes successful sendMessage calls by chat and wakes waiters per chat."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.by_chat: dict[int, list[SentCall]] = defaultdict(list)
        self._waiters: dict[int, list[asyncio.Future[None]]] = defaultdict(list)

    async def _record(self, call: SentCall, name: str) -> None:
        if name == "getupdates":
            return
        self.sent.append(call)  # as FakeTelegram._record, without waking a Condition nobody waits on
        if call.method == "sendMessage" and call.ok:
            try:
                chat = int(call.params.get("chat_id"))
            except (TypeError, ValueError):
                return
            self.by_chat[chat].append(call)
            for waiter in self._waiters.pop(chat, []):
                if not waiter.done():
                    waiter.set_result(None)

    async def wait_chat(self, chat: int, after: int, timeout: float) -> list[SentCall]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self.by_chat.get(chat, ())) <= after:
            left = deadline - loop.time()
            if left <= 0:
                return []
            waiter = loop.create_future()
            self._waiters[chat].append(waiter)
            try:
                await asyncio.wait_for(waiter, left)
            except TimeoutError:
                return []
        return self.by_chat[chat][after:]


def _call_json(call: SentCall) -> dict[str, Any]:
    result = call.result if isinstance(call.result, dict) else {}
    return {"method": call.method, "ok": call.ok, "chat_id": call.params.get("chat_id"),
            "text": call.params.get("text"), "message_id": result.get("message_id"), "at": call.at,
            "error": None if call.ok else result.get("description")}


def control_app(fake: IndexedFakeTelegram) -> web.Application:
    async def files(request: web.Request) -> web.Response:
        content = await request.read()
        file_id = fake.add_file(content, file_name=request.query.get("name"),
                                kind=request.query.get("kind", "photos"))
        meta = fake.files[file_id]
        return web.json_response({"file_id": file_id, "file_unique_id": meta["unique_id"], "size": meta["size"]})

    async def wait(request: web.Request) -> web.Response:
        chat = int(request.query["chat_id"])
        after = int(request.query.get("after", 0))
        timeout = float(request.query.get("timeout", 10))
        calls = await fake.wait_chat(chat, after, timeout)
        return web.json_response({"messages": [
            {"text": c.params.get("text"), "message": c.result, "at": c.at} for c in calls]})

    async def sent(request: web.Request) -> web.Response:
        method = request.query.get("method")
        since = int(request.query.get("since", 0))
        calls = fake.sent[since:]
        end = since + len(calls)
        return web.json_response({"calls": [_call_json(c) for c in calls if method is None or c.method == method],
                                  "next": end})

    async def fault(request: web.Request) -> web.Response:
        spec = await request.json()
        kind, method, times = spec.get("kind", "fail"), spec["method"], int(spec.get("times", 1))
        if kind == "fail":
            fake.fail_next(method, int(spec.get("status", 500)), times=times)
        elif kind == "close":
            fake.close_next_connection(method, times, after_processing=bool(spec.get("after_processing", False)))
        elif kind == "delay":
            fake.delay_next(method, float(spec["seconds"]), times,
                            after_processing=bool(spec.get("after_processing", True)))
        else:
            raise web.HTTPBadRequest(text=f"unknown fault kind {kind!r}")
        return web.json_response({"ok": True})

    async def clear_faults(request: web.Request) -> web.Response:
        fake._faults.clear()
        return web.json_response({"ok": True})

    async def stats(request: web.Request) -> web.Response:
        counts: dict[str, int] = defaultdict(int)
        for call in fake.sent:
            counts[call.method + ("" if call.ok else ":failed")] += 1
        return web.json_response(counts)

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/files", files)
    app.router.add_get("/wait", wait)
    app.router.add_get("/sent", sent)
    app.router.add_post("/fault", fault)
    app.router.add_post("/faults/clear", clear_faults)
    app.router.add_get("/stats", stats)
    return app


async def serve(token: str) -> None:
    fake = await IndexedFakeTelegram(token).start()
    runner = web.AppRunner(control_app(fake), access_log=None, handler_cancellation=True, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
    await site.start()
    control_port = runner.addresses[0][1]
    print(json.dumps({"api_port": fake.port, "control_port": control_port}), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()
    await fake.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--token", default=TOKEN)
    args = parser.parse_args()
    asyncio.run(serve(args.token))


if __name__ == "__main__":
    main()
