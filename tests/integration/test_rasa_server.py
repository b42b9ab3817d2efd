"""The Rasa backend against the real Rasa server, when one runs (TEST_RASA_URL).

The server is started by `scripts/rasa.sh serve`. CI sets it up beside the suite (.ci/run), so this file
runs last (tests/conftest.py) and its first test waits up to TEST_RASA_WAIT seconds for the server.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

import pytest

from nlu.classifier import EmbeddedBackend, RasaBackend
from nlu.taxonomy import CATEGORY_IDS

NOW = datetime(2026, 11, 16, 2, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def embedded(tmp_path_factory) -> EmbeddedBackend:
    backend = EmbeddedBackend(cache_dir=tmp_path_factory.mktemp("nlu"), progress=False)
    backend.warm_up()
    return backend


RASA_URL = os.environ.get("TEST_RASA_URL")
# CI sets the server up beside the suite (.ci/run): the first real-Rasa test waits this long for it
RASA_WAIT_SECONDS = float(os.environ.get("TEST_RASA_WAIT", "0"))
# the first test's set-up may wait that long, beyond the suite's usual limit per test (pytest-timeout)
pytestmark = pytest.mark.timeout(RASA_WAIT_SECONDS + 120)


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
