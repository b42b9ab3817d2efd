"""Whose X-Forwarded-For is believed (QINGLANG_TRUSTED_PROXIES): the address counted for the web chat's
limits on wrong status look-ups; and what of it is counted (an IPv6 address as its /64)."""

from __future__ import annotations

from unittest import mock

import pytest
from aiohttp.test_utils import make_mocked_request

from qinglang.errors import ConfigError
from qinglang.settings import WebSettings, load_settings
from web.chat.identity import client_ip
from web.chat.limits import address_subject


def request_from(peer: str, forwarded: str | None = None):
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: (peer, 50000) if name == "peername" else default
    headers = {"X-Forwarded-For": forwarded} if forwarded is not None else {}
    return make_mocked_request("POST", "/chat/status", headers=headers, transport=transport)


def networks(value: str):
    return WebSettings(trusted_proxies=value).trusted_proxy_networks


def test_loopback_proxies_are_trusted_by_default():
    trusted = WebSettings().trusted_proxy_networks
    assert client_ip(request_from("127.0.0.1", "198.51.100.1, 203.0.113.7"), trusted) == "203.0.113.7"
    assert client_ip(request_from("::1", "203.0.113.7"), trusted) == "203.0.113.7"
    # from anyone else the header is a client's own words: ignored
    assert client_ip(request_from("172.28.0.10", "203.0.113.7"), trusted) == "172.28.0.10"


def test_the_compose_nginx_is_trusted_when_configured():
    trusted = networks("172.28.0.10/32")
    assert client_ip(request_from("172.28.0.10", "203.0.113.7"), trusted) == "203.0.113.7"
    assert client_ip(request_from("172.28.0.11", "203.0.113.7"), trusted) == "172.28.0.11"
    assert client_ip(request_from("127.0.0.1", "203.0.113.7"), trusted) == "127.0.0.1"  # loopback no longer
    # the same proxy seen through a dual-stack socket
    assert client_ip(request_from("::ffff:172.28.0.10", "203.0.113.7"), trusted) == "203.0.113.7"


def test_a_forged_or_broken_header_falls_back_to_the_connection():
    trusted = networks("10.0.0.0/8")
    assert client_ip(request_from("10.1.2.3", "not-an-address"), trusted) == "10.1.2.3"
    assert client_ip(request_from("10.1.2.3", ""), trusted) == "10.1.2.3"
    assert client_ip(request_from("10.1.2.3"), trusted) == "10.1.2.3"


@pytest.mark.parametrize("value", ["nginx", "10.0.0.0/33", "127.0.0.1,,banana"])
def test_a_bad_trusted_proxies_setting_is_a_one_line_error(monkeypatch, value):
    monkeypatch.setenv("QINGLANG_TRUSTED_PROXIES", value)
    with pytest.raises(ConfigError) as caught:
        load_settings(env_file=None)
    assert "QINGLANG_TRUSTED_PROXIES" in str(caught.value) and "\n" not in str(caught.value)


def test_the_addresses_of_one_ipv6_network_are_one_subject():
    one = {address_subject(f"2001:db8:aa:bb:{i:x}:{i * 7:x}:{i * 13:x}:{i + 1:x}") for i in range(20)}
    assert one == {"ip:2001:db8:aa:bb::/64"}
    assert address_subject("2001:db8:aa:bc::1") == "ip:2001:db8:aa:bc::/64"  # the next /64: another
    assert address_subject("2001:DB8:AA:BB::1") == "ip:2001:db8:aa:bb::/64"  # however it is written


def test_an_ipv4_mapped_address_is_its_ipv4_address():
    assert address_subject("::ffff:198.51.100.7") == address_subject("198.51.100.7") == "ip:198.51.100.7"
    assert address_subject("::ffff:c633:6407") == "ip:198.51.100.7"
    assert address_subject("198.51.100.8") != address_subject("198.51.100.7")  # IPv4: every address its own
    assert address_subject("unknown") == "ip:unknown"  # no peer address (a unix socket)
