"""Staff see evidence images without location metadata; the original only on an explicit, audited request.
The console and the API over real HTTP, on SQLite (and PostgreSQL when configured)."""

from __future__ import annotations

import hashlib
import io

from PIL import ExifTags, Image
from sqlalchemy import select

from db.models import CaseEvent
from intake.cases import EvidenceItem
from intake.status import Status
from web.evidence_files import ORIGINAL_DOWNLOAD
from tests.fakes.images import photo
from tests.integration.test_console import (  # noqa: F401  (console is a fixture)
    NOT_FOUND_TEXT,
    STAFF,
    case_at,
    console,
    find_form,
    stored,
    tipoff,
)

API = "/api/v1"


def has_location(data: bytes) -> bool:
    exif = Image.open(io.BytesIO(data)).getexif()
    return ExifTags.IFD.GPSInfo in exif or b"FakePhone" in data


async def audit_events(container, case_id: int) -> list[CaseEvent]:
    async with container.uow() as uow:
        return list((await uow.session.scalars(select(CaseEvent).where(
            CaseEvent.case_id == case_id, CaseEvent.action == ORIGINAL_DOWNLOAD).order_by(CaseEvent.id))).all())


def planted(container, data: bytes, mime: str, name: str) -> EvidenceItem:
    """Evidence as it was kept before staff copies existed: the original only (or one that never decoded)."""
    sha = hashlib.sha256(data).hexdigest()
    path = container.evidence.path_for(sha)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return EvidenceItem(sha, len(data), mime, name, "upload")


async def test_console_shows_the_stripped_copy_and_audits_a_download_of_the_original(console):
    container = console.container
    triage = await console.person("triage", *STAFF["triage"])
    original = photo(64, 48)
    image = await stored(container, original, "IMG_2041.jpg")
    case_id, number = await case_at(container, Status.RECEIVED, tipoff(evidence=(image,)))
    url = f"/cases/{number}/evidence/{image.sha256}"

    response = await triage.client.get(url)
    shown = await response.read()
    assert response.status == 200 and response.headers["Content-Type"] == "image/jpeg"
    assert response.headers["Content-Disposition"].startswith("inline;")
    assert not has_location(shown) and has_location(original)
    assert Image.open(io.BytesIO(shown)).size == (64, 48)

    status, html = await triage.get(url + "/original")
    assert status == 200 and "下载原件会记入案件的审计日志" in html and image.sha256 in html
    assert await audit_events(container, case_id) == []  # looking is not downloading

    response = await triage.client.post(url + "/original", data={}, allow_redirects=False)
    assert response.status == 403  # no CSRF token
    assert await audit_events(container, case_id) == []

    response = await triage.send(find_form(html, url + "/original"))
    assert response.status == 200 and await response.read() == original
    assert hashlib.sha256(original).hexdigest() == image.sha256 and container.evidence.verify(image.sha256)
    assert response.headers["Content-Disposition"].startswith("attachment;")
    assert response.headers["Cache-Control"] == "no-store"
    [event] = await audit_events(container, case_id)
    assert (event.actor_type, event.actor_id) == ("staff", triage.id)
    assert event.data == {"sha256": image.sha256, "via": "console"}


async def test_console_evidence_of_a_case_out_of_scope_is_not_found(console):
    container = console.container
    other = await console.person("other", *STAFF["other"])  # 质量监管科: no part in the tip-off
    lead = await console.person("lead", *STAFF["lead"])
    image = await stored(container, photo(16, 16), "a.jpg")
    case_id, number = await case_at(container, Status.RECEIVED, tipoff(evidence=(image,)))
    url = f"/cases/{number}/evidence/{image.sha256}"

    for path in (url, url + "/original"):
        status, html = await other.get(path)
        assert status == 404 and NOT_FOUND_TEXT in html, path
    response = await other.post(url + "/original")
    assert response.status == 404
    assert await audit_events(container, case_id) == []

    status, html = await lead.get(url + "/original")
    assert status == 200
    response = await lead.send(find_form(html, url + "/original"))
    assert response.status == 200
    assert [e.actor_id for e in await audit_events(container, case_id)] == [lead.id]


async def test_console_makes_the_copy_of_an_older_upload_on_first_view(console):
    container = console.container
    triage = await console.person("triage", *STAFF["triage"])
    original = photo(32, 24, orientation=8)
    item = planted(container, original, "image/jpeg", "old.jpg")
    _, number = await case_at(container, Status.RECEIVED, tipoff(evidence=(item,)))
    assert not container.evidence.staff_path_for(item.sha256).exists()

    response = await triage.client.get(f"/cases/{number}/evidence/{item.sha256}")

    shown = await response.read()
    assert response.status == 200 and not has_location(shown)
    assert Image.open(io.BytesIO(shown)).size == (24, 32)  # turned upright
    assert container.evidence.staff_path_for(item.sha256).read_bytes() == shown
    assert container.evidence.path_for(item.sha256).read_bytes() == original


async def test_console_never_shows_an_image_it_cannot_make_safe(console):
    container = console.container
    triage = await console.person("triage", *STAFF["triage"])
    broken = photo(64, 48)[:600]  # the EXIF with the position survives; the picture does not
    item = planted(container, broken, "image/jpeg", "cut.jpg")
    case_id, number = await case_at(container, Status.RECEIVED, tipoff(evidence=(item,)))
    url = f"/cases/{number}/evidence/{item.sha256}"

    response = await triage.client.get(url)
    html = await response.text()
    assert response.status == 409 and response.content_type == "text/html"
    assert "无法为这个文件生成去除位置等信息的查看副本" in html
    assert not container.evidence.staff_path_for(item.sha256).exists()

    response = await triage.send(find_form(html, url + "/original"))
    assert response.status == 200 and await response.read() == broken
    assert len(await audit_events(container, case_id)) == 1


async def test_api_serves_the_stripped_copy_and_audits_the_original(console):
    container = console.container
    client = await console.browser()
    tokens = {}
    for who in ("triage", "other"):
        created = await container.accounts.create_user(f"api-{who}", *STAFF[who], with_api_token=True)
        tokens[who] = {"Authorization": f"Bearer {created.api_token}"}
    original = photo(40, 30)
    image = await stored(container, original, "截图.jpg")
    broken = planted(container, photo(40, 30)[:500] + b"\x00", "image/jpeg", "cut.jpg")
    case_id, number = await case_at(container, Status.RECEIVED, tipoff(evidence=(image, broken)))
    url = f"{API}/cases/{number}/evidence/{image.sha256}"

    response = await client.get(url)
    assert response.status == 401 and (await response.json())["error"]["code"] == "unauthorized"
    response = await client.get(url, headers=tokens["triage"])
    shown = await response.read()
    assert response.status == 200 and response.headers["Content-Type"] == "image/jpeg"
    assert not has_location(shown) and shown == container.evidence.staff_path_for(image.sha256).read_bytes()
    assert await audit_events(container, case_id) == []

    for path in (url, url + "/original"):  # a handler of a unit with no part in the case
        response = await client.get(path, headers=tokens["other"])
        assert response.status == 404 and (await response.json())["error"]["code"] == "not_found", path
    assert await audit_events(container, case_id) == []

    response = await client.get(url + "/original", headers=tokens["triage"])
    assert response.status == 200 and await response.read() == original
    assert response.headers["Content-Disposition"].startswith("attachment;")
    [event] = await audit_events(container, case_id)
    assert event.data == {"sha256": image.sha256, "via": "api"}

    response = await client.get(f"{API}/cases/{number}/evidence/{broken.sha256}", headers=tokens["triage"])
    assert response.status == 409 and (await response.json())["error"]["code"] == "no_safe_copy"
