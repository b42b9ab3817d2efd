"""Reading request bodies and parameters: content type, size limits, JSON into pydantic models, multipart."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, TypeVar

from aiohttp import BodyPartReader, web
from multidict import MultiMapping
from pydantic import BaseModel, ValidationError

from web.api.errors import ApiError
from web.api.schemas import TRANSITION_ACTIONS

MAX_JSON_BYTES = 1024 * 1024  # a JSON body (or the `case` part of a multipart upload)
MAX_FILES = 20  # evidence files in one multipart upload
_CHUNK = 64 * 1024

M = TypeVar("M", bound=BaseModel)


def media_type(request: web.Request) -> str:
    return request.content_type.lower()


def require_json(request: web.Request) -> None:
    if media_type(request) != "application/json":
        raise ApiError(415, "unsupported_media_type",
                       f"send the body as application/json (got {request.headers.get('Content-Type') or 'none'})")
    charset = (request.charset or "utf-8").lower()
    if charset not in ("utf-8", "utf8"):
        raise ApiError(415, "unsupported_media_type", f"JSON must be UTF-8 encoded, not {charset}")


def check_length(request: web.Request, limit: int, what: str = "the request body") -> None:
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, "payload_too_large", f"{what} is larger than {limit} bytes")


async def read_limited(request: web.Request, limit: int = MAX_JSON_BYTES) -> bytes:
    """The whole body, refusing (413) as soon as it passes `limit` bytes, declared or not."""
    check_length(request, limit)
    chunks, size = [], 0
    while True:
        chunk = await request.content.readany()
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "payload_too_large", f"the request body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: web.Request, model: type[M]) -> M:
    require_json(request)
    return parse_json(await read_limited(request), model)


def parse_json(raw: bytes, model: type[M], *, prefix: str = "") -> M:
    if not raw.strip():
        raise ApiError(400, "invalid_json", "the request body is empty; send a JSON object")
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise validation_error(exc, prefix=prefix) from None


def parse_query(query: MultiMapping[str], model: type[M], list_fields: frozenset[str]) -> M:
    """Query parameters into `model`; list fields may repeat or be comma-separated, others appear once."""
    values: dict[str, Any] = {}
    for name in set(query.keys()):
        given = query.getall(name)
        if name in list_fields:
            values[name] = [item.strip() for value in given for item in value.split(",") if item.strip()]
        elif len(given) > 1:
            raise ApiError(400, "validation_error", f"query parameter {name!r} is given more than once", field=name)
        else:
            values[name] = given[0]
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise validation_error(exc, unknown="unknown query parameter") from None


def _field(loc: tuple, prefix: str) -> str:
    parts = [str(p) for p in loc]
    # a discriminated union puts the tag first (("reject", "ground")); the client knows it as `action`
    if parts and parts[0] in _TAGS:
        parts = parts[1:]
    return ".".join([prefix, *parts] if prefix else parts)


_TAGS = frozenset(TRANSITION_ACTIONS)  # the `action` tags of TransitionIn


def validation_error(exc: ValidationError, *, prefix: str = "", unknown: str = "unknown field") -> ApiError:
    details = []
    for error in exc.errors(include_url=False, include_input=False):
        kind, field = error["type"], _field(error["loc"], prefix)
        message = str(error["msg"]).removeprefix("Value error, ")
        if kind == "json_invalid":
            return ApiError(400, "invalid_json", f"the body is not valid JSON: {error.get('ctx', {}).get('error', message)}")
        if kind in ("model_type", "model_attributes_type", "dict_type") and not field:
            return ApiError(400, "invalid_json", "the body must be a JSON object")
        if kind == "extra_forbidden":
            code, message = "unknown_field", f"{unknown} {field!r}"
        elif kind == "missing":
            code, message = "validation_error", f"{field} is required"
        elif kind in ("union_tag_not_found", "union_tag_invalid"):
            field = _field(("action",), prefix)
            choices = ", ".join(sorted(_TAGS))
            code = "validation_error"
            message = (f"action is required: one of {choices}" if kind == "union_tag_not_found"
                       else f"action must be one of {choices}")
        else:
            code = "validation_error"
            message = f"{field}: {message}" if field else message
        details.append({"field": field or None, "code": code, "message": message})
    first = details[0] if details else {"field": None, "code": "validation_error", "message": "invalid request"}
    return ApiError(400, first["code"], first["message"], field=first["field"], details=details)


async def part_bytes(part: BodyPartReader, limit: int, what: str) -> bytes:
    chunks, size = [], 0
    while chunk := await part.read_chunk(_CHUNK):
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "payload_too_large", f"{what} is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def part_chunks(part: BodyPartReader) -> AsyncIterator[bytes]:
    while chunk := await part.read_chunk(_CHUNK):
        yield chunk
