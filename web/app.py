"""The aiohttp application: health, staff console, web chat, JSON API, and the bot's webhook."""

from __future__ import annotations

import asyncio

from aiohttp import web
from sqlalchemy import text

import qinglang
from intake.queries import CaseQueries
from qinglang.bootstrap import Container
from web.api import routes as api_routes
from web.chat import routes as chat_routes
from web.console import routes as console_routes
from web.keys import AUTH, CONTAINER, QUERIES
from web.middlewares import csrf_middleware, principal_middleware, security_headers
from web.security import Authenticator


async def healthz(request: web.Request) -> web.Response:
    container = request.app[CONTAINER]
    database = "ok"
    try:
        async with container.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:  # any driver error means "not reachable" to a health probe
        database = f"error: {type(exc).__name__}"
    status = "ok" if database == "ok" else "degraded"
    return web.json_response(
        {"status": status, "version": qinglang.__version__, "database": database},
        status=200 if status == "ok" else 503,
    )


def create_app(container: Container, *, with_bot: bool = True) -> web.Application:
    app = web.Application(
        client_max_size=container.settings.storage.max_evidence_bytes + 1024 * 1024,
        middlewares=[security_headers, principal_middleware, csrf_middleware],
    )
    app[CONTAINER] = container
    app[AUTH] = Authenticator(container.uow, container.clock)
    app[QUERIES] = CaseQueries(container.uow, container.clock, container.settings.tz)
    app.router.add_get("/healthz", healthz)
    for feature in (api_routes, console_routes, chat_routes):
        feature.setup(app)
    if with_bot and container.settings.bot.bot_token is not None:
        from bot.runner import TelegramChannel

        TelegramChannel(container).attach(app)

    async def _warm_up(_app: web.Application) -> None:
        # train or load the classifier before the first citizen waits for it
        await asyncio.to_thread(container.nlu.warm_up)

    async def _dispose(_app: web.Application) -> None:
        await container.close()

    app.on_startup.insert(0, _warm_up)
    app.on_cleanup.append(_dispose)
    return app
