"""Request middlewares: who is asking, CSRF on console forms, security headers."""

from __future__ import annotations

import logging

from aiohttp import web

from web.keys import AUTH, PRINCIPAL, SESSION_COOKIE
from web.security import csrf_matches

log = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_EXEMPT_PREFIXES = ("/api/", "/telegram/", "/chat")  # bearer tokens / Telegram secret / citizens' own token


@web.middleware
async def principal_middleware(request: web.Request, handler):
    auth = request.app[AUTH]
    header = request.headers.get("Authorization", "")
    if request.path.startswith("/api/") and header.startswith("Bearer "):
        request[PRINCIPAL] = await auth.bearer(header.removeprefix("Bearer ").strip())
    else:
        request[PRINCIPAL] = await auth.session(request.cookies.get(SESSION_COOKIE))
    return await handler(request)


@web.middleware
async def csrf_middleware(request: web.Request, handler):
    """Every state-changing console request carries the session's CSRF token (form field or header).

    A form body that is not valid UTF-8 (aiohttp's request.post() raises UnicodeDecodeError, here or in a
    handler) is the client's error: 400, not a 500."""
    try:
        return await _csrf_checked(request, handler)
    except UnicodeDecodeError:
        if request.method in SAFE_METHODS:
            raise
        log.info("refused %s %s: the request body is not valid UTF-8", request.method, request.path)
        raise web.HTTPBadRequest(text="The form is not valid UTF-8: reload the page and try again. "
                                      "(表单编码无效，请刷新页面后重试)") from None


async def _csrf_checked(request: web.Request, handler):
    principal = request.get(PRINCIPAL)
    if request.method in SAFE_METHODS or request.path.startswith(CSRF_EXEMPT_PREFIXES) or principal is None:
        return await handler(request)
    given = request.headers.get("X-CSRF-Token")
    if given is None and request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        given = (await request.post()).get("csrf_token")
    if not csrf_matches(principal.csrf_token, given if isinstance(given, str) else None):
        raise web.HTTPForbidden(text="CSRF token missing or wrong: reload the page and try again. (表单已过期，请刷新页面后重试)")
    return await handler(request)


@web.middleware
async def security_headers(request: web.Request, handler):
    try:
        response = await handler(request)
    except web.HTTPException as exc:  # a raised page (a refusal, a redirect) gets them as well
        _add_security_headers(exc.headers)
        raise
    _add_security_headers(response.headers)
    return response


def _add_security_headers(headers) -> None:
    headers.setdefault("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; object-src 'none'; "
                       "frame-ancestors 'none'; base-uri 'self'; form-action 'self'")
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "same-origin")
