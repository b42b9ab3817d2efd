"""Real image bytes for evidence in tests."""

from __future__ import annotations

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
