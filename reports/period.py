"""What a report covers: a span of local dates, and the cases of the whole bureau or of one unit."""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

MONTH = re.compile(r"(\d{4})-(\d{2})")
DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
RANGE_SEPARATOR = ".."


@dataclass(frozen=True)
class Period:
    """Inclusive local dates, start <= end."""

    start: date
    end: date

    def __post_init__(self) -> None:
        if isinstance(self.start, datetime) or isinstance(self.end, datetime):
            raise ValueError("a period is made of dates, not datetimes")
        if self.start > self.end:
            raise ValueError(f"a period cannot end ({self.end}) before it starts ({self.start})")

    @classmethod
    def month(cls, text: str) -> Period:
        """The calendar month written YYYY-MM, e.g. 2026-11."""
        match = MONTH.fullmatch(text.strip()) if isinstance(text, str) else None
        if match is None or not 1 <= int(match[2]) <= 12 or int(match[1]) < 1:
            raise ValueError(f"a month is written YYYY-MM, e.g. 2026-11; got {text!r}")
        first = date(int(match[1]), int(match[2]), 1)
        return cls(first, _last_of_month(first))

    @classmethod
    def parse(cls, text: str) -> Period:
        """A month (2026-11) or a span of dates (2026-11-01..2026-11-15)."""
        if not isinstance(text, str) or RANGE_SEPARATOR not in text:
            return cls.month(text)
        first, _, last = text.strip().partition(RANGE_SEPARATOR)
        return cls(_iso_date(first), _iso_date(last))

    @property
    def is_month(self) -> bool:
        return self.start.day == 1 and self.end == _last_of_month(self.start)

    @property
    def key(self) -> str:
        """2026-11 for a month, otherwise 2026-11-01..2026-11-15 (what parse() reads back)."""
        if self.is_month:
            return self.start.strftime("%Y-%m")
        return f"{self.start.isoformat()}{RANGE_SEPARATOR}{self.end.isoformat()}"

    def days(self) -> list[date]:
        return [self.start + timedelta(days=n) for n in range((self.end - self.start).days + 1)]

    def bounds(self, tz: ZoneInfo) -> tuple[datetime, datetime]:
        """[start 00:00 local, the day after end 00:00 local) as aware UTC datetimes."""
        return start_of_day(self.start, tz), start_of_day(self.end + timedelta(days=1), tz)


@dataclass(frozen=True)
class ReportScope:
    """None: the whole bureau; otherwise the cases whose active lead (★) is the unit with this code."""

    unit_code: str | None = None


def start_of_day(day: date, tz: ZoneInfo) -> datetime:
    """Local midnight of `day` as an aware UTC datetime."""
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


def _last_of_month(day: date) -> date:
    return day.replace(day=calendar.monthrange(day.year, day.month)[1])


def _iso_date(text: str) -> date:
    text = text.strip()
    problem = ValueError(f"not a date written YYYY-MM-DD (e.g. 2026-11-15): {text!r}")
    if not DAY.fullmatch(text):
        raise problem
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise problem from None
