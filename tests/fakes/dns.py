"""A DNS resolver for tests: names answer from a table (never the network); an unknown name does not exist.

Give it to intake.outbound.OutboundGuard (the API's `app[OUTBOUND]`, a CallbackTransport's guard). The
table may be changed between lookups (DNS rebinding); every lookup is recorded.
"""

from __future__ import annotations

import socket

from aiohttp.abc import AbstractResolver, ResolveResult

PUBLIC = "93.184.215.14"  # a globally reachable address nothing in a test ever connects to


class FakeResolver(AbstractResolver):
    def __init__(self, table: dict[str, str | list[str]] | None = None) -> None:
        self.table: dict[str, str | list[str]] = dict(table or {})
        self.lookups: list[str] = []

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        name = host.lower().removesuffix(".")
        self.lookups.append(name)
        answer = self.table.get(name)
        if answer is None:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        addresses = [answer] if isinstance(answer, str) else answer
        return [ResolveResult(hostname=host, host=address, port=port,
                              family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                              proto=0, flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV)
                for address in addresses]

    async def close(self) -> None:
        pass


def every_name_is_public() -> FakeResolver:
    """A resolver that answers PUBLIC for any name (for generated requests, e.g. schemathesis)."""

    class _AnyName(FakeResolver):
        async def resolve(self, host, port=0, family=socket.AF_INET):
            self.table.setdefault(host.lower().removesuffix("."), PUBLIC)
            return await super().resolve(host, port, family)

    return _AnyName()
