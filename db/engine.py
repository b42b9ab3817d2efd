"""Engine and session factory for the configured database."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from qinglang.errors import ConfigError


def create_engine(url: str, *, echo: bool = False) -> AsyncEngine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, echo=echo)
    # JIT compilation costs PostgreSQL more than it saves on the queue's short queries (bench/console.py)
    return create_async_engine(url, echo=echo, pool_pre_ping=True, pool_size=10, max_overflow=20,
                               connect_args={"server_settings": {"jit": "off"}})


def _sqlite_engine(url: str, *, echo: bool) -> AsyncEngine:
    database = make_url(url).database
    if database and database != ":memory:":
        parent = Path(database).parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create the directory of the SQLite database {parent}: {exc.strerror}") from None
    engine = create_async_engine(url, echo=echo, connect_args={"timeout": 30})

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        # Let SQLAlchemy, not the driver, open transactions, so that BEGIN IMMEDIATE below takes
        # the write lock up front: two writers then queue on busy_timeout instead of deadlocking.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        # what a delete or an overwrite frees is zeroed, not left in the file (and its copies) in clear;
        # many builds do it by default, not all
        cursor.execute("PRAGMA secure_delete=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


async def compact(engine: AsyncEngine, tables: Iterable[str]) -> None:
    """Rewrite the files of `tables` (on SQLite: the whole database) so that values overwritten in place
    leave no old copy behind: in a free page or a free block of a page, in the write-ahead log (SQLite), in
    the dead row versions of the heap (PostgreSQL). Runs outside any transaction, as both commands must.

    On SQLite, VACUUM needs the database to itself and the log is emptied only when no other connection is
    reading it: with another process in the middle of a transaction this raises."""
    async with engine.connect() as conn:
        driver = (await conn.get_raw_connection()).driver_connection
        if engine.dialect.name == "sqlite":
            await (await driver.execute("VACUUM")).close()
            cursor = await driver.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            busy = (await cursor.fetchone())[0]
            await cursor.close()
            if busy:
                raise RuntimeError("another connection is reading the SQLite database: its write-ahead log was "
                                   "not emptied")
        else:
            quote = engine.dialect.identifier_preparer.quote
            for table in tables:
                await driver.execute(f"VACUUM FULL {quote(table)}")


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=True)
