"""The aiohttp application: health and readiness, metrics, staff console, web chat, JSON API, and the bot's
webhook."""

from __future__ import annotations

import asyncio

from aiohttp import web
from redis.asyncio import Redis
from sqlalchemy import text

import qinglang
from intake.queries import CaseQueries
from qinglang.bootstrap import Container
from web.api import routes as api_routes
from web.chat import routes as chat_routes
from web.console import routes as console_routes
from web.keys import AUTH, CONTAINER, DRAINING, METRICS, QUERIES
from web.metrics import Metrics
from web.middlewares import csrf_middleware, principal_middleware, security_headers
from web.security import Authenticator

PROBE_SECONDS = 2.0


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process answers. It says nothing of the database, so an orchestrator does not restart
    every replica while PostgreSQL is away; that is what /readyz is for."""
    return web.json_response({"status": "ok", "version": qinglang.__version__})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: 200 only when this replica can do its work: the database answers, Redis answers (when
    configured), and the process is not shutting down. A load balancer sends no traffic while it is 503."""
    container = request.app[CONTAINER]
    checks = {"database": await check_database(container)}
    if container.settings.redis.redis_url is not None:
        checks["redis"] = await _check_redis(container.settings.redis.redis_url.get_secret_value())
    return readiness(checks, draining=request.app[DRAINING].is_set())


def readiness(checks: dict[str, str], *, draining: bool) -> web.Response:
    """200 when every check says "ok" and the process is not shutting down, else 503; the checks listed."""
    if draining:
        checks = {**checks, "shutdown": "draining"}
    ready = all(value == "ok" for value in checks.values())
    return web.json_response({"status": "ok" if ready else "unavailable", "version": qinglang.__version__, **checks},
                             status=200 if ready else 503)


async def check_database(container: Container) -> str:
    try:
        async with asyncio.timeout(PROBE_SECONDS), container.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:  # any driver error or a timeout means "not reachable" to a probe
        return f"error: {type(exc).__name__}"
    return "ok"


async def _check_redis(url: str) -> str:
    client = Redis.from_url(url, socket_connect_timeout=PROBE_SECONDS, socket_timeout=PROBE_SECONDS)
    try:
        async with asyncio.timeout(PROBE_SECONDS):
            await client.ping()
    except Exception as exc:
        return f"error: {type(exc).__name__}"
    finally:
        await client.aclose()
    return "ok"


def create_app(container: Container, *, with_bot: bool = True, with_web: bool = True) -> web.Application:
    """The whole service, or one part of it for scale-out: `with_web=False` is a bot replica (webhook or
    polling, health and metrics), `with_bot=False` the console, web chat and API alone."""
    metrics = Metrics(container)
    app = web.Application(
        client_max_size=container.settings.storage.max_evidence_bytes + 1024 * 1024,
        middlewares=[metrics.middleware, security_headers, principal_middleware, csrf_middleware],
    )
    app[CONTAINER] = container
    app[METRICS] = metrics
    app[DRAINING] = asyncio.Event()
    app[AUTH] = Authenticator(container.uow, container.clock)
    app[QUERIES] = CaseQueries(container.uow, container.clock, container.settings.tz)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics.handle)
    if with_web:
        for feature in (api_routes, console_routes, chat_routes):
            feature.setup(app)
    if with_bot and container.settings.bot.bot_token is not None:
        from bot.runner import TelegramChannel

        TelegramChannel(container, metrics=metrics).attach(app)

    async def _warm_up(_app: web.Application) -> None:
        # train or load the classifier before the first citizen waits for it
        await asyncio.to_thread(container.nlu.warm_up)

    async def _not_ready(_app: web.Application) -> None:
        _app[DRAINING].set()

    async def _dispose(_app: web.Application) -> None:
        await container.close()

    app.on_startup.insert(0, _warm_up)
    app.on_shutdown.insert(0, _not_ready)
    app.on_cleanup.append(_dispose)
    return app
