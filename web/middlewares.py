"""Request middlewares: who is asking, CSRF on console forms, security headers."""

from __future__ import annotations

import logging

from aiohttp import web

from web.forms import MalformedForm, post_data
from web.keys import AUTH, PRINCIPAL, SESSION_COOKIE
from web.security import csrf_matches

log = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_EXEMPT_PREFIXES = ("/api/", "/telegram/", "/chat")  # bearer tokens / Telegram secret / citizens' own token
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
MAX_CONSOLE_FORM = 4 * 1024 * 1024  # the routing rules: 200,000 characters, URL-encoded


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

    A form body that cannot be read (not valid UTF-8, no multipart boundary, a part header without a colon:
    aiohttp raises UnicodeDecodeError, ValueError or an HttpProcessingError for these) is the client's
    error: it is read here, before any handler, and answered 400, not a 500 with a traceback."""
    try:
        return await _csrf_checked(request, handler)
    except MalformedForm as exc:
        log.info("refused %s %s: the form cannot be read (%s)", request.method, request.path, exc)
        raise web.HTTPBadRequest(text="The form could not be read: reload the page and try again. "
                                      "(表单无法读取，请刷新页面后重试)") from None


async def _csrf_checked(request: web.Request, handler):
    if (request.method in SAFE_METHODS or request.path.startswith(CSRF_EXEMPT_PREFIXES)
            or request.match_info.http_exception is not None):  # no such page: nothing to read
        return await handler(request)
    form = None
    if request.content_type in FORM_TYPES:
        # the console's forms are a few kilobytes (the routing rules the largest): a body past that is not
        # read into memory, by anybody, signed in or not
        if request.content_length is None or request.content_length > MAX_CONSOLE_FORM:
            raise web.HTTPRequestEntityTooLarge(max_size=MAX_CONSOLE_FORM, actual_size=request.content_length or 0,
                                                text="The form is too large. (表单内容过大)")
        form = await post_data(request)  # aiohttp keeps it: the handler's request.post() reads the same
    principal = request.get(PRINCIPAL)
    if principal is None:
        return await handler(request)
    given = request.headers.get("X-CSRF-Token")
    if given is None and form is not None:
        given = form.get("csrf_token")
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
