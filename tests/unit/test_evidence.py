"""Tests for intake.evidence: content-addressed evidence store."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import struct
import zipfile
import zlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from intake.evidence import (
    DOCX,
    XLSX,
    EvidenceEmpty,
    EvidenceLimits,
    EvidenceRejected,
    EvidenceStore,
    EvidenceTooLarge,
    EvidenceTypeNotAllowed,
    sanitize_original_name,
    sniff_mime,
)
from intake.images import IMAGE_FORMATS
from qinglang.errors import ConfigError, QinglangError
from tests.fakes.images import photo

# --------------------------------------------------------------------------- sample files


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def make_png(width: int = 2, height: int = 2, colour: bytes = b"\xff\x00\x00") -> bytes:
    raw = b"".join(b"\x00" + colour * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + _png_chunk(b"IDAT", zlib.compress(raw))
        + _png_chunk(b"IEND", b"")
    )


def make_jpeg() -> bytes:
    return photo(8, 8, exif=False)  # images are decoded before they are kept: a real one


def make_pdf() -> bytes:
    return (
        b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"
        b"1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
        b"2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\n"
        b"trailer<</Root 1 0 R>>\n%%EOF\n"
    )


def make_zip(entries: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, body in entries.items():
            zf.writestr(name, body)
    return buf.getvalue()


def make_docx() -> bytes:
    return make_zip(
        {
            "[Content_Types].xml": "<Types/>",
            "_rels/.rels": "<Relationships/>",
            "word/document.xml": "<w:document>投诉</w:document>",
        }
    )


def make_xlsx() -> bytes:
    return make_zip({"[Content_Types].xml": "<Types/>", "xl/workbook.xml": "<workbook/>"})


def make_ftyp(major: bytes, compatible: list[bytes]) -> bytes:
    body = major + b"\x00\x00\x02\x00" + b"".join(compatible)
    ftyp = struct.pack(">I", 8 + len(body)) + b"ftyp" + body
    mdat = struct.pack(">I", 8 + 32) + b"mdat" + bytes(32)
    return ftyp + mdat


def make_mp4() -> bytes:
    return make_ftyp(b"isom", [b"isom", b"iso2", b"avc1", b"mp41"])


TEXT = "投诉：主播在直播间声称是正品，收到后发现是假货。\n订单号 12345\tlive-stream\r\n".encode()
ELF = b"\x7fELF\x02\x01\x01\x00" + bytes(8) + b"\x02\x00\x3e\x00" + bytes(100)
HTML = b"<!DOCTYPE html>\n<html><body><script>alert(1)</script></body></html>\n"

ACCEPTED = [
    ("png", make_png(), "image/png"),
    ("jpeg", make_jpeg(), "image/jpeg"),
    ("pdf", make_pdf(), "application/pdf"),
    ("docx", make_docx(), DOCX),
    ("xlsx", make_xlsx(), XLSX),
    ("mp4", make_mp4(), "video/mp4"),
    ("mov", make_ftyp(b"qt  ", [b"qt  "]), "video/quicktime"),
    ("m4a", make_ftyp(b"M4A ", [b"M4A ", b"mp42", b"isom"]), "audio/mp4"),
    ("heic", make_ftyp(b"heic", [b"mif1", b"heic"]), "image/heic"),
    ("gif", photo(2, 2, fmt="GIF", exif=False), "image/gif"),
    ("webp", photo(2, 2, fmt="WEBP", exif=False), "image/webp"),
    ("mp3-id3", b"ID3\x03\x00\x00\x00\x00\x00\x00" + b"\xff\xfb\x90\x64" + bytes(200), "audio/mpeg"),
    ("mp3-frame", b"\xff\xfb\x90\x64" + bytes(400), "audio/mpeg"),
    ("ogg", b"OggS\x00\x02" + bytes(22) + b"\x01\x1e\x01vorbis" + bytes(30), "audio/ogg"),
    ("text", TEXT, "text/plain"),
]

REFUSED = [
    ("elf", ELF, "application/x-executable"),
    ("windows-exe", b"MZ\x90\x00\x03\x00\x00\x00" + bytes(120), "application/vnd.microsoft.portable-executable"),
    ("html", HTML, "text/html"),
    ("html-lead-ws", b"\n  <html><p>hi</p></html>", "text/html"),
    ("svg", b"<svg xmlns='http://www.w3.org/2000/svg'><script/></svg>", "image/svg+xml"),
    ("shell", b"#!/bin/sh\nrm -rf /\n", "text/x-script"),
    ("plain-zip", make_zip({"a.txt": "hi", "docs/word.txt": "not office"}), "application/zip"),
    ("text-with-nul", b"hello\x00world", None),
    ("text-with-escape", "投诉\x1b[31m".encode(), None),
    ("latin1-not-utf8", "café naïve".encode("latin-1"), None),
]


# --------------------------------------------------------------------------- helpers


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


def _content_path(root: Path, data: bytes) -> Path:
    sha = hashlib.sha256(data).hexdigest()
    return root / sha[:2] / sha[2:4] / sha


async def agen(*chunks: bytes):
    for c in chunks:
        await asyncio.sleep(0)
        yield c


@pytest.fixture
def store(tmp_path: Path) -> EvidenceStore:
    return EvidenceStore(tmp_path / "evidence", EvidenceLimits(max_bytes=64 * 1024))


# --------------------------------------------------------------------------- detection


@pytest.mark.parametrize(("label", "data", "mime"), ACCEPTED, ids=[a[0] for a in ACCEPTED])
async def test_accepted_types_detected_and_stored(store: EvidenceStore, label, data, mime):
    stored = await store.put(data, original_name=f"evidence-{label}.bin")
    assert stored.mime == mime
    assert stored.path == _content_path(store.root, data)
    assert stored.path.read_bytes() == data
    assert stored.duplicate is False
    staff_copy = {store.staff_path_for(stored.sha256)} if mime in IMAGE_FORMATS else set()
    assert files_under(store.root) == {stored.path} | staff_copy


@pytest.mark.parametrize(("label", "data", "detected"), REFUSED, ids=[r[0] for r in REFUSED])
async def test_refused_types_leave_nothing(store: EvidenceStore, label, data, detected):
    with pytest.raises(EvidenceTypeNotAllowed) as info:
        await store.put(data, original_name=f"{label}.txt")
    err = info.value
    assert err.detected != "text/plain"
    if detected is not None:
        assert err.detected == detected
        assert detected in str(err)
    msg = str(err)
    assert msg.startswith("不支持的文件类型")
    assert "PNG" in msg and "PDF" in msg  # says what is accepted
    assert "\n" not in msg
    assert files_under(store.root) == set()


async def test_png_named_pdf_is_still_png(store: EvidenceStore):
    stored = await store.put(make_png(), original_name="x.pdf")
    assert stored.mime == "image/png"
    assert stored.original_name == "x.pdf"


async def test_elf_named_jpg_is_refused(store: EvidenceStore):
    with pytest.raises(EvidenceTypeNotAllowed):
        await store.put(ELF, original_name="photo.jpg")


async def test_docx_detected_by_zip_entries_not_name(store: EvidenceStore):
    # A zip without word/ or xl/ entries is refused even when called .docx ...
    with pytest.raises(EvidenceTypeNotAllowed) as info:
        await store.put(make_zip({"[Content_Types].xml": "<Types/>"}), original_name="report.docx")
    assert info.value.detected == "application/zip"
    # ... and a real one is accepted under any name.
    stored = await store.put(make_docx(), original_name="scan.png")
    assert stored.mime == DOCX


async def test_macro_enabled_office_is_refused(store: EvidenceStore):
    data = make_zip({"word/document.xml": "<w/>", "word/vbaProject.bin": "x"})
    with pytest.raises(EvidenceTypeNotAllowed):
        await store.put(data)


async def test_text_beginning_like_a_mail_header_is_plain_text(store: EvidenceStore):
    data = "Subject: 投诉 直播间虚假宣传\nFrom 主播 ...\n".encode()
    assert (await store.put(data)).mime == "text/plain"


def test_sniff_mime_matches_store_rules():
    assert sniff_mime(make_png()) == "image/png"
    assert sniff_mime(make_docx()) == DOCX
    assert sniff_mime(TEXT) == "text/plain"
    assert sniff_mime(ELF) == "application/x-executable"


async def test_allowed_types_are_configurable(tmp_path: Path):
    store = EvidenceStore(tmp_path / "ev", EvidenceLimits(max_bytes=1 << 20, allowed_types=frozenset({"image/png"})))
    await store.put(make_png())
    with pytest.raises(EvidenceTypeNotAllowed) as info:
        await store.put(make_jpeg())
    assert info.value.detected == "image/jpeg"
    assert "可接受的类型：PNG" in str(info.value)
    assert "PDF" not in str(info.value)


def test_default_limits_cover_the_brief():
    allowed = EvidenceLimits().allowed_types
    for mime in ("image/jpeg", "image/heic", "video/quicktime", "audio/ogg", "text/plain", DOCX, XLSX):
        assert mime in allowed
    assert "text/html" not in allowed and "application/zip" not in allowed
    with pytest.raises(ValueError):
        EvidenceLimits(max_bytes=0)


# --------------------------------------------------------------------------- size, hash, duplicates


async def test_sha256_and_size_exact(store: EvidenceStore):
    data = make_png(40, 30, b"\x12\x34\x56") + b"trailing"
    stored = await store.put(agen(data[:7], data[7:100], b"", data[100:]))
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert stored.size == len(data)
    assert stored.path.read_bytes() == data
    assert store.exists(stored.sha256)
    with store.open(stored.sha256) as fh:
        assert fh.read() == data


async def test_over_limit_stream_stops_early_and_leaves_nothing(tmp_path: Path):
    store = EvidenceStore(tmp_path / "ev", EvidenceLimits(max_bytes=5000))
    consumed = 0

    async def source():
        nonlocal consumed
        yield make_png()
        for _ in range(1000):
            consumed += 1
            yield b"\x00" * 1024

    with pytest.raises(EvidenceTooLarge) as info:
        await store.put(source(), original_name="big.png")
    assert consumed <= 6  # stopped as soon as the limit was crossed
    assert files_under(store.root) == set()
    assert "\n" not in str(info.value) and str(info.value).startswith("文件太大")
    assert isinstance(info.value, EvidenceRejected)


async def test_over_limit_bytes_refused(tmp_path: Path):
    store = EvidenceStore(tmp_path / "ev", EvidenceLimits(max_bytes=100))
    with pytest.raises(EvidenceTooLarge):
        await store.put(TEXT * 10)
    assert files_under(store.root) == set()


async def test_exactly_at_limit_is_accepted(tmp_path: Path):
    data = make_png()
    store = EvidenceStore(tmp_path / "ev", EvidenceLimits(max_bytes=len(data)))
    stored = await store.put(agen(data[:10], data[10:]))
    assert stored.size == len(data)
    with pytest.raises(EvidenceTooLarge):
        await store.put(data + b"\x00")


async def test_duplicates_stored_once(store: EvidenceStore):
    data = make_jpeg()
    first = await store.put(data, original_name="a.jpg")
    second = await store.put(agen(data[:5], data[5:]), original_name="b.jpg")
    assert first.duplicate is False
    assert second.duplicate is True
    assert second.path == first.path and second.sha256 == first.sha256
    assert second.original_name == "b.jpg"
    assert files_under(store.root) == {first.path, store.staff_path_for(first.sha256)}


async def test_damaged_copy_is_replaced_by_upload(store: EvidenceStore):
    data = make_pdf()
    first = await store.put(data)
    first.path.write_bytes(data[:10])
    again = await store.put(data)
    assert again.duplicate is False
    assert first.path.read_bytes() == data
    assert store.verify(first.sha256)


# --------------------------------------------------------------------------- failures leave nothing


@pytest.mark.parametrize("source", [b"", "empty-stream", "empty-chunks"])
async def test_empty_content_refused(store: EvidenceStore, source):
    if source == "empty-stream":
        source = agen()
    elif source == "empty-chunks":
        source = agen(b"", b"")
    with pytest.raises(EvidenceEmpty) as info:
        await store.put(source)
    assert str(info.value).startswith("文件是空的")
    assert files_under(store.root) == set()


async def test_source_error_midstream_leaves_nothing(store: EvidenceStore):
    async def broken():
        yield make_png()
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        await store.put(broken())
    assert files_under(store.root) == set()


async def test_cancelled_upload_leaves_nothing(store: EvidenceStore):
    started = asyncio.Event()

    async def slow():
        yield make_png()
        started.set()
        await asyncio.sleep(3600)
        yield b"never"

    task = asyncio.create_task(store.put(slow()))
    await asyncio.wait_for(started.wait(), 5)
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert files_under(store.root) == set()


async def test_non_bytes_chunk_rejected_and_cleaned(store: EvidenceStore):
    with pytest.raises(TypeError):
        await store.put(agen(b"hello", "text"))  # type: ignore[arg-type]
    assert files_under(store.root) == set()


# --------------------------------------------------------------------------- names and paths


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("../../etc/passwd", "passwd"),
        ("..\\..\\Windows\\System32\\evil.exe", "evil.exe"),
        ("/abs/path/截图.png", "截图.png"),
        ("evil\x00name\r\n.png", "evilname.png"),
        ("photo\u202egnp.exe", "photognp.exe"),
        ("..", None),
        ("../", None),
        ("   ", None),
        (None, None),
    ],
)
def test_sanitize_original_name(given, expected):
    assert sanitize_original_name(given) == expected


def test_sanitize_caps_length_and_keeps_extension():
    name = sanitize_original_name("长" * 400 + ".jpg")
    assert name is not None and len(name) == 255 and name.endswith(".jpg")
    assert len(sanitize_original_name("x" * 1000)) == 255


@given(st.text(max_size=600))
def test_sanitize_property(raw: str):
    name = sanitize_original_name(raw)
    if name is not None:
        assert 0 < len(name) <= 255
        assert "/" not in name and "\\" not in name
        assert name not in (".", "..")
        assert not any(ord(c) < 32 or 0x7F <= ord(c) <= 0x9F for c in name)


async def test_path_traversal_name_never_affects_path(tmp_path: Path):
    root = tmp_path / "deep" / "evidence"
    store = EvidenceStore(root, EvidenceLimits(max_bytes=1 << 20))
    data = TEXT
    stored = await store.put(data, original_name="../../etc/passwd")
    assert stored.path == _content_path(root, data)
    assert stored.original_name == "passwd"
    assert not (tmp_path / "deep" / "etc").exists()
    assert not (root / "etc").exists()
    assert {p for p in tmp_path.rglob("*") if p.is_file()} == {stored.path}


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "a" * 63,
        "a" * 65,
        "A" * 64,
        "g" * 64,
        "../" + "a" * 61,
        "a" * 64 + "\n",
        "aa/bb/" + "a" * 58,
        None,
        b"a" * 64,
    ],
)
def test_path_for_rejects_bad_hashes(store: EvidenceStore, bad):
    with pytest.raises(ValueError):
        store.path_for(bad)
    with pytest.raises(ValueError):
        store.exists(bad)
    with pytest.raises(ValueError):
        store.open(bad)


def test_path_for_layout(store: EvidenceStore):
    sha = hashlib.sha256(b"x").hexdigest()
    assert store.path_for(sha) == store.root / sha[:2] / sha[2:4] / sha
    assert not store.exists(sha)
    with pytest.raises(FileNotFoundError):
        store.open(sha)


async def test_verify_detects_tampering(store: EvidenceStore):
    stored = await store.put(make_png())
    assert store.verify(stored.sha256) is True
    data = bytearray(stored.path.read_bytes())
    data[-1] ^= 0x01
    stored.path.write_bytes(bytes(data))
    assert store.verify(stored.sha256) is False
    stored.path.unlink()
    assert store.verify(stored.sha256) is False


# --------------------------------------------------------------------------- root directory


def test_root_is_created(tmp_path: Path):
    root = tmp_path / "a" / "b" / "evidence"
    EvidenceStore(root, EvidenceLimits(max_bytes=10))
    assert root.is_dir()


def test_unusable_root_raises_config_error(tmp_path: Path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("file")
    root = blocker / "evidence"
    with pytest.raises(ConfigError) as info:
        EvidenceStore(root, EvidenceLimits(max_bytes=10))
    assert str(root) in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs POSIX permissions as non-root")
def test_read_only_root_raises_config_error(tmp_path: Path):
    root = tmp_path / "ro"
    root.mkdir()
    root.chmod(0o500)
    try:
        with pytest.raises(ConfigError, match="ro"):
            EvidenceStore(root, EvidenceLimits(max_bytes=10))
    finally:
        root.chmod(0o700)


def test_error_hierarchy():
    for cls in (EvidenceTooLarge, EvidenceTypeNotAllowed, EvidenceEmpty):
        assert issubclass(cls, EvidenceRejected)
    assert issubclass(EvidenceRejected, QinglangError)
