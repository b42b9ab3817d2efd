"""Chinese numerals as people type them: 三百九十九, 两千五, 一万二, 十一, 零点五."""

from __future__ import annotations

from decimal import Decimal

DIGITS = {"零": 0, "〇": 0, "一": 1, "幺": 1, "二": 2, "两": 2, "俩": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
SMALL_UNITS = {"十": 10, "百": 100, "千": 1000}
BIG_UNITS = {"万": 10_000, "亿": 100_000_000}
NUMERAL_CHARS = "".join(DIGITS) + "".join(SMALL_UNITS) + "".join(BIG_UNITS) + "点"


def parse_chinese_number(text: str) -> Decimal | None:
    """The value of a Chinese numeral, or None if `text` is not one."""
    if not text or any(ch not in NUMERAL_CHARS for ch in text):
        return None
    whole, _, fraction = text.partition("点")
    value = _parse_integer(whole) if whole else 0
    if value is None:
        return None
    if fraction:
        if any(ch not in DIGITS for ch in fraction):
            return None
        return Decimal(f"{value}.{''.join(str(DIGITS[ch]) for ch in fraction)}")
    return Decimal(value)


def _parse_integer(text: str) -> int | None:
    if all(ch in DIGITS for ch in text):  # 一九九 read digit by digit
        return int("".join(str(DIGITS[ch]) for ch in text)) if len(text) > 1 else DIGITS[text]
    total = 0  # finished groups of 万 / 亿
    section = 0  # the current group below 万
    digit: int | None = None
    last_unit = 1
    for ch in text:
        if ch in DIGITS:
            if digit is not None and DIGITS[ch] != 0 and digit != 0:
                return None  # two digits in a row inside a unit-style number
            digit = DIGITS[ch]
            if digit == 0:
                last_unit = 1  # 三百零五: after a zero the next digit is in the ones
        elif ch in SMALL_UNITS:
            unit = SMALL_UNITS[ch]
            section += (1 if digit is None else digit) * unit
            digit, last_unit = None, unit
        else:
            unit = BIG_UNITS[ch]
            section += digit or 0
            total = (total + section) * unit if unit > 10_000 else total + section * unit
            section, digit, last_unit = 0, None, unit
    if digit is not None:
        # 两千五 = 2500, 一万二 = 12000: a trailing digit counts in the unit below the last one
        section += digit * (last_unit // 10 if last_unit >= 100 else 1)
    return total + section
