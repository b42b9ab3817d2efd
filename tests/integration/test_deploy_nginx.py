"""deploy/nginx.conf, run by the real nginx: the syntax (`nginx -t`) and what it does with requests.

In production the file is /etc/nginx/conf.d/default.conf of the nginx:1.27 image (docker-compose.yml), in
front of two Telegram webhook replicas (bot-1, bot-2) and the web app (app). A regex check of the file
(tests/unit/test_packaging.py) cannot tell whether nginx accepts it, nor whether a replica that is shutting
down (503) or gone (connection refused) really hands the update to the other one, whether /metrics stays
inside, or whether /login is limited per address. So this test runs Debian's nginx (/usr/sbin/nginx, 1.22)
on a copy of the file in which only what cannot exist outside compose is replaced: the upstream host names
point at small aiohttp servers on 127.0.0.1 that record every request, the listen ports are free loopback
ports, and the certificate is a self-signed one made here. Each replacement must match exactly as often as
expected, so the test breaks (instead of silently testing something else) when the file changes shape.

Without nginx the test skips locally and FAILS in CI (CI=true); install it with `apt-get install nginx`.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from multidict import CIMultiDict
from yarl import URL

from tests.net import free_port

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION_CONF = ROOT / "deploy" / "nginx.conf"
LOGIN_BURST = 20  # `limit_req zone=qinglang_login burst=20 nodelay` at 10r/m: 1 + 20 requests pass at once
WEBHOOK = "/telegram/webhook"
SECRET = "s3cret-token"  # Telegram's X-Telegram-Bot-Api-Secret-Token must reach the replica unchanged


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="module")
def nginx_binary() -> str:
    found = shutil.which("nginx") or "/usr/sbin/nginx"
    if os.access(found, os.X_OK):
        return found
    message = "the nginx test needs nginx (Debian: apt-get install nginx)"
    if _in_ci():
        pytest.fail(message + " (CI=true: failing instead of skipping; scripts/test.sh installs nginx "
                              "with apt-get when it runs as root)", pytrace=False)
    pytest.skip(message)



@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    """A self-signed certificate and key for 127.0.0.1 (the client does not verify it anyway)."""
    directory = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "qinglang.test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    fullchain, privkey = directory / "fullchain.pem", directory / "privkey.pem"
    fullchain.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    privkey.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return fullchain, privkey


def _replace(text: str, old: str, new: str, count: int) -> str:
    found = text.count(old)
    assert found == count, f"deploy/nginx.conf has {old!r} {found} times, the test expects {count}"
    return text.replace(old, new)


@dataclass
class Config:
    main: Path
    error_log: Path
    http_port: int
    https_port: int


def write_config(directory: Path, certificate: tuple[Path, Path], upstream_ports: dict[str, int]) -> Config:
    """The production file with compose's names, ports and certificate swapped for local ones, inside a
    main configuration that keeps every file nginx writes in `directory`."""
    http_port, https_port = free_port(), free_port()
    text = PRODUCTION_CONF.read_text()
    assert len(re.findall(r"^\s*listen\s", text, re.M)) == 2, "a new listen line: teach the test about it"
    assert len(re.findall(r"^\s*server\s+\S+:\d+", text, re.M)) == 3, "a new upstream server: teach the test"
    for host in ("bot-1", "bot-2", "app"):
        text = _replace(text, f"server {host}:8080", f"server 127.0.0.1:{upstream_ports[host]}", 1)
    text = _replace(text, "listen 80;", f"listen 127.0.0.1:{http_port};", 1)
    text = _replace(text, "listen 443 ssl http2;", f"listen 127.0.0.1:{https_port} ssl http2;", 1)
    text = _replace(text, "/etc/nginx/tls/fullchain.pem", str(certificate[0]), 1)
    text = _replace(text, "/etc/nginx/tls/privkey.pem", str(certificate[1]), 1)
    assert "/etc/nginx" not in text
    copy = directory / "default.conf"
    copy.write_text(text)
    error_log = directory / "error.log"
    temp = {kind: directory / f"{kind}_temp" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")}
    for path in temp.values():
        path.mkdir()
    # Workers run as nobody unless told otherwise, and nobody cannot enter pytest's 0700 tmp directory.
    user = "user root;\n" if os.geteuid() == 0 else ""
    main = directory / "nginx.conf"
    main.write_text(
        f"{user}daemon off;\nmaster_process on;\nworker_processes 1;\npid {directory / 'nginx.pid'};\n"
        f"error_log {error_log};\n"
        "events { worker_connections 128; }\n"
        "http {\n"
        "    access_log off;\n"
        + "".join(f"    {kind}_temp_path {path};\n" for kind, path in temp.items())
        + f"    include {copy};\n"
        "}\n")
    return Config(main, error_log, http_port, https_port)


def nginx_command(binary: str, directory: Path, config: Config, *extra: str) -> list[str]:
    # -e: the error log from the start, before the configuration is read (not /var/log/nginx/error.log)
    return [binary, "-p", f"{directory}/", "-c", str(config.main), "-e", str(config.error_log), *extra]


def test_nginx_accepts_the_production_file(nginx_binary, certificate, tmp_path):
    config = write_config(tmp_path, certificate, {"bot-1": 18081, "bot-2": 18082, "app": 18083})
    result = subprocess.run(nginx_command(nginx_binary, tmp_path, config, "-t"),
                            capture_output=True, text=True, timeout=30)
    print(result.stderr)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr, result.stderr
    assert "[warn]" not in result.stderr and "[emerg]" not in result.stderr, result.stderr


@dataclass
class Seen:
    method: str
    path: str
    headers: CIMultiDict[str]
    body: bytes


@dataclass
class Upstream:
    """A fake bot replica or web app: records each request and answers `status`."""

    name: str
    status: int = 200
    seen: list[Seen] = field(default_factory=list)
    port: int = 0
    site: web.BaseSite | None = None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.seen.append(Seen(request.method, request.path_qs, request.headers.copy(), body))
        return web.json_response({"served_by": self.name, "length": len(body)}, status=self.status)

    async def stop(self) -> None:
        """Close the listening socket: new connections are refused."""
        assert self.site is not None
        await self.site.stop()


@pytest.fixture
async def upstreams() -> AsyncIterator[dict[str, Upstream]]:
    servers = {name: Upstream(name) for name in ("bot-1", "bot-2", "app")}
    runners = []
    try:
        for upstream in servers.values():
            app = web.Application(client_max_size=100 * 1024 * 1024)
            app.router.add_route("*", "/{tail:.*}", upstream.handle)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            runners.append(runner)
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            upstream.port = sock.getsockname()[1]
            upstream.site = web.SockSite(runner, sock)
            await upstream.site.start()
        yield servers
    finally:
        for runner in runners:
            await runner.cleanup()


@dataclass
class Nginx:
    config: Config
    upstreams: dict[str, Upstream]

    def https(self, path: str) -> URL:
        return URL(f"https://127.0.0.1:{self.config.https_port}{path}", encoded=True)

    def http(self, path: str) -> URL:
        return URL(f"http://127.0.0.1:{self.config.http_port}{path}", encoded=True)

    def error_log(self) -> str:
        return self.config.error_log.read_text() if self.config.error_log.exists() else ""


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@pytest.fixture
def nginx(nginx_binary, certificate, upstreams, tmp_path) -> Iterator[Nginx]:
    config = write_config(tmp_path, certificate, {name: up.port for name, up in upstreams.items()})
    output = (tmp_path / "nginx.out").open("wb")
    process = subprocess.Popen(nginx_command(nginx_binary, tmp_path, config), stdout=output,
                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    running = Nginx(config, upstreams)
    try:
        deadline = time.monotonic() + 15
        while not (_accepts(config.https_port) and _accepts(config.http_port)):
            if process.poll() is not None:
                pytest.fail(f"nginx exited with {process.returncode}:\n{running.error_log()}"
                            f"{(tmp_path / 'nginx.out').read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"nginx did not listen within 15 s:\n{running.error_log()}")
            time.sleep(0.02)
        yield running
    finally:
        process.terminate()  # SIGTERM: fast shutdown of the master and its worker
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        output.close()


def _client(local_address: str = "127.0.0.1") -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=False, local_addr=(local_address, 0)),
        timeout=aiohttp.ClientTimeout(total=15))


def _update(update_id: int) -> bytes:
    return json.dumps({"update_id": update_id, "message": {"message_id": 1, "text": "你好"}}).encode()


async def _post_updates(nginx: Nginx, ids: range) -> list[tuple[int, dict]]:
    answers = []
    async with _client() as client:
        for update_id in ids:
            async with client.post(nginx.https(WEBHOOK), data=_update(update_id), headers={
                    "Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": SECRET}) as response:
                answers.append((response.status, await response.json(content_type=None)))
    return answers


def _update_ids(upstream: Upstream) -> list[int]:
    return [json.loads(seen.body)["update_id"] for seen in upstream.seen]


def test_tls_offers_http2(nginx):
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection(("127.0.0.1", nginx.config.https_port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        assert tls.selected_alpn_protocol() == "h2"


async def test_webhook_reaches_both_bot_replicas(nginx):
    answers = await _post_updates(nginx, range(1, 3))
    assert [status for status, _ in answers] == [200, 200]
    bots = nginx.upstreams["bot-1"], nginx.upstreams["bot-2"]
    # round robin: one update each, answered by the replica that got it
    assert sorted(body["served_by"] for _, body in answers) == ["bot-1", "bot-2"]
    assert sorted(_update_ids(bots[0]) + _update_ids(bots[1])) == [1, 2]
    assert [len(bot.seen) for bot in bots] == [1, 1]
    for bot in bots:
        (seen,) = bot.seen
        assert (seen.method, seen.path) == ("POST", WEBHOOK)
        assert seen.body == _update(_update_ids(bot)[0])
        assert seen.headers["X-Forwarded-Proto"] == "https"
        assert seen.headers["X-Forwarded-For"] == "127.0.0.1"
        assert seen.headers["Host"] == "127.0.0.1"
        assert seen.headers["X-Telegram-Bot-Api-Secret-Token"] == SECRET
        assert seen.headers["Content-Type"] == "application/json"
    assert nginx.upstreams["app"].seen == []


async def test_webhook_goes_to_the_other_replica_when_one_answers_503(nginx):
    bot_1, bot_2 = nginx.upstreams["bot-1"], nginx.upstreams["bot-2"]
    bot_1.status = 503  # shutting down: /readyz is 503 and so is every new update
    answers = await _post_updates(nginx, range(1, 5))
    assert answers == [(200, {"served_by": "bot-2", "length": len(_update(i))}) for i in range(1, 5)]
    assert _update_ids(bot_2) == [1, 2, 3, 4]
    # at least one POST was first sent to bot-1 (round robin), refused with 503 and repeated on bot-2
    tried_first = _update_ids(bot_1)
    assert tried_first, "no update was sent to bot-1 at all: the 503 retry was not exercised"
    assert set(tried_first) <= {1, 2, 3, 4}
    for seen in bot_1.seen:
        assert (seen.method, seen.path) == ("POST", WEBHOOK)
        assert seen.body in [s.body for s in bot_2.seen]  # the same update, byte for byte
    assert nginx.upstreams["app"].seen == []


async def test_webhook_goes_to_the_other_replica_when_one_refuses_connections(nginx):
    bot_1, bot_2 = nginx.upstreams["bot-1"], nginx.upstreams["bot-2"]
    await bot_1.stop()
    answers = await _post_updates(nginx, range(1, 5))
    assert answers == [(200, {"served_by": "bot-2", "length": len(_update(i))}) for i in range(1, 5)]
    assert _update_ids(bot_2) == [1, 2, 3, 4]
    assert bot_1.seen == []
    log = nginx.error_log()
    assert "Connection refused" in log and f"127.0.0.1:{bot_1.port}" in log, log  # bot-1 was tried first


async def test_metrics_are_not_served_outside(nginx):
    async with _client() as client:
        for method, path in [("GET", "/metrics"), ("GET", "/metrics?name[]=qinglang_updates_total"),
                             ("POST", "/metrics"), ("HEAD", "/metrics"), ("GET", "//metrics"),
                             ("GET", "/%6detrics")]:
            async with client.request(method, nginx.https(path)) as response:
                assert response.status == 404, (method, path)
                assert response.headers["Server"].startswith("nginx"), (method, path)
    for upstream in nginx.upstreams.values():
        assert upstream.seen == [], upstream.name


async def test_login_is_rate_limited_per_address(nginx):
    app = nginx.upstreams["app"]
    sent = LOGIN_BURST + 10
    async with _client() as client:
        statuses = []
        for _ in range(sent):
            async with client.get(nginx.https("/login?next=%2Fcases")) as response:
                statuses.append(response.status)
        # 1 + burst pass at once (nodelay), the rest is refused by nginx until the bucket drains (10r/m)
        assert statuses == [200] * (LOGIN_BURST + 1) + [429] * (sent - LOGIN_BURST - 1), statuses
        assert len(app.seen) == LOGIN_BURST + 1 < sent
        async with client.post(nginx.https("/login"), data={"username": "a", "password": "b"}) as response:
            assert response.status == 429  # a POST counts against the same address
        assert len(app.seen) == LOGIN_BURST + 1
        assert {(seen.method, seen.path) for seen in app.seen} == {("GET", "/login?next=%2Fcases")}
        assert {seen.headers["X-Forwarded-For"] for seen in app.seen} == {"127.0.0.1"}
        # other paths are not limited
        for _ in range(sent):
            async with client.get(nginx.https("/")) as response:
                assert response.status == 200
                assert (await response.json())["served_by"] == "app"
        assert len(app.seen) == LOGIN_BURST + 1 + sent
    # another address has its own bucket
    async with _client("127.0.0.2") as other:
        async with other.get(nginx.https("/login")) as response:
            assert response.status == 200
    assert app.seen[-1].path == "/login"
    assert app.seen[-1].headers["X-Forwarded-For"] == "127.0.0.2"
    assert nginx.upstreams["bot-1"].seen == nginx.upstreams["bot-2"].seen == []


async def test_plain_http_is_redirected_to_https(nginx):
    async with _client() as client:
        for method in ("GET", "POST"):
            async with client.request(method, nginx.http("/chat/status?case=QL-1"),
                                      allow_redirects=False) as response:
                assert response.status == 301, method
                assert response.headers["Location"] == "https://127.0.0.1/chat/status?case=QL-1", method
    for upstream in nginx.upstreams.values():
        assert upstream.seen == [], upstream.name


async def test_upload_size_limit(nginx):
    app = nginx.upstreams["app"]
    # 2 MB: over nginx's default limit of 1 MB, well under client_max_body_size (60m)
    body = os.urandom(2 * 1024 * 1024)
    async with _client() as client:
        async with client.post(nginx.https("/chat/upload"), data=body,
                               headers={"Content-Type": "application/octet-stream"}) as response:
            assert response.status == 200
            assert await response.json() == {"served_by": "app", "length": len(body)}
    assert app.seen[-1].body == body
    # 70 MB announced: nginx answers 413 on the header alone; the body is never sent
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    reader, writer = await asyncio.open_connection("127.0.0.1", nginx.config.https_port, ssl=context)
    try:
        writer.write(b"POST /chat/upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n"
                     b"Content-Length: 70000000\r\n\r\n" + b"x" * 1024)
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), timeout=5)
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (ConnectionError, ssl.SSLError):
            pass
    assert status_line.split()[:2] == [b"HTTP/1.1", b"413"], status_line
    assert len(app.seen) == 1
