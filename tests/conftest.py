"""Shared fixtures. Database tests run on SQLite always and on PostgreSQL when TEST_DATABASE_URL is set."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from db import migrate
from db.engine import create_engine
from db.models import Base
from intake.clock import FixedClock
from qinglang.bootstrap import Container, build_container
from qinglang.settings import Settings, load_settings, normalise_database_url
from routing.sync import sync_units

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def postgres_admin_url() -> str:
    if not TEST_DATABASE_URL:
        pytest.skip("TEST_DATABASE_URL is not set")
    return normalise_database_url(TEST_DATABASE_URL)


async def _create_database(admin_url: str, name: str) -> str:
    admin = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
            # A test database need not survive a crash of the server: commits do not wait for the disk
            # (the product's own databases keep PostgreSQL's default).
            await conn.execute(text(f'ALTER DATABASE "{name}" SET synchronous_commit = off'))
    finally:
        await admin.dispose()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


async def _drop_database(admin_url: str, name: str) -> None:
    admin = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()


async def _upgrade(url: str) -> None:
    engine = create_engine(url)
    try:
        await migrate.upgrade(engine)
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    """A SQLite file built once by `upgrade head`; each test gets a copy."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    asyncio.run(_upgrade(f"sqlite+aiosqlite:///{path}"))
    return path


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A PostgreSQL database of this test session, built by `upgrade head`, dropped at the end."""
    admin = postgres_admin_url()
    name = f"qinglang_test_{uuid.uuid4().hex[:10]}"
    url = asyncio.run(_create_database(admin, name))
    asyncio.run(_upgrade(url))
    yield url
    asyncio.run(_drop_database(admin, name))


@pytest.fixture
def fresh_database_url(request, tmp_path) -> Iterator[str]:
    """An empty database (no schema) for migration tests, on the backend of `backend`."""
    backend = request.getfixturevalue("backend")
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
        return
    admin = postgres_admin_url()
    name = f"qinglang_mig_{uuid.uuid4().hex[:10]}"
    url = asyncio.run(_create_database(admin, name))
    yield url
    asyncio.run(_drop_database(admin, name))


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture
def database_url(backend, request, tmp_path) -> str:
    if backend == "sqlite":
        template = request.getfixturevalue("sqlite_template")
        path = tmp_path / "qinglang.db"
        shutil.copy(template, path)
        return f"sqlite+aiosqlite:///{path}"
    return request.getfixturevalue("postgres_database")


async def _truncate(engine: AsyncEngine) -> None:
    """Empty every table and restart every id sequence, as TRUNCATE ... RESTART IDENTITY would. DELETE
    (children first) in one round trip takes a quarter of TRUNCATE's time on these small tables, and
    every PostgreSQL test pays it."""
    statements = [f'DELETE FROM "{table.name}"' for table in reversed(Base.metadata.sorted_tables)]
    async with engine.begin() as conn:
        sequences = (await conn.execute(text(
            "SELECT sequencename FROM pg_sequences WHERE schemaname = current_schema()"))).scalars().all()
        statements += [f'ALTER SEQUENCE "{name}" RESTART' for name in sequences]
        raw = await conn.get_raw_connection()
        await raw.driver_connection.execute("; ".join(statements))  # several statements: asyncpg's simple protocol


@pytest.fixture
def clock() -> FixedClock:
    # 2026-11-16 10:00 in Shanghai, a Monday
    return FixedClock(datetime(2026, 11, 16, 2, 0, tzinfo=UTC))


@pytest.fixture(scope="session")
def nlu_cache_dir(tmp_path_factory) -> Path:
    """One trained classifier for the whole session (the model is cached by a hash of its data, and
    written atomically), shared by the workers of a parallel run (pytest-xdist)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = tmp_path_factory.getbasetemp().parent / "nlu-cache"
        shared.mkdir(exist_ok=True)
        return shared
    return tmp_path_factory.mktemp("nlu-cache")


@pytest.fixture(scope="session", autouse=True)
def fast_password_hashing():
    """argon2 with its production cost makes each login take ~100 ms; tests check behaviour, not cost."""
    import functools

    from argon2 import PasswordHasher

    import web.accounts
    import web.security

    cheap = functools.partial(PasswordHasher, time_cost=1, memory_cost=1024, parallelism=1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(web.accounts, "PasswordHasher", cheap)
        patch.setattr(web.security, "PasswordHasher", cheap)
        yield


@pytest.fixture
def settings(tmp_path, database_url, nlu_cache_dir) -> Settings:
    return load_settings(env_file=None, data_dir=tmp_path / "data", database_url=database_url,
                         nlu_cache_dir=nlu_cache_dir)


@pytest.fixture
async def container(settings, clock, backend) -> AsyncIterator[Container]:
    container = build_container(settings, clock=clock)
    if backend == "postgresql":
        await _truncate(container.engine)
    await sync_units(container.uow, container.directory)
    yield container
    await container.close()


RUN_LAST = ("test_rasa_server.py",)


def pytest_collection_modifyitems(session, config, items) -> None:
    """The real Rasa server's tests run last: CI sets that server up beside the suite (.ci/run), and with
    a file per worker (scripts/test.sh) a worker reaching them early would only wait for it."""
    items.sort(key=lambda item: item.path.name in RUN_LAST)
