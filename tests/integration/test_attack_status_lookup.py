"""Guessing access codes on the web chat's status page (issue 14, findings 4 and 5).

4. A hundred wrong pairs sent at once from one address, each with a fresh cookie and for a different
   number: only the address's ten tries reach the access-code check (argon2 is counted), the others
   are 429, however they interleave. The counter is shared in the database: this runs on SQLite and on
   PostgreSQL.
5. Thirty wrong codes for one case from three addresses (ten each, within each address's limit), then
   the right code from a fourth: refused, since the case has ten tries in all. A new window later, the
   right code works.
And the page says how many tries remain and when a blocked visitor may try again.
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


async def look_up(client, number: str, code: str, *, address: str | None = None) -> tuple[int, str]:
    who = visitor()
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
    assert (status, error_of(html)) == (429, TOO_MANY)
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
