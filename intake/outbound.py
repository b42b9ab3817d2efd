"""The one policy for every request the product makes on someone's behalf (API cases' callback URLs).

A destination is allowed when it is https (http only with QINGLANG_OUTBOUND_ALLOW_HTTP), carries no user
info, and every address its host resolves to is a public unicast address on an allowed port, unless the
administrator trusts it (QINGLANG_OUTBOUND_ALLOW_HOSTS: host names, IP addresses or networks). The rules
are those of the `ipaddress` module (loopback, private, link-local, unique-local, multicast, reserved,
unspecified, not globally reachable), applied to IPv4 addresses embedded in IPv6 ones too (IPv4-mapped,
6to4, NAT64).

The host is resolved once per connection, by `PolicyResolver`, the resolver of the connector the request
goes through: aiohttp connects to the addresses it checked, so a DNS answer that changes between the check
and the connection (DNS rebinding) cannot slip past. An IP literal is never resolved: it is checked as it
is written. A URL is checked when the case is created (`OutboundGuard.check`) and again when a notice is
sent; redirects are never followed.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

if TYPE_CHECKING:
    from qinglang.settings import OutboundSettings

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

REFUSED = "refused by policy"  # what the outbox records before the reason; the console shows it as such
_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
_NUMBER = re.compile(r"^([0-9]+|0[xX][0-9a-fA-F]*)$")  # a label an IPv4 parser reads as a number
_UNIQUE_LOCAL = ipaddress.IPv6Network("fc00::/7")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # the well-known prefix: the last 32 bits are an IPv4 address
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")  # local-use NAT64 (RFC 8215): the site's own translator
_RULES: tuple[tuple[str, str], ...] = (  # (ipaddress property, what it means), the first that holds is the reason
    ("is_unspecified", "an unspecified address"),
    ("is_loopback", "a loopback address"),
    ("is_link_local", "a link-local address"),
    ("is_multicast", "a multicast address"),
    ("is_private", "a private-use address"),
    ("is_reserved", "a reserved address"),
)


class OutboundRefused(Exception):
    """A destination the policy does not allow; `reason` says why, in words fit for the requester."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return f"{REFUSED}: {self.reason}"


# -- the rules for one address ------------------------------------------------------------------------


def address_refusal(address: Address) -> str | None:
    """Why `address` is not a public unicast destination (e.g. "a loopback address"), or None."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            inner = address_refusal(address.ipv4_mapped)
            return f"{inner} (IPv4-mapped)" if inner else "an IPv4-mapped IPv6 address (use the IPv4 address)"
        if address in _NAT64_LOCAL:
            return "a local-use NAT64 address"
        if address in _NAT64:  # the network's translator connects to the embedded address: that one decides
            inner = address_refusal(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
            return f"{inner} (embedded in an IPv6 address)" if inner else None
        if address.sixtofour is not None and (inner := address_refusal(address.sixtofour)):
            return f"{inner} (embedded in an IPv6 address)"
        if address in _UNIQUE_LOCAL:
            return "a unique-local address"
        if address.is_site_local:
            return "a site-local address"
    for test, meaning in _RULES:
        if getattr(address, test):
            return meaning
    if not address.is_global:
        return "not a globally reachable address"
    return None


# -- the administrator's settings -----------------------------------------------------------------------


def parse_allow_list(text: str) -> tuple[frozenset[str], tuple[Network, ...]]:
    """QINGLANG_OUTBOUND_ALLOW_HOSTS: host names and IP addresses/networks; a ValueError names a bad entry."""
    hosts: set[str] = set()
    networks: list[Network] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
            continue
        except ValueError:
            pass
        name = _host_name(part)
        if name is None:
            raise ValueError(f"{part!r} is not a host name, an IP address or an IP network "
                             "(e.g. 12345.example.gov.cn, 10.20.0.5 or 10.20.0.0/24)")
        hosts.add(name)
    return frozenset(hosts), tuple(networks)


def parse_ports(text: str) -> frozenset[int]:
    ports = set()
    for part in (p.strip() for p in text.split(",")):
        if part:
            if not part.isdigit() or not 1 <= int(part) <= 65535:
                raise ValueError(f"{part!r} is not a port number (1-65535)")
            ports.add(int(part))
    return frozenset(ports)


def _host_name(text: str) -> str | None:
    """A host name in its ASCII (IDNA) form, lower case, without the trailing dot; None if it is not one."""
    try:
        host = URL.build(scheme="https", host=text.strip()).raw_host
    except (ValueError, UnicodeError):
        return None
    host = (host or "").lower().removesuffix(".")
    labels = host.split(".")
    if not host or len(host) > 253 or not all(_LABEL.match(label) for label in labels) or _NUMBER.match(labels[-1]):
        return None
    return host


# -- the policy ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Destination:
    """A URL that passed the checks that need no DNS: its host (normalised) and port, its address if literal."""

    url: URL
    host: str
    port: int
    address: Address | None


@dataclass(frozen=True)
class OutboundPolicy:
    allow_http: bool = False
    allowed_hosts: frozenset[str] = frozenset()
    allowed_networks: tuple[Network, ...] = ()
    ports: frozenset[int] = frozenset({443, 80})
    ca_file: Path | None = None

    @classmethod
    def from_settings(cls, settings: OutboundSettings) -> OutboundPolicy:
        hosts, networks = parse_allow_list(settings.outbound_allow_hosts)
        return cls(allow_http=settings.outbound_allow_http, allowed_hosts=hosts, allowed_networks=networks,
                   ports=parse_ports(settings.outbound_ports), ca_file=settings.outbound_ca_file)

    def trusts_host(self, host: str) -> bool:
        return host.lower().removesuffix(".") in self.allowed_hosts

    def destination(self, url: str | URL) -> Destination:
        """Every check that needs no DNS: scheme, user info, the host's form, a literal address and its port."""
        parsed = shape(url)
        if parsed.url.scheme == "http" and not self.allow_http:
            raise OutboundRefused("plain http is not allowed; use https")
        if parsed.address is not None:
            self.check_address(parsed.address, parsed.port, parsed.host)
        return parsed  # a host name's port is checked with each address it resolves to

    def check_address(self, address: Address, port: int, host: str) -> None:
        """Refuse one address `host` stands for, unless it is on the allow list."""
        if any(address in network for network in self.allowed_networks):
            return
        why = address_refusal(address)
        if why is not None:
            # a host name's address is not told (the requester may not know what an internal name stands for)
            raise OutboundRefused(f"{host} is {why}" if host == str(address) else f"{host} resolves to {why}")
        if port not in self.ports:
            raise OutboundRefused(self._port_reason(port))

    def _port_reason(self, port: int) -> str:
        allowed = ", ".join(str(p) for p in sorted(self.ports)) or "none"
        return f"port {port} is not allowed (allowed: {allowed}; other ports only for hosts on the allow list)"

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        if self.ca_file is not None:
            context.load_verify_locations(cafile=str(self.ca_file))
        return context


def shape(url: str | URL) -> Destination:
    """The checks that need no settings (the API's request model applies them): an http(s) URL without user
    info whose host is a host name or an IP address in its usual form (not 0x7f000001, 2130706433, 0177.0.0.1,
    127.1), with no IPv6 zone."""
    try:
        parsed = url if isinstance(url, URL) else URL(url)
        port = parsed.port
        host = parsed.raw_host
    except (ValueError, UnicodeError):
        raise OutboundRefused("not a valid URL") from None
    if parsed.scheme not in ("http", "https") or not host:
        raise OutboundRefused("not an http(s) URL with a host")
    try:
        authority = urlsplit(str(url)).netloc
    except ValueError:
        raise OutboundRefused("not a valid URL") from None
    if "@" in authority or parsed.raw_user is not None or parsed.raw_password is not None:
        raise OutboundRefused("user info (user@host) is not allowed in the URL")
    if port is None or not 1 <= port <= 65535:
        raise OutboundRefused("not a valid port")
    host = host.lower()
    bracketed = "[" in authority  # yarl turns [v1.x] (an IP-literal of no known version) into the name v1.x
    if ":" in host or bracketed:
        if "%" in host:
            raise OutboundRefused("an IPv6 address with a zone is not allowed")
        try:
            address: Address | None = ipaddress.IPv6Address(host)
        except ValueError:
            raise OutboundRefused(f"{host} is not an IPv6 address") from None
        return Destination(parsed, str(address), port, address)
    name = host.removesuffix(".")
    if _NUMBER.match(name.rsplit(".", 1)[-1]):  # the WHATWG URL rule: a host ending in a number is IPv4
        try:
            address = ipaddress.IPv4Address(name)
        except ValueError:
            raise OutboundRefused(f"{host} is not an IPv4 address in dotted-decimal form") from None
        return Destination(parsed, name, port, address)
    checked = _host_name(name)
    if checked is None:
        raise OutboundRefused(f"{host} is not a valid host name")
    return Destination(parsed, checked, port, None)


# -- resolution ------------------------------------------------------------------------------------------


class PolicyResolver(AbstractResolver):
    """Resolves through `inner` and lets a connection go only to addresses the policy allows: any refused
    address refuses the host (raising OutboundRefused, which aiohttp passes through to the caller)."""

    def __init__(self, policy: OutboundPolicy, inner: AbstractResolver) -> None:
        self.policy = policy
        self._inner = inner

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        if self.policy.trusts_host(host):
            return results
        if not results:
            raise OutboundRefused(f"{host} has no address")
        for result in results:
            try:
                address = ipaddress.ip_address(result["host"])
            except ValueError:
                raise OutboundRefused(f"{host} resolves to something that is not an IP address") from None
            self.policy.check_address(address, port, host.lower().removesuffix("."))
        return results

    async def close(self) -> None:
        await self._inner.close()


class OutboundGuard:
    """The policy with the resolver it resolves through (injectable: tests give a fake one). Makes the
    connectors of outbound sessions, and checks a URL in full (with DNS) before it is accepted."""

    def __init__(self, policy: OutboundPolicy, resolver: AbstractResolver | None = None) -> None:
        self.policy = policy
        self._given = resolver
        self._resolver: PolicyResolver | None = None

    @property
    def resolver(self) -> PolicyResolver:
        if self._resolver is None:  # the default resolver needs the running loop: made on first use
            self._resolver = PolicyResolver(self.policy, self._given or aiohttp.DefaultResolver())
        return self._resolver

    async def check(self, url: str) -> Destination:
        """Refuse (OutboundRefused) a URL the policy does not allow, resolving its host once."""
        destination = self.policy.destination(url)
        if destination.address is None:
            try:
                await self.resolver.resolve(destination.host, destination.port, socket.AF_UNSPEC)
            except OSError:
                raise OutboundRefused(f"{destination.host} could not be resolved") from None
        return destination

    def connector(self) -> aiohttp.TCPConnector:
        """A connector that resolves through the policy and trusts the configured CA certificates too."""
        return aiohttp.TCPConnector(resolver=self.resolver, ssl=self.policy.ssl_context())

    async def close(self) -> None:
        if self._resolver is not None:
            await self._resolver.close()
            self._resolver = None
