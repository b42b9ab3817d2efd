"""Tests for intake.evidence: content-addressed evidence store."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import shutil
import struct
import time
import zipfile
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import intake.evidence as evidence_module
from intake.evidence import (
    DOCX,
    XLSX,
    EvidenceEmpty,
    EvidenceLimits,
    EvidenceRejected,
    EvidenceStore,
    EvidenceTooLarge,
    EvidenceTypeNotAllowed,
    StoredFile,
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


# --------------------------------------------------------------------------- taking files back (issue 14: 6, 7)

NOW = datetime.now(UTC)
GRACE = timedelta(hours=48)


def age(path: Path, **delta: float) -> None:
    """Make `path` look last written that long before NOW."""
    moment = (NOW - timedelta(**delta)).timestamp()
    os.utime(path, (moment, moment))


async def nothing_referenced(candidates: list[str]) -> set[str]:
    return set()


async def no_case(sha256: str) -> bool:
    return False


async def test_discard_removes_what_this_put_created_with_its_staff_copy(store: EvidenceStore):
    stored = await store.put(photo(), original_name="p.jpg")
    assert store.staff_path_for(stored.sha256).is_file()
    assert await store.discard(stored) is True
    assert files_under(store.root) == set()


async def test_discard_keeps_a_file_a_later_put_of_the_same_bytes_relies_on(store: EvidenceStore):
    first = await store.put(TEXT)
    second = await store.put(TEXT)
    assert (first.duplicate, second.duplicate) == (False, True)
    assert await store.discard(first) is False  # claimed by the second put since
    assert await store.discard(second) is False  # a duplicate never removes anything
    assert store.verify(first.sha256)


async def test_discard_keeps_a_file_a_case_refers_to(store: EvidenceStore):
    stored = await store.put(TEXT)
    asked = []

    async def referenced(sha256: str) -> bool:
        asked.append((sha256, store.exists(sha256)))
        return True

    assert await store.discard(stored, referenced=referenced) is False
    assert asked == [(stored.sha256, False)]  # asked while the file is aside
    assert store.verify(stored.sha256) and files_under(store.root) == {stored.path}


async def test_a_put_while_a_discard_holds_the_file_aside_gets_its_own_copy(store: EvidenceStore):
    first = await store.put(make_png())
    others = []

    async def referenced(sha256: str) -> bool:
        others.append(await store.put(make_png()))  # another request, at the worst moment
        return False

    assert await store.discard(first, referenced=referenced) is True
    assert others[0].duplicate is False
    assert store.verify(first.sha256)  # the other request's copy stays
    assert await store.staff_copy(first.sha256, "image/png") is not None  # made again if the discard took it
    assert await store.discard(others[0]) is True
    assert files_under(store.root) == set()


async def test_a_duplicate_put_claims_the_file(store: EvidenceStore):
    first = await store.put(TEXT)
    age(first.path, hours=100)
    old = first.path.stat().st_mtime_ns
    again = await store.put(TEXT)
    assert again.duplicate is True
    assert again.claim_ns == first.path.stat().st_mtime_ns > old


async def test_puts_of_the_same_bytes_at_once_install_it_once(store: EvidenceStore):
    results = await asyncio.gather(*(store.put(make_pdf()) for _ in range(8)))
    assert sum(not r.duplicate for r in results) == 1
    creator = next(r for r in results if not r.duplicate)
    assert await store.discard(creator) is False  # the others claimed it after it was installed
    assert store.verify(creator.sha256)



SECOND = 1_000_000_000


class WholeSecondsOs:
    """The `os` of intake.evidence on a file system that keeps whole seconds (FAT keeps two, many network
    file systems one): an mtime set is rounded down to its second, one read is whole seconds."""

    def __getattr__(self, name: str):
        return getattr(os, name)

    @staticmethod
    def stat(path, **kwargs):
        return WholeSecondsStat(os.stat(path, **kwargs))

    @staticmethod
    def utime(path, *, ns: tuple[int, int]) -> None:
        os.utime(path, ns=tuple(t // SECOND * SECOND for t in ns))


class WholeSecondsStat:
    def __init__(self, real: os.stat_result) -> None:
        self._real = real

    def __getattr__(self, name: str):
        return getattr(self._real, name)

    @property
    def st_mtime_ns(self) -> int:
        return self._real.st_mtime_ns // SECOND * SECOND


class StoppedClock:
    """The `time` of intake.evidence with time_ns() stopped at a given moment."""

    def __init__(self, now_ns: int) -> None:
        self.now_ns = now_ns

    def __getattr__(self, name: str):
        return getattr(time, name)

    def time_ns(self) -> int:
        return self.now_ns


class NotTheOwnersOs:
    """The `os` of intake.evidence for a stored file of another owner (a restore run as another user)."""

    def __getattr__(self, name: str):
        return getattr(os, name)

    @staticmethod
    def utime(path, **kwargs) -> None:
        raise PermissionError(1, "Operation not permitted", str(path))


async def test_with_coarse_file_times_a_discard_keeps_what_a_later_put_relies_on(store: EvidenceStore, monkeypatch):
    monkeypatch.setattr(evidence_module, "os", WholeSecondsOs())
    first = await store.put(TEXT)
    assert first.claim_ns % SECOND == 0
    # the same bytes 0.3 s later: neither that moment nor the first mtime + 1 ns changes the whole second
    monkeypatch.setattr(evidence_module, "time", StoppedClock(first.claim_ns + 300_000_000))
    second = await store.put(TEXT)
    assert second.duplicate is True
    assert await store.discard(first) is False  # the first request failed: the second one's file stays
    assert store.verify(first.sha256)
    assert await store.discard(second) is False  # the second could not claim it: its discard removes nothing
    assert store.verify(first.sha256) and files_under(store.root) == {first.path}


async def test_a_put_that_cannot_mark_anothers_file_keeps_it_from_discard_and_sweep(store: EvidenceStore,
                                                                                     monkeypatch):
    async def put_as_another_user() -> StoredFile:
        with monkeypatch.context() as patch:
            patch.setattr(evidence_module, "os", NotTheOwnersOs())
            return await store.put(TEXT)

    first = await store.put(TEXT)
    second = await put_as_another_user()
    assert second.duplicate is True
    assert await store.discard(first) is False  # the first request failed: the second one's file stays
    assert store.verify(first.sha256)

    age(first.path, hours=100)  # long past the grace, as a restored file may be
    third = await put_as_another_user()  # its mtime cannot be made fresh
    # a sweep before the third request has written its evidence row
    result = await store.sweep(NOW, GRACE, references=nothing_referenced, referenced=no_case)
    assert result.files == 0 and store.verify(first.sha256)
    assert await store.discard(third) is False and await store.discard(second) is False
    assert store.verify(first.sha256)

async def test_sweep_removes_old_unreferenced_files_and_leftovers_only(store: EvidenceStore):
    old = await store.put(photo())  # with a staff copy
    fresh = await store.put(TEXT)
    wanted = await store.put(make_pdf())
    for stored in (old, wanted):
        age(stored.path, hours=49)
    age(fresh.path, hours=47)
    stale_part = store.root / ".incoming" / "put-abc.part"
    stale_part.write_bytes(b"x" * 10)
    age(stale_part, minutes=61)
    live_part = store.root / ".incoming" / "put-def.part"
    live_part.write_bytes(b"y" * 10)
    age(live_part, minutes=5)
    orphan_sha = hashlib.sha256(b"gone").hexdigest()
    orphan_copy = store.staff_path_for(orphan_sha)
    orphan_copy.parent.mkdir(parents=True)
    orphan_copy.write_bytes(b"z" * 7)
    age(orphan_copy, hours=49)
    old_staff_size = store.staff_path_for(old.sha256).stat().st_size

    async def references(candidates: list[str]) -> set[str]:
        assert sorted(candidates) == sorted([old.sha256, wanted.sha256])  # the fresh file is no candidate
        return {wanted.sha256}

    dry = await store.sweep(NOW, GRACE, references=references, referenced=no_case, dry_run=True)
    assert (dry.files, dry.bytes, dry.staff_copies, dry.incoming, dry.dry_run) == (
        1, old.size + old_staff_size + 7, 2, 1, True)
    assert stale_part.exists() and old.path.exists() and orphan_copy.exists()

    done = await store.sweep(NOW, GRACE, references=references, referenced=no_case)
    assert (done.files, done.bytes, done.staff_copies, done.incoming, done.incoming_bytes) == (
        1, old.size + old_staff_size + 7, 2, 1, 10)
    assert files_under(store.root) == {fresh.path, wanted.path, live_part}


async def test_sweep_asks_again_right_before_removing(store: EvidenceStore):
    stored = await store.put(TEXT)
    age(stored.path, hours=49)
    asked = []

    async def referenced(sha256: str) -> bool:  # the evidence row written since the first question
        asked.append(store.exists(sha256))
        return True

    result = await store.sweep(NOW, GRACE, references=nothing_referenced, referenced=referenced)
    assert result.files == 0 and asked == [False]
    assert store.verify(stored.sha256)


async def test_sweep_keeps_a_file_a_put_claims_after_it_was_listed(store: EvidenceStore):
    stored = await store.put(TEXT)
    age(stored.path, hours=49)

    async def references(candidates: list[str]) -> set[str]:
        again = await store.put(TEXT)  # a new upload of the same bytes
        assert again.duplicate is True
        return set()

    result = await store.sweep(NOW, GRACE, references=references, referenced=no_case)
    assert result.files == 0 and store.verify(stored.sha256)


async def test_sweep_puts_back_what_a_killed_discard_left_aside(store: EvidenceStore):
    stored = await store.put(TEXT)
    stamp = int((NOW - timedelta(hours=2)).timestamp())
    aside = stored.path.with_name(f".{stored.sha256}.{stamp}.0123abcd.aside")
    os.rename(stored.path, aside)
    other_sha = hashlib.sha256(b"in flight").hexdigest()  # a discard going on right now
    recent = store.path_for(other_sha).with_name(f".{other_sha}.{int(NOW.timestamp())}.0123abce.aside")
    recent.parent.mkdir(parents=True, exist_ok=True)
    recent.write_bytes(b"in flight")
    result = await store.sweep(NOW, GRACE, references=nothing_referenced, referenced=no_case)
    assert result.put_back == 1 and result.files == 0  # back, and judged like any other file (fresh here)
    assert store.verify(stored.sha256) and not aside.exists()
    assert recent.exists() and not store.exists(other_sha)


async def test_sweep_without_an_incoming_directory_still_sweeps(store: EvidenceStore):
    stored = await store.put(TEXT)
    age(stored.path, hours=49)
    shutil.rmtree(store.root / ".incoming")
    (store.root / ".incoming").write_bytes(b"")  # the directory replaced by a file
    result = await store.sweep(NOW, GRACE, references=nothing_referenced, referenced=no_case)
    assert result.files == 1 and not stored.path.exists()
