"""Deadline policy: the packaged defaults, version selection, due dates and load-time validation."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import chinese_calendar
import pytest

from intake.calendar import DueDate, WorkingCalendar
from intake.deadlines import (
    DEFAULT_POLICY_PATH,
    ClockVersion,
    PolicyError,
    StartsAt,
    Unit,
    compute_due,
    load_policy,
)
from nlu.taxonomy import Kind
from qinglang.errors import ConfigError


@pytest.fixture(scope="module")
def policy():
    return load_policy()


@pytest.fixture
def cal() -> WorkingCalendar:
    return WorkingCalendar({})


# --- the packaged defaults ------------------------------------------------------------------------


def test_default_policy_has_the_five_clocks_of_the_design(policy):
    assert [c.id for c in policy.clocks] == [
        "complaint_acceptance",
        "complaint_mediation",
        "tipoff_check",
        "informant_notice",
        "transfer",
    ]
    assert policy.source == str(DEFAULT_POLICY_PATH)
    for clock in policy.clocks:
        assert clock.label_zh and clock.label_en
        for version in clock.versions:
            # a quoted rule, or the plain statement that the period is the bureau's own; never "to be checked"
            assert version.basis.startswith(("《", "本局工作期限")), version.basis
            assert "核对" not in version.basis



REGULATIONS = Path(__file__).parents[2].parent / "shared" / "regulations"
# what each clock's basis under Order 121 quotes, word for word from the texts in shared/regulations
QUOTED = [
    ("complaint_acceptance", "order121.txt", "应当自收到投诉之日起七个工作日内作出受理或者不予受理的决定，并告知投诉人"),
    ("complaint_mediation", "order121.txt", "自投诉受理之日起六十日内投诉人和被投诉人未能达成调解协议的"),
    ("complaint_mediation", "order121.txt", "期间届满的最后一日是法定节假日的，以法定节假日后的第一日为期间届满的日期"),
    ("tipoff_check", "related.txt", "应当自发现线索或者收到材料之日起十五个工作日内予以核查，由市场监督管理部门负责人决定是否立案"),
    ("tipoff_check", "order121.txt", "市场监督管理部门应当按照《市场监督管理行政处罚程序规定》处理举报"),
    ("informant_notice", "order121.txt", "法律、法规、规章规定市场监督管理部门应当将举报处理结果告知举报人或者对举报人实行奖励的"),
    ("transfer", "order121.txt", "应当及时将投诉举报分送有处理权限的下级市场监督管理部门或者同级市场监督管理部门相关机构处理"),
]


@pytest.mark.parametrize(("clock_id", "source", "quote"), QUOTED)
def test_each_basis_quotes_the_rule_it_rests_on(policy, clock_id, source, quote):
    assert quote in policy.clock(clock_id).version_for(date(2026, 4, 15)).basis
    if not (REGULATIONS / source).exists():
        pytest.skip(f"{REGULATIONS / source} is not beside the project")
    assert quote in (REGULATIONS / source).read_text(encoding="utf-8")


def test_default_lengths(policy):
    def summary(clock_id, governing=date(2026, 1, 1)):
        v = policy.clock(clock_id).version_for(governing)
        return v.length, v.unit, v.extension

    assert summary("complaint_acceptance") == (7, Unit.WORKING_DAYS, None)
    assert summary("complaint_mediation") == (45, Unit.WORKING_DAYS, None)
    assert summary("complaint_mediation", date(2026, 5, 1)) == (60, Unit.CALENDAR_DAYS, None)
    assert summary("tipoff_check") == (15, Unit.WORKING_DAYS, 15)
    assert summary("informant_notice") == (5, Unit.WORKING_DAYS, None)
    assert summary("transfer") == (7, Unit.WORKING_DAYS, None)
    assert "第121号" in policy.clock("complaint_mediation").version_for(date(2026, 5, 1)).basis
    assert "第20号" in policy.clock("complaint_mediation").version_for(date(2026, 1, 1)).basis


def test_clocks_for_selects_by_kind_start_event_and_real_name(policy):
    def ids(kind, starts_at, real_name):
        return [c.id for c in policy.clocks_for(kind, starts_at=starts_at, real_name=real_name)]

    assert ids(Kind.COMPLAINT, StartsAt.RECEIVED, False) == ["complaint_acceptance", "transfer"]
    assert ids(Kind.COMPLAINT, "accepted", False) == ["complaint_mediation"]
    assert ids(Kind.TIPOFF, StartsAt.RECEIVED, True) == ["tipoff_check", "transfer"]
    assert ids(Kind.TIPOFF, StartsAt.DECIDED, True) == ["informant_notice"]
    assert ids(Kind.TIPOFF, StartsAt.DECIDED, False) == []  # anonymous informants are not told
    assert ids("consultation", StartsAt.RECEIVED, True) == []
    with pytest.raises(ValueError):
        policy.clocks_for(Kind.TIPOFF, starts_at="filed", real_name=True)
    with pytest.raises(ValueError):
        policy.clocks_for("petition", starts_at=StartsAt.RECEIVED, real_name=True)


def test_unknown_clock_id(policy):
    with pytest.raises(KeyError, match="nope"):
        policy.clock("nope")


# --- version selection and due dates ----------------------------------------------------------------


def test_2026_facts_used_below():
    # Labour Day 05-01..05-05 off, Sat 05-09 make-up; Dragon Boat 06-19..06-21 off.
    assert not any(chinese_calendar.is_workday(date(2026, 5, d)) for d in range(1, 6))
    assert chinese_calendar.is_workday(date(2026, 5, 9))
    assert not any(chinese_calendar.is_workday(date(2026, 6, d)) for d in (19, 20, 21))


def test_mediation_version_switches_on_2026_04_15(policy):
    mediation = policy.clock("complaint_mediation")
    assert mediation.version_for(date(2026, 4, 14)).length == 45
    assert mediation.version_for(date(2026, 4, 15)).length == 60  # the effective day itself
    assert mediation.version_for(date(2030, 1, 1)).length == 60
    assert mediation.version_for(date(2015, 1, 1)).length == 45  # before every version: earliest


def test_mediation_due_under_old_and_new_rules(policy, cal):
    mediation = policy.clock("complaint_mediation")
    accepted = date(2026, 4, 20)
    # Received 2026-04-14 (Order 20): 45 working days from Mon 04-20:
    # 04-21..04-24 (4), 04-27..04-30 (8), 05-06..05-08 (11), Sat 05-09 (12), 05-11..05-15 (17),
    # 05-18..05-22 (22), 05-25..05-29 (27), 06-01..06-05 (32), 06-08..06-12 (37),
    # 06-15..06-18 (41), 06-19..06-21 Dragon Boat off, 06-22..06-25 (45).
    old = compute_due(mediation.version_for(date(2026, 4, 14)), accepted, cal)
    assert old == DueDate(date(2026, 6, 25), provisional=False)
    # Received 2026-04-16 (Order 121): 60 calendar days: 04-20 + 10 = 04-30, + 31 = 05-31, + 19 = 06-19,
    # the Dragon Boat holiday (06-19..06-21): Art 45 moves the end to the first working day after it.
    new = compute_due(mediation.version_for(date(2026, 4, 16)), accepted, cal)
    assert new == DueDate(date(2026, 6, 22), provisional=False)


def test_complaint_acceptance_over_national_day(policy, cal):
    version = policy.clock("complaint_acceptance").version_for(date(2026, 9, 30))
    assert compute_due(version, date(2026, 9, 30), cal).on == date(2026, 10, 15)


def test_tipoff_check_and_its_extension(policy, cal):
    version = policy.clock("tipoff_check").version_for(date(2026, 9, 18))
    assert compute_due(version, date(2026, 9, 18), cal).on == date(2026, 10, 15)
    # +15 working days after Thu 10-15: 10-16 (1), 10-19..10-23 (6), 10-26..10-30 (11),
    # 11-02..11-05 (15).
    extended = compute_due(version, date(2026, 9, 18), cal, extended=True)
    assert extended == DueDate(date(2026, 11, 5), provisional=False)


def test_tipoff_received_late_in_2026_is_provisional(policy, cal):
    version = policy.clock("tipoff_check").version_for(date(2026, 12, 28))
    assert compute_due(version, date(2026, 12, 28), cal) == DueDate(date(2027, 1, 18), provisional=True)
    closed = WorkingCalendar({date(2027, 1, 1): False})
    assert compute_due(version, date(2026, 12, 28), closed).on == date(2027, 1, 19)


def test_extension_of_a_clock_without_one_is_refused(policy, cal):
    version = policy.clock("complaint_acceptance").version_for(date(2026, 9, 30))
    with pytest.raises(ValueError, match="no extension"):
        compute_due(version, date(2026, 9, 30), cal, extended=True)


def test_calendar_day_clock_with_working_day_extension(cal):
    version = ClockVersion(date(2020, 1, 1), 10, Unit.CALENDAR_DAYS, "测试", extension=2)
    # 09-20 + 10 days = Wed 09-30; then 2 working days after it: 10-08, 10-09.
    assert compute_due(version, date(2026, 9, 20), cal).on == date(2026, 9, 30)
    assert compute_due(version, date(2026, 9, 20), cal, extended=True).on == date(2026, 10, 9)
    # ... and a guessed working day in the extension makes it provisional.
    assert compute_due(version, date(2026, 12, 20), cal, extended=True).provisional
    assert not compute_due(version, date(2026, 12, 20), cal).provisional


# --- a deployment's own file --------------------------------------------------------------------------

GOOD = """\
clocks:
  - id: tipoff_check
    labels: {zh: 举报核查, en: Check a tip-off}
    applies_to:
      - tipoff
    starts_at: received
    versions:
      - effective_from: 2030-01-01
        length: 20
        unit: working_days
        basis: 新规定
      - effective_from: 2019-04-01
        length: 15
        unit: working_days
        extension: 15
        basis: 《市场监督管理行政处罚程序规定》
  - id: informant_notice
    labels: {zh: 告知举报人, en: Tell the informant}
    applies_to: [tipoff]
    starts_at: decided
    real_name_only: true
    versions:
      - effective_from: 2020-01-01
        length: 3
        unit: working_days
        basis: 本局规定
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "deadlines.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def line_of(text: str, needle: str, nth: int = 1) -> int:
    """1-based line of the nth line containing needle, found independently of the loader."""
    hits = [i + 1 for i, line in enumerate(text.splitlines()) if needle in line]
    return hits[nth - 1]


def test_a_deployment_file_replaces_the_defaults(tmp_path, cal):
    policy = load_policy(write(tmp_path, GOOD))
    notice = policy.clock("informant_notice")
    assert notice.real_name_only
    # 3 working days (not the default 5) after Wed 2026-09-30: 10-08, 10-09, Sat 10-10.
    assert compute_due(notice.version_for(date(2026, 9, 30)), date(2026, 9, 30), cal).on == date(2026, 10, 10)
    check = policy.clock("tipoff_check")
    assert [v.effective_from for v in check.versions] == [date(2019, 4, 1), date(2030, 1, 1)]  # sorted
    assert check.version_for(date(2026, 1, 1)).length == 15
    assert check.version_for(date(2030, 1, 1)).length == 20
    assert policy.clocks_for(Kind.TIPOFF, starts_at=StartsAt.DECIDED, real_name=False) == []


def bad(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    message = str(info.value)
    assert "\n" not in message
    assert isinstance(info.value, ConfigError)
    return message


def expect(tmp_path: Path, text: str, line: int, *fragments: str) -> None:
    message = bad(tmp_path, text)
    assert message.startswith(f"{tmp_path / 'deadlines.yaml'}:{line}: "), message
    for fragment in fragments:
        assert fragment in message, message


def test_the_good_file_is_good(tmp_path):
    load_policy(write(tmp_path, GOOD))  # the bad cases below differ from it in one place


def test_bad_unit(tmp_path):
    text = GOOD.replace("length: 20\n        unit: working_days", "length: 20\n        unit: weeks")
    expect(
        tmp_path,
        text,
        line_of(text, "unit: weeks"),
        "clock 'tipoff_check': unit must be working_days or calendar_days, got 'weeks'",
    )


def test_yaml_syntax_error(tmp_path):
    text = GOOD.replace("starts_at: decided", "starts_at: decided: now")
    expect(tmp_path, text, line_of(text, "decided: now"), "YAML syntax error")


def test_yaml_syntax_error_unclosed_flow(tmp_path):
    text = GOOD.replace("applies_to: [tipoff]", "applies_to: [tipoff")
    message = bad(tmp_path, text)
    assert "YAML syntax error" in message
    # The parser notices at the next line at the earliest; it must point at or after the bracket.
    line = int(message.split(":")[1])
    assert line >= line_of(text, "[tipoff")


def test_unknown_top_level_key(tmp_path):
    text = GOOD + "timezone: Asia/Shanghai\n"
    expect(tmp_path, text, line_of(text, "timezone"), "unknown key 'timezone'")


def test_unknown_kind(tmp_path):
    text = GOOD.replace("      - tipoff\n", "      - tipoff\n      - petition\n")
    expect(tmp_path, text, line_of(text, "- petition"), "clock 'tipoff_check'", "unknown kind 'petition'")


def test_unknown_starts_at(tmp_path):
    text = GOOD.replace("starts_at: decided", "starts_at: filed")
    expect(tmp_path, text, line_of(text, "starts_at: filed"), "clock 'informant_notice'", "'filed'")


def test_missing_length(tmp_path):
    text = GOOD.replace("        length: 3\n", "")
    # Reported at the start of the version that lacks it.
    expect(tmp_path, text, line_of(text, "effective_from: 2020-01-01"), "missing 'length'")


@pytest.mark.parametrize("value", ["0", "-5", "seven", "1.5", "true", "99999", "[7]"])
def test_invalid_length(tmp_path, value):
    text = GOOD.replace("length: 3", f"length: {value}")
    expect(tmp_path, text, line_of(text, f"length: {value}"), "clock 'informant_notice'", "length")


def test_invalid_extension(tmp_path):
    text = GOOD.replace("extension: 15", "extension: 0")
    expect(tmp_path, text, line_of(text, "extension: 0"), "extension")


@pytest.mark.parametrize("value", ["2026-02-30", "someday", "2026-04-15 10:00:00", "20260415"])
def test_bad_date(tmp_path, value):
    text = GOOD.replace("effective_from: 2020-01-01", f"effective_from: {value}")
    expect(tmp_path, text, line_of(text, f"effective_from: {value}"), "effective_from")


def test_quoted_date_is_accepted(tmp_path):
    text = GOOD.replace("effective_from: 2020-01-01", 'effective_from: "2020-01-01"')
    assert load_policy(write(tmp_path, text)).clock("informant_notice").versions[0].effective_from == date(
        2020, 1, 1
    )


def test_duplicate_clock_id(tmp_path):
    text = GOOD.replace("id: informant_notice", "id: tipoff_check")
    expect(tmp_path, text, line_of(text, "id: tipoff_check", nth=2), "'tipoff_check' is defined twice")


def test_two_versions_with_the_same_effective_from(tmp_path):
    text = GOOD.replace("effective_from: 2030-01-01", "effective_from: 2019-04-01")
    expect(
        tmp_path,
        text,
        line_of(text, "effective_from: 2019-04-01", nth=2),
        "two versions take effect on 2019-04-01",
        f"line {line_of(text, 'effective_from: 2019-04-01')}",
    )


def test_empty_versions(tmp_path):
    text = GOOD.replace(
        "    versions:\n      - effective_from: 2020-01-01\n        length: 3\n"
        "        unit: working_days\n        basis: 本局规定\n",
        "    versions: []\n",
    )
    assert "versions: []" in text
    expect(tmp_path, text, line_of(text, "versions: []"), "clock 'informant_notice': versions is empty")


def test_unknown_key_in_a_version(tmp_path):
    text = GOOD.replace("        basis: 本局规定", "        basis: 本局规定\n        lenght: 4")
    expect(tmp_path, text, line_of(text, "lenght"), "unknown key 'lenght'")


def test_duplicate_key(tmp_path):
    text = GOOD.replace("starts_at: decided", "starts_at: decided\n    starts_at: received")
    expect(tmp_path, text, line_of(text, "starts_at: received", nth=2), "'starts_at' appears twice")


def test_missing_label(tmp_path):
    text = GOOD.replace("{zh: 告知举报人, en: Tell the informant}", "{zh: 告知举报人}")
    expect(tmp_path, text, line_of(text, "{zh: 告知举报人}"), "missing 'en'")


def test_real_name_only_must_be_a_boolean(tmp_path):
    text = GOOD.replace("real_name_only: true", "real_name_only: sometimes")
    expect(tmp_path, text, line_of(text, "real_name_only"), "real_name_only")


def test_empty_file(tmp_path):
    expect(tmp_path, "# nothing here\n", 1, "empty")


def test_clocks_must_be_a_list(tmp_path):
    expect(tmp_path, "\nclocks: 5\n", 2, "clocks must be a list")


def test_missing_file(tmp_path):
    path = tmp_path / "absent.yaml"
    with pytest.raises(PolicyError, match="not found") as info:
        load_policy(path)
    assert str(info.value).startswith(str(path))


def test_unreadable_file_a_directory(tmp_path):
    path = tmp_path / "deadlines.yaml"
    path.mkdir()
    with pytest.raises(PolicyError, match="cannot read") as info:
        load_policy(path)
    assert str(info.value).startswith(str(path))


def test_unreadable_file_not_utf8(tmp_path):
    path = tmp_path / "deadlines.yaml"
    path.write_bytes(GOOD.encode("gb18030"))
    with pytest.raises(PolicyError, match="not UTF-8") as info:
        load_policy(path)
    assert str(info.value).startswith(str(path))
