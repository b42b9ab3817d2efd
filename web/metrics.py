"""Prometheus metrics at GET /metrics, all named qinglang_*.

Counted in a web or bot process: Telegram updates by outcome and their handling time, HTTP requests by route
and status, NLU fallbacks (Rasa failed, the embedded classifier answered). Counted in a worker (its own
/metrics, web/worker_app.py, or the web app's when `serve` runs the worker in-process): send attempts by
channel and outcome with their time, scheduled jobs by outcome. Read from the database at each scrape, so
every process reports the same figures: the outbox by status, the unhandled inbox, overdue open cases.
One registry per app (no process-global registry), so tests and several apps in one process do not mix
their counts. Scrapers should reach /metrics on the internal network only (nginx refuses it outside).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from sqlalchemy import func, select

from db.models import Case, InboxUpdate, OutboxMessage
from intake.inbox import MAX_ATTEMPTS
from intake.notifier import SENT
from qinglang.bootstrap import Container

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class _NluFallbacks:
    """A counter kept by the classifier itself (RasaBackend.fallbacks), read at scrape time."""

    def __init__(self, count: Callable[[], int]) -> None:
        self._count = count

    def collect(self):
        family = CounterMetricFamily("qinglang_nlu_fallbacks", "Classifications answered by the embedded "
                                     "classifier because the Rasa server failed")
        family.add_metric([], self._count())
        yield family


class DatabaseFigures:
    """Gauges read from the database at each scrape: the same in every process."""

    def __init__(self, container: Container, registry: CollectorRegistry) -> None:
        self._container = container
        self.outbox = Gauge("qinglang_outbox_depth", "Notifications not sent yet, by status", ["status"],
                            registry=registry)
        self.inbox_unhandled = Gauge("qinglang_inbox_unhandled", "Stored updates not handled yet", registry=registry)
        self.inbox_stuck = Gauge("qinglang_inbox_stuck", f"Stored updates that failed {MAX_ATTEMPTS} times and "
                                 "wait for staff", registry=registry)
        self.overdue = Gauge("qinglang_overdue_cases", "Open cases past their next statutory deadline",
                             registry=registry)
        self.up = Gauge("qinglang_database_up", "1 when the last scrape could read the database", registry=registry)

    async def refresh(self) -> None:
        """The figures kept in the database; a scrape during an outage reports database_up 0."""
        container = self._container
        today = container.clock.now().astimezone(container.settings.tz).date()
        try:
            async with container.uow() as uow:
                session = uow.session
                by_status = dict((await session.execute(
                    select(OutboxMessage.status, func.count()).where(OutboxMessage.status != SENT)
                    .group_by(OutboxMessage.status))).all())
                unhandled = await session.scalar(select(func.count()).select_from(InboxUpdate)
                                                 .where(InboxUpdate.processed_at.is_(None)))
                stuck = await session.scalar(select(func.count()).select_from(InboxUpdate)
                                             .where(InboxUpdate.processed_at.is_(None),
                                                    InboxUpdate.attempts >= MAX_ATTEMPTS))
                overdue = await session.scalar(select(func.count()).select_from(Case)
                                               .where(Case.closed_at.is_(None), Case.next_due_on < today))
        except Exception as exc:
            log.warning("metrics could not read the database: %s: %s", type(exc).__name__, exc)
            self.up.set(0)
            return
        self.up.set(1)
        for status in set(by_status) | {"pending"} | {labels[0] for labels in _label_sets(self.outbox)}:
            self.outbox.labels(status).set(by_status.get(status, 0))
        self.inbox_unhandled.set(unhandled or 0)
        self.inbox_stuck.set(stuck or 0)
        self.overdue.set(overdue or 0)


class WorkerCounters:
    """What a notifier and scheduler do, counted where they run."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.notices = Counter("qinglang_notice_sends", "Notice send attempts by channel and outcome (sent, retry, "
                               "undeliverable, unconfirmed)", ["channel", "outcome"], registry=registry)
        self.notice_seconds = Histogram("qinglang_notice_send_duration_seconds", "Time of one send attempt",
                                        ["channel"], buckets=LATENCY_BUCKETS, registry=registry)
        self.jobs = Counter("qinglang_scheduled_jobs", "Daily jobs run, by job and outcome (done, failed)",
                            ["job", "outcome"], registry=registry)

    def observe_notice(self, channel: str, outcome: str, seconds: float) -> None:
        self.notices.labels(channel, outcome).inc()
        self.notice_seconds.labels(channel).observe(seconds)

    def observe_job(self, name: str, outcome: str) -> None:
        self.jobs.labels(name, outcome).inc()


class _Exposition:
    registry: CollectorRegistry
    figures: DatabaseFigures

    async def handle(self, request: web.Request) -> web.Response:
        await self.figures.refresh()
        return web.Response(body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})


class WorkerMetrics(_Exposition):
    """The /metrics of a `qinglang worker` process."""

    def __init__(self, container: Container) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.figures = DatabaseFigures(container, self.registry)
        self.counters = WorkerCounters(self.registry)


class Metrics(_Exposition):
    """The /metrics of a web or bot process."""

    def __init__(self, container: Container) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.figures = DatabaseFigures(container, registry)
        self.updates = Counter("qinglang_updates", "Telegram updates by outcome (handled, failed, throttled, "
                               "duplicate)", ["outcome"], registry=registry)
        self.update_seconds = Histogram("qinglang_update_duration_seconds", "Time to handle one Telegram update",
                                        buckets=LATENCY_BUCKETS, registry=registry)
        self.http_requests = Counter("qinglang_http_requests", "HTTP requests by route and status",
                                     ["method", "route", "status"], registry=registry)
        self.http_seconds = Histogram("qinglang_http_request_duration_seconds", "HTTP request latency by route",
                                      ["route"], buckets=LATENCY_BUCKETS, registry=registry)
        self.in_flight = Gauge("qinglang_updates_in_flight", "Telegram updates being handled now", registry=registry)
        registry.register(_NluFallbacks(lambda: int(getattr(container.nlu, "fallbacks", 0))))
        self._worker_counters: WorkerCounters | None = None

    def worker_counters(self) -> WorkerCounters:
        """For a worker run inside this process (`serve` without --no-worker): its counters, in this registry."""
        if self._worker_counters is None:
            self._worker_counters = WorkerCounters(self.registry)
        return self._worker_counters

    def observe_update(self, outcome: str, seconds: float) -> None:
        self.updates.labels(outcome).inc()
        if outcome in ("handled", "failed"):
            self.update_seconds.observe(seconds)

    @web.middleware
    async def middleware(self, request: web.Request, handler) -> web.StreamResponse:
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            route = _route_name(request)
            self.http_requests.labels(request.method, route, str(status)).inc()
            self.http_seconds.labels(route).observe(time.perf_counter() - started)


def _route_name(request: web.Request) -> str:
    """The route's pattern (/cases/{id}), never the raw path: ids would make a label per case."""
    info = request.match_info
    route = getattr(info, "route", None)
    resource = getattr(route, "resource", None)
    if resource is None or getattr(info, "http_exception", None) is not None:
        return "unmatched"
    return resource.canonical


def _label_sets(gauge: Gauge) -> list[tuple[str, ...]]:
    return [tuple(sample.labels.values()) for metric in gauge.collect() for sample in metric.samples]
