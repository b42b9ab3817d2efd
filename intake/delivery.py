"""What a transport says about one attempt to deliver a notice, and the transports without a network."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from intake.notice_templates import RenderedNotice


@dataclass(frozen=True)
class Outgoing:
    """One notice on its way: where, what, and the key the receiver may use to drop a repeat."""

    id: int
    idempotency_key: str
    channel: str
    recipient: str | None
    template: str
    case_number: str | None
    language: str
    notice: RenderedNotice
    facts: dict
    lease_until: datetime | None = None


@dataclass(frozen=True)
class Delivered:
    external_id: str | None = None


@dataclass(frozen=True)
class Retry:
    """Not delivered, and certainly not: try again later (after `after` seconds if the receiver said)."""

    error: str
    after: float | None = None
    pause_channel: bool = False  # 429: the whole bot waits, not only this notice


@dataclass(frozen=True)
class Undeliverable:
    """Will never arrive this way (blocked, deleted account, no channel): staff must call."""

    error: str


@dataclass(frozen=True)
class Unconfirmed:
    """The request went out and no answer came back: it may have arrived. Never sent again."""

    error: str


Result = Delivered | Retry | Undeliverable | Unconfirmed


class Transport(Protocol):
    async def send(self, item: Outgoing) -> Result: ...


class WebInbox:
    """The web chat's status page is the inbox: the rendered text is stored with the row, nothing to send."""

    async def send(self, item: Outgoing) -> Result:
        return Delivered()


class NoChannel:
    """A complainant with no push channel (e.g. a hotline caller without a callback): a phone call."""

    async def send(self, item: Outgoing) -> Result:
        return Undeliverable("no channel to reach the complainant: call them")
