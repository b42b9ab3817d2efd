"""The small HTTP side of a `qinglang worker` process: liveness, readiness and its own metrics.

Readiness asks only what a worker needs, the database; a worker does not use Redis.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from qinglang.bootstrap import Container
from web.app import check_database, healthz, readiness
from web.metrics import WorkerMetrics

WORKER_METRICS = web.AppKey("worker_metrics", WorkerMetrics)
WORKER_CONTAINER = web.AppKey("worker_container", Container)
WORKER_STOPPING = web.AppKey("worker_stopping", asyncio.Event)


async def worker_readyz(request: web.Request) -> web.Response:
    checks = {"database": await check_database(request.app[WORKER_CONTAINER])}
    return readiness(checks, draining=request.app[WORKER_STOPPING].is_set())


def create_worker_app(container: Container, metrics: WorkerMetrics, stopping: asyncio.Event) -> web.Application:
    app = web.Application(client_max_size=1024)
    app[WORKER_CONTAINER] = container
    app[WORKER_METRICS] = metrics
    app[WORKER_STOPPING] = stopping
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", worker_readyz)
    app.router.add_get("/metrics", metrics.handle)
    return app
