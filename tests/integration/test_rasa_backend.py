"""The Rasa backend: against a stand-in server for faults, and against the real Rasa server when one runs.

The real server is started by `scripts/rasa.sh serve`; CI does that and sets TEST_RASA_URL.
"""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from nlu.classifier import EmbeddedBackend, RasaBackend
from nlu.taxonomy import CATEGORY_IDS

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


# -- the real Rasa server ---------------------------------------------------------------------------

RASA_URL = os.environ.get("TEST_RASA_URL")
# CI sets the server up beside the suite (.ci/run): the first real-Rasa test waits this long for it
RASA_WAIT_SECONDS = float(os.environ.get("TEST_RASA_WAIT", "0"))


@pytest.fixture(scope="module")
def rasa_server_up() -> None:
    import time
    import urllib.request

    deadline, error = time.monotonic() + RASA_WAIT_SECONDS, None
    while True:
        try:
            with urllib.request.urlopen(f"{RASA_URL}/status", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError as exc:
            error = exc
        if time.monotonic() >= deadline:
            pytest.fail(f"the Rasa server at {RASA_URL} did not answer within {RASA_WAIT_SECONDS:.0f} s: {error} "
                        "(CI: see /tmp/qinglang-ci-rasa.log)")
        time.sleep(2)


def real_rasa(test):
    test = pytest.mark.usefixtures("rasa_server_up")(test)
    return pytest.mark.skipif(not RASA_URL, reason="TEST_RASA_URL is not set (scripts/rasa.sh serve)")(test)


@real_rasa
@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("直播间买的羽绒服七天无理由，商家就是不给退款，客服也不理人", "consumer_rights"),
        ("主播说原价999今天秒杀99，我查了平时一直卖99，虚假折扣", "price"),
        ("直播间买的奶粉已经过期了，生产日期还是改过的", "food_safety"),
    ],
)
async def test_real_rasa_server_classifies(embedded, text, category):
    backend = RasaBackend(RASA_URL, embedded, timeout=10)
    result = await backend.parse(text, now=NOW)
    assert result.backend == "rasa", result.fallback_reason
    assert result.category == category
    assert result.category in CATEGORY_IDS


@real_rasa
async def test_real_rasa_server_handles_mixed_scripts(embedded):
    backend = RasaBackend(RASA_URL, embedded, timeout=10)
    result = await backend.parse("我在dy买了iPhone15 pro 花了5999元 结果是翻新机", now=NOW)
    assert result.backend == "rasa", result.fallback_reason
    assert result.entities.platform == "抖音"
