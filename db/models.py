"""SQLAlchemy models. Portable between SQLite and PostgreSQL: no dialect-only types."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from db.types import BigId, EncryptedJSON, EncryptedText, UtcDateTime

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


CRISIS_FLAG = "crisis"  # the flag of an urgent case (nlu/crisis.py finds the signals)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UtcDateTime(), dict[str, Any]: JSON(), int: Integer()}


class Unit(Base):
    """A unit of the bureau (科室, 分局, 所, 队); synchronised from the unit directory file."""

    __tablename__ = "units"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    name_en: Mapped[str] = mapped_column(String(200), default="")
    type: Mapped[str] = mapped_column(String(20))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    telegram_chat_id: Mapped[str | None] = mapped_column(String(40))


class StaffUser(Base):
    __tablename__ = "staff_users"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(100), default="")
    role: Mapped[str] = mapped_column(String(20))
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id"))
    password_hash: Mapped[str] = mapped_column(String(200))
    api_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    failed_logins: Mapped[int] = mapped_column(default=0)
    locked_until: Mapped[datetime | None]
    created_at: Mapped[datetime]

    unit: Mapped[Unit] = relationship(lazy="raise")


class StaffSession(Base):
    """A console login: the cookie carries a random token, the table only its hash."""

    __tablename__ = "staff_sessions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("staff_users.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    expires_at: Mapped[datetime]


class Complainant(Base):
    """The person who wrote; identity is confidential (DESIGN.md, privacy)."""

    __tablename__ = "complainants"
    __table_args__ = (UniqueConstraint("channel", "channel_user_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    channel: Mapped[str] = mapped_column(String(20))
    channel_user_id: Mapped[str | None] = mapped_column(String(64))
    # the identity of the person, encrypted at rest (migration 0010); the link to the channel account is
    # erased with them when the retention period has passed (intake/retention.py)
    name: Mapped[str | None] = mapped_column(EncryptedText("complainants.name"))
    phone: Mapped[str | None] = mapped_column(EncryptedText("complainants.phone"))
    email: Mapped[str | None] = mapped_column(EncryptedText("complainants.email"))
    language: Mapped[str] = mapped_column(String(8), default="zh")
    created_at: Mapped[datetime]


class CaseNumberCounter(Base):
    """The last number handed out per prefix and year; incremented under a row lock."""

    __tablename__ = "case_number_counters"

    prefix: Mapped[str] = mapped_column(String(8), primary_key=True)
    year: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last_value: Mapped[int] = mapped_column(BigInteger)


class Case(Base):
    __tablename__ = "cases"
    __table_args__ = (
        Index("ix_cases_status_next_due", "status", "next_due_on"),
        Index("ix_cases_received_at", "received_at"),
        # the queue's order over the open cases only (migration 0006); "status IN (open ones)" implies it
        Index("ix_cases_open_next_due", "next_due_on", "id",
              postgresql_where=text("status <> 'closed'"), sqlite_where=text("status <> 'closed'")),
        # the open cases in id order with their status (migration 0007): a unit's queue counts are a merge
        # of this with ix_case_units_unit_active_case, both read from the index alone
        Index("ix_cases_open_id_status", "id", "status",
              postgresql_where=text("status <> 'closed'"), sqlite_where=text("status <> 'closed'")),
        Index("ix_cases_closed_at", "closed_at"),  # the reports' "closed in the period" (migration 0009)
        # the console banner's urgent cases nobody has acknowledged yet (migration 0016)
        Index("ix_cases_urgent_unacknowledged", "id",
              postgresql_where=text("urgent AND urgent_acknowledged_at IS NULL"),
              sqlite_where=text("urgent AND urgent_acknowledged_at IS NULL")),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    number: Mapped[str] = mapped_column(String(32), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    category: Mapped[str] = mapped_column(String(32))
    focus_area: Mapped[int | None]
    status: Mapped[str] = mapped_column(String(20))
    channel: Mapped[str] = mapped_column(String(20))
    complainant_id: Mapped[int | None] = mapped_column(ForeignKey("complainants.id"))
    anonymous: Mapped[bool] = mapped_column(Boolean, default=False)
    description: Mapped[str] = mapped_column(Text)
    # facts of the purchase
    platform: Mapped[str | None] = mapped_column(String(40))
    live_room: Mapped[str | None] = mapped_column(String(200))
    streamer: Mapped[str | None] = mapped_column(String(200))
    product: Mapped[str | None] = mapped_column(String(200))
    amount_fen: Mapped[int | None] = mapped_column(BigInteger)
    order_number: Mapped[str | None] = mapped_column(String(64))
    purchase_date: Mapped[date | None] = mapped_column(Date)
    merchant_name: Mapped[str | None] = mapped_column(String(200))
    merchant_in_district: Mapped[bool | None] = mapped_column(Boolean)
    merchant_street: Mapped[str | None] = mapped_column(String(60))
    merchant_province: Mapped[str | None] = mapped_column(String(40))
    # classification as proposed by the NLU, kept beside the category staff may correct
    nlu_category: Mapped[str | None] = mapped_column(String(32))
    nlu_confidence: Mapped[float | None]
    # routing and decisions
    routing_rule: Mapped[str | None] = mapped_column(String(60))
    transfer_authority: Mapped[str | None] = mapped_column(String(200))
    transfer_scope: Mapped[str | None] = mapped_column(String(20))
    rejection_ground: Mapped[str | None] = mapped_column(String(40))
    outcome: Mapped[str | None] = mapped_column(String(40))
    received_at: Mapped[datetime]
    accepted_at: Mapped[datetime | None]
    decided_at: Mapped[datetime | None]
    resolved_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    replied_at: Mapped[datetime | None]  # the last complainant-facing reply
    next_due_on: Mapped[date | None] = mapped_column(Date)
    # the web chat's access code for the status page, hashed (web/chat/codes.py); never kept in clear
    access_code_hash: Mapped[str | None] = mapped_column(String(64))
    # a duplicate is closed with a reference to the case that handles the matter
    duplicate_of_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), index=True)
    # where an API case's originating system wants its notifications (None: the complainant is called)
    callback_url: Mapped[str | None] = mapped_column(String(500))
    # a conversation's submission (person and draft, hashed): a retried submit finds this case (migration 0012)
    submission_key: Mapped[str | None] = mapped_column(String(64), unique=True)
    # the satisfaction follow-up (回访): due one working day after close, then the rating
    survey_due_on: Mapped[date | None] = mapped_column(Date, index=True)
    satisfaction: Mapped[int | None]
    satisfaction_comment: Mapped[str | None] = mapped_column(Text)
    rated_at: Mapped[datetime | None]
    # what closing records for the statistics forms (附件1): 立案, 罚没款, referral, platform measures
    filed: Mapped[bool | None] = mapped_column(Boolean)  # 立案 (a tip-off's case filed for investigation)
    fine_fen: Mapped[int | None] = mapped_column(BigInteger)  # 罚款
    confiscation_fen: Mapped[int | None] = mapped_column(BigInteger)  # 没收违法所得
    judicial_referral: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    takedowns: Mapped[int | None]  # 督促平台删除违规信息/下架商品 (items)
    accounts_disposed: Mapped[int | None]  # 处置发布违规内容账号 (accounts)
    sites_closed: Mapped[int | None]  # 关闭违法违规问题网站 (sites)
    # a crisis signal (self-harm, violence, a mass incident: nlu/crisis.py) in what the person wrote
    urgent: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    urgent_acknowledged_at: Mapped[datetime | None]
    urgent_acknowledged_by: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id"))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    version: Mapped[int] = mapped_column(default=1)

    @property
    def flags(self) -> list[str]:
        """What the case JSON calls it: ["crisis"] for an urgent case (the only flag there is)."""
        return [CRISIS_FLAG] if self.urgent else []

    __mapper_args__ = {"version_id_col": version}

    complainant: Mapped[Complainant | None] = relationship(lazy="raise")
    assignments: Mapped[list[CaseUnit]] = relationship(back_populates="case", lazy="raise")
    deadlines: Mapped[list[CaseDeadline]] = relationship(back_populates="case", lazy="raise")


class CaseUnit(Base):
    """A unit's part in a case: one active lead, any number of co-units."""

    __tablename__ = "case_units"
    # a unit's active cases in case_id order (migration 0007): the handler's scope is answered from the index
    __table_args__ = (Index("ix_case_units_unit_active_case", "unit_id", "active", "case_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id"))
    role: Mapped[str] = mapped_column(String(8))  # lead | co
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    assigned_at: Mapped[datetime]

    case: Mapped[Case] = relationship(back_populates="assignments", lazy="raise")
    unit: Mapped[Unit] = relationship(lazy="raise")


class CaseDeadline(Base):
    """One statutory clock of a case, with the legal basis it was computed from."""

    __tablename__ = "case_deadlines"
    __table_args__ = (UniqueConstraint("case_id", "clock"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    clock: Mapped[str] = mapped_column(String(40))
    started_on: Mapped[date] = mapped_column(Date)
    due_on: Mapped[date] = mapped_column(Date)
    provisional: Mapped[bool] = mapped_column(Boolean, default=False)
    extended: Mapped[bool] = mapped_column(Boolean, default=False)
    basis: Mapped[str] = mapped_column(Text, default="")
    met_at: Mapped[datetime | None]

    case: Mapped[Case] = relationship(back_populates="deadlines", lazy="raise")


class Evidence(Base):
    __tablename__ = "evidence"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    mime: Mapped[str] = mapped_column(String(100))
    original_name: Mapped[str | None] = mapped_column(String(255))
    source: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime]


class CaseEvent(Base):
    """Audit log: every change and every view of personal data, by whom and when."""

    __tablename__ = "case_events"
    # the reports count transfers and exports by action over a span (migration 0009)
    __table_args__ = (Index("ix_case_events_action_created_at", "action", "created_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    actor_type: Mapped[str] = mapped_column(String(20))  # staff | complainant | system
    actor_id: Mapped[int | None] = mapped_column(BigInteger)
    action: Mapped[str] = mapped_column(String(40))
    from_status: Mapped[str | None] = mapped_column(String(20))
    to_status: Mapped[str | None] = mapped_column(String(20))
    note: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime]


class CaseMessage(Base):
    """A message to or from the complainant. `is_reply` marks the official answer."""

    __tablename__ = "case_messages"
    # "has this case had a complainant-facing reply?" for the reports' reply rate (migration 0009)
    __table_args__ = (Index("ix_case_messages_replies", "case_id",
                            postgresql_where=text("is_reply"), sqlite_where=text("is_reply")),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    direction: Mapped[str] = mapped_column(String(10))  # in | out
    body: Mapped[str] = mapped_column(Text)
    is_reply: Mapped[bool] = mapped_column(Boolean, default=False)
    # staff asked the complainant for more information; the answer comes back as an "in" message
    info_request: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    staff_user_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id"))
    created_at: Mapped[datetime]


class OutboxMessage(Base):
    """A notification to send, with its own send state apart from the case state (DESIGN.md).

    pending -> sending (claimed by one worker until lease_until) -> sent | undeliverable; a claim
    whose worker vanished mid-send ends `unconfirmed` (it may have gone out; never sent twice)."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_status_next_attempt", "status", "next_attempt_at"),
        Index("ix_outbox_recipient_sent", "channel", "recipient", "sent_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(100), unique=True)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    audience: Mapped[str] = mapped_column(String(12), default="complainant", server_default="complainant")
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("units.id"))
    channel: Mapped[str] = mapped_column(String(20))  # telegram | web | callback | none
    recipient: Mapped[str | None] = mapped_column(String(500))
    language: Mapped[str] = mapped_column(String(8), default="zh", server_default="zh")
    template: Mapped[str] = mapped_column(String(40))
    payload: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime]
    lease_until: Mapped[datetime | None]
    worker: Mapped[str | None] = mapped_column(String(64))
    last_error: Mapped[str | None] = mapped_column(Text)
    body: Mapped[str | None] = mapped_column(Text)  # the text as rendered for the attempt that went out
    external_id: Mapped[str | None] = mapped_column(String(100))  # e.g. Telegram's message_id
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    # staff who followed an undeliverable notification up by phone
    handled_by: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id"))
    handled_at: Mapped[datetime | None]
    handled_note: Mapped[str | None] = mapped_column(Text)


class ScheduledRun(Base):
    """One run of a periodic job (e.g. the daily reminders of 2026-11-30). The unique key makes a
    run happen once across restarts and workers; a run whose worker died is taken over after its lease."""

    __tablename__ = "scheduled_runs"
    __table_args__ = (UniqueConstraint("job", "run_key"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    job: Mapped[str] = mapped_column(String(40))
    run_key: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(20))  # running | done | failed
    attempts: Mapped[int] = mapped_column(default=1)
    lease_until: Mapped[datetime]
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    result: Mapped[dict[str, Any] | None]
    error: Mapped[str | None] = mapped_column(Text)


class Escalation(Base):
    """A missed deadline reported to 消保分局: the record 督查考绩科 uses."""

    __tablename__ = "escalations"
    __table_args__ = (UniqueConstraint("case_id", "clock", "due_on"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    clock: Mapped[str] = mapped_column(String(40))
    due_on: Mapped[date] = mapped_column(Date)
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("units.id"))
    escalated_on: Mapped[date] = mapped_column(Date, index=True)
    replied: Mapped[bool] = mapped_column(Boolean, default=False)  # a complainant-facing reply existed


class InboxUpdate(Base):
    """A raw inbound update, stored before anything else so nothing is lost; duplicates dropped.

    What the person sent is personal data (a name, a phone number typed at their steps): the payload is
    encrypted at rest, and emptied once the update is handled, when only the row's ids (for dropping a
    repeated delivery) are still needed (migration 0014). The error may quote the payload: encrypted too."""

    __tablename__ = "inbox"
    __table_args__ = (UniqueConstraint("channel", "external_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    channel: Mapped[str] = mapped_column(String(20))
    external_id: Mapped[str] = mapped_column(String(100))
    payload: Mapped[dict[str, Any] | None] = mapped_column(EncryptedJSON("inbox.payload"))  # None: handled
    received_at: Mapped[datetime]
    processed_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(EncryptedText("inbox.error"))
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    # the process handling it may until then; the replay of another replica takes it only afterwards
    lease_until: Mapped[datetime | None]


class Subject(Base):
    """An entry of the seed's 主体名录: platform, live room, operator, service agency or streamer."""

    __tablename__ = "subjects"
    __table_args__ = (UniqueConstraint("type", "platform", "name"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    type: Mapped[str] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(String(200))
    platform: Mapped[str] = mapped_column(String(40), default="")
    external_id: Mapped[str | None] = mapped_column(String(100))
    in_district: Mapped[bool | None] = mapped_column(Boolean)
    street: Mapped[str | None] = mapped_column(String(60))
    notes: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]


class CaseSubject(Base):
    __tablename__ = "case_subjects"
    __table_args__ = (UniqueConstraint("case_id", "subject_id", "role"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    subject_id: Mapped[int] = mapped_column(ForeignKey("subjects.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(20), default="reported")


class ReportInput(Base):
    """The figures and texts of a statistics form that the cases do not hold, entered by staff once per
    period and reporting unit (附件1 "stats", 附件2 "monthly")."""

    __tablename__ = "report_inputs"
    __table_args__ = (UniqueConstraint("form", "period", "unit_code"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    form: Mapped[str] = mapped_column(String(20))
    period: Mapped[str] = mapped_column(String(7))  # YYYY-MM
    unit_code: Mapped[str] = mapped_column(String(40))  # "bureau": the whole bureau
    data: Mapped[dict[str, Any]]
    updated_by: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id"))
    updated_at: Mapped[datetime]


class HolidayOverride(Base):
    """An administrator's correction of the working-day calendar for one date."""

    __tablename__ = "holiday_overrides"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    is_workday: Mapped[bool] = mapped_column(Boolean)
    note: Mapped[str] = mapped_column(String(200), default="")


class BotState(Base):
    """A conversation draft (aiogram FSM state and data) of the bot or the web chat, kept so a restart loses
    nothing. The data holds the name and phone typed before submission and the web chat's transcript:
    encrypted at rest (migration 0014)."""

    __tablename__ = "bot_states"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)  # built from aiogram's StorageKey
    state: Mapped[str | None] = mapped_column(String(200))
    data: Mapped[dict[str, Any]] = mapped_column(EncryptedJSON("bot_states.data"), default=dict)  # JSON types only
    updated_at: Mapped[datetime]


class RateCounter(Base):
    """How often one subject (an address, a chat cookie, a case) did something in one time window.

    The web chat's limits count here, with an atomic upsert, so every web process shares them and a
    try is counted before the expensive check it guards (web/chat/limits.py)."""

    __tablename__ = "rate_counters"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    window_start: Mapped[int] = mapped_column(BigInteger, primary_key=True)  # seconds since the epoch
    count: Mapped[int] = mapped_column(BigInteger, default=0)  # tries, or bytes for an upload quota
    expires_at: Mapped[datetime] = mapped_column(index=True)
