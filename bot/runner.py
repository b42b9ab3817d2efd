"""The Telegram channel inside `qinglang serve`: long polling or webhook, plus the inbox replay."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from aiogram import Bot, Dispatcher
from aiogram.webhook.aiohttp_server import SimpleRequestHandler
from aiohttp import web

from bot.dispatcher import create_bot, create_dispatcher, register_commands
from bot.storage import build_event_isolation, build_storage
from db.engine import create_session_factory
from intake.inbox import Inbox
from qinglang.bootstrap import Container
from qinglang.errors import ConfigError

log = logging.getLogger(__name__)


class TelegramChannel:
    def __init__(self, container: Container, bot: Bot | None = None) -> None:
        settings = container.settings
        redis_url = settings.redis.redis_url.get_secret_value() if settings.redis.redis_url else None
        self.settings = settings.bot
        self.inbox = Inbox(container.uow, container.clock)
        self.storage = build_storage(redis_url, create_session_factory(container.engine))
        self.bot = bot or create_bot(settings.bot.bot_token.get_secret_value(), settings.bot.bot_api_base)
        self.dispatcher: Dispatcher = create_dispatcher(
            engine=container.conversation,
            evidence_store=container.evidence,
            inbox=self.inbox,
            storage=self.storage,
            events_isolation=build_event_isolation(redis_url, self.storage),
            now=container.clock.now,
        )
        self._tasks: list[asyncio.Task] = []

    def attach(self, app: web.Application) -> None:
        """Plug into the aiohttp app: start and stop with it; in webhook mode, add the route."""
        if self.settings.bot_mode == "webhook":
            if self.settings.webhook_secret is None:
                raise ConfigError("webhook mode needs QINGLANG_WEBHOOK_SECRET")
            secret = self.settings.webhook_secret.get_secret_value()
            SimpleRequestHandler(self.dispatcher, self.bot, secret_token=secret,
                                 handle_in_background=False).register(app, path=self.settings.webhook_path)
        app.on_startup.append(self._start)
        app.on_cleanup.append(self._stop)

    async def _start(self, app: web.Application) -> None:
        await register_commands(self.bot)
        if self.settings.bot_mode == "webhook":
            if self.settings.webhook_url:
                secret = self.settings.webhook_secret.get_secret_value() if self.settings.webhook_secret else None
                await self.bot.set_webhook(self.settings.webhook_url.rstrip("/") + self.settings.webhook_path,
                                           secret_token=secret, allowed_updates=self.dispatcher.resolve_used_update_types())
        else:
            await self.bot.delete_webhook()
            self._tasks.append(asyncio.create_task(self.dispatcher.start_polling(
                self.bot, handle_signals=False, close_bot_session=False,
                allowed_updates=self.dispatcher.resolve_used_update_types())))
        self._tasks.append(asyncio.create_task(self._replay_forever()))

    async def _stop(self, app: web.Application) -> None:
        with contextlib.suppress(RuntimeError):  # raised when polling never started (webhook mode)
            await self.dispatcher.stop_polling()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.bot.session.close()
        await self.storage.close()

    async def replay(self, *, older_than: timedelta = timedelta(seconds=30)) -> int:
        """Handle again every stored update that was not handled; returns how many were tried."""
        pending = await self.inbox.pending("telegram", older_than=older_than)
        for item in pending:
            await self.dispatcher.feed_raw_update(self.bot, item.payload, inbox_id=item.id)
        return len(pending)

    async def _replay_forever(self) -> None:
        older_than = timedelta(0)  # at start-up everything unhandled is from before the restart
        while True:
            try:
                await self.replay(older_than=older_than)
            except Exception:
                log.exception("inbox replay failed; trying again later")
            older_than = timedelta(seconds=30)  # later on, leave updates in flight alone
            await asyncio.sleep(self.settings.inbox_replay_seconds)
