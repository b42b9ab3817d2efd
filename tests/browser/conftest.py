"""Browser tests: the real app served on 127.0.0.1, driven by headless Chromium through Playwright.

The browser is Debian's `chromium` (/usr/bin/chromium, or QINGLANG_TEST_CHROMIUM); Playwright never
downloads one (no `playwright install`). scripts/test.sh installs `chromium fonts-noto-cjk
fonts-noto-color-emoji` when it can. Without a browser these tests skip with the reason locally, and
FAIL in CI (CI=true): a browser test that silently skips in CI proves nothing.

Screenshots go to test-output/screenshots/ at the repository root, for anyone to look at.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web

from tests.net import free_port
from web.app import create_app

try:
    from playwright.async_api import Browser, Error as PlaywrightError, Page, async_playwright, expect
except ImportError as exc:  # the `test` extra was not installed: the `browser` fixture says so
    async_playwright = expect = Page = None
    _IMPORT_ERROR: str | None = f"the Python package playwright is not installed ({exc})"
else:
    _IMPORT_ERROR = None

CHROMIUM = Path(os.environ.get("QINGLANG_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-dev-shm-usage",
                 "--lang=zh-CN"]
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-output" / "screenshots"
TIMEOUT_MS = 15_000  # one step of a page (a slow CI machine); each test takes about 6 s
if expect is not None:
    expect.set_options(timeout=TIMEOUT_MS)


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def no_browser(reason: str) -> None:
    """Skip locally, fail in CI."""
    message = f"browser tests need headless Chromium: {reason}"
    if in_ci():
        pytest.fail(message + " (CI=true: failing instead of skipping; scripts/test.sh installs it "
                              "with apt-get when it runs as root)", pytrace=False)
    pytest.skip(message + " (install with: apt-get install chromium fonts-noto-cjk fonts-noto-color-emoji)")




@pytest.fixture
def backend() -> str:
    """The browser tests run on SQLite only: they test pages, not the database backends."""
    return "sqlite"


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if _IMPORT_ERROR is not None:
        no_browser(_IMPORT_ERROR)
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        no_browser(f"{CHROMIUM} not found")
    async with async_playwright() as playwright:
        try:
            launched = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS,
                                                        headless=True)
        except PlaywrightError as exc:
            no_browser(f"{CHROMIUM} did not start: {str(exc).splitlines()[0]}")
        try:
            yield launched
        finally:
            await launched.close()


@dataclass
class Site:
    """The app, served for real on a free port of 127.0.0.1."""

    container: object
    base: str

    def url(self, path: str) -> str:
        return self.base + path



@contextlib.asynccontextmanager
async def serve(container) -> AsyncIterator[Site]:
    runner = web.AppRunner(create_app(container, with_bot=False), handle_signals=False)
    await runner.setup()  # runs on_startup: the classifier's warm_up, the chat's replay task
    try:
        port = free_port()
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        yield Site(container, f"http://127.0.0.1:{port}")
    finally:
        await runner.cleanup()  # also disposes of the container's engine (the app's on_cleanup)


@pytest.fixture
async def page(browser) -> AsyncIterator[Page]:
    context = await browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900},
                                        timezone_id="Asia/Shanghai")
    context.set_default_timeout(TIMEOUT_MS)
    page = await context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("console", lambda message: problems.append(f"console {message.type}: {message.text}")
            if message.type == "error" and not message.text.startswith("Failed to load resource") else None)
    # every resource a page loads must be there (the browser's own favicon.ico probe excepted)
    page.on("response", lambda response: problems.append(f"{response.status} {response.request.method} {response.url}")
            if response.status >= 400 and not response.url.endswith("/favicon.ico") else None)
    try:
        yield page
    finally:
        await context.close()
    # a JavaScript error or a missing resource (a 404 of a static file) is a failure of the page
    assert not problems, problems
