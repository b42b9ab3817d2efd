"""Open redirect after login (issue 14, finding 3).

`GET /login?next=/%09/evil.example` used to answer `303 Location: //evil.example` (with or without a
session): the query decodes to "/\\t/evil.example", which passed a check for "//" and "/\\", and a browser
drops the tab. Now `next` must be a path of this site once yarl has parsed it; anything else goes home.
The same holds for the `next` field of the login form and the `back` field of the console's forms.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urljoin

import pytest
from aiohttp.test_utils import TestClient, TestServer

from web.app import create_app
from web.redirects import same_site_target

HOSTILE = [
    "/%09/evil.example",
    "/%0a/evil.example",
    "/%0d%0a/evil.example",
    "/%5C/evil.example",
    "/%5Cevil.example",
    "//evil.example",
    "///evil.example",
    "/\\evil.example",
    "%2F%2Fevil.example",
    "https://evil.example/",
    "http:evil.example",
    "javascript:alert(1)",
    "/.//evil.example",
    "/%2e//evil.example",
    "/%20/evil.example",
    "/%E3%80%80/evil.example",
    "evil.example",
]


@pytest.fixture
async def client(container):
    app = create_app(container)
    async with TestClient(TestServer(app)) as client:
        yield client


async def _login_token(client) -> str:
    page = await client.get("/login")
    return re.search(r'name="csrf_token" value="([^"]+)"', await page.text()).group(1)


def _stays_on_site(location: str) -> bool:
    """Where a browser would go: it drops tabs and newlines, reads "\\" as "/", then resolves."""
    browser_reads = re.sub(r"[\t\n\r]", "", location).replace("\\", "/").strip("\x00\x20")
    return urljoin("https://tousu.example.gov.cn/login", browser_reads).startswith("https://tousu.example.gov.cn/")


@pytest.mark.parametrize("target", HOSTILE)
async def test_next_of_the_login_page_never_leaves_the_site(client, container, target):
    user = await container.accounts.create_user("ming", "xiaobao", "triage")
    # without a session: the form carries `next` on to the post
    page = await client.get(f"/login?next={target}", allow_redirects=False)
    assert page.status == 200
    carried = re.search(r'name="next" value="([^"]*)"', await page.text())
    assert carried is None or _stays_on_site(carried.group(1).replace("&#34;", '"'))
    token = await _login_token(client)
    answer = await client.post("/login", data={"csrf_token": token, "username": "ming",
                                               "password": user.password, "next": unquote(target)},
                               allow_redirects=False)
    assert answer.status == 303 and _stays_on_site(answer.headers["Location"]), answer.headers.get("Location")
    # with a session: GET /login redirects at once
    again = await client.get(f"/login?next={target}", allow_redirects=False)
    assert again.status == 303 and _stays_on_site(again.headers["Location"]), again.headers["Location"]


async def test_a_path_of_the_site_is_kept(client, container):
    user = await container.accounts.create_user("ming", "xiaobao", "triage")
    token = await _login_token(client)
    answer = await client.post("/login", data={"csrf_token": token, "username": "ming",
                                               "password": user.password, "next": "/cases?status=received"},
                               allow_redirects=False)
    assert answer.status == 303 and answer.headers["Location"] == "/cases?status=received"


@pytest.mark.parametrize("target", [unquote(t) for t in HOSTILE] + ["/\x00/x"])
def test_same_site_target_refuses(target):
    assert same_site_target(target) == "/"


@pytest.mark.parametrize("target", ["/", "/cases/12", "/cases?status=received&q=%E4%B8%AD", "/reports#form"])
def test_same_site_target_keeps_paths(target):
    assert same_site_target(target) == target
