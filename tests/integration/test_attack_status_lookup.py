"""Guessing access codes on the web chat's status page (issue 14, findings 4 and 5).

4. A hundred wrong pairs sent at once from one address, each with a fresh cookie and for a different
   number: only the address's ten tries reach the access-code check (argon2 is counted), the others
   are 429, however they interleave. The counter is shared in the database: this runs on SQLite and on
   PostgreSQL.
5. Thirty wrong codes for one case from three addresses (ten each, within each address's limit), then
   the right code from a fourth: refused, since the case has ten tries in all. A new window later, the
   right code works.
And the page says how many tries remain and when a blocked visitor may try again.

Review of the above:
- An IPv6 address counts as its /64 (one subscriber's network), and an IPv4-mapped address as its IPv4
  address: twenty addresses of one /64 have ten tries together.
- The case's ten tries cannot lock its complainant out: a cookie that looked the case up before, or the
  one that filed it, is not held back by them; a stranger is told in plain words why and what else works.
"""

from __future__ import annotations

import asyncio
import re

import pytest
from aiohttp.test_utils import TestClient, TestServer

import web.chat.codes
from tests.integration.chat_forms import case_with_code, headers, visitor
from web.app import create_app

NOT_FOUND = "没有找到与该编号和查询码相符的登记。请检查后重新输入。"
TOO_MANY = "尝试次数过多，请 10 分钟后再试。"
CASE_PAUSED = ("编号 {number} 最近有多次来自别处的错误查询，为防止有人猜测查询码，暂停用查询码查询这个编号，"
               "请 {wait}后再试。在登记或查询过本件的浏览器上仍可以查询；通过 Telegram 登记的，可以在 "
               "Telegram 中发送 /status；也可以拨打 12345 热线咨询。")


@pytest.fixture
async def client(container):
    async with TestClient(TestServer(create_app(container, with_bot=False))) as c:
        yield c


@pytest.fixture
def code_checks(monkeypatch) -> list[str]:
    """The case numbers whose access code was hashed (the argon2 check), one entry per check."""
    checked: list[str] = []
    real = web.chat.codes.code_hash

    def counting(number: str, code: str) -> str:
        checked.append(number)
        return real(number, code)

    monkeypatch.setattr(web.chat.codes, "code_hash", counting)
    return checked


async def look_up(client, number: str, code: str, *, address: str | None = None, who=None) -> tuple[int, str]:
    who = who or visitor()
    response = await client.post("/chat/status", data={"csrf_token": who.csrf_token, "number": number, "code": code},
                                 headers=headers(client, who, address=address), allow_redirects=False)
    return response.status, await response.text()


def error_of(html: str) -> str:
    found = re.search(r'<p class="error"[^>]*>([^<]*)</p>', html)
    return found.group(1).strip() if found else ""


def tries_of(html: str) -> str:
    found = re.search(r'<p class="hint tries"[^>]*>([^<]*)</p>', html)
    return found.group(1).strip() if found else ""


async def test_a_hundred_concurrent_wrong_codes_from_one_address_check_at_most_ten(client, container, code_checks):
    await case_with_code(container)
    code_checks.clear()
    tries = [look_up(client, f"LW-2026-{800000 + i}", "AAAAA-AAAAA") for i in range(100)]
    answers = await asyncio.gather(*tries)
    statuses = sorted(status for status, _html in answers)
    assert statuses == [200] * 10 + [429] * 90, statuses
    assert len(code_checks) == 10, len(code_checks)
    assert all(error_of(html) == NOT_FOUND for status, html in answers if status == 200)
    assert all(error_of(html) == TOO_MANY for status, html in answers if status == 429)
    # another address is not held back by this one
    status, html = await look_up(client, "LW-2026-800100", "AAAAA-AAAAA", address="198.51.100.9")
    assert (status, error_of(html)) == (200, NOT_FOUND)


async def test_a_case_has_ten_tries_from_all_addresses_together(client, container, clock, code_checks):
    _case_id, number, code = await case_with_code(container)
    code_checks.clear()
    addresses = ["198.51.100.1", "198.51.100.2", "198.51.100.3"]
    wrong = [look_up(client, number, f"WRONG-{i:05d}", address=addresses[i % 3]) for i in range(30)]
    statuses = sorted(status for status, _html in await asyncio.gather(*wrong))
    assert statuses == [200] * 10 + [429] * 20, statuses
    assert code_checks == [number] * 10
    # the right code, from a fourth address and a fresh cookie: the case's tries are used up
    status, html = await look_up(client, number, code, address="203.0.113.4")
    assert (status, error_of(html)) == (429, CASE_PAUSED.format(number=number, wait="10 分钟"))
    assert len(code_checks) == 10
    # the window over, the right code works
    clock.advance(minutes=10)
    status, html = await look_up(client, number, code, address="203.0.113.4")
    assert status == 303, error_of(html)


async def test_the_page_says_how_many_tries_remain(client, container, clock):
    _case_id, number, code = await case_with_code(container)
    status, html = await look_up(client, number, "WRONG-00000")
    assert (status, error_of(html), tries_of(html)) == (200, NOT_FOUND, "还可以再试 9 次。")
    assert "为防止猜测查询码，每 10 分钟最多可以查询 10 次。" in html
    for attempt in range(1, 9):
        status, html = await look_up(client, number, f"WRONG-{attempt:05d}")
        assert tries_of(html) == f"还可以再试 {9 - attempt} 次。"
    clock.advance(minutes=4, seconds=30)  # the last try of the window: when the next begins
    status, html = await look_up(client, number, "WRONG-00009")
    assert (status, tries_of(html)) == (200, "尝试次数已用完，请 6 分钟后再试。")
    status, html = await look_up(client, number, code)
    assert (status, error_of(html)) == (429, "尝试次数过多，请 6 分钟后再试。")


async def test_twenty_addresses_of_one_ipv6_network_share_its_ten_tries(client, container, code_checks):
    await case_with_code(container)
    code_checks.clear()
    network = "2001:db8:5:7"
    tries = [look_up(client, f"LW-2026-{810000 + i}", "AAAAA-AAAAA", address=f"{network}:{i:x}:{i + 7:x}::{i + 1:x}")
             for i in range(20)]
    statuses = sorted(status for status, _html in await asyncio.gather(*tries))
    assert statuses == [200] * 10 + [429] * 10, statuses
    assert len(code_checks) == 10
    # the neighbouring /64 is another subscriber: its tries are its own
    status, html = await look_up(client, "LW-2026-810100", "AAAAA-AAAAA", address="2001:db8:5:8::1")
    assert (status, error_of(html)) == (200, NOT_FOUND)
    assert len(code_checks) == 11


async def test_an_ipv4_mapped_address_is_its_ipv4_address(client, container, code_checks):
    await case_with_code(container)
    code_checks.clear()
    for i in range(10):  # alternately as a dual-stack socket writes it and as IPv4
        address = "::ffff:198.51.100.20" if i % 2 else "198.51.100.20"
        status, html = await look_up(client, f"LW-2026-{820000 + i}", "AAAAA-AAAAA", address=address)
        assert (status, error_of(html)) == (200, NOT_FOUND), i
    for address in ("198.51.100.20", "::ffff:198.51.100.20", "::ffff:c633:6414"):
        status, html = await look_up(client, "LW-2026-820010", "AAAAA-AAAAA", address=address)
        assert (status, error_of(html)) == (429, TOO_MANY), address
    assert len(code_checks) == 10


async def test_strangers_cannot_lock_the_complainant_out(client, container, clock, code_checks):
    filer = visitor()
    _case_id, number, code = await case_with_code(container, filed_by=filer)
    reader = visitor()  # a browser that looked the case up once
    status, _html = await look_up(client, number, code, who=reader, address="203.0.113.10")
    assert status == 303
    clock.advance(minutes=31)  # its grant has expired: the page wants the code again
    page = await (await client.get(f"/chat/status?case={number}", headers=headers(client, reader))).text()
    assert '<section class="case">' not in page and 'action="/chat/status"' in page
    # strangers use up the case's ten tries (from three addresses, within each address's own)
    wrong = [look_up(client, number, f"WRONG-{i:05d}", address=f"198.51.100.{30 + i % 3}") for i in range(12)]
    assert sorted(status for status, _html in await asyncio.gather(*wrong)) == [200] * 10 + [429] * 2
    code_checks.clear()
    # a stranger with the right code is told why, until when, and what else works (9 minutes: 10:31 -> 10:40)
    status, html = await look_up(client, number, code, address="203.0.113.11")
    assert (status, error_of(html)) == (429, CASE_PAUSED.format(number=number, wait="9 分钟"))
    assert code_checks == []
    # the browser that looked it up before, and the one that filed it, get in
    for who, address in ((reader, "203.0.113.10"), (filer, "203.0.113.12")):
        status, html = await look_up(client, number, code, who=who, address=address)
        assert status == 303, (error_of(html), address)
    assert code_checks == [number, number]
    # their own tries still count: a wrong code is "not found" with the tries left of their cookie
    status, html = await look_up(client, number, "WRONG-99999", who=filer, address="203.0.113.12")
    assert (status, error_of(html), tries_of(html)) == (200, NOT_FOUND, "还可以再试 8 次。")
