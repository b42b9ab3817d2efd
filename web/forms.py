"""Reading the chat's form posts, part by part. A malformed body (no boundary, a part header without a
colon or with a NUL, a part cut short, a nested multipart) is MalformedForm, which the routes answer with
a 400 page: what aiohttp raises for it never reaches the log as a traceback."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import BodyPartReader, MultipartReader, web
from aiohttp.http_exceptions import HttpProcessingError

# what aiohttp's parsers raise on malformed input (InvalidHeader, LineTooLong, ... are HttpProcessingError;
# "boundary missed", "Reading after EOF", "Could not find starting boundary" are ValueError)
_MALFORMED = (ValueError, AssertionError, KeyError, HttpProcessingError)


class MalformedForm(Exception):
    """The body is not a well-formed form; nothing of it should be kept."""


class FileOverQuota(Exception):
    """The file streamed past the bytes its sender may still upload."""


def reason(exc: BaseException) -> str:
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return str(text).replace("\x00", "\\x00")[:200]


async def post_data(request: web.Request):
    """request.post(), with a malformed body as MalformedForm."""
    try:
        return await request.post()
    except _MALFORMED as exc:
        raise MalformedForm(reason(exc)) from None


async def open_parts(request: web.Request) -> MultipartReader:
    try:
        return await request.multipart()
    except _MALFORMED as exc:
        raise MalformedForm(reason(exc)) from None


async def next_part(reader: MultipartReader) -> BodyPartReader | None:
    try:
        part = await reader.next()
    except _MALFORMED as exc:
        raise MalformedForm(reason(exc)) from None
    if part is not None and not isinstance(part, BodyPartReader):
        raise MalformedForm("a nested multipart body")  # no browser sends one for these forms
    return part


async def read_field(part: BodyPartReader, max_bytes: int) -> str:
    """A text field: its first `max_bytes` bytes as text, without NUL (no database stores it)."""
    data = bytearray()
    try:
        while chunk := await part.read_chunk(8192):
            if len(data) < max_bytes:
                data += chunk[: max_bytes - len(data)]
    except _MALFORMED as exc:
        raise MalformedForm(reason(exc)) from None
    return data.decode("utf-8", errors="replace").replace("\x00", "")


async def drain(part: BodyPartReader) -> None:
    try:
        while await part.read_chunk(65536):
            pass
    except _MALFORMED as exc:
        raise MalformedForm(reason(exc)) from None


async def chunks(part: BodyPartReader, max_bytes: int | None = None) -> AsyncIterator[bytes]:
    """The file's bytes as they arrive; past `max_bytes`, FileOverQuota (the store then keeps nothing)."""
    size = 0
    while True:
        try:
            chunk = await part.read_chunk(256 * 1024)
        except _MALFORMED as exc:
            raise MalformedForm(reason(exc)) from None
        if not chunk:
            return
        size += len(chunk)
        if max_bytes is not None and size > max_bytes:
            raise FileOverQuota(f"over {max_bytes} bytes")
        yield chunk
