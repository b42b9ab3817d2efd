"""What differs between SQLite and PostgreSQL and cannot be hidden in a column type."""

from __future__ import annotations

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession


def upsert_insert(session: AsyncSession):
    """The dialect's INSERT construct, which has on_conflict_do_nothing / on_conflict_do_update."""
    return postgresql.insert if session.bind.dialect.name == "postgresql" else sqlite.insert
