"""A report's period: written as a month or a span of dates, read back by its key, bounded in UTC."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from reports.period import Period, ReportScope

SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.mark.parametrize(("text", "start", "end"), [
    ("2026-11", date(2026, 11, 1), date(2026, 11, 30)),
    ("2026-12", date(2026, 12, 1), date(2026, 12, 31)),
    ("2024-02", date(2024, 2, 1), date(2024, 2, 29)),  # a leap year
    (" 2026-02 ", date(2026, 2, 1), date(2026, 2, 28)),
])
def test_a_month(text, start, end):
    period = Period.month(text)
    assert (period.start, period.end, period.is_month) == (start, end, True)
    assert period.key == text.strip()
    assert Period.parse(period.key) == period


@pytest.mark.parametrize("text", ["2026-13", "2026-00", "0000-01", "2026-1", "2026/11", "202611", "2026-11-01",
                                  "november", "", None, 202611])
def test_a_bad_month_says_how_to_write_one(text):
    with pytest.raises(ValueError, match="a month is written YYYY-MM, e.g. 2026-11"):
        Period.month(text)


def test_a_span_of_dates():
    period = Period.parse("2026-11-01..2026-11-15")
    assert (period.start, period.end, period.is_month) == (date(2026, 11, 1), date(2026, 11, 15), False)
    assert period.key == "2026-11-01..2026-11-15"
    assert Period.parse(period.key) == period
    assert Period.parse("2026-11-01..2026-11-30").key == "2026-11"  # a whole month is keyed as one
    assert Period.parse("2026-11-05..2026-11-05").days() == [date(2026, 11, 5)]


@pytest.mark.parametrize(("text", "message"), [
    ("2026-11-01..2026-11-31", "not a date written YYYY-MM-DD"),
    ("2026-11-01..", "not a date written YYYY-MM-DD"),
    ("..2026-11-15", "not a date written YYYY-MM-DD"),
    ("2026-W45-1..2026-11-15", "not a date written YYYY-MM-DD"),
    ("20261101..20261115", "not a date written YYYY-MM-DD"),
    ("2026-11-15..2026-11-01", r"cannot end \(2026-11-01\) before it starts \(2026-11-15\)"),
])
def test_a_bad_span_says_what_is_wrong(text, message):
    with pytest.raises(ValueError, match=message):
        Period.parse(text)


def test_a_period_is_made_of_dates():
    with pytest.raises(ValueError, match="dates, not datetimes"):
        Period(datetime(2026, 11, 1, tzinfo=UTC), date(2026, 11, 30))


def test_bounds_are_local_midnights_in_utc():
    start, end = Period.month("2026-11").bounds(SHANGHAI)
    assert (start, end) == (datetime(2026, 10, 31, 16, tzinfo=UTC), datetime(2026, 11, 30, 16, tzinfo=UTC))
    assert start.tzinfo is UTC and end.tzinfo is UTC


def test_bounds_follow_daylight_saving_time():
    start, end = Period.parse("2026-03-08..2026-03-08").bounds(ZoneInfo("America/New_York"))  # a 23-hour day
    assert (start, end) == (datetime(2026, 3, 8, 5, tzinfo=UTC), datetime(2026, 3, 9, 4, tzinfo=UTC))


def test_the_scope_is_the_bureau_unless_a_unit_is_named():
    assert ReportScope().unit_code is None
    assert ReportScope("jiajing").unit_code == "jiajing"
