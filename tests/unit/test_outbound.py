"""The outbound policy's rules (intake/outbound.py): which addresses are public, how URLs are read, the
allow list and ports, the resolver that checks every answer, and the settings that build the policy."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from intake.outbound import (
    OutboundGuard,
    OutboundPolicy,
    OutboundRefused,
    PolicyResolver,
    address_refusal,
    parse_allow_list,
    shape,
)
from qinglang.errors import ConfigError
from qinglang.settings import load_settings
from tests.fakes.dns import PUBLIC, FakeResolver

LOOPBACK_V4 = ipaddress.IPv4Network("127.0.0.0/8")
PRIVATE_V4 = [ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")]
BLOCKED_V4 = [ipaddress.IPv4Network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.2.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4",
    "240.0.0.0/4")]
BLOCKED_V6 = [ipaddress.IPv6Network(n) for n in ("::1/128", "::/128", "fc00::/7", "fe80::/10", "ff00::/8",
                                                  "2001:db8::/32", "::ffff:0:0/96", "64:ff9b:1::/48")]


def v4_in(network: ipaddress.IPv4Network):
    return st.integers(int(network.network_address), int(network.broadcast_address)).map(ipaddress.IPv4Address)


def v6_in(network: ipaddress.IPv6Network):
    return st.integers(int(network.network_address), int(network.broadcast_address)).map(ipaddress.IPv6Address)


# -- addresses -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("address", "reason"), [
    ("127.0.0.1", "loopback"), ("127.255.0.9", "loopback"), ("::1", "loopback"),
    ("10.0.0.1", "private"), ("172.16.5.4", "private"), ("192.168.1.1", "private"),
    ("169.254.169.254", "link-local"), ("fe80::1", "link-local"), ("fd00::1", "unique-local"),
    ("fc00::5", "unique-local"), ("224.0.0.1", "multicast"), ("239.255.255.250", "multicast"),
    ("ff02::1", "multicast"), ("0.0.0.0", "unspecified"), ("::", "unspecified"),
    ("100.64.0.1", "not a globally reachable"), ("240.0.0.1", "private"), ("255.255.255.255", "private"),
    ("::ffff:127.0.0.1", "loopback address (IPv4-mapped)"), ("::ffff:10.1.2.3", "private-use address (IPv4-mapped)"),
    ("::ffff:8.8.8.8", "IPv4-mapped"), ("2002:7f00:1::", "loopback address (embedded"),
    ("2002:a9fe:a9fe::1", "link-local address (embedded"), ("64:ff9b::7f00:1", "loopback address (embedded"),
    ("64:ff9b::a00:1", "private-use address (embedded"), ("64:ff9b:1::1", "local-use NAT64"),
    ("::127.0.0.1", "reserved"), ("fec0::1", "site-local"), ("2001:db8::1", "private"),
])
def test_addresses_that_are_not_public_are_refused_with_their_reason(address, reason):
    why = address_refusal(ipaddress.ip_address(address))
    assert why is not None and reason in why


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", PUBLIC, "2606:4700:4700::1111", "2002:808:808::1",
                                     "64:ff9b::808:808", "192.0.0.9"])
def test_public_addresses_pass(address):
    assert address_refusal(ipaddress.ip_address(address)) is None


@given(st.one_of(*(v4_in(n) for n in BLOCKED_V4)))
def test_every_address_of_a_blocked_ipv4_range_is_refused(address):
    assert address_refusal(address) is not None


@given(st.one_of(*(v6_in(n) for n in BLOCKED_V6)))
def test_every_address_of_a_blocked_ipv6_range_is_refused(address):
    assert address_refusal(address) is not None


@given(st.one_of(*(v4_in(n) for n in [LOOPBACK_V4, *PRIVATE_V4, ipaddress.IPv4Network("169.254.0.0/16")])))
def test_an_internal_ipv4_address_is_refused_in_every_ipv6_wrapping(address):
    for wrapped in (ipaddress.IPv6Address(f"::ffff:{address}"),
                    ipaddress.IPv6Address((0x2002 << 112) | (int(address) << 80)),  # 6to4
                    ipaddress.IPv6Address(int(ipaddress.IPv6Address("64:ff9b::")) | int(address))):  # NAT64
        assert address_refusal(wrapped) is not None, wrapped


@given(st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address))
def test_an_ipv4_address_passes_only_if_global_and_not_multicast(address):
    assert (address_refusal(address) is None) == (address.is_global and not address.is_multicast)


# -- URLs --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "reason"), [
    ("http://0x7f000001/", "dotted-decimal"), ("http://2130706433/", "dotted-decimal"),
    ("http://0177.0.0.1/", "dotted-decimal"), ("http://127.1/", "dotted-decimal"),
    ("http://017700000001/", "dotted-decimal"), ("http://0x7f.0.0.1/", "dotted-decimal"),
    ("http://1.2.3.4.5/", "dotted-decimal"), ("http://example.0x1/", "dotted-decimal"),
    ("http://user:secret@example.com/", "user info"), ("http://127.0.0.1:80@example.com/", "user info"),
    ("http://@example.com/", "user info"), ("http://[fe80::1%25eth0]/", "zone"), ("http://[v1.x]/", "IPv6"),
    ("http://%31%32%37.0.0.1/", "dotted-decimal"), ("http://exa%6dple.com/", "host name"),
    ("ftp://example.com/", "http(s)"), ("http:///path", "http(s)"), ("https://example.com:0/", "port"),
])
def test_urls_of_a_refused_shape(url, reason):
    with pytest.raises(OutboundRefused) as caught:
        shape(url)
    assert reason in caught.value.reason and str(caught.value).startswith("refused by policy: ")


@pytest.mark.parametrize(("url", "host", "port", "address"), [
    ("https://Hotline.Example.gov.cn./notices?x=1", "hotline.example.gov.cn", 443, None),
    ("https://用户.中国/", "xn--zouo53b.xn--fiqs8s", 443, None),
    ("http://8.8.8.8:8080/", "8.8.8.8", 8080, "8.8.8.8"),
    ("https://[::ffff:127.0.0.1]/", "::ffff:7f00:1", 443, "::ffff:7f00:1"),
    ("https://127.0.0.1./", "127.0.0.1", 443, "127.0.0.1"),
])
def test_urls_are_read_as_aiohttp_reads_them(url, host, port, address):
    found = shape(url)
    assert (found.host, found.port) == (host, port)
    assert found.address == (ipaddress.ip_address(address) if address else None)


def test_plain_http_needs_the_setting():
    with pytest.raises(OutboundRefused, match="plain http"):
        OutboundPolicy().destination("http://example.com/")
    assert OutboundPolicy(allow_http=True).destination("http://example.com/").port == 80


@pytest.mark.parametrize("url", ["https://127.0.0.1/", "https://[::1]/", "https://[::ffff:127.0.0.1]/",
                                 "https://10.0.0.1/", "https://[fd00::1]/", "https://169.254.169.254/"])
def test_literal_addresses_are_checked_without_dns(url):
    with pytest.raises(OutboundRefused, match=" is a"):
        OutboundPolicy().destination(url)


def test_ports_outside_the_list_only_for_the_allow_list():
    policy = OutboundPolicy()
    with pytest.raises(OutboundRefused, match="port 6379"):
        policy.destination("https://8.8.8.8:6379/")
    hosts, networks = parse_allow_list("10.20.0.0/24, intranet.example.gov.cn")
    trusted = OutboundPolicy(allowed_hosts=hosts, allowed_networks=networks)
    assert trusted.destination("https://10.20.0.5:8443/").address == ipaddress.ip_address("10.20.0.5")
    assert trusted.destination("https://INTRANET.example.gov.cn.:8443/").host == "intranet.example.gov.cn"
    with pytest.raises(OutboundRefused, match="10.20.1.5 is a private-use address"):
        trusted.destination("https://10.20.1.5/")


# -- the resolver --------------------------------------------------------------------------------------


async def test_the_resolver_refuses_a_host_if_any_answer_is_refused():
    fake = FakeResolver({"mixed.example": [PUBLIC, "10.0.0.7"], "public.example": PUBLIC,
                         "metadata.google.internal": "169.254.169.254"})
    resolver = PolicyResolver(OutboundPolicy(), fake)
    assert [r["host"] for r in await resolver.resolve("public.example", 443)] == [PUBLIC]
    with pytest.raises(OutboundRefused) as caught:
        await resolver.resolve("mixed.example", 443)
    assert caught.value.reason == "mixed.example resolves to a private-use address"  # the address is not told
    with pytest.raises(OutboundRefused, match="link-local"):
        await resolver.resolve("metadata.google.internal", 80)
    with pytest.raises(OutboundRefused, match="port 25"):
        await resolver.resolve("public.example", 25)


async def test_a_trusted_host_may_resolve_anywhere_and_an_unknown_one_is_refused():
    fake = FakeResolver({"intranet.example.gov.cn": "10.1.2.3"})
    guard = OutboundGuard(OutboundPolicy(allowed_hosts=frozenset({"intranet.example.gov.cn"})), fake)
    assert (await guard.check("https://intranet.example.gov.cn:8443/hook")).port == 8443
    with pytest.raises(OutboundRefused, match="could not be resolved"):
        await guard.check("https://nowhere.example/hook")
    assert fake.lookups == ["intranet.example.gov.cn", "nowhere.example"]


async def test_a_literal_address_is_never_looked_up():
    fake = FakeResolver()
    await OutboundGuard(OutboundPolicy(), fake).check(f"https://{PUBLIC}/hook")
    assert fake.lookups == []


# -- settings ----------------------------------------------------------------------------------------------


def test_settings_build_the_policy(tmp_path):
    import trustme

    ca_file = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(ca_file))
    settings = load_settings(env_file=None, data_dir=tmp_path, outbound_allow_http=True,
                             outbound_allow_hosts=" 12345.example.gov.cn , 10.20.0.0/24,fd12::1 ",
                             outbound_ports="443,8443", outbound_ca_file=ca_file)
    policy = OutboundPolicy.from_settings(settings.outbound)
    assert policy.allow_http and policy.ports == {443, 8443} and policy.ca_file == ca_file
    assert policy.allowed_hosts == {"12345.example.gov.cn"}
    assert set(policy.allowed_networks) == {ipaddress.ip_network("10.20.0.0/24"), ipaddress.ip_network("fd12::1")}
    assert policy.ssl_context().cert_store_stats()["x509_ca"] >= 1
    default = OutboundPolicy.from_settings(load_settings(env_file=None, data_dir=tmp_path).outbound)
    assert default == OutboundPolicy()  # https to public addresses on 443 and 80 only


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("QINGLANG_OUTBOUND_ALLOW_HOSTS", "hotline.example, not a host", "'not a host' is not a host name"),
    ("QINGLANG_OUTBOUND_ALLOW_HOSTS", "10.0.0.0/33", "'10.0.0.0/33' is not a host name"),
    ("QINGLANG_OUTBOUND_PORTS", "443,https", "'https' is not a port number"),
    ("QINGLANG_OUTBOUND_PORTS", "70000", "'70000' is not a port number"),
    ("QINGLANG_OUTBOUND_CA_FILE", "/nonexistent/ca.pem", "is not a readable file of PEM CA certificates"),
])
def test_bad_outbound_settings_are_one_line_errors(monkeypatch, tmp_path, variable, value, message):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        load_settings(env_file=None, data_dir=tmp_path)
    assert str(caught.value).startswith(f"{variable}: ") and message in str(caught.value)
    assert "\n" not in str(caught.value)
