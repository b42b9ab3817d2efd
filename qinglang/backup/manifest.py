"""manifest.json: what a backup holds, written last so that a backup without one is not a backup."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath

from qinglang.backup.errors import BackupError
from qinglang.backup.files import is_sha256

MANIFEST = "manifest.json"
FORMAT = "qinglang-backup"
FORMAT_VERSION = 1
EVIDENCE_DIR = "evidence"
DATABASE_KINDS = ("sqlite", "postgresql")


@dataclass(frozen=True)
class FileEntry:
    path: str  # relative to the backup directory, with forward slashes
    sha256: str
    size: int


@dataclass(frozen=True)
class EvidenceProblem:
    """An evidence file the backup could not hold: `missing` from the store or `damaged` (wrong hash)."""

    sha256: str
    problem: str
    cases: tuple[str, ...]

    def describe(self) -> str:
        where = f" of case {', '.join(self.cases)}" if self.cases else " (no case refers to it)"
        if self.problem == "missing":
            return f"evidence {self.sha256}{where} is missing from the evidence store"
        return f"evidence {self.sha256}{where} does not match its hash in the evidence store (damaged)"


@dataclass(frozen=True)
class DatabaseEntry:
    kind: str
    file: FileEntry
    alembic_revision: str
    row_counts: dict[str, int]
    pg_dump_major: int | None  # the pg_restore that reads the dump must be at least this version


@dataclass(frozen=True)
class Manifest:
    qinglang_version: str
    created_at: datetime
    database: DatabaseEntry
    evidence: tuple[FileEntry, ...]
    files: tuple[FileEntry, ...]  # other files of the data directory, e.g. config/rules.yaml
    problems: tuple[EvidenceProblem, ...]
    data_key_ids: tuple[str, ...]  # the keys the database's personal data is encrypted under
    data_key_file: FileEntry | None  # the key file itself, only when the backup was asked to hold it

    def all_files(self) -> tuple[FileEntry, ...]:
        key = (self.data_key_file,) if self.data_key_file else ()
        return (self.database.file, *self.evidence, *self.files, *key)

    def to_json(self) -> dict:
        db = self.database
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "qinglang_version": self.qinglang_version,
            "created_at": self.created_at.isoformat(),
            "database": {
                "kind": db.kind, "file": db.file.path, "sha256": db.file.sha256, "size": db.file.size,
                "alembic_revision": db.alembic_revision, "row_counts": dict(sorted(db.row_counts.items())),
                "pg_dump_major": db.pg_dump_major,
            },
            "evidence": [{"sha256": e.sha256, "size": e.size} for e in self.evidence],
            "files": [{"path": f.path, "sha256": f.sha256, "size": f.size} for f in self.files],
            "problems": [{"sha256": p.sha256, "problem": p.problem, "cases": list(p.cases)} for p in self.problems],
            "data_key_ids": list(self.data_key_ids),
            "data_key_file": None if self.data_key_file is None else {
                "path": self.data_key_file.path, "sha256": self.data_key_file.sha256, "size": self.data_key_file.size,
            },
        }

    def to_bytes(self) -> bytes:
        return (json.dumps(self.to_json(), ensure_ascii=False, indent=2) + "\n").encode()


def read_manifest(directory: Path) -> Manifest:
    path = directory / MANIFEST
    if not directory.is_dir():
        raise BackupError(f"{directory} is not a directory")
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise BackupError(f"{path} is missing: {directory} is not a complete qinglang backup") from None
    except OSError as exc:
        raise BackupError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BackupError(f"{path} is not valid JSON ({exc}): the backup is damaged") from None
    try:
        return parse_manifest(data)
    except _Invalid as exc:
        raise BackupError(f"{path}: {exc}") from None


class _Invalid(ValueError):
    pass


def parse_manifest(data: object) -> Manifest:
    """A manifest from its JSON, refusing anything that is not exactly what `backup` writes."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise _Invalid(f"not a qinglang backup manifest (no \"format\": \"{FORMAT}\")")
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise _Invalid(f"backup format version {version!r} is not supported (this qinglang reads version "
                       f"{FORMAT_VERSION}; a newer qinglang may have made the backup)")
    db = _field(data, "database", dict)
    kind = _field(db, "kind", str)
    if kind not in DATABASE_KINDS:
        raise _Invalid(f"unknown database kind {kind!r}")
    counts = _field(db, "row_counts", dict)
    if not all(isinstance(k, str) and _is_count(v) for k, v in counts.items()):
        raise _Invalid("database.row_counts must map table names to counts")
    pg_major = db.get("pg_dump_major")
    if pg_major is not None and not _is_count(pg_major):
        raise _Invalid("database.pg_dump_major must be a number")
    database = DatabaseEntry(
        kind=kind,
        file=_entry(_field(db, "file", str), db, "database"),
        alembic_revision=_field(db, "alembic_revision", str),
        row_counts=dict(counts),
        pg_dump_major=pg_major,
    )
    evidence = tuple(
        _entry(f"{EVIDENCE_DIR}/{_sha(item)[:2]}/{_sha(item)[2:4]}/{_sha(item)}", item, "evidence")
        for item in _list(data, "evidence")
    )
    files = tuple(_entry(_field(item, "path", str), item, "files") for item in _list(data, "files"))
    problems = tuple(
        EvidenceProblem(_sha(item), _problem(item), tuple(_strings(item.get("cases", []))))
        for item in _list(data, "problems")
    )
    key_ids = _field(data, "data_key_ids", list)
    if not all(isinstance(k, str) and re.fullmatch(r"[0-9a-f]{8}", k) for k in key_ids):
        raise _Invalid("data_key_ids must be a list of key ids")
    key_file = data.get("data_key_file")
    if key_file is not None and not isinstance(key_file, dict):
        raise _Invalid("data_key_file must be an object or null")
    try:
        created_at = datetime.fromisoformat(_field(data, "created_at", str))
    except ValueError:
        raise _Invalid("created_at is not an ISO 8601 time") from None
    return Manifest(
        _field(data, "qinglang_version", str), created_at, database, evidence, files, problems, tuple(key_ids),
        None if key_file is None else _entry(_field(key_file, "path", str), key_file, "data_key_file"),
    )


def _field(data: dict, name: str, kind: type):
    value = data.get(name)
    if not isinstance(value, kind):
        raise _Invalid(f"{name} is missing or not a {kind.__name__}")
    return value


def _list(data: dict, name: str) -> list[dict]:
    items = _field(data, name, list)
    if not all(isinstance(item, dict) for item in items):
        raise _Invalid(f"{name} must be a list of objects")
    return items


def _sha(item: dict) -> str:
    value = item.get("sha256")
    if not is_sha256(value):
        raise _Invalid(f"not a sha256: {value!r:.80}")
    return value


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _entry(path: str, item: dict, where: str) -> FileEntry:
    pure = PurePosixPath(path)
    if pure.is_absolute() or ".." in pure.parts or "\\" in path or path in ("", ".") or path == MANIFEST:
        raise _Invalid(f"{where}: unsafe path {path!r:.120}")
    size = item.get("size")
    if not _is_count(size):
        raise _Invalid(f"{where}: {path}: size must be a number")
    return FileEntry(path, _sha(item), size)


def _problem(item: dict) -> str:
    problem = item.get("problem")
    if problem not in ("missing", "damaged"):
        raise _Invalid(f"problems: unknown problem {problem!r}")
    return problem


def _strings(values: object) -> list[str]:
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise _Invalid("problems: cases must be a list of case numbers")
    return values
