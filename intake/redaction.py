"""Taking a person's details out of free text, for the retention purge (intake/retention.py).

Two levels: the details we know (the complainant's name, phone, e-mail) come out of every text of the
case, staff replies included; the patterns of details (mobile and landline numbers, e-mail addresses,
resident ID numbers) only out of what the complainant wrote, because staff texts quote the bureau's own
numbers (a seed contact line is 0577-85626228).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

MASK = "***"

MOBILE = re.compile(r"(?<![0-9])(?:\+?86[- ]?)?1[3-9][0-9](?:[- ]?[0-9]{4}){2}(?![0-9])")
LANDLINE = re.compile(r"(?<![0-9])0[0-9]{2,3}-[0-9]{7,8}(?![0-9])")
EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
RESIDENT_ID = re.compile(r"(?<![0-9])[1-9][0-9]{16}[0-9Xx](?![0-9A-Za-z])")
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def _is_resident_id(number: str) -> bool:
    """GB 11643 check digit: an 18-digit order number rarely passes, so it stays."""
    total = sum(int(d) * w for d, w in zip(number[:17], _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11] == number[17].upper()


def known_values(*values: str | None) -> list[str]:
    """The strings to take out: each given value, a phone also as bare digits; one-character names are
    left alone (they would take every such character out of the text). Longest first."""
    found: set[str] = set()
    for value in values:
        value = (value or "").strip()
        if len(value) >= 2:
            found.add(value)
            digits = "".join(ch for ch in value if ch.isdigit())
            if len(digits) >= 7:
                found.add(digits)
    return sorted(found, key=len, reverse=True)


def redact(text: str | None, known: Iterable[str], *, patterns: bool) -> str | None:
    if not text:
        return text
    for value in known:
        text = text.replace(value, MASK)
    if patterns:
        text = RESIDENT_ID.sub(lambda m: MASK if _is_resident_id(m.group()) else m.group(), text)
        for pattern in (EMAIL, MOBILE, LANDLINE):
            text = pattern.sub(MASK, text)
    return text


def redact_json(value: Any, known: Iterable[str]) -> Any:
    """Known details out of every string of a JSON value (e.g. an outbox notice's payload)."""
    known = list(known)
    if isinstance(value, str):
        return redact(value, known, patterns=False)
    if isinstance(value, list):
        return [redact_json(item, known) for item in value]
    if isinstance(value, dict):
        return {key: redact_json(item, known) for key, item in value.items()}
    return value
