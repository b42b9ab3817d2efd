"""Schemathesis against the live OpenAPI document: generated requests (valid and invalid) for every
operation must never make the server fail (no 5xx), and answers must match the document.

The app runs on aiohttp's TestServer at 127.0.0.1 in a thread of its own (SQLite, fixed clock); the
generated requests go to it over HTTP with a real bearer token. Bounded: 20 examples per operation and
mode (valid, invalid), the same ones every run.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
from datetime import UTC, datetime

import pytest

schemathesis = pytest.importorskip("schemathesis")

from aiohttp.test_utils import TestServer  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from intake.cases import Actor, ComplainantInfo, NewCase  # noqa: E402
from intake.clock import FixedClock  # noqa: E402
from intake.outbound import OutboundGuard, OutboundPolicy  # noqa: E402
from nlu.taxonomy import Kind  # noqa: E402
from qinglang.bootstrap import build_container  # noqa: E402
from qinglang.settings import load_settings  # noqa: E402
from routing.rules import MerchantLocation  # noqa: E402
from routing.sync import sync_units  # noqa: E402
from tests.fakes.dns import every_name_is_public  # noqa: E402
from web.api.openapi import document  # noqa: E402
from web.app import create_app  # noqa: E402
from web.keys import OUTBOUND  # noqa: E402

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


class LiveApi:
    """The app served over real HTTP from a background event loop, stopped at the end of the module."""

    def __init__(self, settings) -> None:
        self.settings = settings
        self.url = ""
        self.token = ""
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="live-api", daemon=True)

    def start(self) -> LiveApi:
        self._thread.start()
        if not self._ready.wait(120):
            raise RuntimeError("the API server did not start within 120 s")
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # surfaced to the test thread
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        # 2026-11-16 10:00 in Shanghai, like the other tests
        container = build_container(self.settings, clock=FixedClock(datetime(2026, 11, 16, 2, 0, tzinfo=UTC)))
        await sync_units(container.uow, container.directory)
        user = await container.accounts.create_user("hotline", "xiaobao", "triage", with_api_token=True)
        self.token = user.api_token
        # LW-2026-000001, the number the document gives as its example, exists
        await container.cases.create(NewCase(
            kind=Kind.COMPLAINT, category="consumer_rights", channel="12345",
            description="直播间买的羽绒服七天无理由退货，商家一直不给退款",
            complainant=ComplainantInfo(name="张三", phone="13800138000"),
            merchant=MerchantLocation(True, "永中街道", "浙江省"),
        ), Actor("staff", user.id))
        app = create_app(container, with_bot=False)
        # generated callback URLs are checked against a table, never the network's DNS
        app[OUTBOUND] = OutboundGuard(OutboundPolicy.from_settings(self.settings.outbound), every_name_is_public())
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        try:
            self.url = str(server.make_url("")).rstrip("/")
            self._ready.set()
            await self._stop.wait()
        finally:
            await server.close()


@pytest.fixture(scope="module")
def live_api(sqlite_template, tmp_path_factory):
    root = tmp_path_factory.mktemp("live-api")
    shutil.copy(sqlite_template, root / "qinglang.db")
    app_settings = load_settings(env_file=None, data_dir=root / "data",
                                 database_url=f"sqlite+aiosqlite:///{root / 'qinglang.db'}")
    live = LiveApi(app_settings).start()
    yield live
    live.stop()


@pytest.fixture(scope="module")
def api_schema(live_api):
    return schemathesis.openapi.from_url(f"{live_api.url}/api/v1/openapi.json")


# every operation of the document (read locally: the test ids are known before the server runs), with
# valid and with invalid input (an operation without any input has nothing to make invalid)
OPERATIONS = [
    pytest.param(path, method, mode, id=f"{method.upper()} {path} {mode.value}")
    for path, item in document()["paths"].items() for method, operation in item.items()
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if mode == GenerationMode.POSITIVE or operation.get("parameters") or operation.get("requestBody")
]
SEEDED = "LW-2026-000001"
# 20 fixed examples per operation and mode in CI; QINGLANG_API_FUZZ=500 explores 500 random ones
EXAMPLES = int(os.environ.get("QINGLANG_API_FUZZ", "20"))


@pytest.mark.parametrize(("path", "method", "mode"), OPERATIONS)
def test_no_operation_fails_the_server(api_schema, live_api, path, method, mode):
    operation = api_schema[path][method.upper()]
    headers = {"Authorization": f"Bearer {live_api.token}"}

    @given(case=operation.as_strategy(generation_mode=mode), on_seeded_case=st.booleans())
    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=EXAMPLES == 20,
              suppress_health_check=list(HealthCheck))
    def run(case, on_seeded_case):
        if on_seeded_case and "number" in (case.path_parameters or {}):
            case.path_parameters["number"] = SEEDED  # reach a real case, not only 404s
        response = case.call(base_url=live_api.url, headers=headers, timeout=30)
        case.validate_response(response, checks=CHECKS)

    run()
