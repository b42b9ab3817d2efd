"""Schema migrations with Alembic, run on the application's async engine."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncEngine

from db.crypto import DataCipher, bound_cipher
from db.engine import compact

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# a migration that rewrites values in place adds its tables here (config.attributes): compacted after commit
REWRITTEN_TABLES = "rewritten_tables"


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def revisions() -> list[str]:
    """Every revision id, oldest first."""
    script = ScriptDirectory.from_config(alembic_config())
    return [rev.revision for rev in reversed(list(script.walk_revisions()))]


async def upgrade(engine: AsyncEngine, target: str = "head", *, cipher: DataCipher | None = None) -> None:
    """`cipher`: the data key for migrations that encrypt or decrypt stored values; by default the one
    bootstrap bound to the engine. Only needed when such rows exist (an empty database migrates without)."""
    await _run(engine, command.upgrade, target, cipher)


async def downgrade(engine: AsyncEngine, target: str, *, cipher: DataCipher | None = None) -> None:
    await _run(engine, command.downgrade, target, cipher)


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(lambda sync: MigrationContext.configure(sync).get_current_revision())


async def _run(engine: AsyncEngine, fn, target: str, cipher: DataCipher | None) -> None:
    config = alembic_config()

    def run(sync_connection) -> None:
        config.attributes["connection"] = sync_connection
        config.attributes["data_cipher"] = cipher or bound_cipher(engine)
        fn(config, target)
        if sync_connection.dialect.name == "sqlite":
            broken = sync_connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            if broken:  # rolled back: the schema and the data stay as they were
                raise RuntimeError(f"the migration would leave {len(broken)} rows pointing at rows that do not "
                                   f"exist, e.g. in table {broken[0][0]!r}")

    async with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            # SQLite alters a table by copying it to a new one and dropping the old (Alembic's batch mode):
            # with foreign keys on, dropping `cases` would cascade to every case's units, deadlines, events,
            # evidence and notices. The pragma does nothing inside a transaction: set on the driver's
            # connection before SQLAlchemy begins one (its BEGIN IMMEDIATE, db/engine.py).
            await _sqlite_pragma(conn, "PRAGMA foreign_keys=OFF")
        try:
            async with conn.begin():
                await conn.run_sync(run)
        finally:
            if sqlite:
                await _sqlite_pragma(conn, "PRAGMA foreign_keys=ON")
    rewritten = config.attributes.get(REWRITTEN_TABLES)
    if rewritten:
        await _compact(engine, sorted(rewritten))


async def _sqlite_pragma(conn, pragma: str) -> None:
    driver = (await conn.get_raw_connection()).driver_connection
    await (await driver.execute(pragma)).close()


async def _compact(engine: AsyncEngine, tables: list[str]) -> None:
    """A migration that rewrote personal data in place asked for the old values to leave the files too."""
    try:
        await compact(engine, tables)
    except Exception as exc:  # the migration itself is committed: the service may start
        log.warning("the migration rewrote personal data, but the old copies could not be cleared from the "
                    "database files (%s: %s); with every qinglang process stopped, run VACUUM on the database "
                    "(PostgreSQL: VACUUM FULL %s)", type(exc).__name__, exc, ", ".join(tables))
