"""Safe decoding of image evidence, and the copy of it that staff see.

An image from the public is decoded only under explicit limits (pixels and side of a frame, number of
frames, pixels of all frames together) that are checked from the header before a pixel is decoded, so a
small file declaring a huge canvas (a decompression bomb) is refused without the memory it asks for.
Pillow's own process-wide guard (``Image.MAX_IMAGE_PIXELS``) is left as it is; these limits come with
each call.

The staff copy carries no metadata: no EXIF (GPS position, camera, time), XMP, comments or text chunks,
nor data after the end of the image. JPEG and PNG are stripped losslessly, segment by segment, when the
EXIF orientation needs nothing done; otherwise (and for GIF and WebP) the decoded pixels are encoded
again, turned upright first as the orientation said. ICC colour profiles are kept.
"""

from __future__ import annotations

import enum
import io
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from PIL import Image

__all__ = [
    "IMAGE_FORMATS",
    "ImageLimits",
    "ImageRefused",
    "ImageTooLarge",
    "ImageUnreadable",
    "StaffCopy",
    "write_staff_copy",
]

# the image types this module decodes, by the MIME type the evidence store detects
IMAGE_FORMATS: dict[str, str] = {
    "image/jpeg": "JPEG",
    "image/png": "PNG",
    "image/gif": "GIF",
    "image/webp": "WEBP",
}

_EXIF_ORIENTATION = 0x0112
_UPRIGHT: dict[int, Image.Transpose] = {  # as PIL.ImageOps.exif_transpose
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_JPEG_QUALITY = 95
_WEBP_QUALITY = 90


@dataclass(frozen=True)
class ImageLimits:
    max_pixels: int = 40_000_000  # one frame; a long phone screenshot (1080 x 30000) is 32 MP
    max_side: int = 30_000
    max_frames: int = 300
    max_total_pixels: int = 100_000_000  # all frames of an animation together

    def __post_init__(self) -> None:
        for name in ("max_pixels", "max_side", "max_frames", "max_total_pixels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")


class ImageRefused(Exception):
    """The image is not decoded (nor shown) as it is."""


class ImageTooLarge(ImageRefused):
    pass


class ImageUnreadable(ImageRefused):
    pass


class StaffCopy(enum.Enum):
    SAME = "same"  # the original has nothing to strip: it is the staff copy itself; nothing was written
    STRIPPED = "stripped"  # metadata removed, the coded image data untouched
    REENCODED = "reencoded"


def write_staff_copy(data: bytes, mime: str, out: BinaryIO, limits: ImageLimits) -> StaffCopy:
    """Decode `data` (of the detected type `mime`) under `limits`, and write its staff copy to `out`.

    Raises ImageTooLarge or ImageUnreadable; KeyError for a type not in IMAGE_FORMATS. Blocking and
    CPU-bound: call it from a worker thread.
    """
    fmt = IMAGE_FORMATS[mime]
    frames, durations, info = _decode(data, fmt, limits, keep=fmt in ("GIF", "WEBP"))
    if frames is None:  # JPEG or PNG, upright: strip the metadata segments only
        stripped = _strip_jpeg(data) if fmt == "JPEG" else _strip_png(data)
        if stripped == data:
            return StaffCopy.SAME
        _check_same_image(stripped, fmt, info.size, limits)
        out.write(stripped)
        return StaffCopy.STRIPPED
    _encode(frames, durations, fmt, info, data, out)
    return StaffCopy.REENCODED


# -- decoding -----------------------------------------------------------------------------------------


@dataclass
class _Info:
    size: tuple[int, int]
    loop: int | None
    icc_profile: bytes | None


def _webp_canvas(data: bytes) -> tuple[int, int] | None:
    """The canvas size a WebP declares in its first chunk (as Pillow reads it)."""
    kind = data[12:16]
    if kind == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        return (int.from_bytes(data[26:28], "little") & 0x3FFF, int.from_bytes(data[28:30], "little") & 0x3FFF)
    if kind == b"VP8X" and len(data) >= 30:
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    if kind == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    return None


def _open(data: bytes, fmt: str, limits: ImageLimits) -> Image.Image:
    if fmt == "WEBP" and (canvas := _webp_canvas(data)):
        _check_size(canvas, limits)  # Pillow's WebP decoder allocates the whole canvas when it opens
    try:
        return Image.open(io.BytesIO(data), formats=[fmt])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # Pillow's own guard, which is looser than ours, noticed first
        raise ImageTooLarge("image too large") from None
    except Exception as exc:  # untrusted bytes: any failure of the decoder means "cannot be read"
        raise ImageUnreadable(f"cannot read the image: {exc.__class__.__name__}") from None


def _check_size(size: tuple[int, int], limits: ImageLimits) -> int:
    width, height = size
    if max(width, height) > limits.max_side or width * height > limits.max_pixels:
        raise ImageTooLarge(f"{width}x{height} is over the limits")
    if width <= 0 or height <= 0:
        raise ImageUnreadable(f"{width}x{height} has no pixels")
    return width * height


def _orientation(im: Image.Image) -> int:
    try:
        value = im.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:  # unparseable EXIF: nothing to go by; it is removed anyway
        return 1
    return value if value in _UPRIGHT else 1


def _decode(data: bytes, fmt: str, limits: ImageLimits,
            keep: bool) -> tuple[list[Image.Image] | None, list[float], _Info]:
    """Decode every frame (JPEG: the primary image only). With `keep`, or when the image must be turned
    upright, the decoded frames are returned (without their metadata) for encoding again; else None."""
    im = _open(data, fmt, limits)
    with im:
        info = _Info(im.size, None, None)
        frames: list[Image.Image] = []
        durations: list[float] = []
        total = 0
        upright = None
        for index in itertools.count():
            if index >= limits.max_frames:
                raise ImageTooLarge(f"more than {limits.max_frames} frames")
            total += _check_size(im.size, limits)
            if total > limits.max_total_pixels:
                raise ImageTooLarge("the frames together are over the limit")
            try:
                im.load()
            except (Image.DecompressionBombError, Image.DecompressionBombWarning):
                raise ImageTooLarge("image too large") from None
            except MemoryError:
                raise ImageTooLarge("not enough memory to decode the image") from None
            except Exception as exc:
                raise ImageUnreadable(f"cannot decode the image: {exc.__class__.__name__}") from None
            if index == 0:
                upright = _UPRIGHT.get(_orientation(im))
                keep = keep or upright is not None
                info.loop = im.info.get("loop")
                info.icc_profile = im.info.get("icc_profile") or None
            if keep:
                frame = im.copy()
                if "transparency" in frame.info:  # a palette index or colour key: made an alpha channel
                    frame = frame.convert("RGBA")
                frame.info = {}  # encoders fall back to the source's info (comments, XMP) otherwise
                frames.append(frame.transpose(upright) if upright is not None else frame)
                durations.append(im.info.get("duration", 0))
            if fmt == "JPEG":
                break  # further "frames" are an MPO's secondary pictures, not shown
            try:
                im.seek(index + 1)
            except EOFError:
                break
            except (Image.DecompressionBombError, Image.DecompressionBombWarning):
                raise ImageTooLarge("image too large") from None
            except Exception as exc:
                raise ImageUnreadable(f"cannot decode the image: {exc.__class__.__name__}") from None
    if frames:
        info.size = frames[0].size
    return (frames if keep else None), durations, info


def _check_same_image(stripped: bytes, fmt: str, size: tuple[int, int], limits: ImageLimits) -> None:
    """The stripped copy still decodes, to the same size (a guard on the segment surgery)."""
    im = _open(stripped, fmt, limits)
    with im:
        try:
            im.load()
        except Exception as exc:
            raise ImageUnreadable(f"the stripped copy does not decode: {exc.__class__.__name__}") from None
        if im.size != size:
            raise ImageUnreadable("the stripped copy differs in size")


# -- encoding -----------------------------------------------------------------------------------------


def _encode(frames: list[Image.Image], durations: list[float], fmt: str, info: _Info, data: bytes,
            out: BinaryIO) -> None:
    first, rest = frames[0], frames[1:]
    options: dict[str, object] = {}
    if info.icc_profile and fmt != "GIF":
        options["icc_profile"] = info.icc_profile
    if rest:
        options.update(save_all=True, append_images=rest, duration=durations)
        if info.loop is not None:
            options["loop"] = info.loop
    if fmt == "JPEG":
        if first.mode not in ("RGB", "L", "CMYK"):
            first = first.convert("RGB")
        first.save(out, "JPEG", quality=_JPEG_QUALITY, **options)
    elif fmt in ("PNG", "GIF"):
        first.save(out, fmt, **options)
    else:
        first.save(out, "WEBP", lossless=_webp_lossless(data), quality=_WEBP_QUALITY, **options)


def _riff_chunks(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    pos = start
    while pos + 8 <= end:
        size = int.from_bytes(data[pos + 4:pos + 8], "little")
        yield data[pos:pos + 4], pos + 8, min(pos + 8 + size, end)
        pos += 8 + size + (size & 1)


def _webp_lossless(data: bytes) -> bool:
    """Whether the WebP is coded losslessly (a screenshot, usually): then its copy is lossless too."""
    for kind, start, end in _riff_chunks(data, 12, len(data)):
        if kind == b"VP8L":
            return True
        if kind == b"ANMF":
            if any(sub == b"VP8L" for sub, _, _ in _riff_chunks(data, start + 16, end)):
                return True
    return False


# -- lossless stripping -------------------------------------------------------------------------------

# chunks about pixels and colour; anything else (tEXt, zTXt, iTXt, eXIf, tIME, private chunks) goes
_PNG_KEEP = frozenset({b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"cHRM", b"gAMA", b"iCCP", b"sBIT",
                       b"sRGB", b"cICP", b"mDCV", b"cLLI", b"bKGD", b"pHYs", b"acTL", b"fcTL", b"fdAT"})
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"


def _strip_png(data: bytes) -> bytes:
    if not data.startswith(_PNG_SIGNATURE):
        raise ImageUnreadable("not a PNG")
    kept = [_PNG_SIGNATURE]
    pos = len(_PNG_SIGNATURE)
    while pos + 12 <= len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind, end = data[pos + 4:pos + 8], pos + 12 + length
        if end > len(data):
            raise ImageUnreadable("a PNG chunk runs past the end of the file")
        if kind in _PNG_KEEP:
            kept.append(data[pos:end])
        pos = end
        if kind == b"IEND":
            break
    else:
        kept.append(_PNG_IEND)  # decoders do without it; the copy has one
    return b"".join(kept)


_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM, RST0-7: no length field
_JPEG_SOS, _JPEG_EOI, _JPEG_COM = 0xDA, 0xD9, 0xFE


def _keep_jpeg_segment(marker: int, payload: bytes) -> bool:
    if marker == _JPEG_COM:
        return False
    if 0xE0 <= marker <= 0xEF:  # APPn: only JFIF, ICC profile and Adobe's colour transform
        return ((marker == 0xE0 and payload.startswith(b"JFIF\x00"))
                or (marker == 0xE2 and payload.startswith(b"ICC_PROFILE\x00"))
                or (marker == 0xEE and payload.startswith(b"Adobe")))
    return True


def _strip_jpeg(data: bytes) -> bytes:
    """The JPEG without COM and APPn segments (but JFIF, ICC, Adobe) and without anything after EOI
    (an MPO's second picture, an appended archive)."""
    if not data.startswith(b"\xff\xd8"):
        raise ImageUnreadable("not a JPEG")
    kept = bytearray(b"\xff\xd8")
    pos, size = 2, len(data)
    while True:
        marker_at = data.find(b"\xff", pos)
        if marker_at < 0:
            break
        pos = marker_at
        while pos < size and data[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= size:
            break
        marker = data[pos]
        pos += 1
        if marker == _JPEG_EOI:
            break
        if marker in _JPEG_STANDALONE:
            kept += bytes((0xFF, marker))
            continue
        if pos + 2 > size:
            raise ImageUnreadable("a JPEG segment runs past the end of the file")
        length = int.from_bytes(data[pos:pos + 2], "big")
        if length < 2 or pos + length > size:
            raise ImageUnreadable("a JPEG segment has a bad length")
        segment = data[pos:pos + length]
        pos += length
        if _keep_jpeg_segment(marker, segment[2:]):
            kept += bytes((0xFF, marker)) + segment
        if marker == _JPEG_SOS:
            pos = _copy_scan(data, pos, kept)
    kept += b"\xff\xd9"
    return bytes(kept)


def _copy_scan(data: bytes, pos: int, kept: bytearray) -> int:
    """Copy entropy-coded data up to the next marker (not a stuffed 0xFF00 or a restart marker)."""
    start = pos
    while True:
        found = data.find(b"\xff", pos)
        if found < 0 or found + 1 >= len(data):
            kept += data[start:]
            return len(data)
        following = data[found + 1]
        if following == 0x00 or 0xD0 <= following <= 0xD7:
            pos = found + 2
            continue
        kept += data[start:found]
        return found
