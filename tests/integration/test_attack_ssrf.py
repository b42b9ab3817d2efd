"""Server-side request forgery through an API case's callback URL (issue 14, finding 1).

An API client sets `callback_url` and the notifier POSTs every notice there: without a policy, the service
is a port scanner and status oracle for the network it runs in (loopback, private ranges, the cloud's
metadata address, its own /metrics, Redis). The outbound policy (intake/outbound.py) must hold:

- at creation, POST /api/v1/cases answers 400 (`callback_refused`, or `validation_error` for a URL of a
  refused shape) with the reason, and stores nothing, for loopback, private, link-local and unique-local
  addresses however they are written (0x7f000001, 2130706433, [::ffff:127.0.0.1]), for names that resolve
  to them (through a fake resolver: no real DNS here), and for plain http when it is not allowed;
- at send time, through the real notifier and CallbackTransport, a loopback destination gets nothing and
  the notice ends `undeliverable`, "refused by policy"; a 307 from an allowed receiver is not followed; a
  name that resolved to a public address at creation and resolves to 127.0.0.1 at send time (DNS
  rebinding) gets nothing;
- /followup shows staff "回调地址被安全策略拒绝", not the remote answer;
- an allowed https receiver (a local TLS server with a certificate of a test CA given by
  QINGLANG_OUTBOUND_CA_FILE, its host on the allow list) gets the notice exactly once.

Every server here listens on 127.0.0.1; names resolve through tests/fakes/dns.py only.
SQLite always, PostgreSQL with TEST_DATABASE_URL.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from db.models import Case, OutboxMessage
from intake.callback import CallbackTransport
from intake.cases import ComplainantInfo
from intake.outbound import OutboundGuard, OutboundPolicy
from qinglang.settings import load_settings
from qinglang.worker import Worker
from tests.fakes.dns import PUBLIC, FakeResolver
from tests.integration.test_api import Api, trained_nlu  # noqa: F401 - the fixture
from tests.integration.test_console import console  # noqa: F401 - the fixture
from tests.integration.test_notifier import complaint, drain
from web.app import create_app
from web.keys import OUTBOUND

REFUSED_ZH = "回调地址被安全策略拒绝"
# what the network's DNS would answer for these names (the table is all a test ever resolves with)
NAMES = {"localhost": ["127.0.0.1", "::1"], "metadata.google.internal": "169.254.169.254",
         "redis.internal": "10.0.0.7", "hotline.example.gov.cn": PUBLIC}


@pytest.fixture
def outbound(sink) -> dict:
    """The outbound settings of the test (a test may parametrize it): plain http and the sink's port
    allowed, as for tests, so that what refuses a loopback receiver is its address alone."""
    return {"outbound_allow_http": True, "outbound_ports": f"443,80,{sink.port}"}


@pytest.fixture
def settings(tmp_path, database_url, nlu_cache_dir, outbound):
    return load_settings(env_file=None, data_dir=tmp_path / "data", database_url=database_url,
                         nlu_cache_dir=nlu_cache_dir, **outbound)


@dataclass
class Sink:
    """An HTTP server on 127.0.0.1 that records every request it gets and answers `status`."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)  # method, path, Idempotency-Key
    server: TestServer | None = None

    async def start(self, *, ssl_context: ssl.SSLContext | None = None) -> Sink:
        async def record(request: web.Request) -> web.Response:
            await request.read()
            self.requests.append((request.method, request.path, request.headers.get("Idempotency-Key")))
            return web.Response(status=self.status, headers=self.headers)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", record)
        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server(ssl=ssl_context)
        return self

    def url(self, path: str = "/hook") -> str:
        return str(self.server.make_url(path))

    @property
    def port(self) -> int:
        return self.server.port

    async def close(self) -> None:
        await self.server.close()


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    server = await Sink(status=401).start()
    yield server
    await server.close()


@pytest.fixture
def resolver() -> FakeResolver:
    return FakeResolver(NAMES)


@pytest.fixture
async def api(container, trained_nlu, resolver) -> AsyncIterator[Api]:  # noqa: F811
    """The API with the policy of the test's settings, resolving names through `resolver`."""
    container.nlu = trained_nlu
    app = create_app(container, with_bot=False)
    app[OUTBOUND] = OutboundGuard(OutboundPolicy.from_settings(container.settings.outbound), resolver)
    async with TestClient(TestServer(app)) as client:
        api = Api(client, container, {}, {})
        await api.user("triage", "xiaobao", "triage")
        yield api


async def api_case(container, callback_url: str) -> int:
    """A case as an API client creates it, its callback URL stored as given (as before the policy, or
    behind its back): only the send-time checks stand between it and the network."""
    view = await container.cases.create(complaint(
        channel="12345", complainant=ComplainantInfo(name="李四", phone="13900000000"), callback_url=callback_url))
    return view.id


async def outbox(container) -> list[OutboxMessage]:
    async with container.uow() as uow:
        return list((await uow.session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))).all())


async def send_all(container, transport: CallbackTransport | None = None) -> None:
    """Deliver every notice through the worker's real notifier, built from the settings (its callback
    transport too, unless the test gives one with a fake resolver)."""
    worker = Worker(container)
    if transport is not None:
        worker.notifier._transports["callback"] = transport
    try:
        await drain(worker.notifier, container.clock)
    finally:
        await worker.notifier._transports["callback"].close()


# -- at creation -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "code", "reason"), [  # validation_error: a refused shape
    ("http://127.0.0.1/hook", "callback_refused", "127.0.0.1 is a loopback address"),
    ("http://localhost:6379/", "callback_refused", "localhost resolves to a loopback address"),
    ("http://0x7f000001/", "validation_error", "0x7f000001 is not an IPv4 address in dotted-decimal form"),
    ("http://2130706433/", "validation_error", "2130706433 is not an IPv4 address in dotted-decimal form"),
    ("http://0177.0.0.1/", "validation_error", "0177.0.0.1 is not an IPv4 address in dotted-decimal form"),
    ("http://127.1/metrics", "validation_error", "127.1 is not an IPv4 address in dotted-decimal form"),
    ("http://10.0.0.1/", "callback_refused", "10.0.0.1 is a private-use address"),
    ("http://[fd00::1]/", "callback_refused", "fd00::1 is a unique-local address"),
    ("http://169.254.169.254/latest/meta-data/", "callback_refused", "169.254.169.254 is a link-local address"),
    ("http://[::ffff:127.0.0.1]/", "callback_refused", "::ffff:7f00:1 is a loopback address (IPv4-mapped)"),
    ("http://metadata.google.internal/computeMetadata/v1/", "callback_refused",
     "metadata.google.internal resolves to a link-local address"),
    ("http://redis.internal:6379/", "callback_refused", "redis.internal resolves to a private-use address"),
    ("http://nowhere.internal/", "callback_refused", "nowhere.internal could not be resolved"),
    ("http://user:pw@hotline.example.gov.cn/", "validation_error", "user info"),
    ("http://hotline.example.gov.cn:6379/", "callback_refused", "port 6379 is not allowed"),
])
async def test_the_api_refuses_an_internal_callback_at_creation(api, url, code, reason):
    response, data = await api.call("POST", "/cases", json={"description": "抖音直播间虚假折扣", "channel": "12345",
                                                            "callback_url": url})
    assert response.status == 400, data
    assert (data["error"]["code"], data["error"]["field"]) == (code, "callback_url")
    assert "refused by policy" in data["error"]["message"] and reason in data["error"]["message"], data
    if "metadata" in url:
        assert "169.254" not in data["error"]["message"]  # what an internal name stands for is not told
    assert await api.count(Case) == 0 and await api.count(OutboxMessage) == 0


@pytest.mark.parametrize("outbound", [{}])  # the production default: https only
async def test_plain_http_is_refused_unless_allowed(api):
    response, data = await api.call("POST", "/cases", json={"description": "抖音直播间虚假折扣", "channel": "12345",
                                                            "callback_url": "http://hotline.example.gov.cn/notices"})
    assert response.status == 400 and data["error"]["code"] == "callback_refused", data
    assert "plain http is not allowed" in data["error"]["message"]
    assert await api.count(Case) == 0
    case = await api.create(callback_url="https://hotline.example.gov.cn/notices")  # a public https URL is taken
    assert case["number"]


# -- at send time ------------------------------------------------------------------------------------------


async def test_a_loopback_callback_is_refused_at_send_time_and_gets_nothing(container, sink):
    await api_case(container, sink.url("/telegram/webhook"))
    await send_all(container)
    assert sink.requests == []
    [row] = await outbox(container)
    assert row.status == "undeliverable" and row.attempts == 1
    assert row.last_error == "refused by policy: 127.0.0.1 is a loopback address"


@pytest.mark.parametrize("outbound", [{"outbound_allow_http": True, "outbound_allow_hosts": "127.0.0.1"}])
async def test_a_redirect_from_an_allowed_receiver_is_not_followed(container, sink):
    receiver = await Sink(status=307, headers={"Location": sink.url("/internal")}).start()
    try:
        await api_case(container, receiver.url("/hook"))
        await send_all(container)
    finally:
        await receiver.close()
    assert [(method, path) for method, path, _ in receiver.requests] == [("POST", "/hook")]
    assert sink.requests == []  # on the allow list too: only the redirect could have led there
    [row] = await outbox(container)
    assert row.status == "undeliverable"
    assert row.last_error == "refused by policy: the receiver redirected (307); redirects are not followed"


async def test_dns_rebinding_between_creation_and_send_gets_nothing(api, sink, resolver):
    resolver.table["rebind.example"] = PUBLIC
    case = await api.create(callback_url=f"http://rebind.example:{sink.port}/hook")
    assert resolver.lookups == ["rebind.example"]  # checked at creation: public then

    resolver.table["rebind.example"] = "127.0.0.1"  # the attacker's DNS now answers loopback
    policy = OutboundPolicy.from_settings(api.container.settings.outbound)
    await send_all(api.container, CallbackTransport(timeout=2, guard=OutboundGuard(policy, resolver)))
    assert sink.requests == []
    assert resolver.lookups == ["rebind.example", "rebind.example"]  # once at send time, and checked
    [row] = [r for r in await outbox(api.container) if r.channel == "callback"]
    assert (row.case_id is not None, row.status) == (True, "undeliverable"), case
    assert row.last_error == "refused by policy: rebind.example resolves to a loopback address"


async def test_the_call_list_says_refused_by_policy_not_the_remote_answer(console, sink):  # noqa: F811
    await api_case(console.container, sink.url("/metrics"))
    await send_all(console.container)
    assert sink.requests == []
    triage = await console.person("t1", "xiaobao", "triage")
    status, html = await triage.get("/followup")
    assert status == 200
    assert f"{REFUSED_ZH}：127.0.0.1 is a loopback address" in html
    assert "401" not in html and "callback answered" not in html


# -- an allowed https receiver --------------------------------------------------------------------------------


async def test_an_allowed_https_callback_is_delivered_once(container, tmp_path):
    import trustme

    ca = trustme.CA()
    ca_file = tmp_path / "intranet-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("hotline.intranet.test").configure_cert(server_context)
    receiver = await Sink(status=200).start(ssl_context=server_context)
    # as an administrator would set it: the intranet platform on the allow list, its CA trusted
    outbound = load_settings(env_file=None, data_dir=tmp_path, outbound_allow_hosts="hotline.intranet.test",
                             outbound_ca_file=ca_file).outbound
    resolver = FakeResolver({"hotline.intranet.test": "127.0.0.1"})
    guard = OutboundGuard(OutboundPolicy.from_settings(outbound), resolver)
    url = f"https://hotline.intranet.test:{receiver.port}/notices"
    try:
        await guard.check(url)  # what the API checks at creation
        await api_case(container, url)
        await send_all(container, CallbackTransport(timeout=5, guard=guard))
    finally:
        await receiver.close()
    [row] = await outbox(container)
    assert (row.status, row.last_error) == ("sent", None)
    assert receiver.requests == [("POST", "/notices", row.idempotency_key)]
