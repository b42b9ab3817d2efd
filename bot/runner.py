"""The Telegram channel inside `qinglang serve`: long polling or webhook, the inbox replay, and the drain
on shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from aiogram import Bot, Dispatcher
from aiohttp import web

from bot.dispatcher import create_bot, create_dispatcher, register_commands
from bot.polling import Poller
from bot.storage import build_event_isolation, build_storage
from bot.throttle import build_window
from bot.updates import StoredUpdate, UpdateFlow
from bot.webhook import WebhookHandler
from db.engine import create_session_factory
from intake.inbox import Inbox
from qinglang.bootstrap import Container
from qinglang.errors import ConfigError

if TYPE_CHECKING:
    from web.metrics import Metrics

log = logging.getLogger(__name__)

DRAIN_SECONDS = 25.0  # within docker's stop_grace_period (30 s) and aiohttp's shutdown timeout


class TelegramChannel:
    def __init__(self, container: Container, bot: Bot | None = None, *, metrics: Metrics | None = None) -> None:
        settings = container.settings
        redis_url = settings.redis.redis_url.get_secret_value() if settings.redis.redis_url else None
        self.settings = settings.bot
        self.inbox = Inbox(container.uow, container.clock, lease=timedelta(seconds=settings.bot.inbox_lease_seconds))
        self.storage = build_storage(redis_url, create_session_factory(container.engine))
        self.throttle = build_window(redis_url)
        self.bot = bot or create_bot(settings.bot.bot_token.get_secret_value(), settings.bot.bot_api_base)
        self.dispatcher: Dispatcher = create_dispatcher(
            engine=container.conversation,
            evidence_store=container.evidence,
            inbox=self.inbox,
            storage=self.storage,
            events_isolation=build_event_isolation(redis_url, self.storage, lock_seconds=settings.bot.chat_lock_seconds),
            now=container.clock.now,
            throttle_window=self.throttle,
            observe=metrics.observe_update if metrics else None,
        )
        self.flow = UpdateFlow(self.dispatcher, self.bot, self.inbox)
        if metrics is not None:
            metrics.in_flight.set_function(lambda: self.flow.in_flight)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task] = []

    def attach(self, app: web.Application) -> None:
        """Plug into the aiohttp app: start with it, drain on shutdown; in webhook mode, add the route."""
        if self.settings.bot_mode == "webhook":
            if self.settings.webhook_secret is None:
                raise ConfigError("webhook mode needs QINGLANG_WEBHOOK_SECRET")
            WebhookHandler(self.flow, self.settings.webhook_secret.get_secret_value()).register(
                app, self.settings.webhook_path)
        app.on_startup.append(self._start)
        app.on_shutdown.append(self._drain)
        app.on_cleanup.append(self._close)

    async def _start(self, app: web.Application) -> None:
        self._stop.clear()
        await register_commands(self.bot)
        allowed = self.dispatcher.resolve_used_update_types()
        if self.settings.bot_mode == "webhook":
            if self.settings.webhook_url:
                secret = self.settings.webhook_secret.get_secret_value() if self.settings.webhook_secret else None
                await self.bot.set_webhook(self.settings.webhook_url.rstrip("/") + self.settings.webhook_path,
                                           secret_token=secret, allowed_updates=allowed)
        else:
            await self.bot.delete_webhook()
            poller = Poller(self.flow, allowed_updates=allowed)
            self._tasks.append(asyncio.create_task(poller.run(self._stop), name="telegram-polling"))
        self._tasks.append(asyncio.create_task(self._replay_forever(), name="inbox-replay"))

    async def _drain(self, app: web.Application) -> None:
        """On SIGTERM: stop fetching, let the batch in hand and every update being handled finish."""
        self._stop.set()
        done, pending = await asyncio.wait(self._tasks, timeout=DRAIN_SECONDS) if self._tasks else (set(), set())
        for task in pending:
            task.cancel()
        left = await self.flow.drain(DRAIN_SECONDS)
        if left:
            log.warning("%d updates were still running at shutdown; the inbox replay handles them after the restart",
                        left)

    async def _close(self, app: web.Application) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.bot.session.close()
        await self.storage.close()
        close_throttle = getattr(self.throttle, "close", None)
        if close_throttle is not None:
            await close_throttle()

    async def replay(self) -> int:
        """Handle again every stored update that failed or whose handler died (its lease ran out);
        returns how many were tried."""
        claimed = await self.inbox.claim("telegram")
        for item in claimed:
            await self.flow.handle(StoredUpdate(item.id, item.payload), replay=True)
        return len(claimed)

    async def _replay_forever(self) -> None:
        while not self._stop.is_set():
            try:
                await self.replay()
            except Exception:
                log.exception("inbox replay failed; trying again later")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=self.settings.inbox_replay_seconds)
