"""The Rasa backend against a stand-in server, for its faults (the real server: test_rasa_server.py)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from nlu.classifier import EmbeddedBackend, RasaBackend

NOW = datetime(2026, 11, 16, 2, 0, tzinfo=UTC)
TEXT = "主播说原价999元今天秒杀99元，我查了平时一直卖99，这是虚假折扣"


@pytest.fixture(scope="module")
def embedded(tmp_path_factory) -> EmbeddedBackend:
    backend = EmbeddedBackend(cache_dir=tmp_path_factory.mktemp("nlu"), progress=False)
    backend.warm_up()
    return backend


async def _server(handler) -> TestServer:
    app = web.Application()
    app.router.add_post("/model/parse", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


async def test_rasa_answer_is_used(embedded):
    async def parse(request):
        body = await request.json()
        assert body == {"text": TEXT.replace("，", ",")}
        return web.json_response({
            "text": body["text"],
            "intent": {"name": "advertising", "confidence": 0.7},
            "intent_ranking": [{"name": "advertising", "confidence": 0.7}, {"name": "price", "confidence": 0.2},
                               {"name": "greet", "confidence": 0.1}],
            "entities": [],
        })

    server = await _server(parse)
    try:
        result = await RasaBackend(str(server.make_url("/")), embedded).parse(TEXT, now=NOW)
    finally:
        await server.close()
    assert result.backend == "rasa"
    assert result.fallback_reason is None
    assert result.category == "advertising"  # Rasa's answer, not the embedded model's (price)
    assert [s.label for s in result.ranking] == ["advertising", "price"]
    assert result.ranking[0].confidence == pytest.approx(0.7 / 0.9)
    assert result.entities.amount_fen == 9900  # entities are extracted the same way on both backends


async def _answer_500(request):
    return web.Response(status=500, text="boom")


async def _answer_slowly(request):
    await asyncio.sleep(2)
    return web.json_response({})


async def _answer_garbage(request):
    return web.Response(text="<html>not json</html>", content_type="text/html")


@pytest.mark.parametrize(
    ("handler", "reason"),
    [(_answer_500, "ClientResponseError"), (_answer_slowly, "TimeoutError"), (_answer_garbage, "ContentTypeError")],
)
async def test_rasa_failure_falls_back_to_embedded(embedded, handler, reason):
    server = await _server(handler)
    backend = RasaBackend(str(server.make_url("/")), embedded, timeout=0.5)
    try:
        result = await backend.parse(TEXT, now=NOW)
    finally:
        await server.close()
    assert result.backend == "embedded"
    assert reason in result.fallback_reason
    assert result.category == "price"
    assert backend.fallbacks == 1


async def test_rasa_down_falls_back(embedded):
    result = await RasaBackend("http://127.0.0.1:1", embedded, timeout=1).parse(TEXT, now=NOW)
    assert result.backend == "embedded"
    assert result.fallback_reason.startswith("rasa unavailable")
