"""Issue 14, finding 9 (the JSON API's part): an evidence directory that cannot take files.

The probe: with the evidence store's working directory unusable, an API case with files answered a bare
JSON 500 (internal_error). Now it is 503 with the stable code `evidence_store_unavailable` and Retry-After,
nothing is half-written (no case, no evidence row, no file, also when the disk fails between two files of
one request), and the same request works once the directory is back.

Tests run as root, for whom chmod does not stop writes: the `.incoming` directory, where every upload is
written first, is replaced by a regular file (as a disk gone read-only or full fails: the write errors).
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import aiohttp
from sqlalchemy import func, select

from db.models import Case, Evidence
from tests.fakes.images import photo, png
from tests.integration.test_attack_orphan_files import api  # noqa: F401 - the fixture

API = "/api/v1"
CASE = {"description": "直播间买的奶粉没有生产日期，商家不回复", "channel": "webform", "kind": "tipoff",
        "category": "food_safety"}
BOUNDARY = "qinglang-disk-test"




def break_incoming(container) -> Path:
    incoming = container.evidence.root / ".incoming"
    shutil.rmtree(incoming)
    incoming.write_bytes(b"not a directory")
    return incoming


def mend_incoming(incoming: Path) -> None:
    incoming.unlink()
    incoming.mkdir()


def stored_files(container) -> set[str]:
    root = container.evidence.root
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name != ".incoming"}


async def count(container, model) -> int:
    async with container.uow() as uow:
        return await uow.session.scalar(select(func.count()).select_from(model))


def form(*files: bytes) -> aiohttp.FormData:
    data = aiohttp.FormData(quote_fields=False)
    data.add_field("case", json.dumps(CASE), content_type="application/json")
    for number, content in enumerate(files):
        data.add_field("files", content, filename=f"{number}.png", content_type="image/png")
    return data


async def test_an_unusable_evidence_directory_answers_503_with_a_stable_code(api, container):
    incoming = break_incoming(container)
    response = await api.client.post(f"{API}/cases", data=form(png(1)), headers=api.headers)
    body = await response.json()
    assert response.status == 503, body
    assert body["error"]["code"] == "evidence_store_unavailable" and body["error"]["field"] == "files"
    assert int(response.headers["Retry-After"]) > 0
    assert await count(container, Case) == 0 and await count(container, Evidence) == 0
    assert stored_files(container) == set()

    mend_incoming(incoming)
    response = await api.client.post(f"{API}/cases", data=form(png(1)), headers=api.headers)
    created = await response.json()
    assert response.status == 201, created
    assert container.evidence.verify(created["evidence"][0]["sha256"])


async def test_a_disk_failing_between_two_files_keeps_neither_and_no_case(api, container):
    """The first file is stored, then the directory fails before the second: the first goes again."""
    store = container.evidence
    incoming = store.root / ".incoming"

    def part(name: str, content: bytes, filename: str | None = None, kind: str = "image/png") -> bytes:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        return (f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\nContent-Type: {kind}\r\n\r\n".encode()
                + content + b"\r\n")

    order = b"order 20261116-0042, paid 399 yuan, no receipt\n" * 2000  # the second file, text
    # aiohttp's multipart reader ends a part only once a further read window (64 KiB) has arrived: the
    # second file is sent in part up front, so the first is stored while the second is still arriving
    up_front = 64 * 1024 + 1024

    async def body():
        yield (part("case", json.dumps(CASE).encode(), kind="application/json")
               + part("files", photo(), "first.jpg")
               + f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; filename="order.txt"\r\n'
                 f"Content-Type: text/plain\r\n\r\n".encode() + order[:up_front])
        for _ in range(3000):  # until the store holds the first file
            if any(p.is_file() for p in store.root.glob("[0-9a-f][0-9a-f]/*/*")):
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("the first file never reached the store")
        shutil.rmtree(incoming)  # the disk fails while the second file is being written
        incoming.write_bytes(b"")
        yield order[up_front:] + f"\r\n--{BOUNDARY}--\r\n".encode()

    response = await api.client.post(
        f"{API}/cases", data=body(),
        headers={**api.headers, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
    answer = await response.json()
    assert response.status == 503, answer
    assert answer["error"]["code"] == "evidence_store_unavailable"
    assert await count(container, Case) == 0 and await count(container, Evidence) == 0
    assert stored_files(container) == set()  # the first file and its copy for staff are gone again

    mend_incoming(incoming)
    response = await api.client.post(f"{API}/cases", data=form(photo(), png(2)), headers=api.headers)
    assert response.status == 201, await response.text()
    assert await count(container, Evidence) == 2


async def test_the_openapi_document_names_the_error(api):
    response = await api.client.get(f"{API}/openapi.json")
    document = await response.json()
    answer = document["paths"]["/api/v1/cases"]["post"]["responses"]["503"]
    assert "evidence_store_unavailable" in answer["description"] and "Retry-After" in answer["headers"]
