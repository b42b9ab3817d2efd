"""What the complainant and the units are told, queued in the outbox inside the change's own transaction.

A notice is written as an outbox row (db.models.OutboxMessage) in the same unit of work as the case
change it reports, so a change is never committed without its notice, and a rolled-back change sends
nothing. The notifier worker (intake/notifier.py) delivers the rows later; the text is rendered at
send time in the recipient's language (intake/notice_templates.py) from the facts in the payload.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Case, Complainant, OutboxMessage, Unit


class Template(StrEnum):
    RECEIVED = "received"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    TRANSFERRED = "transferred"
    STARTED = "started"
    INFO_REQUESTED = "info_requested"
    STAFF_MESSAGE = "staff_message"
    REPLY = "reply"
    CLOSED = "closed"
    REOPENED = "reopened"
    DUPLICATE = "duplicate"
    STILL_IN_PROGRESS = "still_in_progress"
    SURVEY = "survey"
    # to a unit's group chat
    UNIT_NEW_CASE = "unit_new_case"
    UNIT_URGENT_CASE = "unit_urgent_case"  # a crisis signal: to 消保分局's duty group at once
    UNIT_REMINDER = "unit_reminder"
    OVERDUE_DIGEST = "overdue_digest"


class Channel(StrEnum):
    TELEGRAM = "telegram"  # a private chat with the bot, or a unit's group chat
    WEB = "web"  # the web chat's status page shows it (delivered when written)
    CALLBACK = "callback"  # POST to the originating system of an API case
    NONE = "none"  # no way to reach the person but a phone call: goes to the staff call list at once


@dataclass(frozen=True)
class Recipient:
    channel: Channel
    address: str | None
    language: str


def complainant_recipient(case: Case, person: Complainant | None) -> Recipient | None:
    """Where the person who wrote is told. An API case's originating system is told of every step
    (it knows its own caller); otherwise an anonymous informant is never contacted (a notice could
    reveal them), nor is anyone for a case nobody filed in person."""
    language = (person.language if person is not None else None) or "zh"
    if case.callback_url:
        return Recipient(Channel.CALLBACK, case.callback_url, language)
    if case.anonymous or person is None:
        return None
    if person.channel == "telegram" and person.channel_user_id:
        return Recipient(Channel.TELEGRAM, person.channel_user_id, language)
    if person.channel == "web":  # the case's status page: one inbox per case
        return Recipient(Channel.WEB, case.number, language)
    return Recipient(Channel.NONE, None, language)


def notify_complainant(
    session: AsyncSession,
    case: Case,
    person: Complainant | None,
    template: Template,
    now: datetime,
    *,
    key: str | None = None,
    **facts: Any,
) -> OutboxMessage | None:
    """Queue a notice to the complainant of `case`; `key` makes a scheduled notice happen once."""
    recipient = complainant_recipient(case, person)
    if recipient is None:
        return None
    return _queue(
        session, now,
        idempotency_key=key or f"{template.value}:{case.id}:{uuid.uuid4().hex}",
        case_id=case.id,
        audience="complainant",
        channel=recipient.channel.value,
        recipient=recipient.address,
        language=recipient.language,
        template=template.value,
        payload={"number": case.number, "kind": case.kind, **facts},
    )


def notify_unit(
    session: AsyncSession,
    unit: Unit,
    template: Template,
    now: datetime,
    *,
    key: str,
    case: Case | None = None,
    **facts: Any,
) -> OutboxMessage | None:
    """Queue a message to a unit's Telegram group chat; nothing when the unit has none configured."""
    if not unit.telegram_chat_id:
        return None
    return _queue(
        session, now,
        idempotency_key=key,
        case_id=case.id if case is not None else None,
        audience="unit",
        unit_id=unit.id,
        channel=Channel.TELEGRAM.value,
        recipient=unit.telegram_chat_id,
        language="zh",
        template=template.value,
        payload={**({"number": case.number, "kind": case.kind} if case is not None else {}), **facts},
    )


def _queue(session: AsyncSession, now: datetime, **fields: Any) -> OutboxMessage:
    row = OutboxMessage(status="pending", attempts=0, next_attempt_at=now, created_at=now, **fields)
    session.add(row)
    return row
