"""Issue 14, finding 7 (the JSON API's part): a refused multipart request leaves no file behind.

The probe: an API case whose first file is good and whose second is refused (415) used to leave the first
file in the evidence store, with no evidence row and no case: an orphan nothing would ever remove. Now a
request that fails after storing files takes them back, unless another request stored the same bytes
meanwhile or a case refers to them. (The web chat's part is in the chat's own tests.)
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select

from db.models import Case, Evidence
from intake.status import DomainError
from tests.fakes.images import photo, png
from web.app import create_app

API = "/api/v1"
CASE = {"description": "直播间买的羽绒服是假货，商家拒绝退款", "channel": "webform", "kind": "tipoff",
        "category": "product_quality"}
EXECUTABLE = b"MZ\x90\x00" + b"\x00" * 200


@dataclass
class Api:
    client: TestClient
    headers: dict[str, str]

    async def post(self, path: str, **kwargs):
        return await self.client.post(API + path, headers=self.headers, **kwargs)

    async def get(self, path: str):
        return await self.client.get(API + path, headers=self.headers)


@pytest.fixture
async def api(container):
    await asyncio.to_thread(container.nlu.warm_up)  # the classifier is trained once, not inside a request
    async with TestClient(TestServer(create_app(container, with_bot=False))) as client:
        user = await container.accounts.create_user("hotline", "xiaobao", "triage", with_api_token=True)
        yield Api(client, {"Authorization": f"Bearer {user.api_token}"})


def stored_files(container) -> set[str]:
    """Every file in the evidence store: originals, staff copies, and anything left in .incoming."""
    root = container.evidence.root
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


async def count(container, model) -> int:
    async with container.uow() as uow:
        return await uow.session.scalar(select(func.count()).select_from(model))


def form(*files: tuple[bytes, str]) -> aiohttp.FormData:
    data = aiohttp.FormData(quote_fields=False)
    data.add_field("case", json.dumps(CASE), content_type="application/json")
    for content, name in files:
        data.add_field("files", content, filename=name, content_type="application/octet-stream")
    return data


async def post(api, data: aiohttp.FormData):
    response = await api.post("/cases", data=data)
    return response, await response.json()


async def test_a_refused_second_file_leaves_no_file_of_the_first(api, container):
    response, body = await post(api, form((photo(), "screenshot.jpg"), (EXECUTABLE, "setup.png")))
    assert response.status == 415, body
    assert body["error"]["code"] == "evidence_type_not_allowed"
    assert await count(container, Case) == 0 and await count(container, Evidence) == 0
    assert stored_files(container) == set()  # neither the photo nor its copy for staff


async def test_a_case_the_service_refuses_after_its_files_are_stored_leaves_no_file(api, container, monkeypatch):
    async def refuse(new, actor):
        raise DomainError("the case rules refuse this case")

    monkeypatch.setattr(container.cases, "create", refuse)
    response, body = await post(api, form((png(3), "a.png"), (b"order 123, paid 399 yuan\n", "order.txt")))
    assert response.status == 422 and body["error"]["code"] == "domain_error", body
    assert stored_files(container) == set()


async def test_a_file_another_case_relies_on_is_kept(api, container):
    response, first = await post(api, form((png(4), "shared.png")))
    assert response.status == 201, first
    sha256 = first["evidence"][0]["sha256"]
    before = stored_files(container)
    response, body = await post(api, form((png(4), "same.png"), (EXECUTABLE, "setup.png")))
    assert response.status == 415, body
    assert stored_files(container) == before and container.evidence.verify(sha256)
    download = await api.get(f"/cases/{first['number']}/evidence/{sha256}/original")
    assert download.status == 200 and await download.read() == png(4)


async def test_a_file_whose_case_was_created_is_kept_when_the_answer_fails(api, container, monkeypatch):
    """Failing after the case is stored (here: reading it back) must not take the case's files away."""
    from web.keys import QUERIES

    queries = api.client.server.app[QUERIES]

    async def broken(*args, **kwargs):
        raise RuntimeError("the database went away after the commit")

    monkeypatch.setattr(queries, "detail", broken)
    response, body = await post(api, form((png(5), "kept.png")))
    assert response.status == 500 and body["error"]["code"] == "internal_error"
    monkeypatch.undo()
    async with container.uow() as uow:
        sha256 = await uow.session.scalar(select(Evidence.sha256))
    assert sha256 is not None and container.evidence.verify(sha256)


async def test_after_a_refusal_the_same_upload_works(api, container):
    response, _ = await post(api, form((png(6), "a.png"), (EXECUTABLE, "b.png")))
    assert response.status == 415
    response, body = await post(api, form((png(6), "a.png")))
    assert response.status == 201, body
    assert container.evidence.verify(body["evidence"][0]["sha256"])
