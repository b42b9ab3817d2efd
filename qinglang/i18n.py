"""Translations: Simplified Chinese is the source language of every message; English comes from a
gettext catalog (qinglang/locales/en/LC_MESSAGES/qinglang.mo), the same files aiogram's I18n reads."""

from __future__ import annotations

import gettext
from functools import cache
from pathlib import Path

LOCALES_DIR = Path(__file__).parent / "locales"
DOMAIN = "qinglang"
DEFAULT_LANGUAGE = "zh"
LANGUAGES = ("zh", "en")


def N_(message: str) -> str:
    """Mark a message for extraction; it is translated where it is shown."""
    return message


def language_of(code: str | None) -> str:
    """The supported language closest to a client's code (zh-hans, en-US, ...); Chinese otherwise."""
    if code and code.lower().split("-")[0].split("_")[0] == "en":
        return "en"
    return DEFAULT_LANGUAGE


@cache
def translations(language: str) -> gettext.NullTranslations:
    if language == DEFAULT_LANGUAGE:
        return gettext.NullTranslations()
    return gettext.translation(DOMAIN, LOCALES_DIR, languages=[language], fallback=True)
