"""The API's one error shape and its JSON encoding.

Every refusal is `{"error": {"code": "<stable_snake_case>", "message": "<clear text>", "field": ..., "details": [...]}}`
with the matching HTTP status, and is logged (who, what, which code) without the submitted content.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web

from web.keys import PRINCIPAL

log = logging.getLogger("qinglang.api")

API_PREFIX = "/api/"

# HTTP errors raised by aiohttp itself (router, body reading) and the codes they get here
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    408: "request_timeout",
    411: "length_required",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
}
_HTTP_MESSAGES = {
    404: "no such API resource; see /api/v1/openapi.json",
    405: "this method is not allowed on this resource",
    413: "the request body is too large",
}


class ApiError(Exception):
    """A refusal with its HTTP status and stable code; the message is safe to show to the client."""

    def __init__(self, status: int, code: str, message: str, *, field: str | None = None,
                 details: list[dict[str, Any]] | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.details = details
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            error["field"] = self.field
        if self.details:
            error["details"] = self.details
        return {"error": error}


def dumps(data: Any) -> str:
    """JSON text that is also inert if a browser ever treats it as HTML or script:
    <, > and & are written as \\u escapes (the parsed value is unchanged)."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def json_response(data: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    response = web.Response(text=dumps(data), status=status, content_type="application/json", charset="utf-8",
                            headers=headers)
    response.headers["Cache-Control"] = "no-store"
    return response


def error_response(error: ApiError) -> web.Response:
    return json_response(error.body(), status=error.status, headers=error.headers)


def _who(request: web.Request) -> str:
    principal = request.get(PRINCIPAL)
    return f"{principal.username}({principal.role})" if principal is not None else "-"


def log_refusal(request: web.Request, error: ApiError) -> None:
    log.warning("api refused %s %s -> %d %s%s by %s from %s: %s", request.method, request.path, error.status,
                error.code, f" [{error.field}]" if error.field else "", _who(request), request.remote,
                error.message[:300])


@web.middleware
async def api_errors(request: web.Request, handler):
    """Under /api/ every error, including the router's 404/405 and aiohttp's 413, is JSON."""
    if not request.path.startswith(API_PREFIX):
        return await handler(request)
    try:
        return await handler(request)
    except ApiError as error:
        log_refusal(request, error)
        return error_response(error)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "www-authenticate", "retry-after")}
        code = _HTTP_CODES.get(exc.status, "server_error" if exc.status >= 500 else "client_error")
        message = _HTTP_MESSAGES.get(exc.status) or exc.reason or code
        error = ApiError(exc.status, code, message, headers=headers)
        log_refusal(request, error)
        return error_response(error)
    except Exception:
        log.exception("api error on %s %s by %s", request.method, request.path, _who(request))
        return error_response(ApiError(500, "internal_error",
                                       "the server failed to handle this request; it has been logged"))
