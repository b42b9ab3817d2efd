"""The load bench (bench/load.py) in its short, bounded form: 40 simulated Telegram users, each through a
complete conversation, against two webhook replicas and a worker on PostgreSQL + Redis.

The full form (500 users) is `.venv/bin/python bench/load.py`. Needs TEST_DATABASE_URL and TEST_REDIS_URL
(skipped without them, except in CI, where their absence is a failure).
"""

from __future__ import annotations


import pytest

from bench.load import Options, run_load
from tests.integration.needs_services import postgres_and_redis

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.timeout(240)]

USERS = 40


@pytest.fixture(scope="module")
def services() -> tuple[str, str]:
    database, redis = postgres_and_redis("the load test")
    return database, redis


async def test_forty_users_two_replicas_nothing_lost_or_twice(services):
    database, redis = services
    opts = Options(users=USERS, replicas=2, ramp=2.0, database_url=database, redis_url=redis,
                   reply_timeout=60, settle_timeout=60, quiet=True)
    rep, text = await run_load(opts)
    print(text)  # the figures, shown with -s or on failure

    # every user finished: 11 updates each, every one acknowledged with a 2xx at the first delivery
    assert rep.completed == USERS, text
    assert rep.updates_acknowledged == USERS * 11, text
    assert rep.http["statuses"] == {"200": USERS * 11}, text
    assert (rep.http["dropped"], rep.http["timeouts"], rep.http["redeliveries"], rep.http["gave_up"]) == (0, 0, 0, 0)
    assert rep.errors == {}, rep.error_samples
    # no apology (a failed handling), no reply twice
    assert rep.user_side == {"apologies": 0, "throttled": 0, "repeated_replies": 0, "accepted_by_staff": USERS}, text
    # both replicas took their share (round robin, shared with the staff's API calls)
    assert set(rep.http["per_replica"]) == {"replica-0", "replica-1"}
    assert min(rep.http["per_replica"].values()) >= 0.4 * USERS * 11, rep.http

    check = rep.check
    assert check["lost"] == [] and check["duplicated"] == [], text
    assert check["cases"] == USERS and check["completed"] == USERS
    assert check["inbox"] == {"rows": USERS * 11, "acknowledged_updates": USERS * 11, "unhandled": 0,
                              "failed_at_least_once": 0}
    # the staff accepted every case: one notice each, delivered once
    assert check["outbox"] == {"sent": USERS, "rows": USERS}, text
    assert check["notices_sent_to_telegram"] == USERS
    assert rep.settle == {"inbox_unhandled": 0, "outbox_open": 0}

    # latency figures exist for every step, and memory was sampled for every process over the run
    assert set(rep.reply_ms_by_step) == {"describe", "confirm", "order", "in_district", "street", "photo",
                                         "evidence_done", "name", "phone", "consent", "submit"}
    assert rep.reply_ms["n"] == USERS * 11 and rep.webhook_ms["n"] == USERS * 11
    samples = rep.memory["samples"]
    assert len(samples) >= 3
    for name in ("replica-0", "replica-1", "worker", "fake-tg"):
        assert all(s[name] for s in samples[:-1]), f"{name} was not running the whole time: {samples}"
