"""The Telegram webhook: 200 only after the update is committed to the inbox.

- A wrong or missing secret token: 401, nothing read or stored (compared in constant time).
- A body that is not JSON (or nested too deep to read) or not an update: 400. Telegram does not retry a 4xx, and retrying a broken body
  would never help; it is logged.
- The inbox cannot be written (database down): 503, so Telegram delivers the update again later.
- Stored: the update is handled right away and the answer waits for it up to `answer_within` (10) seconds;
  a slower update keeps running in the background (Telegram would resend after about 60 s, and the inbox
  would drop that copy as a duplicate anyway).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging

from aiohttp import web

from bot.updates import NotAnUpdate, UpdateFlow

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


class WebhookHandler:
    def __init__(self, flow: UpdateFlow, secret: str, *, answer_within: float = 10.0) -> None:
        self._flow = flow
        self._secret = secret.encode()
        self._answer_within = answer_within

    def register(self, app: web.Application, path: str) -> None:
        app.router.add_post(path, self.handle)

    def _authentic(self, request: web.Request) -> bool:
        given = request.headers.get(SECRET_HEADER, "").encode("utf-8", "surrogateescape")
        return hmac.compare_digest(given, self._secret)

    async def handle(self, request: web.Request) -> web.Response:
        if not self._authentic(request):
            return web.json_response({"ok": False, "error": "unauthorized"}, status=401)
        body = await request.read()
        try:
            payload = json.loads(body)
            stored = await self._flow.store(payload)
        except (ValueError, RecursionError, NotAnUpdate) as exc:  # JSONDecodeError, UnicodeDecodeError: ValueErrors
            log.warning("webhook refused a body that is not a Telegram update: %s", exc)
            return web.json_response({"ok": False, "error": f"not a Telegram update: {exc}"}, status=400)
        except Exception:
            log.exception("webhook could not store an update; answering 503 so Telegram delivers it again")
            return web.json_response({"ok": False, "error": "temporarily unavailable"}, status=503,
                                     headers={"Retry-After": "5"})
        if stored is not None:
            await asyncio.wait({self._flow.spawn(stored)}, timeout=self._answer_within)
        return web.json_response({"ok": True})
