"""Real image bytes for evidence in tests."""

from __future__ import annotations

import io
import struct
import zlib


def png(seed: int = 0, width: int = 8, height: int = 8) -> bytes:
    """A valid RGB PNG of a colour gradient; different seeds give different bytes (and hashes)."""
    raw = b"".join(
        b"\x00" + bytes(v for x in range(width) for v in ((seed + x * 5) % 256, (seed + y * 7) % 256, 160))
        for y in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


# -- made with Pillow: photos with metadata, animations, and hostile files ---------------------------

GPS_LATITUDE = (31.0, 14.0, 12.34)  # 31°14'12.34" N, Shanghai


def exif_with_location(orientation: int | None = None):
    """EXIF as a phone writes it: camera, time, GPS position (and an orientation, if given)."""
    from PIL import ExifTags, Image

    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "FakePhone"
    exif[ExifTags.Base.Model] = "FP-1"
    exif[ExifTags.Base.DateTime] = "2026:11:15 20:31:07"
    if orientation is not None:
        exif[ExifTags.Base.Orientation] = orientation
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = GPS_LATITUDE
    gps[ExifTags.GPS.GPSLongitudeRef] = "E"
    gps[ExifTags.GPS.GPSLongitude] = (121.0, 28.0, 56.78)
    return exif


def photo(width: int = 64, height: int = 48, *, fmt: str = "JPEG", orientation: int | None = None,
          exif: bool = True, comment: bytes | None = None, xmp: bytes | None = None) -> bytes:
    """A photo with a gradient (so orientation is visible) and, by default, EXIF with a GPS position."""
    from PIL import Image

    im = Image.new("RGB", (width, height))
    im.putdata([(x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), 96)
                for y in range(height) for x in range(width)])
    options: dict = {}
    if exif:
        options["exif"] = exif_with_location(orientation)
    if xmp is not None:
        options["xmp"] = xmp
    if comment is not None and fmt == "JPEG":
        options["comment"] = comment
    if fmt == "JPEG":
        options["quality"] = 90
    if fmt == "WEBP":
        options["lossless"] = True  # as screenshots are
    out = io.BytesIO()
    im.save(out, fmt, **options)
    return out.getvalue()


def animated_gif(frames: int, size: tuple[int, int] = (8, 8), comment: bytes | None = None) -> bytes:
    """An animated GIF whose frames differ (Pillow would merge identical ones)."""
    from PIL import Image

    images = [Image.new("RGB", size, ((i * 37) % 256, (i * 91) % 256, (i * 53) % 256)) for i in range(frames)]
    out = io.BytesIO()
    options: dict = {"comment": comment} if comment is not None else {}
    images[0].save(out, "GIF", save_all=True, append_images=images[1:], duration=80, loop=0, **options)
    return out.getvalue()


def png_bomb(width: int, height: int) -> bytes:
    """A valid 1-bit PNG of `width` x `height` black pixels: a few hundred KB declaring a huge canvas
    (30000 x 30000 decodes to 900 million pixels). Quick to make: a fully flushed deflate block of
    many rows does not depend on what came before, so one is compressed and repeated."""
    row = bytes(1 + (width + 7) // 8)  # filter byte 0, then the pixels
    rows_per_block = 1000
    block = row * rows_per_block
    squeeze = zlib.compressobj(9)
    first = squeeze.compress(block) + squeeze.flush(zlib.Z_FULL_FLUSH)  # with the zlib header
    again = squeeze.compress(block) + squeeze.flush(zlib.Z_FULL_FLUSH)
    blocks, rest = divmod(height, rows_per_block)
    assert blocks >= 1, "at least 1000 rows"
    tail = squeeze.compress(row * rest) + squeeze.flush(zlib.Z_FULL_FLUSH) if rest else b""
    checksum = 1
    for _ in range(blocks):
        checksum = zlib.adler32(block, checksum)
    checksum = zlib.adler32(row * rest, checksum)
    final_empty_block = b"\x03\x00"
    idat = first + again * (blocks - 1) + tail + final_empty_block + struct.pack(">I", checksum)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
