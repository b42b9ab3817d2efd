"""Malformed and unusual forms on the web chat's two upload endpoints (issue 14, findings 7, 8 and 9, the
chat's half; the JSON API's are in test_attack_api_uploads.py).

7. A chat upload with three file parts stores one and attaches it (the form has one file input); the
   others are read past and never reach the disk. A request that stored its file and then failed (a
   malformed part after it, a form id or a text refused after it, a message sent twice) keeps nothing.
8. A NUL in a file name, a missing boundary, a part header without a colon: a friendly 400 page, no
   traceback in the log, nothing stored, on /chat/upload and /chat/status/answer alike.
9. An evidence directory that cannot take a file: a friendly 503 page, nothing half-written, and the
   conversation goes on.
Review: a request cut off (cancelled, or an error) after the row naming its file was committed (the chat
message's inbox row, the answer's evidence row) keeps the file: the replay later attaches it, the case
has it. Only an outcome known to have committed nothing takes the file back.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import shutil

import aiohttp
import pytest

from tests.integration.chat_forms import client  # noqa: F401 - the fixture
from tests.integration.chat_forms import (
    case_with_code,
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
from intake.status import DomainError
from web.chat.routes import GRANTS, SERVICE

MALFORMED = "上传的内容格式不正确，请返回页面后重新选择文件上传。"
STORE_DOWN = "文件暂时无法保存，请稍后再试。您的对话和已填写的内容都还在。"
ONE_AT_A_TIME = "一次只能上传一个文件，其余的没有保存，请逐个上传。"


@pytest.fixture
async def granted(client, container):
    """A visitor granted a case (as after a right look-up): (visitor, case id, number)."""
    case_id, number, _code = await case_with_code(container)
    who = visitor()
    await client.app[GRANTS].grant(who.user_id, case_id, number)
    return who, case_id, number


def error_of(html: str) -> str:
    found = re.search(r'<p class="error"[^>]*>([^<]*)</p>', html)
    return found.group(1).strip() if found else ""


def chat_fields(boundary: str, who, msg_id: str = "attack-0001.upload") -> bytes:
    return field(boundary, "csrf_token", who.csrf_token) + field(boundary, "msg_id", msg_id)


def answer_fields(boundary: str, who, number: str, form_id: str = "attack-form-0001") -> bytes:
    return field(boundary, "csrf_token", who.csrf_token) + field(boundary, "number", number) + field(
        boundary, "form_id", form_id)


async def post(client, path: str, who, body: bytes, content_type: str) -> tuple[int, str]:
    response = await client.post(path, data=body, headers=headers(client, who, content_type=content_type),
                                 allow_redirects=False)
    return response.status, await response.text()


def tracebacks(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.exc_info or r.levelname == "CRITICAL"]


async def nothing_stored(container) -> bool:
    return evidence_files(container) == [] and incoming(container) == [] and await evidence_rows(container) == 0


async def test_three_file_parts_store_and_attach_one(client, container, granted):
    who = visitor()
    b = "three01"
    body = chat_fields(b, who) + b"".join(file_part(b, f"图{i}.txt", text_file(i, 2000)) for i in range(3)) + end(b)
    status, _html = await post(client, "/chat/upload", who, body, form_type(b))
    assert status == 303
    assert len(evidence_files(container)) == 1
    view = await client.app[SERVICE].view(who.user_id, lang="zh")
    lines = [entry.text for entry in view.entries]
    assert any(line.startswith("📎 图0.txt") for line in lines), lines
    assert not any("图1.txt" in line or "图2.txt" in line for line in lines)
    assert ONE_AT_A_TIME in lines
    # the status page's answer form: one file attached, the others not stored either
    answerer, case_id, number = granted
    b = "three02"
    body = (answer_fields(b, answerer, number) + field(b, "text", "补充三张截图")
            + b"".join(file_part(b, f"补{i}.txt", text_file(10 + i, 2000)) for i in range(3)) + end(b))
    status, _html = await post(client, "/chat/status/answer", answerer, body, form_type(b))
    assert status == 303
    assert len(evidence_files(container)) == 2
    async with container.uow() as uow:
        assert [e.original_name for e in await uow.cases.evidence(case_id)] == ["补0.txt"]


MALFORMED_BODIES = {
    # a NUL inside the part's header line (aiohttp: InvalidHeader)
    "NUL in the file name": lambda b, fields: (fields + f'--{b}\r\nContent-Disposition: form-data; name="file"; '
                                               f'filename="a\x00b.txt"\r\n\r\nhello\r\n'.encode() + end(b)),
    # the Content-Type names no boundary (aiohttp: ValueError)
    "missing boundary": lambda b, fields: fields + file_part(b, "a.txt", b"hello") + end(b),
    # a part header line without a colon (aiohttp: InvalidHeader)
    "header without a colon": lambda b, fields: (fields + f'--{b}\r\nContent-Disposition form-data; name="file"; '
                                                 f'filename="a.txt"\r\n\r\nhello\r\n'.encode() + end(b)),
    # the same after a file that was stored: it is taken back
    "header without a colon after the file": lambda b, fields: (
        fields + file_part(b, "a.txt", text_file(1, 5000)) + f"--{b}\r\nX-Broken\r\n\r\nhello\r\n".encode() + end(b)),
    # cut off in the middle of the file
    "body cut short": lambda b, fields: fields + file_part(b, "a.txt", text_file(2, 5000))[:-100],
}


@pytest.mark.parametrize("body", list(MALFORMED_BODIES))
@pytest.mark.parametrize("path", ["/chat/upload", "/chat/status/answer"])
async def test_malformed_multipart_is_a_400_page_and_keeps_nothing(client, container, granted, caplog, path, body):
    who, _case_id, number = granted
    b = "malformed01"
    fields = chat_fields(b, who) if path == "/chat/upload" else answer_fields(b, who, number)
    content_type = "multipart/form-data" if body == "missing boundary" else form_type(b)
    status, html = await post(client, path, who, MALFORMED_BODIES[body](b, fields), content_type)
    assert (status, error_of(html)) == (400, MALFORMED), (status, html[:300])
    assert await nothing_stored(container)
    assert tracebacks(caplog) == []
    if body == "NUL in the file name":
        # one that arrives percent-encoded (filename*) is a name like any other, without the NUL
        b = "nulstar"
        fields = chat_fields(b, who) if path == "/chat/upload" else answer_fields(b, who, number)
        encoded = fields + (f"--{b}\r\nContent-Disposition: form-data; name=\"file\"; filename*=UTF-8''a%00b.txt"
                            f"\r\n\r\nhello\r\n").encode() + end(b)
        status, _html = await post(client, path, who, encoded, form_type(b))
        assert status == 303
        assert len(evidence_files(container)) == 1
    assert (await client.get("/healthz")).status == 200


async def test_a_request_refused_after_its_file_was_stored_keeps_nothing(client, container, granted):
    who, case_id, number = granted
    # the status page: the form id, or a text too long, after the file
    b = "late01"
    body = (field(b, "csrf_token", who.csrf_token) + field(b, "number", number)
            + file_part(b, "a.txt", text_file(1, 3000)) + field(b, "form_id", "!") + end(b))
    status, _html = await post(client, "/chat/status/answer", who, body, form_type(b))
    assert status == 400
    assert evidence_files(container) == []
    b = "late02"
    body = (answer_fields(b, who, number) + file_part(b, "a.txt", text_file(2, 3000))
            + field(b, "text", "很" * 5000) + end(b))
    status, html = await post(client, "/chat/status/answer", who, body, form_type(b))
    assert status == 400 and "内容太长了" in html
    assert evidence_files(container) == []
    # the chat: the same message sent again with another file; the first one's file is the one kept
    chatter = visitor()
    for seed in (3, 4):
        b = f"again{seed}"
        body = chat_fields(b, chatter, "attack-same.upload") + file_part(b, f"{seed}.txt", text_file(seed, 3000)) + end(b)
        status, _html = await post(client, "/chat/upload", chatter, body, form_type(b))
        assert status == 303
    (kept,) = evidence_files(container)
    assert kept.read_bytes().startswith("证据 3 ".encode())
    async with container.uow() as uow:
        assert list(await uow.cases.evidence(case_id)) == []


async def test_an_evidence_directory_that_takes_no_file_is_a_503_page(client, container, granted, caplog):
    who, case_id, number = granted
    spool = container.evidence.root / ".incoming"
    shutil.rmtree(spool)
    spool.write_text("not a directory")  # every new upload's temporary file fails to be made
    b = "disk01"
    body = chat_fields(b, who) + file_part(b, "a.txt", text_file(1, 3000)) + end(b)
    response = await client.post("/chat/upload", data=body, allow_redirects=False,
                                 headers=headers(client, who, content_type=form_type(b)))
    assert (response.status, error_of(await response.text())) == (503, STORE_DOWN)
    assert response.headers["Retry-After"] == "60"
    b = "disk02"
    body = answer_fields(b, who, number) + field(b, "text", "补充说明") + file_part(b, "a.txt", text_file(2, 3000)) + end(b)
    response = await client.post("/chat/status/answer", data=body, allow_redirects=False,
                                 headers=headers(client, who, content_type=form_type(b)))
    status, html = response.status, await response.text()
    assert (status, error_of(html)) == (503, STORE_DOWN) and response.headers["Retry-After"] == "60"
    assert "补充说明" in html  # the words typed are still in the form
    assert evidence_files(container) == [] and await evidence_rows(container) == 0
    assert tracebacks(caplog) == []
    # the conversation goes on
    response = await client.post("/chat/send", data={"csrf_token": who.csrf_token, "msg_id": "attack-0003.text",
                                                     "text": "你好"}, headers=headers(client, who))
    assert response.status == 200
    view = await client.app[SERVICE].view(who.user_id, lang="zh")
    assert ("me", "你好") in [(entry.who, entry.text) for entry in view.entries]


@pytest.mark.parametrize("failure", [asyncio.CancelledError, RuntimeError])
async def test_a_chat_upload_cut_off_after_its_message_was_stored_keeps_the_file(client, container, clock,
                                                                                 monkeypatch, failure):
    service = client.app[SERVICE]
    handle = service._process
    calls: list[int] = []

    async def cut_off(row_id, payload):  # after inbox.store committed the row naming the file
        calls.append(row_id)
        if len(calls) == 1:
            raise failure("cut off before the message was handled")
        return await handle(row_id, payload)

    monkeypatch.setattr(service, "_process", cut_off)
    who = visitor()
    b = "cutoff01"
    content = text_file(5, 3000)
    body = chat_fields(b, who) + file_part(b, "录屏.txt", content) + end(b)
    with contextlib.suppress(aiohttp.ClientError):  # a cancelled handler may just close the connection
        await post(client, "/chat/upload", who, body, form_type(b))
    assert len(calls) == 1
    (kept,) = evidence_files(container)
    assert kept.read_bytes() == content
    # the replay handles the stored message once its lease is over: the draft has the file
    clock.advance(seconds=container.settings.bot.inbox_lease_seconds + 1)
    assert await service.replay() == 1
    draft = await service.draft(who.user_id)
    assert [item["sha256"] for item in draft.evidence] == [hashlib.sha256(content).hexdigest()]
    assert evidence_files(container) == [kept]


@pytest.mark.parametrize("failure", [asyncio.CancelledError, RuntimeError, DomainError])
async def test_an_answer_that_failed_after_its_evidence_was_committed_keeps_the_file(client, container, granted,
                                                                                     monkeypatch, failure):
    who, case_id, number = granted
    add = container.cases.add_from_complainant

    async def fails_after_the_commit(*args, **kwargs):
        await add(*args, **kwargs)
        raise failure("after the commit")

    monkeypatch.setattr(container.cases, "add_from_complainant", fails_after_the_commit)
    b = "aftercommit01"
    content = text_file(6, 3000)
    body = answer_fields(b, who, number) + field(b, "text", "付款截图") + file_part(b, "付款.txt", content) + end(b)
    with contextlib.suppress(aiohttp.ClientError):
        await post(client, "/chat/status/answer", who, body, form_type(b))
    async with container.uow() as uow:
        assert [e.sha256 for e in await uow.cases.evidence(case_id)] == [hashlib.sha256(content).hexdigest()]
    (kept,) = evidence_files(container)
    assert kept.read_bytes() == content


async def test_an_answer_refused_before_the_commit_keeps_no_file(client, container, granted, monkeypatch):
    who, case_id, number = granted

    async def closed_meanwhile(*args, **kwargs):  # what CaseService raises before its commit
        raise DomainError("the case is closed")

    monkeypatch.setattr(container.cases, "add_from_complainant", closed_meanwhile)
    b = "beforecommit01"
    body = answer_fields(b, who, number) + field(b, "text", "付款截图") + file_part(b, "a.txt", text_file(7, 3000)) + end(b)
    status, html = await post(client, "/chat/status/answer", who, body, form_type(b))
    assert (status, error_of(html)) == (409, "本件已经办结，不能再补充材料。如有新的问题，请在线登记。")
    assert await nothing_stored(container)
