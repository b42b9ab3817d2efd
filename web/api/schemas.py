"""Pydantic models of every API request and response.

Requests are strict (no type coercion from JSON) and forbid unknown fields; responses are built
through the response models, so the OpenAPI document (derived from these same models) and the
answers agree.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Literal, Union
from urllib.parse import urlsplit

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, RootModel, model_validator

from intake.closing import MAX_AMOUNT_FEN, MAX_COUNT
from intake.outbound import OutboundRefused, shape
from intake.status import REJECTION_GROUNDS, STAFF_OUTCOMES, Status
from nlu.taxonomy import CATEGORIES, Kind

# -- text types ---------------------------------------------------------------------------------

# control characters (and lone surrogates, which no storage can hold) are refused in every text field;
# tabs and line breaks are allowed only in multi-line text
_LINE_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")
_TEXT_FORBIDDEN = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
LINE_PATTERN = r"^[^\x00-\x1f\x7f]*$"
TEXT_PATTERN = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"


def _clean_line(value: str) -> str:
    if _LINE_FORBIDDEN.search(value):
        raise ValueError("must be a single line without control characters")
    return value.strip()


def _clean_text(value: str) -> str:
    if _TEXT_FORBIDDEN.search(value):
        raise ValueError("must not contain control characters")
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


def Line(max_length: int):  # noqa: N802 - a type factory
    """A single line of text, stripped."""
    return Annotated[str, Field(max_length=max_length, pattern=LINE_PATTERN), AfterValidator(_clean_line)]


def Text(max_length: int, *, required: bool = False):  # noqa: N802 - a type factory
    """Multi-line text; `required`: at least one visible character."""
    validators = [AfterValidator(_clean_text)] + ([AfterValidator(_not_blank)] if required else [])
    return Annotated[str, Field(max_length=max_length, min_length=1 if required else 0, pattern=TEXT_PATTERN),
                     *validators]


def _http_url(value: str) -> str:
    if _LINE_FORBIDDEN.search(value) or any(ch.isspace() for ch in value):
        raise ValueError("must be a URL without spaces or control characters")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        raise ValueError("is not a valid URL") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    return value


def _callback_url(value: str) -> str:
    """The checks of the outbound policy that need neither settings nor DNS (no user info, a host name or
    an IP address in its usual form); the rest is checked when the case is created and at every send."""
    try:
        shape(value)
    except OutboundRefused as exc:
        raise ValueError(str(exc)) from None
    return value


URL_PATTERN = r"^[Hh][Tt][Tt][Pp][Ss]?://[^\s/?#]+[^\s]*$"
HttpUrl = Annotated[str, Field(max_length=2000, pattern=URL_PATTERN, json_schema_extra={"format": "uri"}),
                    AfterValidator(_http_url)]
CallbackUrl = Annotated[str, Field(max_length=500, pattern=URL_PATTERN, json_schema_extra={"format": "uri"}),
                        AfterValidator(_http_url), AfterValidator(_callback_url)]


# -- enumerations --------------------------------------------------------------------------------

CategoryId = StrEnum("CategoryId", {c.id: c.id for c in CATEGORIES})
RejectionGround = StrEnum("RejectionGround", {g: g for g in REJECTION_GROUNDS})
Outcome = StrEnum("Outcome", {o: o for o in STAFF_OUTCOMES})
StatusValue = StrEnum("StatusValue", {s.value: s.value for s in Status})
KindValue = StrEnum("KindValue", {k.value: k.value for k in Kind})
TRANSITION_ACTIONS = ("accept", "reject", "transfer", "start", "resolve", "close", "reopen", "duplicate")
MESSAGE_KINDS = ("reply", "message", "info_request")
MAX_ID = 2**63 - 1

CHANNEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,19}$"
RESERVED_CHANNELS = frozenset({"telegram", "webchat", "web"})  # the service's own channels, not API intake
UNIT_CODE_PATTERN = r"^[a-z0-9_]{1,40}$"
CASE_NUMBER_PATTERN = r"^[A-Za-z0-9_-]{1,32}$"
PHONE_PATTERN = r"^\+?[0-9][0-9 -]{3,28}[0-9]$"
EARLIEST, LATEST = date(2000, 1, 1), date(2100, 12, 31)  # dates a filter may name


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


# -- requests -------------------------------------------------------------------------------------


class ComplainantIn(Strict):
    """Who complains, for a real-name case; never combine with `anonymous: true`."""

    name: Line(100) | None = Field(None, description="the complainant's name")
    phone: Annotated[str, Field(pattern=PHONE_PATTERN, max_length=30,
                                description="digits, optionally with a leading + and spaces or dashes")] | None = None

    @model_validator(mode="after")
    def _something(self) -> ComplainantIn:
        if not (self.name or self.phone):
            raise ValueError("give the complainant's name or phone (or leave complainant out)")
        return self


class MerchantLocationIn(Strict):
    in_district: bool | None = Field(None, description="whether the merchant is in this district; null: unknown")
    street: Line(60) | None = Field(None, description="the street (街道) of the district, e.g. 永中街道")
    province: Line(40) | None = Field(None, description="the province when the merchant is elsewhere, e.g. 广东省")


class NewCaseIn(Strict):
    """A complaint, tip-off or question taken in by another channel."""

    description: Text(20_000, required=True) = Field(description="what happened, in the person's words")
    channel: Annotated[str, Field(pattern=CHANNEL_PATTERN,
                                  description="the channel the case came in by, e.g. 12345 or webform")]
    complainant: ComplainantIn | None = None
    anonymous: bool = Field(False, description="an anonymous tip-off: no identity is stored")
    kind: KindValue | None = Field(None, description="omitted: decided from the text (complaint only with a complainant)")
    category: CategoryId | None = Field(None, description="omitted: decided from the text")
    focus_area: Annotated[int, Field(ge=1, le=14)] | None = Field(None, description="the campaign's focus area 1-14")
    platform: Line(40) | None = None
    live_room: Line(200) | None = None
    streamer: Line(200) | None = None
    product: Line(200) | None = None
    merchant_name: Line(200) | None = None
    amount: Annotated[float, Field(ge=0, le=1_000_000_000, allow_inf_nan=False)] | None = Field(
        None, description="amount paid in yuan (rounded to fen)")
    order_no: Line(64) | None = None
    purchase_date: date | None = Field(None, description="YYYY-MM-DD, not in the future")
    merchant_location: MerchantLocationIn | None = None
    received_at: AwareDatetime | None = Field(
        None, description="when the channel received it (with time zone); the statutory clocks start here. "
                          "Default: now. At most 366 days ago, not in the future")
    evidence_urls: Annotated[list[HttpUrl], Field(max_length=20)] = Field(
        default_factory=list, description="links to evidence (http/https)")
    callback_url: CallbackUrl | None = Field(
        None, description="where the originating system (e.g. the 12345 hotline platform) wants to be told of "
                          "every step of the case: an https URL that receives a JSON POST per notice (see the "
                          "`caseNotice` callback). Used for a named complainant of this channel; never returned. "
                          "The host must resolve to public addresses only (or be on the service's allow list), "
                          "on an allowed port (by default 443 and 80); no user info; redirects are not followed. "
                          "A URL the policy refuses is answered 400 callback_refused, with the reason")

    @model_validator(mode="after")
    def _consistent(self) -> NewCaseIn:
        if self.channel.lower() in RESERVED_CHANNELS:
            raise ValueError(f"channel {self.channel!r} is the service's own channel; name the channel the case "
                             "came in by, e.g. 12345 or webform")
        if self.anonymous and self.complainant is not None:
            raise ValueError("an anonymous case carries no complainant: leave out complainant or set anonymous false")
        return self


class _Transition(Strict):
    note: Text(2000) | None = Field(None, description="an internal note for the case file")


class AcceptIn(_Transition):
    """受理 (for a tip-off: decide to file, 立案)."""

    action: Literal["accept"]


class RejectIn(Strict):
    """不予受理 with a ground; the reply tells the complainant why."""

    action: Literal["reject"]
    ground: RejectionGround
    reply: Text(10_000, required=True) = Field(description="the complainant-facing reply")


class TransferIn(_Transition):
    """To a unit of the bureau (`unit`) or to an outside authority (`authority`, optional `scope`)."""

    action: Literal["transfer"]
    unit: Annotated[str, Field(pattern=UNIT_CODE_PATTERN, description="code of a unit of the bureau")] | None = None
    authority: Line(200) | None = Field(None, description="an authority code of the unit directory, or its name")
    scope: Literal["in_province", "out_of_province"] | None = None

    @model_validator(mode="after")
    def _one_target(self) -> TransferIn:
        if (self.unit is None) == (not self.authority):
            raise ValueError("give either unit (a unit of the bureau) or authority (an outside authority)")
        if self.scope is not None and self.unit is not None:
            raise ValueError("scope goes with authority, not with unit")
        return self


class StartIn(_Transition):
    action: Literal["start"]


class ResolveIn(Strict):
    """Outcome and the complainant-facing reply."""

    action: Literal["resolve"]
    outcome: Outcome
    reply: Text(10_000, required=True) = Field(description="the complainant-facing reply")


Fen = Annotated[int, Field(ge=0, le=MAX_AMOUNT_FEN)]
Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]


class CloseIn(_Transition):
    """关闭, with what the statistics forms need (附件1). Every fact is optional; amounts are whole fen
    (分: 1 yuan = 100 fen, so ¥1,200.50 is 120050)."""

    action: Literal["close"]
    filed: bool | None = Field(None, description="立案: a case was filed for investigation. Omitted or null: "
                                                 "follows the outcome (case_filed: true, not_filed: false, else "
                                                 "not stated); contradicting the outcome is refused")
    fine_fen: Fen | None = Field(None, description="罚款, in fen; only for a filed case (立案)")
    confiscation_fen: Fen | None = Field(None, description="没收违法所得, in fen; only for a filed case (立案)")
    judicial_referral: bool = Field(False, description="移送司法机关: referred to the judicial organs")
    takedowns: Count | None = Field(None, description="督促平台删除违规信息/下架商品: items the platform was made to "
                                                      "delete or take down")
    accounts_disposed: Count | None = Field(None, description="处置发布违规内容账号: accounts dealt with")
    sites_closed: Count | None = Field(None, description="关闭违法违规问题网站: sites closed")


class ReopenIn(Strict):
    action: Literal["reopen"]
    reason: Text(2000, required=True) = Field(description="why the case is reopened")


class DuplicateIn(Strict):
    """The same matter as another case: this one is closed with a reference to it (triage only)."""

    action: Literal["duplicate"]
    original: Annotated[str, Field(pattern=CASE_NUMBER_PATTERN, description="the number of the case that handles "
                                   "the matter (a duplicate of a duplicate leads to its original)")]
    reply: Text(10_000, required=True) = Field(description="the complainant-facing reply: where the matter is handled")


TransitionUnion = Annotated[
    Union[AcceptIn, RejectIn, TransferIn, StartIn, ResolveIn, CloseIn, ReopenIn, DuplicateIn],
    Field(discriminator="action"),
]


class TransitionIn(RootModel[TransitionUnion]):
    """One transition; `action` selects which fields apply."""


class MessageIn(Strict):
    text: Text(10_000, required=True) = Field(description="the message to the complainant")
    kind: Literal["reply", "message", "info_request"] = Field(
        "reply", description="reply: the official answer (default); message: a note to the complainant that is "
                             "not the answer (e.g. progress); info_request: ask the complainant for more "
                             "information (补正), not possible for an anonymous informant")


class AssignmentIn(Strict):
    """The units of a case: the lead (★) and the co-units (triage only). Replaces the current ones."""

    lead: Annotated[str, Field(pattern=UNIT_CODE_PATTERN, description="code of the lead unit")]
    co_units: Annotated[list[Annotated[str, Field(pattern=UNIT_CODE_PATTERN)]], Field(max_length=50)] = Field(
        default_factory=list, description="codes of the co-units (the lead, if repeated here, is ignored)")
    note: Text(2000) | None = Field(None, description="an internal note for the case file")


class SubjectLinkIn(Strict):
    subject_id: Annotated[int, Field(ge=1, le=MAX_ID, description="id of an entry of the subject registry")]


class RatingIn(Strict):
    """The complainant's satisfaction, as given in the follow-up call (回访), after the case is closed.
    A score of 2 or lower reopens the case for review."""

    score: Annotated[int, Field(ge=1, le=5, description="1 very dissatisfied ... 5 very satisfied")]
    comment: Text(10_000) | None = Field(None, description="what the complainant said")


class CaseListQuery(BaseModel):
    """Query parameters of GET /api/v1/cases (lists: repeat the parameter or separate with commas)."""

    model_config = ConfigDict(extra="forbid")

    status: list[StatusValue] = Field(default_factory=list, description="default: every open status")
    kind: list[KindValue] = Field(default_factory=list)
    category: list[CategoryId] = Field(default_factory=list)
    unit: Annotated[str, Field(pattern=UNIT_CODE_PATTERN)] | None = Field(
        None, description="code of a unit with an active part in the case")
    channel: list[Annotated[str, Field(pattern=CHANNEL_PATTERN)]] = Field(default_factory=list)
    platform: Line(40) | None = None
    due: Literal["overdue", "due_soon", "provisional"] | None = None
    received_from: Annotated[date, Field(ge=EARLIEST, le=LATEST)] | None = Field(None, description="YYYY-MM-DD, inclusive")
    received_to: Annotated[date, Field(ge=EARLIEST, le=LATEST)] | None = Field(None, description="YYYY-MM-DD, inclusive")
    q: Line(200) | None = Field(None, description="text in the number, description, live room, streamer or merchant")
    cursor: Annotated[str, Field(max_length=200, pattern=r"^[A-Za-z0-9_-]+$")] | None = Field(
        None, description="next_cursor of the previous page")
    limit: Annotated[int, Field(ge=1, le=200)] = 50

    @model_validator(mode="after")
    def _range(self) -> CaseListQuery:
        if self.received_from and self.received_to and self.received_from > self.received_to:
            raise ValueError("received_from is after received_to")
        return self


# -- responses ------------------------------------------------------------------------------------


class UnitRef(BaseModel):
    code: str
    name: str


class DeadlineOut(BaseModel):
    clock: str
    due_on: date
    provisional: bool = Field(description="computed without official holiday data for that year")
    met: bool
    basis: str = Field(description="the legal basis of the time limit")


class EvidenceOut(BaseModel):
    sha256: str
    size: int
    mime: str
    name: str | None = Field(description="the name the sender gave (untrusted text), or the URL of a link")
    source: str


class EventOut(BaseModel):
    at: datetime
    action: str
    actor_type: str
    actor_id: int | None
    from_status: str | None
    to_status: str | None
    note: str | None


class MessageOut(BaseModel):
    at: datetime
    direction: Literal["in", "out"] = Field(description="in: from the complainant; out: to the complainant")
    body: str
    is_reply: bool = Field(description="an official reply")
    info_request: bool = Field(description="staff asked the complainant for more information")


class SubjectOut(BaseModel):
    id: int
    type: str = Field(description="platform, live_room, operator, service_agency or streamer")
    name: str = Field(description="untrusted text, as received")
    platform: str = Field(description="the platform of a live room, operator or streamer; empty for a platform")


class SatisfactionOut(BaseModel):
    score: int = Field(description="1 very dissatisfied ... 5 very satisfied")
    comment: str | None
    rated_at: datetime


class MerchantLocationOut(BaseModel):
    in_district: bool | None
    street: str | None
    province: str | None


class FactsOut(BaseModel):
    platform: str | None
    live_room: str | None
    streamer: str | None
    product: str | None
    merchant_name: str | None
    amount: float | None = Field(description="yuan")
    order_no: str | None
    purchase_date: date | None
    merchant_location: MerchantLocationOut


class ClosingOut(BaseModel):
    """What was recorded at close for the statistics forms; amounts in fen, null: not stated."""

    filed: bool | None = Field(description="立案")
    fine_fen: int | None = Field(description="罚款, in fen")
    confiscation_fen: int | None = Field(description="没收违法所得, in fen")
    judicial_referral: bool = Field(description="移送司法机关")
    takedowns: int | None = Field(description="督促平台删除违规信息/下架商品")
    accounts_disposed: int | None = Field(description="处置发布违规内容账号")
    sites_closed: int | None = Field(description="关闭违法违规问题网站")


class ComplainantOut(BaseModel):
    name: str | None
    phone: str | None


class TransferOut(BaseModel):
    authority: str
    scope: str | None


class NluOut(BaseModel):
    category: str | None
    confidence: float | None


class CaseState(BaseModel):
    """The case after a transition."""

    number: str
    kind: str
    category: str
    status: StatusValue
    status_name: str
    lead_unit: UnitRef | None
    co_units: list[UnitRef]
    transfer: TransferOut | None
    next_due_on: date | None
    deadlines: list[DeadlineOut]
    duplicate_of: str | None = Field(description="the number of the case this one was closed as a duplicate of")
    allowed_actions: list[str] = Field(description="the transitions this caller may make now")
    urgent: bool = Field(description="a crisis signal (self-harm, violence or threats, a mass incident) was seen "
                                     "in what the person wrote: 消保分局's duty group was alerted")
    flags: list[Literal["crisis"]] = Field(description='why the case is urgent: ["crisis"]; [] when it is not')


class CaseOut(CaseState):
    """One case in full."""

    kind_name: str
    category_name: str
    focus_area: int | None
    channel: str
    anonymous: bool
    description: str = Field(description="untrusted text, as received")
    received_at: datetime
    facts: FactsOut
    nlu: NluOut
    rejection_ground: str | None
    outcome: str | None
    identity: Literal["shown", "not_shown", "anonymous", "none"] = Field(
        description="shown: `complainant` is given (and the view is audited); not_shown: there is a named "
                    "complainant this answer does not include (the caller may not see it, or it answers the "
                    "creation that sent it); anonymous: an anonymous informant; none: no complainant")
    complainant: ComplainantOut | None
    evidence: list[EvidenceOut]
    events: list[EventOut]
    messages: list[MessageOut]
    subjects: list[SubjectOut] = Field(description="entries of the subject registry the case is linked to")
    satisfaction: SatisfactionOut | None = Field(description="the complainant's rating after close; null: none yet")
    closing: ClosingOut | None = Field(description="the facts recorded at close; null while the case is not closed")


class CaseListItem(BaseModel):
    number: str
    kind: str
    category: str
    status: StatusValue
    channel: str
    platform: str | None
    received_at: datetime
    next_due_on: date | None
    lead_unit: UnitRef | None
    excerpt: str
    overdue: bool
    due_soon: bool


class CaseList(BaseModel):
    items: list[CaseListItem]
    next_cursor: str | None = Field(description="pass as cursor for the next page; null on the last page")


class MessageCreated(BaseModel):
    number: str
    message: MessageOut


class CaseSubjects(BaseModel):
    """The subjects of a case after a link or an unlink."""

    number: str
    subjects: list[SubjectOut]


class RatingCreated(BaseModel):
    number: str
    status: StatusValue
    status_name: str
    satisfaction: SatisfactionOut
    reopened: bool = Field(description="the low rating reopened the case for review")


class CaseNotice(BaseModel):
    """What `callback_url` receives, one JSON POST per notice, with the header `Idempotency-Key` equal to
    `idempotency_key`: a retry after a timeout carries the same key, so drop a key seen before. Answer 2xx
    when taken; 408, 429 (with Retry-After) and 5xx are tried again later, any other status is not (a redirect
    is not followed)."""

    idempotency_key: str
    case: str = Field(description="the case number")
    event: str = Field(description="what happened, e.g. accepted, rejected, transferred, info_requested, "
                                   "staff_message, reply, closed, reopened, duplicate, survey")
    language: str
    text: str = Field(description="the notice as the complainant would read it")
    facts: dict = Field(description="the facts the text was made from (e.g. unit, due_on, reply)")


class ErrorDetail(BaseModel):
    field: str | None
    code: str
    message: str


class ErrorInfo(BaseModel):
    code: str = Field(description="stable snake_case code, e.g. validation_error, unknown_field, invalid_json, "
                                  "unauthorized, forbidden, not_found, illegal_transition, case_closed, conflict, "
                                  "payload_too_large, unsupported_media_type, domain_error, unknown_unit, "
                                  "unknown_original, unknown_subject, already_linked, not_linked, no_contact, "
                                  "case_not_closed, already_rated, callback_refused")
    message: str
    field: str | None = Field(None, description="the request field at fault, dotted")
    details: list[ErrorDetail] | None = None


class ErrorOut(BaseModel):
    error: ErrorInfo
