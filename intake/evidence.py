"""Content-addressed store for complaint evidence (screenshots, videos, documents).

Every upload is streamed to a temporary file inside the store root, hashed on
the way, checked against a size limit and a list of accepted types, and then
moved atomically to ``root/<sha[:2]>/<sha[2:4]>/<sha>``.  The type is decided
from the *content* only; the name the consumer gave the file is kept as
metadata and never reaches a path.

Images (JPEG, PNG, GIF, WebP) are decoded under limits before they are kept
(intake.images); one that is too large or does not decode is refused.  Beside
the original, which stays as uploaded (the record: its sha256 is its name),
the store keeps the copy staff are shown, without location and other metadata,
at ``root/.staff/<sha[:2]>/<sha[2:4]>/<sha>``; for an upload older than this
copy it is made on first view (``staff_copy``).

Two requests may store the same bytes. The first installs the file (``StoredFile.duplicate``
False), every later one *claims* it: its modification time becomes the time of that put. Where that
time cannot be changed (a file system with coarse times, a file of another owner) the later put puts a
copy of its own in place instead (same bytes, a new inode). A request that stored a file and then failed
takes it back with ``discard``, which removes the file only while it is as that request left it (inode
and mtime): no put claimed or replaced it since. The daily ``sweep`` removes files nothing refers to
once they are older than a grace period, and the leftovers of interrupted uploads. Both first move the
file aside with an atomic rename (a put of the same bytes then installs its own copy), decide, and then
remove it or put it back: nothing that a put returned is lost to them, whichever process each runs in.
"""

from __future__ import annotations

import asyncio
import codecs
import enum
import errno
import hashlib
import io
import logging
import os
import re
import secrets
import shutil
import stat
import tempfile
import threading
import time
import unicodedata
import zipfile
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import BinaryIO, NamedTuple

import puremagic

from intake.images import (
    IMAGE_FORMATS,
    ImageLimits,
    ImageTooLarge,
    ImageUnreadable,
    StaffCopy,
    write_staff_copy,
)
from qinglang.durable import fsync_dir
from qinglang.errors import ConfigError, QinglangError

__all__ = [
    "DEFAULT_ALLOWED_TYPES",
    "DEFAULT_MAX_BYTES",
    "DOCX",
    "XLSX",
    "EvidenceEmpty",
    "EvidenceImageTooLarge",
    "EvidenceImageUnreadable",
    "EvidenceLimits",
    "EvidenceRejected",
    "EvidenceStore",
    "EvidenceStoreUnavailable",
    "EvidenceTooLarge",
    "EvidenceTypeNotAllowed",
    "StoredFile",
    "SweepResult",
    "sanitize_original_name",
    "sniff_mime",
]

DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
OCTET_STREAM = "application/octet-stream"

DEFAULT_MAX_BYTES = 50 * 1024 * 1024

DEFAULT_ALLOWED_TYPES: frozenset[str] = frozenset(
    {
        "image/jpeg",
        "image/png",
        "image/gif",
        "image/webp",
        "image/heic",
        "video/mp4",
        "video/quicktime",
        "audio/mpeg",
        "audio/ogg",
        "audio/mp4",
        "application/pdf",
        "text/plain",
        DOCX,
        XLSX,
    }
)

# Short names shown to consumers, in the order they are listed.
_LABELS: dict[str, str] = {
    "image/jpeg": "JPEG",
    "image/png": "PNG",
    "image/gif": "GIF",
    "image/webp": "WebP",
    "image/heic": "HEIC",
    "video/mp4": "MP4",
    "video/quicktime": "MOV",
    "audio/mpeg": "MP3",
    "audio/ogg": "OGG",
    "audio/mp4": "M4A",
    "application/pdf": "PDF",
    "text/plain": "TXT",
    DOCX: "Word (DOCX)",
    XLSX: "Excel (XLSX)",
    "application/zip": "ZIP 压缩包",
    "application/x-executable": "可执行程序",
    "application/vnd.microsoft.portable-executable": "可执行程序",
    "text/html": "HTML 网页",
    OCTET_STREAM: "未知类型",
}

_SHA256_RE = re.compile(r"[0-9a-f]{64}")
# C0/C1 control characters and DEL, except the whitespace ones (\t \n \v \f \r).
_TEXT_CONTROL_RE = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f]")
_HEAD_BYTES = 8192
_BLOCK = 1024 * 1024
_SHARD_RE = re.compile(r"[0-9a-f]{2}")
_ASIDE_RE = re.compile(r"\.([0-9a-f]{64})\.([0-9]{1,20})\.[0-9a-f]{8}\.aside")  # .<sha>.<unix seconds>.<random>.aside
_INCOMING = ".incoming"
_STAFF = ".staff"
# A file in .incoming untouched this long belongs to no upload in progress (a put writes to its file as the
# bytes arrive): a killed process left it. So does a file set aside this long ago.
LEFTOVER_AGE = timedelta(hours=1)
_DECODING_AT_ONCE = 2  # decoded images take memory (4 bytes a pixel): a few at a time

log = logging.getLogger("qinglang.evidence")


# --------------------------------------------------------------------------- errors


class EvidenceRejected(QinglangError):
    """The upload was refused; the message can be shown to the consumer as is."""


class EvidenceStoreUnavailable(QinglangError):
    """The store cannot take a file now (directory not writable, disk full): nothing was kept, try later."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"证据暂时无法保存，请稍后再试 (evidence store unavailable: {reason})")


class EvidenceTooLarge(EvidenceRejected):
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        super().__init__(
            f"文件太大：单个证据文件不能超过 {_human_size(max_bytes)}，请压缩或截取后重新提交"
            f" (file too large, limit {max_bytes} bytes)"
        )


class EvidenceTypeNotAllowed(EvidenceRejected):
    def __init__(self, detected: str, allowed: frozenset[str]) -> None:
        self.detected = detected
        self.allowed = allowed
        label = _LABELS.get(detected)
        shown = f"{label}（{detected}）" if label else detected
        super().__init__(
            f"不支持的文件类型：检测到 {shown}；可接受的类型：{_accepted_list(allowed)}"
            f" (file type not accepted)"
        )


class EvidenceEmpty(EvidenceRejected):
    def __init__(self) -> None:
        super().__init__("文件是空的（0 字节），请重新选择文件后提交 (empty file)")


class EvidenceImageTooLarge(EvidenceRejected):
    def __init__(self, limits: ImageLimits) -> None:
        self.limits = limits
        super().__init__(
            f"图片尺寸过大：每张图片不超过 {limits.max_pixels / 10_000:g} 万像素、边长不超过 {limits.max_side} 像素，"
            f"动图不超过 {limits.max_frames} 帧；请缩小或截取后重新提交"
            f" (image too large: at most {limits.max_pixels} pixels, {limits.max_side} pixels a side,"
            f" {limits.max_frames} frames)"
        )


class EvidenceImageUnreadable(EvidenceRejected):
    def __init__(self) -> None:
        super().__init__("图片文件已损坏或不完整，无法打开；请重新截图或导出后再提交 (image cannot be decoded)")


def _human_size(n: int) -> str:
    for unit, size in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= size:
            value = n / size
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{n} 字节"


def _accepted_list(allowed: frozenset[str]) -> str:
    order = list(_LABELS)
    ranked = sorted(allowed, key=lambda m: (order.index(m) if m in order else len(order), m))
    return "、".join(_LABELS.get(m, m) for m in ranked) or "（无）"


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class EvidenceLimits:
    max_bytes: int = DEFAULT_MAX_BYTES
    allowed_types: frozenset[str] = field(default=DEFAULT_ALLOWED_TYPES)
    images: ImageLimits = field(default_factory=ImageLimits)

    def __post_init__(self) -> None:
        if isinstance(self.max_bytes, bool) or not isinstance(self.max_bytes, int) or self.max_bytes <= 0:
            raise ValueError(f"max_bytes must be a positive integer, got {self.max_bytes!r}")
        if isinstance(self.allowed_types, str):
            raise TypeError("allowed_types must be a collection of MIME types, not a string")
        object.__setattr__(self, "allowed_types", frozenset(self.allowed_types))
        if not isinstance(self.images, ImageLimits):
            raise TypeError(f"images must be ImageLimits, got {type(self.images).__name__}")


@dataclass(frozen=True)
class StoredFile:
    sha256: str
    size: int
    mime: str
    path: Path
    original_name: str | None
    duplicate: bool  # the content was stored before this put (which then only claimed it): never discarded
    claim_ns: int = 0  # the file's mtime (ns) as this put left it; discard() removes it only while it is so
    claim_inode: int = 0  # and its inode: a put that cannot change the mtime installs a new inode instead


@dataclass(frozen=True)
class SweepResult:
    """What a sweep removed (or, with dry_run, would remove)."""

    files: int = 0  # unreferenced uploads
    bytes: int = 0  # their size and that of their staff copies and of staff copies without an original
    staff_copies: int = 0  # staff copies removed (of those files, or left without an original)
    incoming: int = 0  # leftovers of interrupted uploads in .incoming
    incoming_bytes: int = 0
    put_back: int = 0  # files a killed discard or sweep had moved aside, put back in place
    dry_run: bool = False

    def as_dict(self) -> dict[str, int | bool]:
        return asdict(self)


# --------------------------------------------------------------------------- names


def sanitize_original_name(name: str | None) -> str | None:
    """The consumer's file name made safe to keep as metadata (never as a path).

    Control/format characters (including bidi overrides) are removed, only the
    last path component is kept, and the result is capped at 255 characters.
    Returns None when nothing meaningful remains.
    """
    if name is None:
        return None
    if not isinstance(name, str):
        raise TypeError(f"original_name must be str or None, got {type(name).__name__}")
    name = unicodedata.normalize("NFC", name)
    name = "".join(
        ch for ch in name if unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Zl", "Zp")
    )
    parts = [p.strip() for p in re.split(r"[/\\]", name)]
    parts = [p for p in parts if p not in ("", ".", "..")]
    if not parts:
        return None
    name = parts[-1]
    if len(name) > 255:
        stem, dot, ext = name.rpartition(".")
        if dot and stem and 0 < len(ext) <= 16:
            name = stem[: 255 - len(ext) - 1].rstrip() + "." + ext
        else:
            name = name[:255].rstrip()
    return name or None


# --------------------------------------------------------------------------- sniffing


def _ftyp_mime(head: bytes) -> str | None:
    """ISO base media (MP4 / MOV / M4A / HEIC) from the leading 'ftyp' box."""
    if len(head) < 12 or head[4:8] != b"ftyp":
        return None
    box = int.from_bytes(head[0:4], "big")
    end = min(box if box >= 16 else 16, len(head))
    major = head[8:12]
    brands = {major} | {head[i : i + 4] for i in range(16, end - 3, 4)}
    if brands & {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx"}:
        return "image/heic"
    if brands & {b"avif", b"avis"}:
        return "image/avif"
    if major in (b"mif1", b"msf1"):
        return "image/heif"
    if major == b"qt  ":
        return "video/quicktime"
    if major in (b"M4A ", b"M4B ", b"M4P "):
        return "audio/mp4"
    if major.startswith(b"3g2"):
        return "video/3gpp2"
    if major.startswith(b"3gp"):
        return "video/3gpp"
    if brands & {
        b"isom", b"iso2", b"iso3", b"iso4", b"iso5", b"iso6", b"iso8", b"iso9",
        b"mp41", b"mp42", b"mp71", b"avc1", b"dash", b"M4V ", b"MSNV", b"NDAS", b"mmp4",
    }:
        return "video/mp4"
    if b"qt  " in brands:
        return "video/quicktime"
    return None


def _mpeg_audio_frame(head: bytes) -> bool:
    if len(head) < 4 or head[0] != 0xFF or head[1] & 0xE0 != 0xE0:
        return False
    version = (head[1] >> 3) & 0x3
    layer = (head[1] >> 1) & 0x3
    bitrate = head[2] >> 4
    rate = (head[2] >> 2) & 0x3
    return version != 1 and layer != 0 and bitrate not in (0, 15) and rate != 3


def _zip_mime(open_zip: Callable[[], BinaryIO]) -> str:
    try:
        with open_zip() as fh, zipfile.ZipFile(fh) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return "application/zip"
    macros = any(n.endswith("vbaProject.bin") for n in names)
    if any(n.startswith("word/") for n in names):
        return "application/vnd.ms-word.document.macroEnabled.12" if macros else DOCX
    if any(n.startswith("xl/") for n in names):
        return "application/vnd.ms-excel.sheet.macroEnabled.12" if macros else XLSX
    return "application/zip"


def _binary_signature(head: bytes, open_zip: Callable[[], BinaryIO]) -> str | None:
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "image/webp"
    if b"%PDF-" in head[:1024]:
        return "application/pdf"
    ftyp = _ftyp_mime(head)
    if ftyp:
        return ftyp
    if head[4:8] in (b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"):
        return "video/quicktime"  # classic QuickTime without an ftyp box
    if head.startswith(b"OggS"):
        first = head[:4096]
        if b"\x80theora" in first:
            return "video/ogg"
        if any(tag in first for tag in (b"\x01vorbis", b"OpusHead", b"\x7fFLAC", b"Speex   ")):
            return "audio/ogg"
        return "application/ogg"
    if head.startswith(b"ID3") and len(head) >= 5 and 2 <= head[3] <= 4 and head[4] != 0xFF:
        return "audio/mpeg"
    if _mpeg_audio_frame(head):
        return "audio/mpeg"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return _zip_mime(open_zip)
    if head.startswith(b"\x7fELF"):
        return "application/x-executable"
    if head.startswith(b"MZ"):
        return "application/vnd.microsoft.portable-executable"
    if head[:4] in (b"\xfe\xed\xfa\xce", b"\xfe\xed\xfa\xcf", b"\xce\xfa\xed\xfe",
                    b"\xcf\xfa\xed\xfe", b"\xca\xfe\xba\xbe"):
        return "application/x-mach-binary"
    return None


# Types whose real files the signatures above always recognise: puremagic is
# never trusted to hand one of them out on a weak guess.
_OWN_TYPES = DEFAULT_ALLOWED_TYPES | {
    "image/heif", "image/avif", "video/3gpp", "video/3gpp2", "video/ogg", "application/ogg",
    "application/zip",
}

_MARKUP_PREFIXES: tuple[tuple[bytes, str], ...] = (
    (b"<!doctype html", "text/html"),
    (b"<html", "text/html"),
    (b"<head", "text/html"),
    (b"<body", "text/html"),
    (b"<script", "text/html"),
    (b"<iframe", "text/html"),
    (b"<frameset", "text/html"),
    (b"<table", "text/html"),
    (b"<div", "text/html"),
    (b"<a ", "text/html"),
    (b"<img", "text/html"),
    (b"<style", "text/html"),
    (b"<title", "text/html"),
    (b"<!--", "text/html"),
    (b"<svg", "image/svg+xml"),
    (b"<?xml", "application/xml"),
    (b"<?php", "application/x-httpd-php"),
    (b"#!", "text/x-script"),
    (b"%!ps", "application/postscript"),
    (b"{\\rtf", "application/rtf"),
)


def _text_markup(head: bytes) -> str | None:
    lead = head.removeprefix(b"\xef\xbb\xbf").lstrip(b" \t\r\n\x0b\x0c")[:64].lower()
    for prefix, mime in _MARKUP_PREFIXES:
        if lead.startswith(prefix):
            if mime == "application/xml" and b"<svg" in head.lower():
                return "image/svg+xml"
            return mime
    return None


def _puremagic_best(head: bytes, min_confidence: float) -> str | None:
    try:
        results = puremagic.magic_string(head)
    except Exception:  # PureError when nothing matches; be lenient with odd input
        return None
    for r in results:
        if r.mime_type and r.confidence >= min_confidence:
            return r.mime_type
    return None


def _detect(head: bytes, is_text: bool, open_zip: Callable[[], BinaryIO]) -> str:
    mime = _binary_signature(head, open_zip)
    if mime:
        return mime
    if is_text:
        # Plain text is plain text even when it happens to begin like a mail
        # header or some rare binary magic, so puremagic is not consulted;
        # only active markup/scripts (HTML, SVG, XML, shebang...) are singled out.
        return _text_markup(head) or "text/plain"
    mime = _puremagic_best(head, 0.0)
    if mime and mime not in _OWN_TYPES:
        return mime
    return OCTET_STREAM


class _TextCheck:
    """Incrementally decides whether a byte stream is clean UTF-8 text."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self.ok = True

    def feed(self, data: bytes, final: bool = False) -> None:
        if not self.ok:
            return
        try:
            text = self._decoder.decode(data, final)
        except UnicodeDecodeError:
            self.ok = False
            return
        if _TEXT_CONTROL_RE.search(text):
            self.ok = False


def sniff_mime(data: bytes) -> str:
    """MIME type of an in-memory blob, by the same rules the store applies."""
    check = _TextCheck()
    check.feed(bytes(data), final=True)
    return _detect(bytes(data[:_HEAD_BYTES]), check.ok, lambda: io.BytesIO(data))


# --------------------------------------------------------------------------- store


class _Sink:
    """Temp file + running hash + head capture + text check (runs in a worker thread)."""

    def __init__(self, fh: BinaryIO) -> None:
        self.fh = fh
        self.hash = hashlib.sha256()
        self.size = 0
        self.head = bytearray()
        self.text = _TextCheck()

    def write(self, data: bytes) -> None:
        try:
            self.fh.write(data)
        except OSError as exc:
            raise EvidenceStoreUnavailable(exc.strerror or type(exc).__name__) from exc
        self.hash.update(data)
        self.size += len(data)
        if len(self.head) < _HEAD_BYTES:
            self.head += data[: _HEAD_BYTES - len(self.head)]
        self.text.feed(data)

    def close(self) -> None:
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()
        self.text.feed(b"", final=True)


class EvidenceStore:
    def __init__(self, root: Path, limits: EvidenceLimits | None = None) -> None:
        self.root = Path(root).expanduser().absolute()
        self.limits = limits if limits is not None else EvidenceLimits()
        self._incoming = self.root / _INCOMING
        self._decoding = threading.BoundedSemaphore(_DECODING_AT_ONCE)
        try:
            self._incoming.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(dir=self._incoming, prefix="probe-")
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            reason = exc.strerror or exc.__class__.__name__
            raise ConfigError(
                f"证据存储目录无法创建或写入：{self.root}（{reason}）"
                f" (evidence directory not usable: {self.root})"
            ) from exc

    # -- addressing ------------------------------------------------------

    def path_for(self, sha256: str) -> Path:
        if not isinstance(sha256, str) or not _SHA256_RE.fullmatch(sha256):
            raise ValueError(f"not a sha256 hex digest (64 lowercase hex): {sha256!r:.80}")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def staff_path_for(self, sha256: str) -> Path:
        """Where the copy of an image for staff (no metadata) is kept; see staff_copy()."""
        self.path_for(sha256)  # the same check of the digest
        return self.root / _STAFF / sha256[:2] / sha256[2:4] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path_for(sha256).is_file()

    def open(self, sha256: str) -> BinaryIO:
        """Open a stored file for reading (binary). FileNotFoundError if absent."""
        return open(self.path_for(sha256), "rb")

    def verify(self, sha256: str) -> bool:
        """Re-hash the stored file; False if it is missing or its content changed."""
        path = self.path_for(sha256)
        digest = hashlib.sha256()
        try:
            with open(path, "rb") as fh:
                while block := fh.read(_BLOCK):
                    digest.update(block)
        except (FileNotFoundError, IsADirectoryError):
            return False
        return digest.hexdigest() == sha256

    # -- writing ---------------------------------------------------------

    async def put(
        self,
        chunks: AsyncIterable[bytes] | bytes,
        *,
        original_name: str | None = None,
    ) -> StoredFile:
        """Store a file; EvidenceRejected (shown to the person) or EvidenceStoreUnavailable (the disk)."""
        name = sanitize_original_name(original_name)
        try:
            fd, tmp_name = await asyncio.to_thread(
                tempfile.mkstemp, dir=self._incoming, prefix="put-", suffix=".part"
            )
        except OSError as exc:
            raise EvidenceStoreUnavailable(exc.strerror or type(exc).__name__) from exc
        tmp = Path(tmp_name)
        sink = _Sink(os.fdopen(fd, "wb"))
        try:
            await self._stream(chunks, sink)
            try:
                return await asyncio.to_thread(self._finish, sink, tmp, name)
            except OSError as exc:  # the disk, not the upload (a dropped connection is the stream's)
                raise EvidenceStoreUnavailable(exc.strerror or type(exc).__name__) from exc
        except BaseException:
            # Also on cancellation: nothing partial may remain.
            try:
                sink.fh.close()
            except Exception:
                pass
            _remove_quietly(tmp)  # the directory may be what failed
            raise

    async def _stream(self, chunks: AsyncIterable[bytes] | bytes, sink: _Sink) -> None:
        limit = self.limits.max_bytes
        if isinstance(chunks, (bytes, bytearray, memoryview)):
            view = memoryview(chunks).cast("B")
            if len(view) > limit:
                raise EvidenceTooLarge(limit)
            for start in range(0, len(view), _BLOCK):
                await asyncio.to_thread(sink.write, bytes(view[start : start + _BLOCK]))
            return
        if not isinstance(chunks, AsyncIterable):
            raise TypeError(f"put() needs bytes or an async iterable of bytes, got {type(chunks).__name__}")
        it = aiter(chunks)
        try:
            async for chunk in it:
                if not isinstance(chunk, (bytes, bytearray, memoryview)):
                    raise TypeError(f"evidence chunks must be bytes, got {type(chunk).__name__}")
                if not chunk:
                    continue
                if sink.size + len(chunk) > limit:
                    raise EvidenceTooLarge(limit)
                await asyncio.to_thread(sink.write, bytes(chunk))
        except BaseException:
            aclose = getattr(it, "aclose", None)
            if aclose is not None:
                try:
                    await aclose()
                except Exception:
                    pass
            raise

    def _finish(self, sink: _Sink, tmp: Path, name: str | None) -> StoredFile:
        sink.close()
        if sink.size == 0:
            raise EvidenceEmpty()
        mime = _detect(bytes(sink.head), sink.text.ok, lambda: open(tmp, "rb"))
        if mime not in self.limits.allowed_types:
            raise EvidenceTypeNotAllowed(mime, self.limits.allowed_types)
        sha = sink.hash.hexdigest()
        dest = self.path_for(sha)
        claim = _claim(dest, sink.size)
        duplicate = claim is not None  # an intact copy is there (claimed, or to be replaced by this one)
        prepared: Path | None = None
        copy_for_staff = mime in IMAGE_FORMATS and not (duplicate and self.staff_path_for(sha).is_file())
        if copy_for_staff:
            prepared = self._prepare_staff_copy(tmp, mime)  # refuses an image that does not decode safely
        elif mime.startswith("image/") and mime not in IMAGE_FORMATS:
            log.info("evidence %s: %s is not decoded here; staff get only the original, on request", sha[:12], mime)
        try:
            if claim is None:
                dest.parent.mkdir(parents=True, exist_ok=True)
                duplicate, claim = _install(tmp, dest, sink.size)
                fsync_dir(dest.parent)
            elif claim is _UNMARKED:
                claim = _replace(tmp, dest)
            tmp.unlink(missing_ok=True)
            if copy_for_staff:
                self._install_staff_copy(sha, prepared)
                prepared = None
        finally:
            if prepared is not None:
                _remove_quietly(prepared)
        return StoredFile(
            sha256=sha, size=sink.size, mime=mime, path=dest, original_name=name, duplicate=duplicate,
            claim_ns=claim.mtime_ns, claim_inode=claim.inode,
        )

    # -- taking files back ---------------------------------------------------

    async def discard(
        self, stored: StoredFile, *, referenced: Callable[[str], Awaitable[bool]] | None = None
    ) -> bool:
        """Remove the file `stored` (and its staff copy) again, for a request that stored it and then failed.

        Only what this put created (not `stored.duplicate`) and no put claimed or replaced since: a request
        that stored the same bytes meanwhile keeps its file. `referenced(sha256)`, when given, is asked last,
        while the file is aside (so nothing can begin to rely on it during the question); True keeps the file.
        True when the file was removed. A disk error is logged, and the file left to the sweep.
        """
        if stored.duplicate:
            return False

        async def keep(found: os.stat_result) -> bool:
            if (found.st_mtime_ns, found.st_ino, found.st_size) != (stored.claim_ns, stored.claim_inode, stored.size):
                return True  # claimed, or replaced by a copy of its own, by a later put of the same bytes
            return referenced is not None and bool(await referenced(stored.sha256))

        try:
            return await self._remove_unless(stored.sha256, keep) is not None
        except OSError as exc:
            log.warning("evidence %s: not discarded (%s); the sweep removes it if nothing refers to it",
                        stored.sha256[:12], exc.strerror or type(exc).__name__)
            return False

    async def sweep(
        self,
        now: datetime,
        grace: timedelta,
        *,
        references: Callable[[list[str]], Awaitable[set[str]]],
        referenced: Callable[[str], Awaitable[bool]],
        dry_run: bool = False,
    ) -> SweepResult:
        """Remove the files nothing refers to that no put claimed for `grace`, and the leftovers of
        interrupted uploads (files in .incoming untouched for LEFTOVER_AGE).

        `references(candidates)`: the candidate digests something refers to (a case's evidence, a draft),
        asked once for all of them. `referenced(sha256)`: asked again for each file right before it goes,
        while it is aside, so that a reference made since the first question keeps it; so does a put of
        the same bytes since (the file's mtime is then fresh). Staff copies go with their file, and those
        left without one once they are older than `grace`.
        """
        cutoff_ns = _ns(now - grace)
        leftover_ns = _ns(now - LEFTOVER_AGE)
        put_back = 0 if dry_run else await asyncio.to_thread(self._put_back_leftovers, leftover_ns)
        incoming, incoming_bytes = await asyncio.to_thread(self._incoming_leftovers, leftover_ns, dry_run)
        candidates = await asyncio.to_thread(self._unclaimed_since, cutoff_ns)
        wanted = await references(sorted(candidates)) if candidates else set()
        files = freed = staff = 0
        for sha256, size in candidates.items():
            if sha256 in wanted:
                continue
            if dry_run:
                copy = await asyncio.to_thread(self._staff_size, sha256)
                files, freed, staff = files + 1, freed + size + (copy or 0), staff + (copy is not None)
                continue

            async def keep(found: os.stat_result, sha256: str = sha256) -> bool:
                return found.st_mtime_ns >= cutoff_ns or bool(await referenced(sha256))

            taken = await self._remove_unless(sha256, keep)
            if taken is not None:
                files, freed, staff = files + 1, freed + taken[0], staff + taken[1]
        orphans, orphan_bytes = await asyncio.to_thread(self._orphan_staff_copies, cutoff_ns, dry_run)
        return SweepResult(files=files, bytes=freed + orphan_bytes, staff_copies=staff + orphans, incoming=incoming,
                           incoming_bytes=incoming_bytes, put_back=put_back, dry_run=dry_run)

    async def _remove_unless(
        self, sha256: str, keep: Callable[[os.stat_result], Awaitable[bool]]
    ) -> tuple[int, int] | None:
        """Move the file aside, ask `keep`, then remove it and its staff copy, or put it back.

        While it is aside a put of the same bytes finds no file and installs its own copy, and one that
        claimed it just before the rename left its mtime, which `keep` sees. (bytes freed, staff copies
        removed), or None when the file is kept or was not there."""
        dest = self.path_for(sha256)
        aside = await asyncio.to_thread(_set_aside, dest)
        if aside is None:
            return None
        try:
            found = await asyncio.to_thread(os.stat, aside)
            kept = await keep(found)
        except BaseException:
            _put_back(aside, dest)  # also when cancelled: at once, not in a thread
            raise
        if kept:
            await asyncio.to_thread(_put_back, aside, dest)
            return None
        return await asyncio.to_thread(self._remove_aside, aside, sha256, found)

    def _remove_aside(self, aside: Path, sha256: str, found: os.stat_result) -> tuple[int, int]:
        os.unlink(aside)
        # A put of the same image since the rename may have made this copy; it is made again on first view.
        staff = self.staff_path_for(sha256)
        try:
            copy = os.stat(staff)
            os.unlink(staff)
        except FileNotFoundError:
            return found.st_size, 0
        same_inode = (copy.st_dev, copy.st_ino) == (found.st_dev, found.st_ino)  # a hard link of the original
        return found.st_size + (0 if same_inode else copy.st_size), 1

    def _staff_size(self, sha256: str) -> int | None:
        try:
            copy = os.stat(self.staff_path_for(sha256))
        except FileNotFoundError:
            return None
        return 0 if copy.st_nlink > 1 else copy.st_size

    def _shard_entries(self, top: Path) -> Iterable[tuple[str, str, os.DirEntry]]:
        """(first, second, entry) for every entry of top/<first>/<second>/ (two hex digits each)."""
        for first in _subdirs(top):
            for second in _subdirs(Path(first.path)):
                try:
                    with os.scandir(second.path) as entries:
                        listed = list(entries)
                except FileNotFoundError:
                    continue
                for entry in listed:
                    yield first.name, second.name, entry

    def _unclaimed_since(self, cutoff_ns: int) -> dict[str, int]:
        """Stored files last installed or claimed before `cutoff_ns`: digest -> size."""
        found: dict[str, int] = {}
        for first, second, entry in self._shard_entries(self.root):
            name = entry.name
            if not _SHA256_RE.fullmatch(name) or name[:2] != first or name[2:4] != second:
                continue
            try:
                info = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if stat.S_ISREG(info.st_mode) and info.st_mtime_ns < cutoff_ns:
                found[name] = info.st_size
        return found

    def _put_back_leftovers(self, leftover_ns: int) -> int:
        """Files a killed discard or sweep left aside go back: they are judged again like any other."""
        count = 0
        for _, _, entry in self._shard_entries(self.root):
            match = _ASIDE_RE.fullmatch(entry.name)
            if match and int(match.group(2)) * 1_000_000_000 < leftover_ns:
                _put_back(Path(entry.path), self.path_for(match.group(1)))
                count += 1
        return count

    def _incoming_leftovers(self, leftover_ns: int, dry_run: bool) -> tuple[int, int]:
        try:
            with os.scandir(self._incoming) as entries:
                listed = list(entries)
        except OSError as exc:
            log.warning("evidence store: %s cannot be read (%s); its leftovers stay", self._incoming,
                        exc.strerror or type(exc).__name__)
            return 0, 0

        def left_by_a_killed_upload(entry: os.DirEntry, info: os.stat_result) -> bool:
            return stat.S_ISREG(info.st_mode) and info.st_mtime_ns < leftover_ns

        return _remove_each(listed, left_by_a_killed_upload, dry_run)

    def _orphan_staff_copies(self, cutoff_ns: int, dry_run: bool) -> tuple[int, int]:
        def old_and_without_its_original(entry: os.DirEntry, info: os.stat_result) -> bool:
            return info.st_mtime_ns < cutoff_ns and not self.path_for(entry.name).exists()

        copies = (entry for _, _, entry in self._shard_entries(self.root / _STAFF) if _SHA256_RE.fullmatch(entry.name))
        return _remove_each(copies, old_and_without_its_original, dry_run)

    # -- the copy staff see ------------------------------------------------

    async def staff_copy(self, sha256: str, mime: str) -> Path | None:
        """The file to show staff for stored evidence of type `mime` (as detected when it was stored).

        An image: its copy without metadata, made now if the upload is older than such copies. Other
        types: the original (documents and videos are served as uploaded; nothing is stripped from
        them). None: an image no safe copy can be made of (it does not decode under the limits, or it
        is of a type not decoded here, such as HEIC); staff then get only the original, on an explicit
        request. FileNotFoundError when the original is missing.
        """
        return await asyncio.to_thread(self._staff_copy, sha256, mime)

    def _staff_copy(self, sha256: str, mime: str) -> Path | None:
        original = self.path_for(sha256)
        if not original.is_file():
            raise FileNotFoundError(original)
        if mime not in IMAGE_FORMATS:
            return None if mime.startswith("image/") else original
        staff = self.staff_path_for(sha256)
        if staff.is_file():
            return staff
        try:
            prepared = self._prepare_staff_copy(original, mime)
        except EvidenceRejected as exc:
            log.warning("evidence %s (%s): no copy for staff, the original is not shown: %s", sha256[:12], mime, exc)
            return None
        try:
            self._install_staff_copy(sha256, prepared)
        finally:
            if prepared is not None:
                prepared.unlink(missing_ok=True)
        return staff

    def _prepare_staff_copy(self, source: Path, mime: str) -> Path | None:
        """The staff copy of the image at `source`, in a temporary file; None when the image itself
        has nothing to strip. Raises EvidenceImageTooLarge / EvidenceImageUnreadable."""
        fd, name = tempfile.mkstemp(dir=self._incoming, prefix="staff-", suffix=".part")
        prepared = Path(name)
        try:
            with self._decoding, os.fdopen(fd, "wb") as out:
                outcome = write_staff_copy(source.read_bytes(), mime, out, self.limits.images)
                out.flush()
                os.fsync(out.fileno())
        except BaseException as exc:
            _remove_quietly(prepared)
            if isinstance(exc, ImageTooLarge):
                raise EvidenceImageTooLarge(self.limits.images) from None
            if isinstance(exc, ImageUnreadable):
                raise EvidenceImageUnreadable() from None
            raise
        if outcome is StaffCopy.SAME:
            prepared.unlink()
            return None
        return prepared

    def _install_staff_copy(self, sha256: str, prepared: Path | None) -> None:
        """Put the prepared copy in place; None: the stored original is its own staff copy (linked)."""
        staff = self.staff_path_for(sha256)
        staff.parent.mkdir(parents=True, exist_ok=True)
        if prepared is None:
            fd, name = tempfile.mkstemp(dir=self._incoming, prefix="staff-", suffix=".link")
            os.close(fd)
            prepared = Path(name)
            prepared.unlink()
            try:
                os.link(self.path_for(sha256), prepared)
            except OSError:  # a file system without hard links
                shutil.copyfile(self.path_for(sha256), prepared)
        os.replace(prepared, staff)  # atomic: two first views at once both end with a whole copy
        fsync_dir(staff.parent)


# --------------------------------------------------------------------------- claims


class _Claim(NamedTuple):
    """A stored file as a put left it: discard() removes it only while it is still so."""

    mtime_ns: int
    inode: int

    @classmethod
    def of(cls, found: os.stat_result) -> _Claim:
        return cls(found.st_mtime_ns, found.st_ino)


class _Unmarked(enum.Enum):
    """An intact stored copy whose mtime a put cannot change (a file system that keeps coarse times, or a
    file of another owner): that put must not rely on it as it is, since a discard by the put that
    installed it could not tell it apart. It installs a copy of its own instead (_replace)."""

    COPY = enum.auto()


_UNMARKED = _Unmarked.COPY


def _claim(path: Path, size: int) -> _Claim | _Unmarked | None:
    """Mark an intact stored copy as relied on by one more request: its mtime becomes now (and differs from
    what any earlier put left), as read back from the file. None when there is no intact copy (this put
    installs one); _UNMARKED when the mtime did not change (this put replaces the copy with its own)."""
    try:
        found = os.stat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(found.st_mode) or found.st_size != size:
        return None  # damaged: the fresh copy takes its place
    claim = max(time.time_ns(), found.st_mtime_ns + 1)
    try:
        os.utime(path, ns=(claim, claim))
        marked = os.stat(path)
    except FileNotFoundError:
        return None  # moved aside a moment ago by a discard or the sweep
    except PermissionError:  # another owner's file (a restore run as another user)
        log.warning("evidence %s: cannot mark it as used again (not its owner); replaced by this put's copy",
                    path.name[:12])
        return _UNMARKED
    if _Claim.of(marked) == _Claim.of(found):
        return _UNMARKED  # a coarse clock: found + 1 ns, or now, rounded back to what it was
    return _Claim.of(marked)


def _replace(tmp: Path, dest: Path) -> _Claim:
    """Put this put's copy of the same bytes in place of an intact one it could not claim (a new inode,
    which a discard of the one before tells apart)."""
    fresh = os.stat(tmp)
    os.replace(tmp, dest)
    fsync_dir(dest.parent)
    return _Claim.of(fresh)


def _install(tmp: Path, dest: Path, size: int) -> tuple[bool, _Claim]:
    """Put a fresh upload in place, never over a copy another put installed meanwhile (a hard link fails
    where a rename would replace). (duplicate, the file as this put leaves it)."""
    fresh = _Claim.of(os.stat(tmp))
    try:
        os.link(tmp, dest)
    except FileExistsError:
        claim = _claim(dest, size)
        if isinstance(claim, _Claim):
            return True, claim  # the same bytes, installed by another put a moment ago
        if claim is _UNMARKED:
            return True, _replace(tmp, dest)
        os.replace(tmp, dest)  # a damaged copy (wrong size): the fresh one takes its place
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
            raise
        os.replace(tmp, dest)  # a file system without hard links
    return False, fresh


def _set_aside(dest: Path) -> Path | None:
    aside = dest.with_name(f".{dest.name}.{int(time.time())}.{secrets.token_hex(4)}.aside")
    try:
        os.rename(dest, aside)
    except FileNotFoundError:
        return None
    return aside


def _put_back(aside: Path, dest: Path) -> None:
    try:
        os.link(aside, dest)
    except FileExistsError:
        pass  # a put installed the same bytes meanwhile
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
            raise
        if not dest.exists():  # a file system without hard links
            os.replace(aside, dest)
            return
    aside.unlink(missing_ok=True)


def _remove_each(
    entries: Iterable[os.DirEntry], goes: Callable[[os.DirEntry, os.stat_result], bool], dry_run: bool
) -> tuple[int, int]:
    """Remove (unless `dry_run`) the entries `goes` picks by their lstat; (how many, their bytes). One
    removed meanwhile by another process is not counted."""
    count = size = 0
    for entry in entries:
        try:
            info = entry.stat(follow_symlinks=False)
            if not goes(entry, info):
                continue
            if not dry_run:
                os.unlink(entry.path)
        except FileNotFoundError:
            continue
        count, size = count + 1, size + info.st_size
    return count, size


def _remove_quietly(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:  # e.g. its directory is no longer one: then nothing of it is kept there either
        log.warning("evidence store: cannot remove %s (%s)", path.name, exc.strerror or type(exc).__name__)


def _subdirs(parent: Path) -> list[os.DirEntry]:
    """The two-hex-digit subdirectories of `parent` (none when it is missing)."""
    try:
        with os.scandir(parent) as entries:
            return [e for e in entries if _SHARD_RE.fullmatch(e.name) and e.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return []


def _ns(moment: datetime) -> int:
    return round(moment.timestamp() * 1_000_000) * 1000
