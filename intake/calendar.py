"""The working-day calendar that deadlines are counted in.

Whether a day is a working day comes, in order of precedence, from:

1. the bureau's holiday table (``overrides``: date -> is_workday), edited by an administrator;
2. the ``chinese_calendar`` package, which knows the State Council's holidays and 调休 make-up
   working days for 2004-2026;
3. for a year the package does not know: Monday to Friday. Such an answer is a guess, so any
   deadline that relied on it is marked provisional.

Counting starts the day after the start date: the day a complaint is received is not counted; a period
counted in calendar days that ends on a rest day or holiday ends on the next working day (Order 121 Art 45).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import chinese_calendar

# The longest clock anyone can ask for, in days (about ten years). Anything longer is a mistake.
MAX_DAYS = 3660
# working_days_between refuses spans longer than this many calendar days (about twenty years).
MAX_SPAN_DAYS = 366 * 20

_ONE_DAY = timedelta(days=1)


@dataclass(frozen=True)
class DueDate:
    """A deadline: ``on`` is the last day; ``provisional`` when part of it was counted by guess."""

    on: date
    provisional: bool = False


def _as_date(d: date) -> date:
    if isinstance(d, datetime):
        return d.date()
    if not isinstance(d, date):
        raise TypeError(f"expected a date, got {type(d).__name__}")
    return d


def _check_count(n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"number of days must be an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"number of days must be at least 1, got {n}")
    if n > MAX_DAYS:
        raise ValueError(f"number of days must be at most {MAX_DAYS}, got {n}")


class WorkingCalendar:
    """Working days per the official Chinese calendar, corrected by the bureau's holiday table."""

    def __init__(self, overrides: Mapping[date, bool] | None = None) -> None:
        table: dict[date, bool] = {}
        for day, is_workday in (overrides or {}).items():
            if not isinstance(is_workday, bool):
                raise TypeError(f"holiday table value for {day} must be a bool, got {is_workday!r}")
            table[_as_date(day)] = is_workday
        self._overrides = table
        # Years chinese_calendar raised NotImplementedError for: asked once, then not again.
        self._unknown_years: set[int] = set()

    def _lookup(self, d: date) -> tuple[bool, bool]:
        """(is_workday, provisional) for one day."""
        override = self._overrides.get(d)
        if override is not None:
            return override, False
        if d.year not in self._unknown_years:
            try:
                return chinese_calendar.is_workday(d), False
            except NotImplementedError:
                self._unknown_years.add(d.year)
        return d.weekday() < 5, True

    def is_workday(self, d: date) -> bool:
        return self._lookup(_as_date(d))[0]

    def knows(self, d: date) -> bool:
        """False when the answer for ``d`` is only the Monday-to-Friday guess."""
        return not self._lookup(_as_date(d))[1]

    def add_working_days(self, start: date, n: int) -> DueDate:
        """The n-th working day after ``start`` (``start`` itself is not counted)."""
        start = _as_date(start)
        _check_count(n)
        # Generous bound: even a calendar of one working day a week gets there.
        limit = n * 7 + 366
        day, found, provisional = start, 0, False
        try:
            for _ in range(limit):
                day += _ONE_DAY
                is_workday, guessed = self._lookup(day)
                provisional = provisional or guessed
                if is_workday:
                    found += 1
                    if found == n:
                        return DueDate(day, provisional)
        except OverflowError:
            raise ValueError(f"{n} working days after {start} is past the end of the calendar") from None
        raise ValueError(
            f"fewer than {n} working days in the {limit} days after {start}; check the holiday table"
        )

    def add_calendar_days(self, start: date, n: int) -> DueDate:
        """``start`` plus n calendar days, the last day moved past rest days and holidays.

        Order 121 Art 45: "期间届满的最后一日是法定节假日的，以法定节假日后的第一日为期间届满的日期" — a
        period whose last day falls on a statutory holiday (or weekend rest day) ends on the first working
        day after it: 60 days from 2026-08-02 is 2026-10-01, in the National Day holiday, so 2026-10-08.
        Provisional when that day's status is only the Monday-to-Friday guess."""
        start = _as_date(start)
        _check_count(n)
        try:
            day = start + timedelta(days=n)
            is_workday, provisional = self._lookup(day)
            for _ in range(366):
                if is_workday:
                    return DueDate(day, provisional)
                day += _ONE_DAY
                is_workday, guessed = self._lookup(day)
                provisional = provisional or guessed
        except OverflowError:
            raise ValueError(f"{n} days after {start} is past the end of the calendar") from None
        raise ValueError(f"no working day in the year after {start + timedelta(days=n)}; check the holiday table")

    def working_days_between(self, a: date, b: date) -> int:
        """Working days in (a, b]; if b is before a, minus the working days in (b, a]; 0 if equal.

        ``working_days_between(today, due)`` is the working days left: 0 on the due day itself,
        negative once it has passed.
        """
        a, b = _as_date(a), _as_date(b)
        if b < a:
            return -self.working_days_between(b, a)
        span = (b - a).days
        if span > MAX_SPAN_DAYS:
            raise ValueError(f"span from {a} to {b} is longer than {MAX_SPAN_DAYS} days")
        count = 0
        for i in range(1, span + 1):
            if self._lookup(a + timedelta(days=i))[0]:
                count += 1
        return count
