"""A stand-in Rasa server (POST /model/parse, GET /status) on 127.0.0.1 that can be stopped and started
again on the same port, for the fault tests: the app must fall back to its embedded classifier.

Its answer is fixed: `intent` with `confidence` and a ranking of two further categories, so a case whose
stored NLU confidence equals :attr:`FakeRasa.expected_confidence` was classified by this server.
"""

from __future__ import annotations

import asyncio
import socket

from aiohttp import web


class FakeRasa:
    def __init__(self, intent: str = "product_quality", confidence: float = 0.8123,
                 others: tuple[tuple[str, float], ...] = (("consumer_rights", 0.1), ("price", 0.0877))) -> None:
        self.intent, self.confidence, self.others = intent, confidence, others
        self.port = 0
        self.parsed = 0  # requests answered
        self.texts: list[str] = []
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def expected_confidence(self) -> float:
        """The confidence the app computes from this answer (the ranking renormalised over categories)."""
        total = self.confidence + sum(p for _, p in self.others)
        return round(self.confidence / total, 4)

    @property
    def running(self) -> bool:
        return self._runner is not None

    async def _parse(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.parsed += 1
        self.texts.append(body.get("text", ""))
        ranking = [{"name": self.intent, "confidence": self.confidence},
                   *({"name": n, "confidence": p} for n, p in self.others)]
        return web.json_response({"text": body.get("text", ""), "intent": ranking[0],
                                  "intent_ranking": ranking, "entities": []})

    async def _status(self, request: web.Request) -> web.Response:
        return web.json_response({"model_file": "fake.tar.gz", "num_active_training_jobs": 0})

    async def start(self) -> FakeRasa:
        app = web.Application()
        app.router.add_post("/model/parse", self._parse)
        app.router.add_get("/status", self._status)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        return self

    async def stop(self) -> None:
        """The server goes away: its port refuses connections (open keep-alive connections are closed)."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
            await asyncio.sleep(0)
