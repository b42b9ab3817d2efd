"""Files copied with their sha256 computed on the way, written atomically and durably."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from qinglang.durable import fsync_dir

_BLOCK = 1024 * 1024
_SHA256 = re.compile(r"[0-9a-f]{64}")


def is_sha256(value: object) -> bool:
    return isinstance(value, str) and _SHA256.fullmatch(value) is not None


def evidence_path(sha256: str) -> Path:
    """Where a file lives below an evidence root, the layout of intake.evidence.EvidenceStore."""
    return Path(sha256[:2], sha256[2:4], sha256)


def store_files(root: Path) -> list[tuple[str, Path]]:
    """(sha256, path) of every file in the evidence store's layout; anything else there is not evidence."""
    found = []
    for path in sorted(root.glob("[0-9a-f][0-9a-f]/[0-9a-f][0-9a-f]/*")):
        name = path.name
        if is_sha256(name) and path.parent.name == name[2:4] and path.parent.parent.name == name[:2] and path.is_file():
            found.append((name, path))
    return found


def hash_file(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as fh:
        while block := fh.read(_BLOCK):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


@dataclass(frozen=True)
class Copied:
    sha256: str
    size: int
    placed: bool  # False: the content did not have the expected hash and dest was left alone


def copy_file(source: Path, dest: Path, expected: str | None = None) -> Copied:
    """Copy through a temporary file beside `dest`, fsynced, then renamed over it; with `expected`, only a
    copy whose sha256 matches it is put in place."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name[:40]}.", suffix=".part")
    tmp = Path(tmp_name)
    digest, size = hashlib.sha256(), 0
    try:
        with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
            while block := src.read(_BLOCK):
                out.write(block)
                digest.update(block)
                size += len(block)
            out.flush()
            os.fsync(out.fileno())
        sha = digest.hexdigest()
        if expected is not None and sha != expected:
            tmp.unlink()
            return Copied(sha, size, placed=False)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(dest.parent)
    return Copied(sha, size, placed=True)
