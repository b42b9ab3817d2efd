"""The three operations: make a backup, check one, restore one."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from qinglang import __version__
from qinglang.backup.database import EvidenceRow, Facts, database_for
from qinglang.backup.errors import BackupError, BackupFailed
from qinglang.backup.files import copy_file, evidence_path, hash_file, store_files
from qinglang.durable import fsync_dir, write_atomically
from qinglang.backup.keys import (
    KEY_FILE_IN_BACKUP,
    available_key_ids,
    configured_key_ids,
    file_key_id,
    key_file,
    set_aside,
)
from qinglang.backup.manifest import (
    EVIDENCE_DIR,
    MANIFEST,
    DatabaseEntry,
    EvidenceProblem,
    FileEntry,
    Manifest,
    read_manifest,
)
from qinglang.settings import Settings
from routing.rules import EDITED_RULES_PATH

# files of the data directory besides the database and the evidence that staff made and would miss
DATA_FILES = (EDITED_RULES_PATH.as_posix(),)


@dataclass(frozen=True)
class BackupReport:
    path: Path
    manifest: Manifest


@dataclass(frozen=True)
class RestoreReport:
    manifest: Manifest
    evidence_copied: int
    evidence_present: int  # already in the store with the right content
    problems: tuple[str, ...]  # what the check after the restore found
    key_installed: Path | None = None  # the backup's data key file, put in place
    key_set_aside: Path | None = None  # the key file that was there before, renamed


# ------------------------------------------------------------------------------------------------ backup


async def make_backup(settings: Settings, out: Path, *, with_key: bool = False,
                      now: datetime | None = None) -> BackupReport:
    """Write the backup to a hidden sibling of `out` and rename it into place when complete; evidence that
    is missing or damaged in the store is listed in the manifest's problems, everything else is kept.
    The data key file goes in only `with_key`: a backup that holds its key no longer protects personal data."""
    out = out.absolute()
    _require_empty(out)
    if with_key and not key_file(settings).is_file():
        raise BackupError(f"there is no data key file at {key_file(settings)} (a key given in QINGLANG_DATA_KEY "
                          "stays in your secret store): leave out --with-key")
    database = database_for(settings.database_url)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.partial-"))  # mode 0700
    except OSError as exc:
        raise BackupError(f"cannot write in {out.parent}: {exc.strerror or exc}") from None
    try:
        dump = work / database.dump_name
        dumped = await database.dump(dump)
        if dumped.facts.revision is None:
            raise BackupError(f"{database} has no schema (run `qinglang migrate`)")
        sha, size = await asyncio.to_thread(hash_file, dump)
        evidence, problems = await asyncio.to_thread(
            _copy_evidence, settings.storage.evidence_dir, work, dumped.facts.evidence
        )
        files = await asyncio.to_thread(_copy_data_files, settings.storage.data_dir, work)
        key = None
        if with_key:
            copied = copy_file(key_file(settings), work / KEY_FILE_IN_BACKUP)
            key = FileEntry(KEY_FILE_IN_BACKUP, copied.sha256, copied.size)
        manifest = Manifest(
            qinglang_version=__version__,
            created_at=(now or datetime.now(UTC)).astimezone(UTC),
            database=DatabaseEntry(database.kind, FileEntry(database.dump_name, sha, size), dumped.facts.revision,
                                   dumped.facts.row_counts, dumped.pg_dump_major),
            evidence=evidence,
            files=files,
            problems=problems,
            data_key_ids=dumped.facts.data_key_ids,
            data_key_file=key,
        )
        write_atomically(work / MANIFEST, manifest.to_bytes())
        _publish(work, out)
    except BaseException as exc:
        shutil.rmtree(work, ignore_errors=True)
        if isinstance(exc, OSError):  # a full disk, a file that vanished or cannot be read
            where = f" ({exc.filename})" if exc.filename else ""
            raise BackupFailed(f"the backup stopped and nothing was kept: {exc.strerror or exc}{where}") from None
        raise
    return BackupReport(out, manifest)


def _require_empty(out: Path) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise BackupError(f"{out} exists and is not a directory")
    if any(out.iterdir()):
        raise BackupError(f"{out} is not empty: a backup goes to a new or empty directory")


def _copy_evidence(root: Path, work: Path, rows: tuple[EvidenceRow, ...]
                   ) -> tuple[tuple[FileEntry, ...], tuple[EvidenceProblem, ...]]:
    # every file of the store, not only the ones cases refer to: unfinished conversations hold some too
    cases: dict[str, set[str]] = {}
    for row in rows:
        cases.setdefault(row.sha256, set()).update([row.case_number] if row.case_number else [])
    entries, problems, seen = [], [], set()
    for sha, path in store_files(root) if root.is_dir() else []:
        seen.add(sha)
        relative = Path(EVIDENCE_DIR) / evidence_path(sha)
        copied = copy_file(path, work / relative, expected=sha)
        if copied.placed:
            entries.append(FileEntry(relative.as_posix(), sha, copied.size))
        else:
            problems.append(EvidenceProblem(sha, "damaged", tuple(sorted(cases.get(sha, ())))))
    problems += [EvidenceProblem(sha, "missing", tuple(sorted(numbers)))
                 for sha, numbers in sorted(cases.items()) if sha not in seen]
    return tuple(entries), tuple(problems)


def _copy_data_files(data_dir: Path, work: Path) -> tuple[FileEntry, ...]:
    entries = []
    for relative in DATA_FILES:
        source = data_dir / relative
        if source.is_file():
            copied = copy_file(source, work / relative)
            entries.append(FileEntry(relative, copied.sha256, copied.size))
    return tuple(entries)


def _publish(work: Path, out: Path) -> None:
    fsync_dir(work)
    try:
        os.replace(work, out)  # also over an empty directory; never over a full one
    except OSError as exc:
        raise BackupError(f"cannot rename the finished backup to {out}: {exc.strerror or exc}") from None
    fsync_dir(out.parent)


# ------------------------------------------------------------------------------------------------ check


def check_backup(source: Path) -> Manifest:
    """The manifest of a backup whose every file is present with its recorded sha256 and size."""
    source = source.absolute()
    manifest = read_manifest(source)
    damage = _damage(source, manifest)
    if damage:
        raise BackupError(f"the backup at {source} is damaged: {_summary(damage)}")
    return manifest


def _damage(source: Path, manifest: Manifest) -> list[str]:
    found = []
    for entry in manifest.all_files():
        path = source / entry.path
        if not path.is_file():
            found.append(f"{entry.path} is missing")
            continue
        sha, size = hash_file(path)
        if sha != entry.sha256 or size != entry.size:
            found.append(f"{entry.path} does not match its sha256 (altered or damaged)")
    return found


def _summary(items: list[str], shown: int = 3) -> str:
    more = f" and {len(items) - shown} more" if len(items) > shown else ""
    return "; ".join(items[:shown]) + more


# ------------------------------------------------------------------------------------------------ restore


async def restore_backup(settings: Settings, source: Path, *, force: bool = False) -> RestoreReport:
    """Check the whole backup, refuse to replace data without `force`, put the evidence files back, then the
    database, then compare what is there now with the manifest."""
    source = source.absolute()
    manifest = read_manifest(source)
    damage = await asyncio.to_thread(_damage, source, manifest)
    if damage:
        raise BackupError(f"the backup at {source} is damaged, nothing was restored: {_summary(damage)}")
    database = database_for(settings.database_url)
    if manifest.database.kind != database.kind:
        raise BackupError(f"the backup holds a {manifest.database.kind} database but QINGLANG_DATABASE_URL is "
                          f"{database.kind}: restore into a {manifest.database.kind} database")
    from db import migrate  # Alembic takes a second to import: only a restore needs it

    if manifest.database.alembic_revision not in migrate.revisions():
        raise BackupError(f"the backup's schema revision {manifest.database.alembic_revision!r} is unknown to this "
                          f"qinglang {__version__}: install the version that made it ({manifest.qinglang_version})")
    await database.prepare_restore(manifest.database.pg_dump_major)
    current = await _current_facts(database, force)
    if current is not None and current.holds_data() and not force:
        cases = current.row_counts.get("cases", 0)
        raise BackupError(f"{database} already holds data ({cases} cases): give --force to replace it with the backup")
    install_key = _key_to_install(settings, source, manifest)

    # the evidence first: spare files in a content-addressed store harm nobody, a database whose
    # evidence rows point at files not yet there would
    root = settings.storage.evidence_dir
    copied, present = await asyncio.to_thread(_restore_evidence, source, manifest, root)
    await asyncio.to_thread(_restore_data_files, source, manifest, settings.storage.data_dir)
    set_aside_at = _install_key(settings, source / manifest.data_key_file.path, manifest) if install_key else None
    # tables of a newer schema than the backup's; other applications' tables are none of our business
    extra = sorted((set(current.row_counts) - set(manifest.database.row_counts)) & _our_tables()) if current else []
    await database.drop_tables(extra)
    try:
        await database.restore(source / manifest.database.file.path, manifest.database.file.sha256)
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        raise BackupFailed(f"cannot put the database in place: {exc.strerror or exc}{where}") from None

    after = await database.facts()
    problems = await asyncio.to_thread(_compare, manifest, after, root)
    missing_keys = set(manifest.data_key_ids) - available_key_ids(settings)
    if missing_keys:
        problems.append(f"data key(s) {', '.join(sorted(missing_keys))} of the personal data are not configured")
    return RestoreReport(manifest, copied, present, tuple(problems),
                         key_file(settings) if install_key else None, set_aside_at)


def _key_to_install(settings: Settings, source: Path, manifest: Manifest) -> bool:
    """Whether the backup's key file must be put in place; refuses when no key at hand opens the data."""
    needed = set(manifest.data_key_ids)
    configured = configured_key_ids(settings)
    in_file = file_key_id(key_file(settings))
    if needed <= configured | {in_file}:
        return False
    in_backup = file_key_id(source / manifest.data_key_file.path) if manifest.data_key_file else None
    if in_backup and needed <= configured | {in_backup}:
        return True
    missing = ", ".join(sorted(needed - configured - {in_file, in_backup}))
    raise BackupError(f"the backup's personal data is encrypted under data key {missing}, which this installation "
                      f"does not have: set QINGLANG_DATA_KEY (or QINGLANG_OLD_DATA_KEYS) to it or copy its key file "
                      f"to {key_file(settings)}; nothing was restored")


def _install_key(settings: Settings, source: Path, manifest: Manifest) -> Path | None:
    """Put the backup's key file in place; a different key file there is renamed, never deleted."""
    dest = key_file(settings)
    dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    aside = set_aside(dest) if dest.exists() else None
    _copy_checked(source, dest, manifest.data_key_file.sha256)
    return aside


def _our_tables() -> set[str]:
    from db.models import Base

    return set(Base.metadata.tables)


async def _current_facts(database, force: bool) -> Facts | None:
    try:
        return await database.facts()
    except BackupError:
        if force and database.kind == "sqlite":
            return None  # an unreadable file is what a forced restore is for
        raise


def _restore_evidence(source: Path, manifest: Manifest, root: Path) -> tuple[int, int]:
    copied = present = 0
    for entry in manifest.evidence:
        dest = root / evidence_path(entry.sha256)
        if dest.is_file() and hash_file(dest)[0] == entry.sha256:
            present += 1
            continue
        _copy_checked(source / entry.path, dest, entry.sha256)
        copied += 1
    return copied, present


def _restore_data_files(source: Path, manifest: Manifest, data_dir: Path) -> None:
    for entry in manifest.files:
        _copy_checked(source / entry.path, data_dir / entry.path, entry.sha256)


def _copy_checked(source: Path, dest: Path, sha256: str) -> None:
    try:
        copied = copy_file(source, dest, expected=sha256)
    except OSError as exc:
        raise BackupError(f"cannot copy {source} to {dest}: {exc.strerror or exc}") from None
    if not copied.placed:
        raise BackupError(f"{source} changed after it was checked (sha256 {copied.sha256}); "
                          "the database was not touched")


def _compare(manifest: Manifest, after: Facts | None, root: Path) -> list[str]:
    if after is None:
        return ["the database is not there after the restore"]
    found = []
    expected = manifest.database
    if after.revision != expected.alembic_revision:
        found.append(f"schema revision {after.revision}, the backup has {expected.alembic_revision}")
    for name in sorted(set(expected.row_counts) | set(after.row_counts)):
        have, want = after.row_counts.get(name), expected.row_counts.get(name)
        if have != want:
            found.append(f"table {name}: {_rows(have)}, the backup has {_rows(want)}")
    known = {p.sha256 for p in manifest.problems}
    cases: dict[str, list[str]] = {}
    for row in after.evidence:
        cases.setdefault(row.sha256, []).extend([row.case_number] if row.case_number else [])
    for sha, numbers in sorted(cases.items()):
        path = root / evidence_path(sha)
        if path.is_file() and hash_file(path)[0] == sha:
            continue
        of = f" of case {', '.join(sorted(set(numbers)))}" if numbers else ""
        state = "damaged" if path.is_file() else "missing"
        already = " (already when the backup was made)" if sha in known else ""
        found.append(f"evidence {sha}{of} is {state}{already}")
    return found


def _rows(count: int | None) -> str:
    return "no such table" if count is None else f"{count} rows"
