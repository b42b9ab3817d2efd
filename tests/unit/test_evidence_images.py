"""Image evidence: decoded under limits before it is kept, and a copy without location metadata for staff."""

from __future__ import annotations

import asyncio
import hashlib
import io
import resource
import threading
from pathlib import Path

import pytest
from PIL import ExifTags, Image, ImageOps, PngImagePlugin

import intake.evidence
from intake.evidence import (
    EvidenceImageTooLarge,
    EvidenceImageUnreadable,
    EvidenceLimits,
    EvidenceRejected,
    EvidenceStore,
)
from intake.images import ImageLimits, StaffCopy, write_staff_copy
from tests.fakes.images import animated_gif, photo, png, png_bomb

GPS_TAG = ExifTags.IFD.GPSInfo


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


def opened(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


def assert_no_metadata(data: bytes) -> None:
    im = opened(data)
    assert not im.getexif(), "EXIF left in the staff copy"
    assert GPS_TAG not in im.getexif()
    assert not {"exif", "xmp", "comment", "XML:com.adobe.xmp"} & set(im.info), im.info
    assert b"Exif" not in data and b"FakePhone" not in data and b"xmpmeta" not in data


@pytest.fixture
def store(tmp_path: Path) -> EvidenceStore:
    return EvidenceStore(tmp_path / "evidence", EvidenceLimits(max_bytes=8 * 1024 * 1024))


def small_store(tmp_path: Path, **limits: int) -> EvidenceStore:
    return EvidenceStore(tmp_path / "small", EvidenceLimits(images=ImageLimits(**limits)))


# -- the staff copy ------------------------------------------------------------------------------------


async def test_photo_with_gps_staff_copy_has_no_metadata_and_the_original_is_kept(store: EvidenceStore):
    original = photo(64, 48, xmp=b"<x:xmpmeta>GPS 31.23N 121.47E</x:xmpmeta>", comment=b"taken at home")
    assert GPS_TAG in opened(original).getexif()  # the sample really carries a position

    stored = await store.put(original, original_name="IMG_0001.jpg")

    assert stored.mime == "image/jpeg" and stored.sha256 == hashlib.sha256(original).hexdigest()
    assert stored.path.read_bytes() == original and store.verify(stored.sha256)
    staff = await store.staff_copy(stored.sha256, stored.mime)
    assert staff == store.staff_path_for(stored.sha256) and staff != stored.path
    copy = staff.read_bytes()
    assert_no_metadata(copy)
    assert opened(copy).size == (64, 48) and opened(copy).format == "JPEG"
    # upright already: stripped losslessly, the coded picture is the very same
    assert copy[copy.index(b"\xff\xda"):] == original[original.index(b"\xff\xda"):]
    assert opened(copy).tobytes() == opened(original).tobytes()


async def test_orientation_is_applied_before_the_exif_goes(store: EvidenceStore):
    original = photo(64, 48, orientation=6)  # "rotate 90° clockwise to display"
    stored = await store.put(original)

    copy = (await store.staff_copy(stored.sha256, stored.mime)).read_bytes()

    assert_no_metadata(copy)
    shown = opened(copy)
    assert shown.size == (48, 64)
    expected = ImageOps.exif_transpose(opened(original))
    # re-encoded as JPEG: the pixels agree closely, corner by corner
    for x, y in ((0, 0), (47, 0), (0, 63), (47, 63)):
        assert all(abs(a - b) <= 12 for a, b in zip(shown.getpixel((x, y)), expected.getpixel((x, y)))), (x, y)
    assert stored.path.read_bytes() == original


async def test_png_text_and_exif_chunks_are_stripped_losslessly(store: EvidenceStore):
    info = PngImagePlugin.PngInfo()
    info.add_text("Location", "31.2366N 121.4691E")
    info.add_itxt("XML:com.adobe.xmp", "<x:xmpmeta>GPS</x:xmpmeta>")
    source = Image.open(io.BytesIO(png(3, 20, 10)))
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "FakePhone"
    out = io.BytesIO()
    source.save(out, "PNG", pnginfo=info, exif=exif)
    original = out.getvalue() + b"trailing bytes after IEND"

    stored = await store.put(original)
    copy = (await store.staff_copy(stored.sha256, stored.mime)).read_bytes()

    assert_no_metadata(copy)
    assert b"Location" not in copy and b"trailing" not in copy
    assert opened(copy).tobytes() == opened(original).tobytes()
    assert stored.path.read_bytes() == original


async def test_a_clean_image_is_its_own_staff_copy(store: EvidenceStore):
    clean = png(4)
    stored = await store.put(clean)

    staff = await store.staff_copy(stored.sha256, stored.mime)

    assert staff.read_bytes() == clean
    assert staff.stat().st_ino == stored.path.stat().st_ino  # a link, not a second copy


async def test_jpeg_with_an_appended_archive_loses_the_tail(store: EvidenceStore):
    original = photo(16, 16, exif=False) + b"PK\x03\x04 an archive hidden after the picture"
    stored = await store.put(original)

    copy = (await store.staff_copy(stored.sha256, stored.mime)).read_bytes()

    assert copy.endswith(b"\xff\xd9") and b"PK\x03\x04" not in copy
    assert stored.path.read_bytes() == original


async def test_webp_with_exif_is_reencoded_without_it_and_stays_lossless(store: EvidenceStore):
    original = photo(30, 20, fmt="WEBP")
    assert opened(original).getexif()
    stored = await store.put(original)

    copy = (await store.staff_copy(stored.sha256, stored.mime)).read_bytes()

    assert_no_metadata(copy)
    assert opened(copy).size == (30, 20) and b"VP8L" in copy[12:40]
    assert opened(copy).convert("RGB").tobytes() == opened(original).convert("RGB").tobytes()


async def test_animated_gif_keeps_its_frames_and_loses_its_comment(tmp_path: Path):
    store = small_store(tmp_path, max_frames=5)
    original = animated_gif(5, comment=b"filmed at 31.23N 121.47E")
    stored = await store.put(original)

    copy = (await store.staff_copy(stored.sha256, stored.mime)).read_bytes()

    assert b"31.23N" not in copy and "comment" not in opened(copy).info
    shown, source = opened(copy), opened(original)
    assert shown.n_frames == 5
    for index in range(5):
        shown.seek(index)
        source.seek(index)
        assert shown.convert("RGB").getpixel((0, 0)) == source.convert("RGB").getpixel((0, 0))


def test_write_staff_copy_reports_what_it_did():
    out = io.BytesIO()
    assert write_staff_copy(png(1), "image/png", out, ImageLimits()) is StaffCopy.SAME and out.getvalue() == b""
    assert write_staff_copy(photo(8, 8), "image/jpeg", out, ImageLimits()) is StaffCopy.STRIPPED
    out = io.BytesIO()
    assert write_staff_copy(photo(8, 8, orientation=3), "image/jpeg", out, ImageLimits()) is StaffCopy.REENCODED
    assert_no_metadata(out.getvalue())


# -- refusals ------------------------------------------------------------------------------------------


async def test_decompression_bomb_is_refused_without_decoding_it(store: EvidenceStore):
    bomb = png_bomb(30_000, 30_000)  # 900 million pixels in about 100 KB
    assert len(bomb) < 200_000
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    with pytest.raises(EvidenceImageTooLarge) as refused:
        await store.put(bomb, original_name="bomb.png")

    assert "图片尺寸过大" in str(refused.value)
    assert files_under(store.root) == set()
    grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before
    assert grown_kb < 100 * 1024, f"peak memory grew by {grown_kb} KB"


async def test_our_pixel_limit_applies_below_pillows_own(store: EvidenceStore):
    bomb = png_bomb(8_000, 8_000)  # 64 MP: under Pillow's process-wide guard (89 MP), over ours (40 MP)
    assert 8_000 * 8_000 < Image.MAX_IMAGE_PIXELS
    with pytest.raises(EvidenceImageTooLarge):
        await store.put(bomb)
    assert files_under(store.root) == set()
    assert Image.MAX_IMAGE_PIXELS == 89_478_485  # left as Pillow sets it


async def test_limits_are_per_store(tmp_path: Path):
    narrow = small_store(tmp_path, max_side=100)
    with pytest.raises(EvidenceImageTooLarge) as refused:
        await narrow.put(png(1, width=101, height=1))
    assert "100 像素" in str(refused.value)
    await narrow.put(png(1, width=100, height=1))
    roomy = EvidenceStore(tmp_path / "roomy")
    await roomy.put(png(1, width=101, height=1))


@pytest.mark.parametrize("broken", [
    pytest.param(lambda: photo(64, 48, exif=False)[:400], id="truncated-jpeg"),
    pytest.param(lambda: png(2, 32, 32)[:-40], id="truncated-png"),
    pytest.param(lambda: b"\xff\xd8\xff\xe0" + bytes(200), id="jpeg-header-only"),
])
async def test_broken_images_are_refused_and_nothing_is_kept(store: EvidenceStore, broken):
    with pytest.raises(EvidenceImageUnreadable) as refused:
        await store.put(broken(), original_name="photo.jpg")
    assert isinstance(refused.value, EvidenceRejected) and "图片文件已损坏或不完整" in str(refused.value)
    assert files_under(store.root) == set()


async def test_too_many_frames_is_refused(tmp_path: Path):
    store = small_store(tmp_path, max_frames=5)
    with pytest.raises(EvidenceImageTooLarge) as refused:
        await store.put(animated_gif(6))
    assert "5 帧" in str(refused.value)
    assert files_under(store.root) == set()


async def test_text_named_jpg_is_text_and_its_staff_copy_is_itself(store: EvidenceStore):
    stored = await store.put("订单号 12345，付款 99 元\n".encode(), original_name="截图.jpg")
    assert stored.mime == "text/plain"
    assert await store.staff_copy(stored.sha256, stored.mime) == stored.path
    assert files_under(store.root) == {stored.path}


async def test_decoding_runs_off_the_event_loop(store: EvidenceStore, monkeypatch):
    threads = []
    real = intake.evidence.write_staff_copy

    def spy(*args, **kwargs):
        threads.append(threading.current_thread())
        return real(*args, **kwargs)

    monkeypatch.setattr(intake.evidence, "write_staff_copy", spy)
    await store.put(photo(16, 16))
    assert threads and threading.main_thread() not in threads


# -- evidence stored before staff copies existed -------------------------------------------------------


def plant(store: EvidenceStore, data: bytes) -> str:
    """A file as an older version of the store kept it: the original only."""
    sha = hashlib.sha256(data).hexdigest()
    path = store.path_for(sha)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return sha


async def test_old_upload_gets_its_staff_copy_on_first_view_once(store: EvidenceStore):
    original = photo(32, 24)
    sha = plant(store, original)
    assert not store.staff_path_for(sha).exists()

    first, second = await asyncio.gather(store.staff_copy(sha, "image/jpeg"), store.staff_copy(sha, "image/jpeg"))

    assert first == second == store.staff_path_for(sha)
    assert_no_metadata(first.read_bytes())
    made = first.stat()
    assert await store.staff_copy(sha, "image/jpeg") == first
    assert first.stat().st_ino == made.st_ino and first.stat().st_mtime_ns == made.st_mtime_ns
    assert store.path_for(sha).read_bytes() == original and store.verify(sha)
    assert {p.name for p in files_under(store.root / ".incoming")} == set()


@pytest.mark.parametrize(("data", "mime"), [
    pytest.param(photo(64, 48)[:300], "image/jpeg", id="old-broken-jpeg"),
    pytest.param(png_bomb(8_000, 8_000), "image/png", id="old-bomb"),
    pytest.param(b"\x00\x00\x00\x18ftypheic" + bytes(64), "image/heic", id="heic-not-decoded-here"),
])
async def test_no_staff_copy_when_the_image_cannot_be_made_safe(store: EvidenceStore, data, mime):
    sha = plant(store, data)
    assert await store.staff_copy(sha, mime) is None
    assert not store.staff_path_for(sha).exists()
    assert store.path_for(sha).read_bytes() == data


async def test_staff_copy_of_a_missing_original_is_not_found(store: EvidenceStore):
    with pytest.raises(FileNotFoundError):
        await store.staff_copy("ab" * 32, "image/png")


@pytest.mark.parametrize("options", [
    {"progressive": True},
    {"restart_marker_blocks": 2},
    {"progressive": True, "restart_marker_rows": 1},
], ids=["progressive", "restart-markers", "progressive-restart-markers"])
def test_jpeg_stripping_keeps_every_scan(options):
    source = opened(photo(120, 80, exif=False))
    out = io.BytesIO()
    source.save(out, "JPEG", exif=opened(photo(8, 8)).getexif(), comment=b"at home", **options)
    original = out.getvalue()

    copy = io.BytesIO()
    assert write_staff_copy(original, "image/jpeg", copy, ImageLimits()) is StaffCopy.STRIPPED

    assert_no_metadata(copy.getvalue())
    assert opened(copy.getvalue()).tobytes() == opened(original).tobytes()
