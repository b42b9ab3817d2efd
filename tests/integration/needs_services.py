"""The load and fault tests need a real PostgreSQL and Redis: skipped without them, except in CI."""

from __future__ import annotations

import os

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def postgres_and_redis(what: str) -> tuple[str, str]:
    """TEST_DATABASE_URL and TEST_REDIS_URL; a skip when unset, a failure when CI should have set them."""
    database, redis = os.environ.get("TEST_DATABASE_URL"), os.environ.get("TEST_REDIS_URL")
    if not (database and redis):
        missing = " and ".join(n for n, v in (("TEST_DATABASE_URL", database), ("TEST_REDIS_URL", redis)) if not v)
        if in_ci():
            pytest.fail(f"CI must run {what}: {missing} not set")
        pytest.skip(f"{missing} not set")
    return database, redis
