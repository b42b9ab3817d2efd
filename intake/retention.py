"""The retention period: personal data of cases closed longer ago than it is erased (`qinglang purge`).

What goes, per case closed before the cut-off (and not reopened since):
- the complainant's name, phone, e-mail and channel account id (a Telegram user id names an account; a
  web chat id links all of a person's cases), unless the same person has a case that is open or was
  closed after the cut-off: then all of it stays until that case's time has passed too;
- the person's details in the texts of the case (intake/redaction.py): description, messages, rating
  comment, event notes, and the notices sent (body, payload, and the chat the notice went to; a notice
  still waiting to be sent is left to the notifier).
What stays: the case with its category, units, dates, deadlines, outcome and figures, so the statistics
forms come out the same; the audit log's entries (with their notes redacted); evidence files.

Each purged case gets one audit event ``purge_personal_data`` (counts only, no personal data), which also
marks it done: a second run finds nothing new. Raw inbound updates and conversation drafts older than the
cut-off are deleted outright (they are copies of what the cases hold). Newer ones hold nothing of an expired
case in clear, nor can SQL find a person in them: an update's payload is encrypted and dropped once handled,
a draft is encrypted and ends with its submission (db/models.py, InboxUpdate and BotState). Drafts kept in
Redis (QINGLANG_REDIS_URL) are encrypted too but not purged here. A dry run only counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, delete, exists, func, or_, select, update
from sqlalchemy.orm import aliased

from db.models import BotState, Case, CaseEvent, Complainant, InboxUpdate, OutboxMessage
from db.uow import UnitOfWork, UnitOfWorkFactory
from intake.clock import Clock
from intake.redaction import known_values, redact, redact_json
from intake.status import DomainError, Status

ACTION = "purge_personal_data"
BATCH = 200
STILL_SENDING = ("pending", "claimed", "sending")


@dataclass(frozen=True)
class PurgeResult:
    cutoff: datetime | None  # None: no retention period configured and no date given: nothing to do
    dry_run: bool
    cases: int = 0  # cases whose personal data was (dry run: would be) purged
    people: int = 0  # complainants whose identity was (would be) erased
    people_kept: int = 0  # complainants of those cases kept for another open or recent case
    inbox: int = 0  # raw inbound updates deleted
    drafts: int = 0  # conversation drafts deleted


class RetentionService:
    def __init__(self, uow: UnitOfWorkFactory, clock: Clock, tz: ZoneInfo, retention: timedelta | None) -> None:
        self._uow = uow
        self._clock = clock
        self._tz = tz
        self._retention = retention

    def cutoff(self, before: date | None = None) -> datetime | None:
        """The moment before which a close counts as expired: the start of local day `before`, or now
        minus the retention period. A day after today is refused: it would reach cases closed later today."""
        now = self._clock.now()
        if before is not None:
            if before > now.astimezone(self._tz).date():
                raise DomainError(f"the cut-off {before.isoformat()} is after today")
            return datetime.combine(before, time(), self._tz).astimezone(UTC)
        return now - self._retention if self._retention else None

    async def purge(self, *, before: date | None = None, dry_run: bool = False) -> PurgeResult:
        cutoff = self.cutoff(before)
        if cutoff is None:
            return PurgeResult(None, dry_run)
        if dry_run:
            return await self._count(cutoff)
        cases, kept = 0, set()
        while (done := await self._purge_batch(cutoff, kept)) is not None:
            cases += done
        people = await self._erase_people(cutoff)
        inbox, drafts = await self._delete_copies(cutoff)
        return PurgeResult(cutoff, False, cases, people, len(kept), inbox, drafts)

    # -- which rows ---------------------------------------------------------------------------------------

    @staticmethod
    def _expired_cases(cutoff: datetime) -> ColumnElement[bool]:
        purged_since_close = exists().where(CaseEvent.case_id == Case.id, CaseEvent.action == ACTION,
                                            CaseEvent.created_at >= Case.closed_at)
        return (Case.status == Status.CLOSED.value) & (Case.closed_at < cutoff) & ~purged_since_close

    @staticmethod
    def _has_live_case(cutoff: datetime, person_id) -> ColumnElement[bool]:
        """The person has a case still open, or closed after the cut-off."""
        other = aliased(Case)  # the caller's query may itself be over cases
        return exists().where(other.complainant_id == person_id,
                              or_(other.status != Status.CLOSED.value, other.closed_at.is_(None),
                                  other.closed_at >= cutoff))

    def _erasable_people(self, cutoff: datetime) -> ColumnElement[bool]:
        identified = or_(Complainant.name.is_not(None), Complainant.phone.is_not(None),
                         Complainant.email.is_not(None), Complainant.channel_user_id.is_not(None))
        return (identified & exists().where(Case.complainant_id == Complainant.id)
                & ~self._has_live_case(cutoff, Complainant.id))

    # -- the work -----------------------------------------------------------------------------------------

    async def _count(self, cutoff: datetime) -> PurgeResult:
        async with self._uow() as uow:
            count = uow.session.scalar
            cases = await count(select(func.count()).select_from(Case).where(self._expired_cases(cutoff)))
            people = await count(select(func.count()).select_from(Complainant).where(self._erasable_people(cutoff)))
            kept = await count(select(func.count(func.distinct(Case.complainant_id))).where(
                self._expired_cases(cutoff), Case.complainant_id.is_not(None),
                self._has_live_case(cutoff, Case.complainant_id)))
            inbox = await count(select(func.count()).select_from(InboxUpdate).where(InboxUpdate.received_at < cutoff))
            drafts = await count(select(func.count()).select_from(BotState).where(BotState.updated_at < cutoff))
        return PurgeResult(cutoff, True, cases, people, kept, inbox, drafts)

    async def _purge_batch(self, cutoff: datetime, kept: set[int]) -> int | None:
        """Scrub up to BATCH expired cases in one transaction (None: there are none left); adds to `kept`
        the people who stay."""
        async with self._uow() as uow:
            ids = list((await uow.session.scalars(
                select(Case.id).where(self._expired_cases(cutoff)).order_by(Case.id).limit(BATCH))).all())
            if not ids:
                return None
            # lock, then ask again: a purge running at the same time may have done some of them meanwhile
            await uow.session.execute(select(Case.id).where(Case.id.in_(ids)).with_for_update())
            cases = (await uow.session.scalars(
                select(Case).where(Case.id.in_(ids), self._expired_cases(cutoff)).order_by(Case.id))).all()
            now = self._clock.now()
            for case in cases:
                if await self._purge_case(uow, case, cutoff, now) == "kept":
                    kept.add(case.complainant_id)
            await uow.commit()
        return len(cases)

    async def _purge_case(self, uow: UnitOfWork, case: Case, cutoff: datetime, now: datetime) -> str:
        person = await uow.session.get(Complainant, case.complainant_id) if case.complainant_id else None
        known = known_values(person.name, person.phone, person.email) if person is not None else []
        changed = 0

        def scrub(text: str | None, *, patterns: bool) -> str | None:
            nonlocal changed
            result = redact(text, known, patterns=patterns)
            changed += result != text
            return result

        case.description = scrub(case.description, patterns=True)
        case.satisfaction_comment = scrub(case.satisfaction_comment, patterns=True)
        for message in await uow.cases.messages(case.id):
            message.body = scrub(message.body, patterns=message.direction == "in")
        for event in await uow.cases.events(case.id):
            from_complainant = event.actor_type == "complainant" or event.action in ("rate", "rating_comment")
            event.note = scrub(event.note, patterns=from_complainant)
        notices = (await uow.session.scalars(select(OutboxMessage).where(
            OutboxMessage.case_id == case.id, OutboxMessage.audience == "complainant",
            OutboxMessage.status.not_in(STILL_SENDING)))).all()
        for notice in notices:
            notice.body = scrub(notice.body, patterns=False)
            notice.handled_note = scrub(notice.handled_note, patterns=False)
            notice.payload = redact_json(notice.payload, known)
            notice.recipient = None
        if person is None:
            identity = "none"
        elif await uow.session.scalar(select(self._has_live_case(cutoff, person.id))):
            identity = "kept"
        else:
            identity = "erased"  # by _erase_people, once every expired case of the person is scrubbed
        uow.session.add(CaseEvent(
            case_id=case.id, actor_type="system", action=ACTION, from_status=case.status, to_status=case.status,
            data={"cutoff": cutoff.isoformat(), "identity": identity, "texts": changed, "notices": len(notices)},
            created_at=now,
        ))
        return identity

    async def _erase_people(self, cutoff: datetime) -> int:
        async with self._uow() as uow:
            result = await uow.session.execute(
                update(Complainant).where(self._erasable_people(cutoff))
                .values(name=None, phone=None, email=None, channel_user_id=None)
                .execution_options(synchronize_session=False))
            await uow.commit()
        return result.rowcount

    async def _delete_copies(self, cutoff: datetime) -> tuple[int, int]:
        async with self._uow() as uow:
            inbox = await uow.session.execute(delete(InboxUpdate).where(InboxUpdate.received_at < cutoff))
            drafts = await uow.session.execute(delete(BotState).where(BotState.updated_at < cutoff))
            await uow.commit()
        return inbox.rowcount, drafts.rowcount
