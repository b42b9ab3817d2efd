"""Dispatcher and Bot factories. Dependencies travel as workflow data (by handler parameter name)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.fsm.storage.base import BaseEventIsolation, BaseStorage
from aiogram.types import BotCommand
from aiogram.utils.i18n import I18n

from bot.handlers import buttons, commands, evidence, other, text
from bot.middlewares import DraftI18nMiddleware, InboxMiddleware, ThrottlingMiddleware, UpdateObserver
from bot.throttle import MemoryWindow, RateWindow
from intake.conversation import ConversationEngine
from intake.evidence import EvidenceStore
from intake.inbox import Inbox
from qinglang.i18n import DEFAULT_LANGUAGE, DOMAIN, LOCALES_DIR


def create_bot(token: str, api_base: str) -> Bot:
    """A Bot for Telegram's servers or a self-hosted Bot API server at `api_base`; plain-text messages
    (no parse mode), so complaint text is never interpreted as markup."""
    session = AiohttpSession(api=TelegramAPIServer.from_base(api_base))
    return Bot(token, session=session, default=DefaultBotProperties(parse_mode=None))


def create_dispatcher(
    *,
    engine: ConversationEngine,
    evidence_store: EvidenceStore,
    inbox: Inbox,
    storage: BaseStorage,
    events_isolation: BaseEventIsolation,
    now: Callable[[], datetime],
    throttle_window: RateWindow | None = None,
    observe: UpdateObserver | None = None,
) -> Dispatcher:
    dp = Dispatcher(storage=storage, events_isolation=events_isolation, engine=engine, evidence=evidence_store, now=now)
    dp.update.outer_middleware(InboxMiddleware(inbox, observe))
    throttling = ThrottlingMiddleware(throttle_window or MemoryWindow())
    dp.message.middleware(throttling)
    dp.callback_query.middleware(throttling)
    DraftI18nMiddleware(I18n(path=LOCALES_DIR, default_locale=DEFAULT_LANGUAGE, domain=DOMAIN)).setup(dp)
    # order matters: commands before free text, the catch-all last
    dp.include_routers(*(module.create_router() for module in (commands, buttons, evidence, text, other)))
    return dp


COMMAND_TEXTS = {
    "zh": {"new": "新登记投诉举报", "status": "查询我的登记", "case": "查看某件登记：/case 编号", "cancel": "取消当前登记",
           "help": "帮助", "lang": "切换语言 / Language", "privacy": "隐私说明"},
    "en": {"new": "Report a new problem", "status": "My cases", "case": "Show a case: /case NUMBER",
           "cancel": "Cancel the current report", "help": "Help", "lang": "Language / 切换语言", "privacy": "Privacy"},
}


async def register_commands(bot: Bot) -> None:
    for language, texts in COMMAND_TEXTS.items():
        commands_list = [BotCommand(command=name, description=description) for name, description in texts.items()]
        await bot.set_my_commands(commands_list, language_code=None if language == DEFAULT_LANGUAGE else language)
