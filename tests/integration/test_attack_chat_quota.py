"""Filling the disk through the web chat's uploads, before any complaint exists (issue 14, finding 6).

Thirty fresh chat cookies, sent at once, each upload a different 1 MB file: past the quota of their
address (here 8 MB a day), or of everyone together (here 12 MB a day, from thirty addresses), the
uploads are refused with a page that says so (429), and no more than the quota lies on the disk. One
cookie has its own quota (3 files, 3 MB), a file streamed without Content-Length included; the next
day it may upload again. Runs on SQLite and on PostgreSQL (the counters are shared in the database).

Review: an IPv6 address counts as its /64 and an IPv4-mapped address as its IPv4 address, so a /64's
endless addresses have one address quota (and cannot use up everyone's).
"""

from __future__ import annotations

import asyncio

import pytest

from qinglang.settings import Settings, load_settings
from tests.integration.chat_forms import client  # noqa: F401 - the fixture
from tests.integration.chat_forms import (
    end,
    evidence_files,
    evidence_rows,
    field,
    file_part,
    form_type,
    headers,
    incoming,
    text_file,
    visitor,
)

MB = 1024 * 1024
ADDRESS_QUOTA = 8 * MB
TOTAL_QUOTA = 12 * MB
OWN = "本次对话今天上传的文件已达上限（每天最多 3 个、共 3 MB）"
ADDRESS = "您所在的网络今天上传的文件已达上限"
EVERYONE = "今天网上登记收到的文件已达上限"
LATER = "也可以先完成登记，之后凭编号和查询码在进度查询页补充材料。"


@pytest.fixture
def settings(tmp_path, database_url, nlu_cache_dir) -> Settings:
    return load_settings(env_file=None, data_dir=tmp_path / "data", database_url=database_url,
                         nlu_cache_dir=nlu_cache_dir, max_evidence_bytes=2 * MB,
                         upload_files_per_cookie=3, upload_bytes_per_cookie=3 * MB,
                         upload_bytes_per_address=ADDRESS_QUOTA, upload_bytes_total=TOTAL_QUOTA)


async def upload(client, who, seed: int, content: bytes, *, address: str | None = None,
                 chunked: bool = False) -> tuple[int, str]:
    boundary = f"quota{seed:04d}x"
    body = (field(boundary, "csrf_token", who.csrf_token) + field(boundary, "msg_id", f"quota-{seed:04d}.upload")
            + file_part(boundary, f"录屏{seed}.txt", content) + end(boundary))

    async def stream():
        for start in range(0, len(body), 64 * 1024):
            yield body[start:start + 64 * 1024]

    response = await client.post("/chat/upload", data=stream() if chunked else body,
                                 headers={**headers(client, who, address=address, content_type=form_type(boundary)),
                                          "X-Requested-With": "qinglang-chat"})
    return response.status, await response.text()


def disk_bytes(container) -> int:
    return sum(p.stat().st_size for p in evidence_files(container))


async def test_thirty_cookies_from_one_address_stop_at_its_quota(client, container):
    answers = await asyncio.gather(*(upload(client, visitor(), i, text_file(i, MB)) for i in range(30)))
    accepted = [html for status, html in answers if status == 200]
    refused = [html for status, html in answers if status != 200]
    assert 1 <= len(accepted) <= ADDRESS_QUOTA // MB, len(accepted)
    assert {status for status, _html in answers} == {200, 429}
    assert all(ADDRESS in html and LATER in html for html in refused)
    assert len(evidence_files(container)) == len(accepted)
    assert disk_bytes(container) <= ADDRESS_QUOTA
    assert incoming(container) == []
    # another address may still upload
    status, _html = await upload(client, visitor(), 99, text_file(99, MB), address="198.51.100.77")
    assert status == 200


async def test_thirty_cookies_from_thirty_addresses_stop_at_the_total(client, container):
    answers = await asyncio.gather(*(upload(client, visitor(), i, text_file(i, MB), address=f"198.51.100.{i + 1}")
                                     for i in range(30)))
    accepted = [html for status, html in answers if status == 200]
    refused = [html for status, html in answers if status != 200]
    assert 1 <= len(accepted) <= TOTAL_QUOTA // MB, len(accepted)
    assert refused and all(status == 429 for status, _html in answers if status != 200)
    assert all(EVERYONE in html for html in refused)
    assert disk_bytes(container) <= TOTAL_QUOTA
    assert incoming(container) == []


async def test_one_cookie_has_its_own_quota_with_or_without_content_length(client, container, clock):
    who = visitor()
    for seed in range(3):  # three files of 0.9 MB: within 3 files and 3 MB
        status, _html = await upload(client, who, seed, text_file(seed, 9 * MB // 10))
        assert status == 200, seed
    for chunked in (False, True):  # a fourth, announced or not: refused, nothing kept
        status, html = await upload(client, who, 10 + chunked, text_file(10 + chunked, 1000), chunked=chunked)
        assert status == 429 and OWN in html, (chunked, status)
    assert len(evidence_files(container)) == 3 and incoming(container) == []
    # a new cookie: a file streamed without a length is stopped at the bytes left, and nothing is kept
    other = visitor()
    status, _html = await upload(client, other, 20, text_file(20, 2 * MB), chunked=True)
    assert status == 200
    status, html = await upload(client, other, 21, text_file(21, 3 * MB // 2), chunked=True)
    assert status == 429 and OWN in html
    assert len(evidence_files(container)) == 4 and incoming(container) == []
    assert disk_bytes(container) <= 3 * (9 * MB // 10) + 2 * MB
    # the next day the quota is new
    clock.advance(days=1)
    status, _html = await upload(client, who, 30, text_file(30, 1000))
    assert status == 200
    assert len(evidence_files(container)) == 5
    assert await evidence_rows(container) == 0  # nothing was attached to a case by any of this
    # the page says the quota
    page = await (await client.get("/chat")).text()
    assert "每个对话每天最多上传 3 个文件、共 3 MB。" in page


async def test_twenty_addresses_of_one_ipv6_network_share_its_quota(client, container):
    answers = await asyncio.gather(*(upload(client, visitor(), i, text_file(i, MB),
                                            address=f"2001:db8:77:1:{i + 1:x}::{i * 3 + 1:x}") for i in range(20)))
    accepted = [html for status, html in answers if status == 200]
    refused = [html for status, html in answers if status != 200]
    assert 1 <= len(accepted) <= ADDRESS_QUOTA // MB, len(accepted)
    assert {status for status, _html in answers} == {200, 429}
    assert all(ADDRESS in html for html in refused)  # the network's quota, not everyone's
    assert disk_bytes(container) <= ADDRESS_QUOTA and incoming(container) == []
    # the next /64 is another subscriber's
    status, html = await upload(client, visitor(), 99, text_file(99, MB), address="2001:db8:77:2::1")
    assert status == 200, html


async def test_an_ipv4_mapped_address_shares_the_quota_of_its_ipv4_address(client, container):
    fitting = ADDRESS_QUOTA // MB - 1  # a request is a little longer than its file: 7 files of 1 MB fit in 8 MB
    for seed in range(fitting):  # alternately as a dual-stack socket writes it and as IPv4
        address = "::ffff:198.51.100.60" if seed % 2 else "198.51.100.60"
        status, html = await upload(client, visitor(), seed, text_file(seed, MB), address=address)
        assert status == 200, seed
    for seed, address in ((20, "198.51.100.60"), (21, "::ffff:198.51.100.60")):
        status, html = await upload(client, visitor(), seed, text_file(seed, MB), address=address)
        assert status == 429 and ADDRESS in html, (address, status)
    assert len(evidence_files(container)) == fitting
