"""Cleaning text before classification; jieba loaded once per process, lazily."""

from __future__ import annotations

import re
import threading
import unicodedata
from functools import cache, lru_cache

from qinglang.errors import QinglangError

MAX_CLASSIFIED_CHARS = 2000  # the start of a very long text carries the complaint; the rest is kept, not classified
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff]")
_MEANINGFUL = re.compile(r"[0-9A-Za-z\u3400-\u9fff\uf900-\ufaff]")
_lock = threading.Lock()


class NluInputError(QinglangError):
    """The text cannot be classified; the message says what the person should send instead."""


def normalise(text: str) -> str:
    """NFKC (full-width digits and letters), simplified characters, no control characters, trimmed."""
    if not isinstance(text, str):
        raise NluInputError("text must be a string")
    cleaned = _CONTROL.sub(" ", text)
    cleaned = unicodedata.normalize("NFKC", cleaned)
    cleaned = re.sub(r"\s+", " ", cleaned).strip()
    if not _MEANINGFUL.search(cleaned):
        raise NluInputError("没有可识别的文字，请用文字描述遇到的问题 (no words to understand: please describe the problem in words)")
    return _to_simplified(cleaned[:MAX_CLASSIFIED_CHARS])


def _to_simplified(text: str) -> str:
    if text.isascii():
        return text
    import zhconv

    return zhconv.convert(text, "zh-cn")


@cache
def _tokenizer():
    import logging

    import jieba

    from nlu.training import USERDICT_DIR

    jieba.setLogLevel(logging.WARNING)
    tokenizer = jieba.Tokenizer()
    tokenizer.initialize()
    for path in sorted(USERDICT_DIR.glob("*.txt")):
        tokenizer.load_userdict(str(path))
    return tokenizer


@lru_cache(maxsize=256)
def tokens(text: str) -> tuple[str, ...]:
    """Words for the word-level features: jieba's cut, lower-cased, without spaces and punctuation.
    Cached: both text models of a message (intents and kinds) ask for the same text's words."""
    with _lock:  # jieba's lazy state is not thread-safe
        tokenizer = _tokenizer()
    return tuple(t.lower() for t in tokenizer.lcut(text) if _MEANINGFUL.search(t))
