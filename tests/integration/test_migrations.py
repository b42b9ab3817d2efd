"""The migration stairway: every revision upgrades, downgrades and upgrades again, on both backends."""

from __future__ import annotations

from sqlalchemy import inspect

from db import migrate
from db.engine import create_engine
from db.models import Base


async def _tables(engine) -> set[str]:
    async with engine.connect() as conn:
        return await conn.run_sync(lambda sync: set(inspect(sync).get_table_names()))


async def test_stairway_upgrade_downgrade_upgrade(backend, fresh_database_url):
    engine = create_engine(fresh_database_url)
    try:
        revisions = migrate.revisions()
        assert revisions, "no migrations found"
        previous = "base"
        for revision in revisions:
            await migrate.upgrade(engine, revision)
            assert await migrate.current_revision(engine) == revision
            await migrate.downgrade(engine, previous)
            assert await migrate.current_revision(engine) == (None if previous == "base" else previous)
            await migrate.upgrade(engine, revision)
            previous = revision
        assert await _tables(engine) >= {t.name for t in Base.metadata.sorted_tables}
        await migrate.downgrade(engine, "base")
        assert await _tables(engine) <= {"alembic_version"}
    finally:
        await engine.dispose()


async def test_head_matches_models(backend, fresh_database_url):
    """Autogenerate finds nothing to add: the models and the migrations agree."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    engine = create_engine(fresh_database_url)
    try:
        await migrate.upgrade(engine)
        async with engine.connect() as conn:
            diff = await conn.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync, opts={"compare_type": True}), Base.metadata)
            )
    finally:
        await engine.dispose()
    assert diff == []
