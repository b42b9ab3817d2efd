"""Telegram channel: aiogram Dispatcher factory, routers, keyboards, middlewares, runners."""
