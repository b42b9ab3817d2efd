"""Oversized bodies and files through the web chat (issue 8, "hold under attack"; the JSON API's are in
test_api.py, decompression bombs and image metadata in test_evidence_images.py).

The evidence limit is set to 256 KB here. A file over it, announced by Content-Length or streamed without
one (chunked), is refused with the store's message, leaves no file and no evidence row behind, and the
conversation goes on; a text form over 64 KB is 413. Afterwards /healthz is 200 and a normal upload works.
"""

from __future__ import annotations

import secrets

import pytest
from sqlalchemy import func, select

from db.models import Evidence
from intake.cases import Actor, ComplainantInfo, NewCase
from nlu.taxonomy import Kind
from qinglang.settings import Settings, load_settings
from routing.rules import MerchantLocation
from tests.fakes.images import png
from tests.integration.chat_forms import client  # noqa: F401 - the fixture
from web.chat.identity import ChatIdentity
from web.chat.routes import GRANTS, SERVICE

LIMIT = 256 * 1024
TOO_BIG = "文件太大：单个证据文件不能超过"


@pytest.fixture
def settings(tmp_path, database_url, nlu_cache_dir) -> Settings:
    return load_settings(env_file=None, data_dir=tmp_path / "data", database_url=database_url,
                         nlu_cache_dir=nlu_cache_dir, max_evidence_bytes=LIMIT)


def origin(client) -> dict[str, str]:
    return {"Origin": str(client.make_url("/")).rstrip("/")}


async def page_fields(client) -> tuple[str, str]:
    html = await (await client.get("/chat")).text()
    csrf = html.split('name="csrf_token" value="')[1].split('"')[0]
    msg_id = html.split('name="msg_id" value="')[-1].split('"')[0]  # the upload form's, the last one
    return csrf, msg_id


def multipart(fields: dict[str, str], file: tuple[str, bytes] | None, boundary: str) -> bytes:
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    if file is not None:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{file[0]}"\r\n'
                     f"Content-Type: application/octet-stream\r\n\r\n".encode() + file[1] + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode()


async def stored(container) -> tuple[int, list[str]]:
    async with container.uow() as uow:
        rows = await uow.session.scalar(select(func.count()).select_from(Evidence))
    root = container.evidence.root
    files = sorted(str(p) for p in root.rglob("*") if p.is_file() and ".incoming" not in p.parts)
    return rows, files


async def test_an_oversized_chat_upload_is_refused_with_or_without_content_length(client, container):
    big = png(1) + secrets.token_bytes(LIMIT)  # a real PNG start, then more than the limit
    for chunked in (False, True):
        csrf, msg_id = await page_fields(client)
        boundary = "attack" + secrets.token_hex(8)
        body = multipart({"csrf_token": csrf, "msg_id": msg_id, "caption": "直播录屏"}, ("录屏.png", big), boundary)
        headers = {**origin(client), "Content-Type": f"multipart/form-data; boundary={boundary}"}

        async def stream(body=body):
            for start in range(0, len(body), 32768):
                yield body[start:start + 32768]

        response = await client.post("/chat/upload", data=stream() if chunked else body, headers=headers)
        assert response.status == 200, (chunked, response.status)
        html = await response.text()
        assert TOO_BIG in html, chunked
        assert await stored(container) == (0, []), chunked
    cookie = client.session.cookie_jar.filter_cookies(client.make_url("/chat"))["qinglang_chat"].value
    draft = await client.app[SERVICE].draft(ChatIdentity(cookie).user_id)
    assert draft is None or draft.evidence == []
    # a file within the limit still goes in
    csrf, msg_id = await page_fields(client)
    boundary = "fine" + secrets.token_hex(8)
    response = await client.post("/chat/upload", data=multipart({"csrf_token": csrf, "msg_id": msg_id}, ("ok.png", png(2)),
                                                                boundary),
                                 headers={**origin(client), "Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert response.status == 200 and "已收到 1 个文件" in await response.text()
    assert (await client.get("/healthz")).status == 200


async def test_an_oversized_chat_text_form_is_413(client, container):
    csrf, msg_id = await page_fields(client)
    text = "很" * 30_000  # 90 KB of UTF-8, over the 64 KB of a text form
    data = {"csrf_token": csrf, "msg_id": msg_id, "text": text}
    response = await client.post("/chat/send", data=data, headers=origin(client))
    assert response.status == 413

    async def stream():
        body = f"csrf_token={csrf}&msg_id={msg_id}&text=".encode() + b"%E5%BE%88" * 30_000
        for start in range(0, len(body), 32768):
            yield body[start:start + 32768]

    response = await client.post("/chat/send", data=stream(), headers={
        **origin(client), "Content-Type": "application/x-www-form-urlencoded"})
    assert response.status == 413
    page = await client.get("/chat")
    assert page.status == 200 and "很很很很" not in await page.text()
    assert (await client.get("/healthz")).status == 200


async def test_an_oversized_answer_on_the_status_page_is_refused_and_keeps_nothing(client, container):
    view = await container.cases.create(NewCase(
        kind=Kind.COMPLAINT, category="consumer_rights", channel="web", description="直播间买的羽绒服商家不给退款",
        complainant=ComplainantInfo(channel_user_id="x", name="张三", phone="13800138000"),
        merchant=MerchantLocation(True, "永中街道", "浙江省")), Actor("complainant"))
    await client.get("/chat")
    cookie = client.session.cookie_jar.filter_cookies(client.make_url("/chat"))["qinglang_chat"].value
    identity = ChatIdentity(cookie)
    await client.app[GRANTS].grant(identity.user_id, view.id, view.number)
    # announced far over the limit: refused before reading (413); just over it: the store stops it (400)
    for extra, status in ((LIMIT, 413), (1024, 400)):
        boundary = "answer" + secrets.token_hex(8)
        body = multipart({"csrf_token": identity.csrf_token, "number": view.number, "form_id": f"form-id-{extra}",
                          "text": "补充录屏"}, ("录屏.png", png(3) + secrets.token_bytes(LIMIT + extra)), boundary)
        response = await client.post("/chat/status/answer", data=body, headers={
            **origin(client), "Content-Type": f"multipart/form-data; boundary={boundary}"})
        assert response.status == status, extra
        assert TOO_BIG in await response.text()
    assert await stored(container) == (0, [])
    assert (await client.get("/healthz")).status == 200
