"""The database part of a backup: a consistent copy, the facts read from exactly that copy, and the restore."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import Connection, func, inspect, select, table, text
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from db.engine import create_engine
from qinglang.backup import pgtools
from qinglang.backup.errors import BackupError, BackupFailed
from qinglang.backup.files import copy_file
from qinglang.durable import fsync_dir
from qinglang.backup.keys import key_ids_in_use

# `qinglang migrate` fills these by itself, so rows in them do not make a database one "that holds data"
_SEEDED_TABLES = frozenset({"alembic_version", "units"})


@dataclass(frozen=True)
class EvidenceRow:
    sha256: str
    case_number: str | None


@dataclass(frozen=True)
class Facts:
    revision: str | None
    row_counts: dict[str, int]  # every table but alembic_version
    evidence: tuple[EvidenceRow, ...]  # the rows that stand for a file (links have none)
    data_key_ids: tuple[str, ...]  # the keys personal data is encrypted under

    def holds_data(self) -> bool:
        return any(count for name, count in self.row_counts.items() if name not in _SEEDED_TABLES)


def read_facts(conn: Connection) -> Facts:
    tables = sorted(inspect(conn).get_table_names())
    counts = {name: conn.execute(select(func.count()).select_from(table(name))).scalar_one()
              for name in tables if name != "alembic_version"}
    revision = None
    if "alembic_version" in tables:
        revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    evidence: tuple[EvidenceRow, ...] = ()
    if {"evidence", "cases"} <= set(tables):
        rows = conn.execute(text(
            "SELECT e.sha256, c.number FROM evidence e LEFT JOIN cases c ON c.id = e.case_id "
            "WHERE e.source <> 'link' ORDER BY e.id"
        ))
        evidence = tuple(EvidenceRow(sha, number) for sha, number in rows)
    return Facts(revision, counts, evidence, key_ids_in_use(conn, set(tables)))


def database_for(url: str) -> SqliteDatabase | PostgresDatabase:
    if make_url(url).get_backend_name() == "sqlite":
        return SqliteDatabase(url)
    return PostgresDatabase(url)


def _reason(exc: BaseException) -> str:
    lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


@dataclass(frozen=True)
class Dumped:
    facts: Facts
    pg_dump_major: int | None


class SqliteDatabase:
    kind = "sqlite"
    dump_name = "database.sqlite3"

    def __init__(self, url: str) -> None:
        self.path = Path(make_url(url).database)

    def __str__(self) -> str:
        return f"the SQLite database {self.path}"

    async def dump(self, dest: Path) -> Dumped:
        if not self.path.is_file():
            raise BackupError(f"there is no SQLite database at {self.path} (check QINGLANG_DATABASE_URL or "
                              f"QINGLANG_DATA_DIR; `qinglang migrate` creates it)")
        await asyncio.to_thread(self._online_backup, dest)
        return Dumped(_sqlite_facts(dest), None)

    def _online_backup(self, dest: Path) -> None:
        # VACUUM INTO copies one consistent state while the service goes on writing (WAL), and only the live
        # rows: what a free page or a free block of the file still holds (a value overwritten before secure
        # delete was on, e.g. a name encrypted in place) does not go into the backup
        try:
            source = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            try:
                source.execute("VACUUM INTO ?", (str(dest),))
            finally:
                source.close()
            copy = sqlite3.connect(dest)
            try:
                copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
            finally:
                copy.close()
        except sqlite3.Error as exc:
            raise BackupError(f"cannot read {self}: {exc}") from None
        with open(dest, "rb+") as fh:
            os.fsync(fh.fileno())

    async def facts(self) -> Facts | None:
        """None when there is no database file yet."""
        if not self.path.exists():
            return None
        return _sqlite_facts(self.path)

    async def prepare_restore(self, pg_dump_major: int | None) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)

    async def drop_tables(self, names: list[str]) -> None:
        """Nothing to do: the whole file is replaced."""

    async def restore(self, dump: Path, sha256: str) -> None:
        staging = self.path.with_name(f".{self.path.name}.restoring")
        copied = await asyncio.to_thread(copy_file, dump, staging, sha256)
        if not copied.placed:
            raise BackupError(f"{dump} changed after it was checked (sha256 {copied.sha256}); nothing was restored")
        if self.path.exists():  # the service's user must still own the file when root restores it
            _take_owner_and_mode(self.path, staging)
        # a -wal left beside the old file would be replayed into the new one
        for suffix in ("-wal", "-shm", "-journal"):
            self.path.with_name(self.path.name + suffix).unlink(missing_ok=True)
        staging.replace(self.path)
        fsync_dir(self.path.parent)


def _take_owner_and_mode(model: Path, path: Path) -> None:
    status = model.stat()
    os.chmod(path, status.st_mode & 0o777)
    try:
        os.chown(path, status.st_uid, status.st_gid)
    except PermissionError:
        pass  # not root: the file is ours, as the old one was


def _sqlite_facts(path: Path) -> Facts:
    uri = f"file:{quote(str(path.absolute()))}?mode=ro"
    engine = create_sync_engine("sqlite://", creator=lambda: sqlite3.connect(uri, uri=True, timeout=30))
    try:
        with engine.connect() as conn:
            return read_facts(conn)
    except Exception as exc:
        raise BackupError(f"cannot read the SQLite database {path}: {_reason(exc)}") from None
    finally:
        engine.dispose()


class PostgresDatabase:
    kind = "postgresql"
    dump_name = "database.pgdump"

    def __init__(self, url: str) -> None:
        self.url = make_url(url)
        self._raw_url = url

    def __str__(self) -> str:
        return f"the database {self.url.render_as_string(hide_password=True)}"

    async def dump(self, dest: Path) -> Dumped:
        pg_dump = pgtools.find_tool("pg_dump")
        engine = create_engine(self._raw_url)
        try:
            conn = await self._connect(engine)
            try:
                conn = await conn.execution_options(isolation_level="REPEATABLE READ")
                async with conn.begin():
                    await conn.execute(text("SET TRANSACTION READ ONLY"))
                    server = await _server_major(conn)
                    pgtools.require_at_least(pg_dump, server, "the database server")
                    # pg_dump reads the snapshot this transaction exported, so the dump, the row counts and
                    # the evidence rows below are one and the same state of the database
                    snapshot = (await conn.execute(text("SELECT pg_export_snapshot()"))).scalar_one()
                    facts = await conn.run_sync(read_facts)
                    await pgtools.run(pg_dump, ["--format=custom", "--no-password", f"--snapshot={snapshot}",
                                                f"--file={dest}", pgtools.database_conninfo(self.url.database)],
                                      pgtools.environment(self.url))
            finally:
                await conn.close()
        finally:
            await engine.dispose()
        return Dumped(facts, pg_dump.major)

    async def facts(self) -> Facts | None:
        engine = create_engine(self._raw_url)
        try:
            conn = await self._connect(engine)
            try:
                return await conn.run_sync(read_facts)
            finally:
                await conn.close()
        finally:
            await engine.dispose()

    async def prepare_restore(self, pg_dump_major: int | None) -> None:
        self._pg_restore = pgtools.find_tool("pg_restore")
        pgtools.require_at_least(self._pg_restore, pg_dump_major or 0, "the pg_dump that made the backup")

    async def drop_tables(self, names: list[str]) -> None:
        """Tables the backup does not have (a newer schema's) would survive pg_restore --clean."""
        if not names:
            return
        engine = create_engine(self._raw_url)
        try:
            conn = await self._connect(engine)
            try:
                async with conn.begin():
                    for name in names:
                        quoted = name.replace('"', '""')
                        await conn.execute(text(f'DROP TABLE IF EXISTS "{quoted}" CASCADE'))
            finally:
                await conn.close()
        except BackupError:
            raise
        except Exception as exc:
            raise BackupFailed(f"cannot drop the tables {', '.join(names)} of {self}: {_reason(exc)}") from None
        finally:
            await engine.dispose()

    async def restore(self, dump: Path, sha256: str) -> None:
        env = pgtools.environment(self.url)
        # a service still connected would make pg_restore wait for its locks for ever
        env["PGOPTIONS"] = f"{env.get('PGOPTIONS', '')} -c lock_timeout=60s".strip()
        try:
            # one transaction: a pg_restore that fails half-way leaves the database as it was
            await pgtools.run(
                self._pg_restore,
                ["--clean", "--if-exists", "--no-owner", "--single-transaction", "--exit-on-error", "--no-password",
                 f"--dbname={pgtools.database_conninfo(self.url.database)}", str(dump)],
                env,
            )
        except BackupFailed as exc:
            raise BackupFailed(f"{exc} (the database is as it was; is `qinglang serve` or `worker` still "
                               "running?)") from None

    async def _connect(self, engine: AsyncEngine) -> AsyncConnection:
        try:
            return await engine.connect()
        except Exception as exc:
            raise BackupError(f"cannot reach {self}: {_reason(exc)}") from None


async def _server_major(conn: AsyncConnection) -> int:
    return int((await conn.execute(text("SHOW server_version_num"))).scalar_one()) // 10000
