"""The background worker: the notifier and the scheduler, built from the container.

`qinglang serve` runs one inside the web process; `qinglang worker` runs one alone (several on
PostgreSQL share the work). Without a bot token, Telegram notices wait in the outbox, visible in the
console, until a worker with a token runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from aiogram import Bot
from aiohttp import web

from intake.callback import CallbackTransport
from intake.delivery import NoChannel, Transport, WebInbox
from intake.evidence_sweep import build_evidence_sweep
from intake.notice_templates import NoticeRenderer
from intake.notifier import Notifier, NotifierConfig
from intake.outbound import OutboundGuard, OutboundPolicy
from intake.ratelimit import SendRate
from intake.scheduler import ScheduleConfig, Scheduler, parse_time
from qinglang.bootstrap import Container

if TYPE_CHECKING:
    from web.metrics import WorkerCounters

log = logging.getLogger(__name__)


class Worker:
    def __init__(self, container: Container, *, bot: Bot | None = None, worker_id: str | None = None,
                 counters: WorkerCounters | None = None) -> None:
        settings = container.settings
        notify = settings.notify
        self._bot = bot
        self._own_bot = False
        if bot is None and settings.bot.bot_token is not None:
            from bot.dispatcher import create_bot

            self._bot = create_bot(settings.bot.bot_token.get_secret_value(), settings.bot.bot_api_base)
            self._own_bot = True
        self.callback = CallbackTransport(
            timeout=notify.notify_timeout, guard=OutboundGuard(OutboundPolicy.from_settings(settings.outbound)))
        transports: dict[str, Transport] = {"web": WebInbox(), "none": NoChannel(), "callback": self.callback}
        if self._bot is not None:
            from bot.sender import TelegramTransport

            transports["telegram"] = TelegramTransport(self._bot, timeout=notify.notify_timeout)
        self.notifier = Notifier(
            container.uow, container.clock, NoticeRenderer(container.directory), transports,
            SendRate(notify.notify_rate, notify.notify_chat_interval),
            NotifierConfig(max_attempts=notify.notify_max_attempts, backoff_base=notify.notify_backoff_base,
                           backoff_cap=notify.notify_backoff_cap, chat_interval=notify.notify_chat_interval,
                           poll_interval=notify.notify_poll, lease=timedelta(seconds=notify.notify_lease_seconds)),
            worker_id=worker_id,
            on_result=counters.observe_notice if counters else None,
        )
        self.scheduler = Scheduler(
            container.uow, container.clock, settings.tz, container.cases, container.policy,
            ScheduleConfig(at=parse_time(notify.schedule_time), reminder_days=notify.reminder_days,
                           consultation_autoclose_days=notify.consultation_autoclose_days,
                           escalation_unit=notify.escalation_unit, poll_seconds=notify.schedule_poll),
            on_queued=self.notifier.wake,
            on_job=counters.observe_job if counters else None,
            evidence_sweep=build_evidence_sweep(container),
        )
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        self._stop.clear()
        self._tasks = [asyncio.create_task(self.notifier.run(self._stop), name="notifier"),
                       asyncio.create_task(self.scheduler.run(self._stop), name="scheduler")]

    async def stop(self, timeout: float = 30.0) -> None:
        """Let the batch in flight finish (its results are recorded), then close the connections."""
        self._stop.set()
        if self._tasks:
            done, pending = await asyncio.wait(self._tasks, timeout=timeout)
            for task in pending:
                task.cancel()
            for task in self._tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        await self.callback.close()
        if self._own_bot and self._bot is not None:
            await self._bot.session.close()

    async def run_until(self, stop: asyncio.Event) -> None:
        self.start()
        await stop.wait()
        await self.stop()

    def attach(self, app: web.Application) -> None:
        async def _start(_app: web.Application) -> None:
            self.start()

        async def _stop(_app: web.Application) -> None:
            await self.stop()

        app.on_startup.append(_start)
        app.on_shutdown.append(_stop)
