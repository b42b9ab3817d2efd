"""What closing records for the statistics forms: amounts and counts in range, 立案 consistent with the
outcome, fines and confiscations only for a filed case."""

from __future__ import annotations

import pytest

from db.models import Case
from intake.closing import MAX_AMOUNT_FEN, MAX_COUNT, ClosingFacts
from intake.status import DomainError

AMOUNTS = ("fine_fen", "confiscation_fen")
COUNTS = ("takedowns", "accounts_disposed", "sites_closed")


@pytest.mark.parametrize("name", AMOUNTS)
@pytest.mark.parametrize("value", [-1, MAX_AMOUNT_FEN + 1])
def test_an_amount_out_of_range_is_refused(name, value):
    with pytest.raises(DomainError, match=f"{name} must be between 0 and {MAX_AMOUNT_FEN}"):
        ClosingFacts(filed=True, **{name: value}).validated("case_filed")


@pytest.mark.parametrize("name", COUNTS)
@pytest.mark.parametrize("value", [-1, MAX_COUNT + 1])
def test_a_count_out_of_range_is_refused(name, value):
    with pytest.raises(DomainError, match=f"{name} must be between 0 and {MAX_COUNT}"):
        ClosingFacts(**{name: value}).validated("mediated")


@pytest.mark.parametrize("name", AMOUNTS + COUNTS)
@pytest.mark.parametrize("value", [True, False, 12.5, "100", 1e3])
def test_only_whole_numbers_are_taken(name, value):
    """A bool is an int to Python, but "True yuan" is a form sent wrong, not a fine of one fen."""
    with pytest.raises(DomainError, match=f"{name} must be a whole number"):
        ClosingFacts(filed=True, **{name: value}).validated("case_filed")


def test_the_limits_themselves_are_taken():
    facts = ClosingFacts(filed=True, fine_fen=MAX_AMOUNT_FEN, confiscation_fen=0, takedowns=MAX_COUNT,
                         accounts_disposed=0, sites_closed=MAX_COUNT).validated("case_filed")
    assert (facts.fine_fen, facts.takedowns, facts.sites_closed) == (MAX_AMOUNT_FEN, MAX_COUNT, MAX_COUNT)


@pytest.mark.parametrize(("outcome", "filed"), [("case_filed", True), ("not_filed", False), ("mediated", None),
                                                 (None, None)])
def test_filing_not_stated_follows_the_outcome(outcome, filed):
    assert ClosingFacts().validated(outcome).filed is filed


@pytest.mark.parametrize("outcome", [None, "mediated", "other", "answered"])
def test_filing_stated_stands_where_the_outcome_does_not_say(outcome):
    assert ClosingFacts(filed=True).validated(outcome).filed is True
    assert ClosingFacts(filed=False).validated(outcome).filed is False


def test_filing_contradicting_the_outcome_is_refused():
    with pytest.raises(DomainError, match="not_filed"):
        ClosingFacts(filed=True).validated("not_filed")
    with pytest.raises(DomainError, match="case_filed"):
        ClosingFacts(filed=False).validated("case_filed")


@pytest.mark.parametrize("name", AMOUNTS)
@pytest.mark.parametrize(("filed", "outcome"), [(None, "mediated"), (False, "other"), (None, "not_filed"),
                                                (None, None)])
def test_a_penalty_without_filing_is_refused(name, filed, outcome):
    with pytest.raises(DomainError, match="filed case"):
        ClosingFacts(filed=filed, **{name: 100}).validated(outcome)


def test_a_zero_penalty_needs_no_filing():
    assert ClosingFacts(fine_fen=0, confiscation_fen=0).validated("mediated").fine_fen == 0


def test_a_filed_case_keeps_everything_it_was_given():
    given = ClosingFacts(fine_fen=800_000, confiscation_fen=300_000, judicial_referral=True, takedowns=3,
                         accounts_disposed=1, sites_closed=2)
    assert given.validated("case_filed") == ClosingFacts(True, 800_000, 300_000, True, 3, 1, 2)


def test_applied_to_the_case_and_written_to_the_event():
    facts = ClosingFacts(fine_fen=500_000, judicial_referral=True, sites_closed=2).validated("case_filed")
    case = Case()
    facts.apply_to(case)
    assert (case.filed, case.fine_fen, case.confiscation_fen, case.judicial_referral, case.sites_closed) == (
        True, 500_000, None, True, 2)
    # what was not stated, and "no", are left out of the event
    assert facts.as_event_data() == {"filed": True, "fine_fen": 500_000, "judicial_referral": True, "sites_closed": 2}
    assert ClosingFacts().validated("mediated").as_event_data() == {}


@pytest.mark.parametrize(("facts", "message"), [
    (ClosingFacts(filed="yes"), "filed"), (ClosingFacts(filed=1), "filed"),
    (ClosingFacts(judicial_referral="no"), "judicial_referral"), (ClosingFacts(judicial_referral=None), "judicial_referral"),
])
def test_yes_and_no_must_be_booleans(facts, message):
    with pytest.raises(DomainError, match=message):
        facts.validated("mediated")


def test_a_stated_zero_is_kept_in_the_event():
    facts = ClosingFacts(takedowns=0, sites_closed=2).validated("mediated")
    assert facts.as_event_data() == {"takedowns": 0, "sites_closed": 2}
    assert ClosingFacts(judicial_referral=True).validated("mediated").as_event_data() == {"judicial_referral": True}
