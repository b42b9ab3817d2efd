"""What closing a case records for the statistics forms (附件1): 立案, 罚没款, referral to judicial
organs, and the measures platforms were made to take."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from db.models import Case
from intake.status import DomainError

MAX_AMOUNT_FEN = 10**12  # 100亿元: far above any fine; a typo of several digits is refused
MAX_COUNT = 100_000


class ClosingFactRefused(DomainError):
    """A closing fact that cannot be recorded; `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class ClosingFacts:
    """None: not stated. `filed` not stated follows the outcome (已立案查处 → yes, 核查后不予立案 → no)."""

    filed: bool | None = None
    fine_fen: int | None = None
    confiscation_fen: int | None = None
    judicial_referral: bool = False
    takedowns: int | None = None
    accounts_disposed: int | None = None
    sites_closed: int | None = None

    def validated(self, outcome: str | None) -> ClosingFacts:
        if self.filed is not None and not isinstance(self.filed, bool):
            raise ClosingFactRefused("filed", "filed (立案) must be yes, no or not stated")
        if not isinstance(self.judicial_referral, bool):
            raise ClosingFactRefused("judicial_referral", "judicial_referral must be yes or no")
        for name in ("fine_fen", "confiscation_fen"):
            _check_range(name, getattr(self, name), MAX_AMOUNT_FEN)
        for name in ("takedowns", "accounts_disposed", "sites_closed"):
            _check_range(name, getattr(self, name), MAX_COUNT)
        filed = self.filed
        if filed is None:
            filed = {"case_filed": True, "not_filed": False}.get(outcome or "")
        if filed is True and outcome == "not_filed":
            raise ClosingFactRefused("filed", "the outcome says no case was filed (not_filed); 立案 cannot be yes")
        if filed is False and outcome == "case_filed":
            raise ClosingFactRefused("filed", "the outcome says a case was filed (case_filed); 立案 cannot be no")
        if not filed and (self.fine_fen or self.confiscation_fen):
            raise ClosingFactRefused("fine_fen" if self.fine_fen else "confiscation_fen",
                                     "fines and confiscations are recorded for a filed case (立案) only")
        return ClosingFacts(filed, self.fine_fen, self.confiscation_fen, self.judicial_referral, self.takedowns,
                            self.accounts_disposed, self.sites_closed)

    def apply_to(self, case: Case) -> None:
        for name, value in asdict(self).items():
            setattr(case, name, value)

    def as_event_data(self) -> dict[str, object]:
        """What was stated (a stated 0 included); a referral only when there was one."""
        return {name: value for name, value in asdict(self).items()
                if value is not None and not (name == "judicial_referral" and value is False)}


def _check_range(name: str, value: int | None, limit: int) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise ClosingFactRefused(name, f"{name} must be a whole number")
    if not 0 <= value <= limit:
        raise ClosingFactRefused(name, f"{name} must be between 0 and {limit}")
