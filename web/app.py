"""The aiohttp application: health now; console, web chat, API and bot webhook plug in here."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy import text

import qinglang
from qinglang.bootstrap import Container

CONTAINER = web.AppKey("container", Container)


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


def create_app(container: Container) -> web.Application:
    app = web.Application(client_max_size=2 * 1024 * 1024)
    app[CONTAINER] = container
    app.router.add_get("/healthz", healthz)
    if container.settings.bot.bot_token is not None:
        from bot.runner import TelegramChannel

        TelegramChannel(container).attach(app)

    async def _dispose(_app: web.Application) -> None:
        await container.close()

    app.on_cleanup.append(_dispose)
    return app
