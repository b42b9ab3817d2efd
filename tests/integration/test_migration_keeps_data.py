"""Migrations keep every row: on SQLite, Alembic's batch mode alters a table by copying it and dropping the
old one, and with foreign keys on (as the service runs) dropping `cases` cascaded to the units, deadlines,
events, evidence and notices of every case. Found by the probe of issue 14 (0016 deleted them live); 0012
and its downgrade did the same. db.migrate now migrates SQLite with foreign keys off and checks them after.
"""

from __future__ import annotations

from sqlalchemy import func, select

from db import migrate
from db.models import Base
from intake.cases import Actor
from tests.integration.test_case_lifecycle import complaint

CHILDREN = ("case_units", "case_deadlines", "case_events", "outbox")


async def _counts(container) -> dict[str, int]:
    tables = {t.name: t for t in Base.metadata.sorted_tables}
    async with container.engine.connect() as conn:
        return {name: await conn.scalar(select(func.count()).select_from(tables[name])) for name in CHILDREN}


async def test_every_revision_down_and_up_keeps_the_cases_rows(container):
    triage = await container.accounts.create_user("setup", "xiaobao", "triage")
    for _ in range(2):
        view = await container.cases.create(complaint())
        await container.cases.accept(view.id, Actor("staff", triage.id))
    before = await _counts(container)
    assert all(before.values()), before
    await migrate.downgrade(container.engine, "0011")  # below 0012, which rebuilt `cases` on SQLite
    await migrate.upgrade(container.engine)
    after = await _counts(container)
    assert after == before
