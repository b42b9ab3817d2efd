"""The working-day calendar, against the 2026 official calendar (国务院办公厅 2026 年节假日安排).

Facts used below, checked against chinese_calendar 1.11:
- National Day 2026: 10-01 (Thu) .. 10-07 (Wed) off; make-up working days Sun 09-20 and Sat 10-10.
- Mid-Autumn 2026: 09-25 (Fri) .. 09-27 (Sun) off.
- The package has no data for 2027.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import chinese_calendar
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from intake.calendar import MAX_DAYS, DueDate, WorkingCalendar


@pytest.fixture
def cal() -> WorkingCalendar:
    return WorkingCalendar({})


def test_the_2026_calendar_facts_these_tests_rely_on():
    # If a package upgrade changed these, the expected dates below would be wrong, not the code.
    assert chinese_calendar.get_holiday_detail(date(2026, 10, 1)) == (True, "National Day")
    assert chinese_calendar.get_holiday_detail(date(2026, 10, 10)) == (False, "National Day")
    assert chinese_calendar.get_holiday_detail(date(2026, 9, 20)) == (False, "National Day")
    assert chinese_calendar.get_holiday_detail(date(2026, 9, 25)) == (True, "Mid-autumn Festival")


def test_complaint_received_before_national_day_counts_the_make_up_saturday(cal):
    # Received Wed 2026-09-30; 10-01..10-07 off. Working days: Thu 10-08 (1), Fri 10-09 (2),
    # Sat 10-10 make-up (3), Sun 10-11 off, Mon 10-12 (4), 10-13 (5), 10-14 (6), Thu 10-15 (7).
    start = date(2026, 9, 30)
    assert start.weekday() == 2
    due = cal.add_working_days(start, 7)
    assert due == DueDate(date(2026, 10, 15), provisional=False)
    assert date(2026, 10, 10).weekday() == 5 and cal.is_workday(date(2026, 10, 10))
    assert not cal.is_workday(date(2026, 10, 11))
    # Had the make-up Saturday not counted, the 7th working day would be Fri 10-16.
    without_make_up = WorkingCalendar({date(2026, 10, 10): False})
    assert without_make_up.add_working_days(start, 7).on == date(2026, 10, 16)


def test_tipoff_received_on_a_friday_counts_the_make_up_sunday_and_skips_both_holidays(cal):
    # Received Fri 2026-09-18. Sat 09-19 off, Sun 09-20 make-up (1), 09-21..09-24 (2-5),
    # 09-25..09-27 Mid-Autumn off, 09-28..09-30 (6-8), 10-01..10-07 off, 10-08 (9), 10-09 (10),
    # Sat 10-10 make-up (11), 10-12..10-15 (12-15).
    start = date(2026, 9, 18)
    assert start.weekday() == 4
    assert cal.add_working_days(start, 15) == DueDate(date(2026, 10, 15), provisional=False)
    assert cal.working_days_between(start, date(2026, 9, 21)) == 2  # Sun 09-20 and Mon 09-21


def test_a_plain_week_without_holidays(cal):
    # Fri 2026-03-06 + 5 working days = Fri 2026-03-13 (no holidays in March 2026).
    assert cal.add_working_days(date(2026, 3, 6), 5).on == date(2026, 3, 13)
    assert cal.add_working_days(date(2026, 3, 6), 1).on == date(2026, 3, 9)


def test_running_into_2027_falls_back_to_monday_to_friday_and_is_provisional(cal):
    # Received Mon 2026-12-28: 12-29, 12-30, 12-31 (1-3) are known; 2027 is a guess:
    # Fri 01-01 (4), 01-04..01-08 (5-9), 01-11..01-15 (10-14), Mon 01-18 (15).
    due = cal.add_working_days(date(2026, 12, 28), 15)
    assert due == DueDate(date(2027, 1, 18), provisional=True)


def test_a_clock_ending_inside_2026_is_not_provisional_even_late_in_december(cal):
    assert cal.add_working_days(date(2026, 12, 28), 3) == DueDate(date(2026, 12, 31), provisional=False)
    assert cal.add_working_days(date(2026, 12, 28), 4).provisional


def test_an_override_for_new_year_2027_moves_the_provisional_date_by_one_day():
    cal = WorkingCalendar({date(2027, 1, 1): False})
    due = cal.add_working_days(date(2026, 12, 28), 15)
    assert due == DueDate(date(2027, 1, 19), provisional=True)  # other 2027 days are still guesses
    assert cal.knows(date(2027, 1, 1))
    assert not cal.knows(date(2027, 1, 4))


def test_overrides_alone_make_a_2027_date_not_provisional():
    # Thu 2026-12-31 -> the 1st working day after is Fri 2027-01-01, known only by override.
    assert WorkingCalendar({}).add_working_days(date(2026, 12, 31), 1).provisional
    cal = WorkingCalendar({date(2027, 1, 1): True})
    assert cal.add_working_days(date(2026, 12, 31), 1) == DueDate(date(2027, 1, 1), provisional=False)


def test_an_override_turning_a_2026_workday_into_a_holiday_moves_the_due_date(cal):
    start = date(2026, 9, 30)
    assert cal.add_working_days(start, 7).on == date(2026, 10, 15)
    closed = WorkingCalendar({date(2026, 10, 13): False})  # an ordinary Tuesday, closed by the bureau
    assert closed.is_workday(date(2026, 10, 13)) is False
    assert closed.add_working_days(start, 7) == DueDate(date(2026, 10, 16), provisional=False)


def test_an_override_can_turn_a_2026_holiday_into_a_workday():
    cal = WorkingCalendar({date(2026, 10, 1): True})
    # Now Thu 10-01 (1), 10-08 (2), 10-09 (3), Sat 10-10 (4), 10-12 (5), 10-13 (6), 10-14 (7).
    assert cal.add_working_days(date(2026, 9, 30), 7).on == date(2026, 10, 14)


def test_fallback_years_are_monday_to_friday(cal):
    assert [cal.is_workday(date(2027, 1, d)) for d in range(4, 11)] == [True] * 5 + [False] * 2
    assert not cal.knows(date(2027, 6, 1))
    assert not cal.knows(date(2003, 6, 2))
    assert cal.is_workday(date(2003, 6, 2))  # a Monday
    assert cal.knows(date(2026, 6, 1))
    assert cal.knows(date(2004, 1, 1))


def test_known_years_follow_the_package_not_the_weekday(cal):
    assert cal.is_workday(date(2026, 9, 20))  # a Sunday, make-up working day
    assert not cal.is_workday(date(2026, 10, 5))  # a Monday, National Day


# Order 121 Art 45: a period of calendar days whose last day is a holiday or rest day ends on the first
# working day after it. (start, days, due, provisional) on the 2026 calendar and a 2027 guess.
ART_45 = [
    (date(2026, 8, 2), 60, date(2026, 10, 8), False),  # 10-01 is National Day: DESIGN.md's example
    (date(2026, 9, 30), 7, date(2026, 10, 8), False),  # 10-07, the holiday's last day
    (date(2026, 8, 12), 59, date(2026, 10, 10), False),  # a Saturday that is a make-up working day: kept
    (date(2025, 12, 17), 60, date(2026, 2, 24), False),  # 02-15, Spring Festival (02-15..02-23)
    (date(2026, 3, 2), 60, date(2026, 5, 6), False),  # 05-01, Labour Day (05-01..05-05)
    (date(2026, 3, 3), 60, date(2026, 5, 6), False),  # 05-02
    (date(2026, 3, 7), 60, date(2026, 5, 6), False),  # 05-06 itself, a working day
    (date(2026, 4, 16), 60, date(2026, 6, 15), False),  # a Monday: nothing to move
    (date(2026, 4, 17), 58, date(2026, 6, 15), False),  # Saturday 06-14 -> Monday
    (date(2026, 12, 1), 60, date(2027, 2, 1), True),  # Saturday 2027-01-30: 2027 is only guessed
]


@pytest.mark.parametrize(("start", "days", "due", "provisional"), ART_45)
def test_a_calendar_day_period_ending_on_a_holiday_ends_on_the_next_working_day(cal, start, days, due, provisional):
    assert cal.add_calendar_days(start, days) == DueDate(due, provisional)


def test_a_calendar_day_period_follows_the_bureaus_holiday_table():
    closed = WorkingCalendar({date(2026, 6, 15): False})  # e.g. a local closure the administrator entered
    assert closed.add_calendar_days(date(2026, 4, 16), 60) == DueDate(date(2026, 6, 16), False)
    opened = WorkingCalendar({date(2026, 10, 1): True})
    assert opened.add_calendar_days(date(2026, 8, 2), 60) == DueDate(date(2026, 10, 1), False)


@pytest.mark.parametrize("n", [0, -1, -30])
def test_fewer_than_one_day_is_refused(cal, n):
    with pytest.raises(ValueError, match="at least 1"):
        cal.add_working_days(date(2026, 5, 6), n)
    with pytest.raises(ValueError, match="at least 1"):
        cal.add_calendar_days(date(2026, 5, 6), n)


def test_a_huge_count_is_refused_rather_than_looped_over(cal):
    with pytest.raises(ValueError, match="at most"):
        cal.add_working_days(date(2026, 5, 6), MAX_DAYS + 1)
    with pytest.raises(ValueError, match="at most"):
        cal.add_calendar_days(date(2026, 5, 6), 10**9)


def test_a_count_that_is_not_an_int_is_refused(cal):
    with pytest.raises(TypeError):
        cal.add_working_days(date(2026, 5, 6), 1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        cal.add_working_days(date(2026, 5, 6), True)  # type: ignore[arg-type]


def test_running_off_the_end_of_the_calendar_is_a_value_error(cal):
    with pytest.raises(ValueError, match="end of the calendar"):
        cal.add_working_days(date.max - timedelta(days=3), 10)
    with pytest.raises(ValueError, match="end of the calendar"):
        cal.add_calendar_days(date.max - timedelta(days=3), 10)


def test_a_holiday_table_with_no_working_days_in_reach_stops_with_a_clear_error():
    start = date(2027, 3, 1)
    all_closed = {start + timedelta(days=i): False for i in range(1, 400)}
    with pytest.raises(ValueError, match="check the holiday table"):
        WorkingCalendar(all_closed).add_working_days(start, 1)


def test_working_days_between(cal):
    a, due = date(2026, 9, 30), date(2026, 10, 15)
    assert cal.working_days_between(a, due) == 7
    assert cal.working_days_between(a, a) == 0
    assert cal.working_days_between(date(2026, 10, 1), date(2026, 10, 7)) == 0  # all holiday
    assert cal.working_days_between(due, a) == -7  # overdue by as many working days
    assert cal.working_days_between(date(2026, 10, 14), due) == 1
    assert cal.working_days_between(date(2026, 10, 16), due) == -1  # the day after: one over
    with pytest.raises(ValueError, match="longer than"):
        cal.working_days_between(date(2000, 1, 1), date(2100, 1, 1))


def test_datetimes_are_treated_as_their_date():
    cal = WorkingCalendar({datetime(2026, 10, 13, 9, 30): False})
    assert not cal.is_workday(date(2026, 10, 13))
    assert cal.add_working_days(datetime(2026, 9, 30, 23, 59), 7).on == date(2026, 10, 16)


def test_override_values_must_be_bools():
    with pytest.raises(TypeError):
        WorkingCalendar({date(2026, 10, 13): "no"})  # type: ignore[dict-item]


def test_the_package_is_asked_once_per_unknown_year(monkeypatch):
    calls: list[int] = []
    real = chinese_calendar.is_workday

    def counting(d):
        calls.append(d.year)
        return real(d)

    monkeypatch.setattr(chinese_calendar, "is_workday", counting)
    cal = WorkingCalendar({})
    cal.add_working_days(date(2027, 1, 1), 200)
    cal.working_days_between(date(2028, 1, 1), date(2028, 12, 31))
    assert calls.count(2027) == 1
    assert calls.count(2028) == 1
    # Known years keep asking the package (it answers quickly and correctly).
    cal.working_days_between(date(2026, 1, 1), date(2026, 1, 31))
    assert calls.count(2026) == 30  # 01-02 .. 01-31


# --- property ------------------------------------------------------------------------------------

_days = st.dates(min_value=date(2025, 6, 1), max_value=date(2028, 6, 30))


@settings(max_examples=300, deadline=None)
@given(
    start=st.dates(min_value=date(2003, 1, 1), max_value=date(2028, 6, 30)),
    n=st.integers(min_value=1, max_value=80),
    overrides=st.dictionaries(_days, st.booleans(), max_size=40),
)
def test_due_date_is_the_nth_workday_after_start(start, n, overrides):
    cal = WorkingCalendar(overrides)

    def expected_workday(d: date) -> bool:  # an independent oracle for one day
        if d in overrides:
            return overrides[d]
        if 2004 <= d.year <= 2026:
            return chinese_calendar.is_workday(d)
        return d.weekday() < 5

    due = cal.add_working_days(start, n)
    assert due.on > start
    assert cal.is_workday(due.on) and expected_workday(due.on)
    between = [start + timedelta(days=i) for i in range(1, (due.on - start).days + 1)]
    assert sum(expected_workday(d) for d in between) == n
    assert cal.working_days_between(start, due.on) == n
    assert cal.working_days_between(due.on, start) == -n
    assert due.provisional == any(not (d in overrides or 2004 <= d.year <= 2026) for d in between)
