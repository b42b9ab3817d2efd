"""Hand-made requests to the web chat for the attack tests: visitors made up without a page load (a
fresh cookie each), multipart bodies written byte by byte, and what the evidence store holds."""

from __future__ import annotations

import asyncio

import secrets
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select

from db.models import Evidence
from intake.cases import Actor, ComplainantInfo, NewCase
from nlu.taxonomy import Kind
from routing.rules import MerchantLocation
from web.chat.codes import AccessCodes, shown
from web.app import create_app
from web.chat.identity import COOKIE, ChatIdentity


@pytest.fixture
async def client(container):
    """The web app with the chat, the classifier trained first (never inside a request)."""
    await asyncio.to_thread(container.nlu.warm_up)
    async with TestClient(TestServer(create_app(container, with_bot=False))) as c:
        yield c


def visitor() -> ChatIdentity:
    """A new chat cookie, as the chat page would have set it."""
    return ChatIdentity(secrets.token_urlsafe(32))


def headers(client, who: ChatIdentity, *, address: str | None = None, content_type: str | None = None) -> dict:
    """Origin of the site, the visitor's cookie, and (through the trusted proxy on loopback) an address."""
    found = {"Origin": str(client.make_url("/")).rstrip("/"), "Cookie": f"{COOKIE}={who.token}"}
    if address is not None:
        found["X-Forwarded-For"] = address
    if content_type is not None:
        found["Content-Type"] = content_type
    return found


def field(boundary: str, name: str, value: str) -> bytes:
    return f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()


def file_part(boundary: str, filename: str, content: bytes, *, name: str = "file") -> bytes:
    return (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + content + b"\r\n"


def end(boundary: str) -> bytes:
    return f"--{boundary}--\r\n".encode()


def form_type(boundary: str) -> str:
    return f"multipart/form-data; boundary={boundary}"


def text_file(seed: int, size: int) -> bytes:
    """Plain text (an accepted type) of `size` bytes, different for every seed."""
    head = f"证据 {seed} {secrets.token_hex(8)}\n".encode()
    return head + b"x" * (size - len(head))


def evidence_files(container) -> list[Path]:
    """The uploads the store keeps (not its staff copies, not unfinished uploads)."""
    root = container.evidence.root
    return sorted(p for p in root.rglob("*") if p.is_file() and not {".incoming", ".staff"} & set(p.parts))


def incoming(container) -> list[Path]:
    return sorted(p for p in (container.evidence.root / ".incoming").rglob("*") if p.is_file())


async def evidence_rows(container) -> int:
    async with container.uow() as uow:
        return await uow.session.scalar(select(func.count()).select_from(Evidence))


async def case_with_code(container, *, filed_by: ChatIdentity | None = None) -> tuple[int, str, str]:
    """A complaint made through the service (by the chat cookie `filed_by`, else by someone else), and a
    fresh access code for it: (id, number, code)."""
    view = await container.cases.create(NewCase(
        kind=Kind.COMPLAINT, category="consumer_rights", channel="web", description="直播间买的羽绒服商家不给退款",
        complainant=ComplainantInfo(channel_user_id=filed_by.user_id if filed_by else "x", name="张三",
                                    phone="13800138000"),
        merchant=MerchantLocation(True, "永中街道", "浙江省")), Actor("complainant"))
    code = shown(await AccessCodes(container.uow, container.clock).issue(view.id))
    return view.id, view.number, code
