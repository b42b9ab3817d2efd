"""The draft of a complaint being told: plain JSON types only, so any FSM storage can keep it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from typing import Any


class Step(StrEnum):
    DESCRIBE = "describe"
    CONFIRM_CATEGORY = "confirm_category"
    WANTS = "wants"
    PLATFORM = "platform"
    LIVE_ROOM = "live_room"
    PRODUCT = "product"
    AMOUNT = "amount"
    ORDER_NUMBER = "order_number"
    PURCHASE_DATE = "purchase_date"
    MERCHANT = "merchant"
    MERCHANT_STREET = "merchant_street"
    MERCHANT_PROVINCE = "merchant_province"
    EVIDENCE = "evidence"
    IDENTITY = "identity"
    NAME = "name"
    PHONE = "phone"
    CONSENT = "consent"
    SUMMARY = "summary"
    CONFIRM_CANCEL = "confirm_cancel"
    ADD_TO_CASE = "add_to_case"
    CONFIRM_WITHDRAW = "confirm_withdraw"
    RATE = "rate"  # the satisfaction question about a closed case is open (a typed 1-5 answers it)
    RATE_COMMENT = "rate_comment"  # rated; one optional text message is the comment


@dataclass
class Draft:
    step: str = Step.DESCRIBE
    rev: int = 0  # changes with every answer, so buttons of an older message can be recognised
    lang: str = "zh"
    description: str = ""
    additions: list[str] = field(default_factory=list)  # further words given during the conversation
    category: str | None = None
    category_confirmed: bool = False
    ranking: list[list[Any]] = field(default_factory=list)  # [[category, confidence], ...]
    nlu_confidence: float | None = None
    kind: str | None = None
    slots: dict[str, Any] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    evidence: list[dict[str, Any]] = field(default_factory=list)  # sha256, size, mime, name, source
    links: list[str] = field(default_factory=list)
    anonymous: bool | None = None
    name: str | None = None
    phone: str | None = None
    consent: bool = False
    history: list[str] = field(default_factory=list)
    resume_step: str | None = None  # where to return after a cancel is not confirmed
    case_number: str | None = None  # the case an addition, withdrawal or rating is about
    rating: int | None = None  # the score just given, while the optional comment is asked
    urgent: bool = False  # a crisis signal was seen in something the person sent (nlu/crisis.py)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Draft | None:
        if not data:
            return None
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @property
    def has_content(self) -> bool:
        return bool(self.description or self.evidence or self.slots)
