"""A TCP proxy between the app processes and a real server (PostgreSQL, Redis), to play its restart.

The machine's real servers are shared with other tests and must never be stopped; instead the app
processes connect through this proxy, and the test makes the proxy behave like a server going away:

- ``cut()``: abort every relayed connection (both ends get a reset, as when the server process dies);
- ``refuse()``: close the listening socket, so new connections are refused (the server is down);
- ``accept()``: listen again on the same port (the server is back);
- ``outage(seconds)``: cut, refuse for `seconds`, accept again — a restart.

It runs on the caller's event loop (``await TcpProxy(...).start()``).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import dataclass, field


@dataclass
class ProxyStats:
    accepted: int = 0  # client connections relayed
    failed_upstream: int = 0  # client connections whose upstream connect failed
    cut: int = 0  # connections aborted by cut()
    refused_periods: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    events: list[tuple[float, str]] = field(default_factory=list)


class TcpProxy:
    def __init__(self, target_host: str, target_port: int, *, listen_host: str = "127.0.0.1",
                 listen_port: int = 0, name: str = "proxy") -> None:
        self.target = (target_host, target_port)
        self.host = listen_host
        self.port = listen_port
        self.name = name
        self.stats = ProxyStats()
        self._server: asyncio.base_events.Server | None = None
        self._conns: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter | None]] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def listening(self) -> bool:
        return self._server is not None

    @property
    def open_connections(self) -> int:
        return len(self._conns)

    def _event(self, what: str) -> None:
        self.stats.events.append((asyncio.get_running_loop().time(), what))

    async def start(self) -> TcpProxy:
        await self.accept()
        return self

    async def accept(self) -> None:
        """Listen (again) on the same port."""
        if self._server is not None:
            return
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(512)
        sock.setblocking(False)
        self._server = await asyncio.start_server(self._handle, sock=sock)
        self.port = sock.getsockname()[1]
        self._event("accept")

    async def refuse(self) -> None:
        """Stop listening: connection attempts are refused until accept()."""
        if self._server is None:
            return
        self._server.close()
        self._server = None
        self.stats.refused_periods += 1
        self._event("refuse")

    def cut(self) -> int:
        """Abort every relayed connection; returns how many there were."""
        conns = list(self._conns)
        for client, upstream in conns:
            client.transport.abort()
            if upstream is not None:
                upstream.transport.abort()
        self._conns.clear()
        self.stats.cut += len(conns)
        self._event(f"cut {len(conns)}")
        return len(conns)

    async def outage(self, seconds: float) -> int:
        """A server restart: refuse new connections, cut the open ones, wait, accept again."""
        await self.refuse()
        count = self.cut()
        await asyncio.sleep(seconds)
        await self.accept()
        return count

    async def stop(self) -> None:
        await self.refuse()
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def __aenter__(self) -> TcpProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            try:
                up_reader, up_writer = await asyncio.open_connection(*self.target)
            except OSError:
                self.stats.failed_upstream += 1
                writer.transport.abort()
                return
            if self._server is None:  # refused while connecting upstream
                up_writer.transport.abort()
                writer.transport.abort()
                return
            pair = (writer, up_writer)
            self._conns.add(pair)
            self.stats.accepted += 1
            try:
                await asyncio.gather(self._pump(reader, up_writer, up=True), self._pump(up_reader, writer, up=False))
            finally:
                self._conns.discard(pair)
                for w in pair:
                    w.transport.abort()
        finally:
            self._tasks.discard(task)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, up: bool) -> None:
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                if up:
                    self.stats.bytes_up += len(data)
                else:
                    self.stats.bytes_down += len(data)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                if writer.can_write_eof():
                    writer.write_eof()
