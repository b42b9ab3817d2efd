"""Case service: creates cases and moves them through the status machine, one transaction each."""

from __future__ import annotations

import dataclasses
import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select

from db.models import (
    Case,
    CaseDeadline,
    CaseEvent,
    CaseMessage,
    CaseSubject,
    CaseUnit,
    Complainant,
    Evidence,
    Subject,
    Unit,
)
from db.uow import UnitOfWork, UnitOfWorkFactory
from intake.calendar import WorkingCalendar
from intake.clock import Clock
from intake.closing import ClosingFacts
from intake.deadlines import DeadlinePolicy, compute_due
from intake.notices import Template, notify_complainant, notify_unit
from intake.status import OUTCOMES, REJECTION_GROUNDS, STAFF_OUTCOMES, Action, DomainError, Status, check
from nlu.crisis import default_detector
from nlu.taxonomy import CATEGORY_IDS, FOCUS_AREAS, Kind
from routing.rules import MerchantLocation, RoutingDecision, RoutingRequest, RoutingTable

MAX_DESCRIPTION = 20_000
MAX_REPLY = 10_000
LOW_RATING = 2  # this rating or lower reopens the case for review
# channels where the conversation itself gives the receipt (case number, unit, dates)
CONVERSATION_CHANNELS = frozenset({"telegram", "web"})


@dataclass(frozen=True)
class Actor:
    type: str  # staff | complainant | system
    id: int | None = None

    @classmethod
    def system(cls) -> Actor:
        return cls("system")


@dataclass(frozen=True)
class ComplainantInfo:
    channel_user_id: str | None = None
    name: str | None = None
    phone: str | None = None
    email: str | None = None
    language: str = "zh"


@dataclass(frozen=True)
class NewCase:
    kind: Kind
    category: str
    description: str
    channel: str
    focus_area: int | None = None
    complainant: ComplainantInfo | None = None
    anonymous: bool = False
    platform: str | None = None
    live_room: str | None = None
    streamer: str | None = None
    product: str | None = None
    amount_fen: int | None = None
    order_number: str | None = None
    purchase_date: date | None = None
    merchant_name: str | None = None
    merchant: MerchantLocation = field(default_factory=lambda: MerchantLocation(None, None, None))
    nlu_category: str | None = None
    nlu_confidence: float | None = None
    received_at: datetime | None = None
    evidence: tuple[EvidenceItem, ...] = ()
    links: tuple[str, ...] = ()
    callback_url: str | None = None  # an API case's originating system, told of every step
    # the same submission handled again (a retried update) finds its case instead of filing a second one
    submission_key: str | None = None
    # a crisis signal in what the person sent: decided by the conversation, which reads every message;
    # None (the API, an import): the description is read on creation
    urgent: bool | None = None


@dataclass(frozen=True)
class EvidenceItem:
    """A file already in the evidence store (or, with source 'link', a URL the person gave)."""

    sha256: str
    size: int
    mime: str
    original_name: str | None
    source: str


@dataclass(frozen=True)
class CaseSummary:
    """What a complainant may see of their own case."""

    id: int
    number: str
    kind: str
    category: str
    status: Status
    received_at: datetime
    next_due_on: date | None
    lead_unit: str | None


@dataclass(frozen=True)
class DeadlineView:
    clock: str
    due_on: date
    provisional: bool
    met: bool
    basis: str


@dataclass(frozen=True)
class CaseView:
    id: int
    number: str
    kind: str
    category: str
    status: Status
    lead_unit: str | None
    co_units: tuple[str, ...]
    deadlines: tuple[DeadlineView, ...]
    next_due_on: date | None
    transfer_authority: str | None
    routing: RoutingDecision | None = None
    urgent: bool = False
    flags: tuple[str, ...] = ()

    def deadline(self, clock: str) -> DeadlineView | None:
        return next((d for d in self.deadlines if d.clock == clock), None)


class CaseNotFound(DomainError):
    pass


class AlreadyRated(DomainError):
    """A case is rated once."""


class CaseService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        routing: RoutingTable,
        policy: DeadlinePolicy,
        clock: Clock,
        tz: ZoneInfo,
        number_prefix: str = "LW",
        *,
        duty_unit: str,
    ) -> None:
        self._uow = uow
        self._routing = routing
        self._policy = policy
        self._clock = clock
        self._tz = tz
        self._prefix = number_prefix
        # told of an urgent case at once (DESIGN "Crisis signals"): 消保分局, who also gets the overdue digest
        self._duty_unit = duty_unit

    # -- creation -------------------------------------------------------------------------

    async def create(self, new: NewCase, actor: Actor | None = None) -> CaseView:
        _validate_new_case(new)
        actor = actor or Actor.system()
        received_at = new.received_at or self._clock.now()
        urgent = new.urgent if new.urgent is not None else default_detector().is_crisis(new.description)
        decision = self._routing.route(RoutingRequest(new.kind, new.category, new.focus_area, new.merchant))
        if new.submission_key is not None:
            async with self._uow() as uow:
                filed = await uow.session.scalar(select(Case.id).where(Case.submission_key == new.submission_key))
            if filed is not None:
                return dataclasses.replace(await self.get(filed), routing=decision)
        async with self._uow() as uow:
            now = self._clock.now()
            complainant = await self._complainant(uow, new, now)
            case = Case(
                number=_provisional_number(),
                kind=new.kind.value,
                category=new.category,
                focus_area=new.focus_area,
                status=Status.RECEIVED.value,
                channel=new.channel,
                complainant=complainant,
                anonymous=new.anonymous,
                description=new.description.strip(),
                platform=new.platform,
                live_room=new.live_room,
                streamer=new.streamer,
                product=new.product,
                amount_fen=new.amount_fen,
                order_number=new.order_number,
                purchase_date=new.purchase_date,
                merchant_name=new.merchant_name,
                merchant_in_district=new.merchant.in_district,
                merchant_street=new.merchant.street,
                merchant_province=new.merchant.province,
                nlu_category=new.nlu_category,
                nlu_confidence=new.nlu_confidence,
                routing_rule=decision.rule_id,
                callback_url=new.callback_url,
                submission_key=new.submission_key,
                urgent=urgent,
                received_at=received_at,
                created_at=now,
                updated_at=now,
                assignments=[],
                deadlines=[],
            )
            uow.session.add(case)
            await uow.flush()
            await self._assign(uow, case, decision.lead, decision.co_units, now)
            await self._link_subjects(uow, case, now)
            self._attach(uow, case, new.evidence, now)
            self._attach(uow, case, tuple(_link_item(url) for url in new.links), now)
            calendar = await self._calendar(uow)
            if decision.transfer is not None:
                self._start_clocks(case, "received", received_at, calendar, only=("transfer",))
            else:
                self._start_clocks(case, "received", received_at, calendar, exclude=("transfer",))
            self._event(
                uow, case, actor, "create", None, Status.RECEIVED, now,
                note=decision.reason_zh,
                data={
                    "rule": decision.rule_id,
                    "lead": decision.lead,
                    "co_units": list(decision.co_units),
                    "proposed_transfer": decision.transfer.name if decision.transfer else None,
                },
            )
            case.next_due_on = _next_due(case)
            await uow.flush()
            # The year's counter row stays locked until commit, so concurrent creators queue on it:
            # the number is taken last, leaving only the notices and the commit inside that lock.
            year = self._local_date(received_at).year
            serial = await uow.cases.next_number(self._prefix, year)
            case.number = f"{self._prefix}-{year}-{serial:06d}"
            if new.channel not in CONVERSATION_CHANNELS:  # a conversation gives its own receipt
                notify_complainant(uow.session, case, complainant, Template.RECEIVED, now,
                                   unit=decision.lead, due_on=_iso(case.next_due_on),
                                   authority=decision.transfer.name if decision.transfer else None)
            self._tell_lead(uow, case, now, f"new:{case.id}")
            if urgent:
                await self._raise_alarm(uow, case, actor, now)
            view = self._view(case, decision)
            await uow.commit()
        return view

    async def acknowledge_urgent(self, case_id: int, actor: Actor) -> CaseView:
        """Staff have seen an urgent case: it leaves the console banner (the flag stays)."""
        async with self._uow() as uow:
            case, now, _calendar = await self._begin(uow, case_id)
            if not case.urgent:
                raise DomainError("本件不是紧急件 (this case is not flagged urgent)")
            if case.urgent_acknowledged_at is None:
                case.urgent_acknowledged_at = now
                case.urgent_acknowledged_by = _staff(actor)
                self._event(uow, case, actor, "acknowledge_urgent", None, None, now)
            return await self._save(uow, case, now)

    async def _raise_alarm(self, uow: UnitOfWork, case: Case, actor: Actor, now: datetime) -> None:
        """Tell the unit on duty (消保分局 by default) of an urgent case now, not at the next digest; record
        it on the case."""
        duty = await uow.units.by_code(self._duty_unit)
        queued = duty is not None and notify_unit(
            uow.session, duty, Template.UNIT_URGENT_CASE, now, key=f"urgent:{case.id}", case=case,
            category=case.category, flags=list(case.flags),
        ) is not None
        self._event(uow, case, actor, "urgent", None, None, now,
                    data={"flags": list(case.flags), "duty_unit": self._duty_unit, "alerted": queued})

    # -- status actions -------------------------------------------------------------------

    async def accept(self, case_id: int, actor: Actor, note: str | None = None) -> CaseView:
        async with self._uow() as uow:
            case, now, calendar = await self._begin(uow, case_id)
            source = self._move(case, Action.ACCEPT)
            case.accepted_at = case.decided_at = now
            case.rejection_ground = None  # a case rejected, reopened and now accepted is no longer rejected
            self._meet(case, now, "complaint_acceptance", "tipoff_check", "transfer")
            self._start_clocks(case, "accepted", now, calendar)
            self._start_clocks(case, "decided", now, calendar)
            await self._tell(uow, case, Template.ACCEPTED, now, unit=_lead_code(case), due_on=_iso(_next_due(case)))
            return await self._finish(uow, case, actor, Action.ACCEPT, source, now, note)

    async def reject(self, case_id: int, actor: Actor, ground: str, reply: str) -> CaseView:
        if ground not in REJECTION_GROUNDS:
            raise DomainError(f"unknown rejection ground {ground!r}; one of: {', '.join(REJECTION_GROUNDS)}")
        reply = _required_text(reply, "the reply telling the complainant why")
        async with self._uow() as uow:
            case, now, calendar = await self._begin(uow, case_id)
            source = self._move(case, Action.REJECT)
            case.rejection_ground = ground
            case.decided_at = now
            self._meet(case, now, "complaint_acceptance", "tipoff_check", "transfer")
            self._start_clocks(case, "decided", now, calendar)
            self._record_reply(uow, case, actor, reply, now)
            await self._tell(uow, case, Template.REJECTED, now, ground=ground, reply=reply)
            return await self._finish(uow, case, actor, Action.REJECT, source, now, REJECTION_GROUNDS[ground],
                                      data={"ground": ground})

    async def transfer(
        self,
        case_id: int,
        actor: Actor,
        *,
        unit_code: str | None = None,
        authority: str | None = None,
        scope: str | None = None,
        note: str | None = None,
    ) -> CaseView:
        if (unit_code is None) == (authority is None):
            raise DomainError("a transfer goes either to a unit of the bureau or to an outside authority")
        if scope is not None and scope not in ("in_province", "out_of_province"):
            raise DomainError("transfer scope must be in_province or out_of_province")
        async with self._uow() as uow:
            case, now, _ = await self._begin(uow, case_id)
            source = self._move(case, Action.TRANSFER)
            if unit_code is not None:
                unit = await uow.units.by_code(unit_code)
                if unit is None or not unit.active:
                    raise DomainError(f"unknown unit {unit_code!r}")
                self._replace_lead(case, unit, now)
                case.transfer_authority = None
                data = {"unit": unit_code}
                self._tell_lead(uow, case, now, f"transfer:{case.id}:{case.version}")
            else:
                case.transfer_authority = _required_text(authority, "the authority's name")
                case.transfer_scope = scope or "in_province"
                data = {"authority": case.transfer_authority, "scope": case.transfer_scope}
            self._meet(case, now, "transfer")
            await self._tell(uow, case, Template.TRANSFERRED, now, **data)
            return await self._finish(uow, case, actor, Action.TRANSFER, source, now, note, data=data)

    async def start(self, case_id: int, actor: Actor, note: str | None = None) -> CaseView:
        async with self._uow() as uow:
            case, now, _ = await self._begin(uow, case_id)
            source = self._move(case, Action.START)
            await self._tell(uow, case, Template.STARTED, now, unit=_lead_code(case), due_on=_iso(_next_due(case)))
            return await self._finish(uow, case, actor, Action.START, source, now, note)

    async def resolve(self, case_id: int, actor: Actor, outcome: str, reply: str) -> CaseView:
        if outcome not in STAFF_OUTCOMES:
            raise DomainError(f"unknown outcome {outcome!r}; one of: {', '.join(STAFF_OUTCOMES)}")
        reply = _required_text(reply, "the reply to the complainant")
        async with self._uow() as uow:
            case, now, _ = await self._begin(uow, case_id)
            source = self._move(case, Action.RESOLVE)
            case.outcome = outcome
            case.resolved_at = now
            self._meet(case, now, "complaint_mediation", "tipoff_check")
            self._record_reply(uow, case, actor, reply, now)
            await self._tell(uow, case, Template.REPLY, now, outcome=outcome, reply=reply)
            return await self._finish(uow, case, actor, Action.RESOLVE, source, now, OUTCOMES[outcome],
                                      data={"outcome": outcome})

    async def reply(self, case_id: int, actor: Actor, body: str) -> CaseView:
        """Record a complainant-facing answer without changing the status (e.g. after an outside transfer)."""
        body = _required_text(body, "the reply")
        async with self._uow() as uow:
            case, now, _ = await self._begin(uow, case_id)
            if case.status == Status.CLOSED:
                raise DomainError("the case is closed; reopen it before replying")
            self._record_reply(uow, case, actor, body, now)
            await self._tell(uow, case, Template.REPLY, now, reply=body)
            self._event(uow, case, actor, "reply", Status(case.status), Status(case.status), now)
            return await self._save(uow, case, now)

    async def close(self, case_id: int, actor: Actor, note: str | None = None,
                    facts: ClosingFacts | None = None) -> CaseView:
        """Close with the facts the statistics forms need (立案, 罚没款, referral, platform measures)."""
        async with self._uow() as uow:
            case, now, calendar = await self._begin(uow, case_id)
            if case.status == Status.TRANSFERRED and case.transfer_authority is None:
                raise DomainError("a case transferred to a unit of the bureau is closed by that unit after handling")
            source = self._move(case, Action.CLOSE)
            if case.replied_at is None:
                raise DomainError("a case cannot be closed before a reply to the complainant is recorded")
            facts = (facts or ClosingFacts()).validated(case.outcome)
            facts.apply_to(case)
            case.closed_at = now
            self._meet(case, now, *(d.clock for d in case.deadlines))
            await self._tell(uow, case, Template.CLOSED, now)
            self._plan_survey(case, now, calendar)
            return await self._finish(uow, case, actor, Action.CLOSE, source, now, note,
                                      data=facts.as_event_data() or None)

    async def reopen(self, case_id: int, actor: Actor, reason: str) -> CaseView:
        reason = _required_text(reason, "the reason for reopening")
        async with self._uow() as uow:
            case, now, calendar = await self._begin(uow, case_id)
            source = Status(case.status)
            check(Action.REOPEN, source)
            target = Status.IN_PROGRESS if case.accepted_at is not None else Status.RECEIVED
            case.status = target.value
            case.closed_at = None
            case.replied_at = None  # the new round needs its own reply before closing again
            case.survey_due_on = None
            case.duplicate_of_id = None
            self._start_clocks(case, "accepted" if target == Status.IN_PROGRESS else "received", now, calendar)
            await self._tell(uow, case, Template.REOPENED, now, unit=_lead_code(case))
            return await self._finish(uow, case, actor, Action.REOPEN, source, now, reason)

    async def extend(self, case_id: int, actor: Actor, clock: str, approval: str) -> CaseView:
        """Extend a clock that allows it (e.g. the tip-off check, +15 working days with approval)."""
        approval = _required_text(approval, "the approval (who approved and why)")
        async with self._uow() as uow:
            case, now, calendar = await self._begin(uow, case_id)
            row = next((d for d in case.deadlines if d.clock == clock and d.met_at is None), None)
            if row is None:
                raise DomainError(f"the case has no open {clock} deadline")
            if row.extended:
                raise DomainError(f"the {clock} deadline was already extended")
            version = self._policy.clock(clock).version_for(self._local_date(case.received_at))
            if not version.extension:
                raise DomainError(f"the {clock} deadline cannot be extended")
            due = compute_due(version, row.started_on, calendar, extended=True)
            row.due_on, row.provisional, row.extended = due.on, due.provisional, True
            self._event(uow, case, actor, "extend", Status(case.status), Status(case.status), now, note=approval,
                        data={"clock": clock, "due_on": due.on.isoformat()})
            return await self._save(uow, case, now)

    async def withdraw(self, case_id: int, actor: Actor, reply: str) -> CaseView:
        """The complainant withdraws before the case is accepted; the confirmation is the reply."""
        reply = _required_text(reply, "the confirmation to the complainant")
        async with self._uow() as uow:
            case, now, _ = await self._begin(uow, case_id)
            source = self._move(case, Action.WITHDRAW)
            case.outcome = "withdrawn"
            case.closed_at = case.resolved_at = now
            self._meet(case, now, *(d.clock for d in case.deadlines))
            self._record_reply(uow, case, actor, reply, now)
            return await self._finish(uow, case, actor, Action.WITHDRAW, source, now, OUTCOMES["withdrawn"])

    async def message(self, case_id: int, actor: Actor, body: str) -> CaseView:
        """A staff message to the complainant that is not the official answer (e.g. a progress note)."""
        body = _required_text(body, "the message")
        async with self._uow() as uow:
            case, now, _ = await self._begin(uow, case_id)
            if case.status == Status.CLOSED:
                raise DomainError("the case is closed; reopen it before writing to the complainant")
            uow.session.add(CaseMessage(case_id=case.id, direction="out", body=body, staff_user_id=_staff(actor),
                                        created_at=now))
            await self._tell(uow, case, Template.STAFF_MESSAGE, now, body=body)
            self._event(uow, case, actor, "message", Status(case.status), Status(case.status), now)
            return await self._save(uow, case, now)

    async def request_information(self, case_id: int, actor: Actor, question: str) -> CaseView:
        """Ask the complainant for more (补正); the answer comes back through add_from_complainant."""
        question = _required_text(question, "the question to the complainant")
        async with self._uow() as uow:
            case, now, _ = await self._begin(uow, case_id)
            if case.status == Status.CLOSED:
                raise DomainError("the case is closed; reopen it before asking the complainant")
            if case.anonymous or case.complainant_id is None:
                raise DomainError("an anonymous informant cannot be asked: nobody can be contacted")
            uow.session.add(CaseMessage(case_id=case.id, direction="out", body=question, info_request=True,
                                        staff_user_id=_staff(actor), created_at=now))
            await self._tell(uow, case, Template.INFO_REQUESTED, now, question=question)
            self._event(uow, case, actor, "request_info", Status(case.status), Status(case.status), now,
                        note=question)
            return await self._save(uow, case, now)

    async def mark_duplicate(self, case_id: int, actor: Actor, original_number: str, reply: str) -> CaseView:
        """Close a case that repeats another one; the complainant's reply says where the matter is handled."""
        reply = _required_text(reply, "the reply telling the complainant about the merge")
        number = (original_number or "").strip().upper()
        if not number:
            raise DomainError("the number of the original case is required")
        async with self._uow() as uow:
            case, now, _ = await self._begin(uow, case_id)
            original = await uow.cases.by_number(number)
            seen = {case.id}
            while original is not None and original.duplicate_of_id is not None and original.id not in seen:
                seen.add(original.id)
                original = await uow.session.get(Case, original.duplicate_of_id)
            if original is None:
                raise DomainError(f"no case {number}")
            if original.id in seen:
                raise DomainError("a case cannot be a duplicate of itself")
            source = self._move(case, Action.DUPLICATE)
            case.duplicate_of_id = original.id
            case.outcome = "duplicate"
            case.closed_at = case.resolved_at = now
            self._meet(case, now, *(d.clock for d in case.deadlines))
            self._record_reply(uow, case, actor, reply, now)
            await self._tell(uow, case, Template.DUPLICATE, now, original=original.number, reply=reply)
            return await self._finish(uow, case, actor, Action.DUPLICATE, source, now, OUTCOMES["duplicate"],
                                      data={"original": original.number})

    async def reassign(self, case_id: int, actor: Actor, lead: str, co_units: tuple[str, ...] = (),
                       note: str | None = None) -> CaseView:
        """Triage sets the lead (★) and co-units of a case without a status change."""
        wanted = [lead, *dict.fromkeys(c for c in co_units if c and c != lead)]
        async with self._uow() as uow:
            case, now, _ = await self._begin(uow, case_id)
            if case.status == Status.CLOSED:
                raise DomainError("the case is closed; reopen it before changing its units")
            units = await uow.units.by_codes(wanted)
            unknown = [c for c in wanted if c not in units or not units[c].active]
            if not lead or unknown:
                raise DomainError(f"unknown unit {', '.join(unknown) or '(no lead)'}")
            active = [a for a in case.assignments if a.active]
            before = {"lead": _lead_code(case), "co_units": [a.unit.code for a in active if a.role == "co"]}
            after = {"lead": lead, "co_units": wanted[1:]}
            if before["lead"] == lead and set(before["co_units"]) == set(after["co_units"]):
                raise DomainError("the case already has these units")
            for assignment in active:
                assignment.active = False
            for code in wanted:
                case.assignments.append(CaseUnit(case_id=case.id, unit=units[code], unit_id=units[code].id,
                                                 role="lead" if code == lead else "co", assigned_at=now))
            if before["lead"] != lead:
                self._tell_lead(uow, case, now, f"reassign:{case.id}:{case.version}")
            status = Status(case.status)
            self._event(uow, case, actor, "reassign", status, status, now, note=note,
                        data={"from": before, "to": after})
            return await self._save(uow, case, now)

    async def link_subject(self, case_id: int, actor: Actor, subject_id: int) -> CaseView:
        """Tie the case to an entry of the subject registry (主体名录) by hand."""
        async with self._uow() as uow:
            case, now, _ = await self._begin(uow, case_id)
            subject = await uow.session.get(Subject, subject_id)
            if subject is None:
                raise DomainError(f"no subject {subject_id}")
            linked = await uow.session.scalar(select(CaseSubject).where(
                CaseSubject.case_id == case.id, CaseSubject.subject_id == subject.id))
            if linked is not None:
                raise DomainError("the case is already linked to this subject")
            uow.session.add(CaseSubject(case_id=case.id, subject_id=subject.id, role="reported"))
            status = Status(case.status)
            self._event(uow, case, actor, "link_subject", status, status, now,
                        data={"subject": subject.id, "type": subject.type, "name": subject.name})
            return await self._save(uow, case, now)

    async def unlink_subject(self, case_id: int, actor: Actor, subject_id: int) -> CaseView:
        async with self._uow() as uow:
            case, now, _ = await self._begin(uow, case_id)
            links = (await uow.session.scalars(select(CaseSubject).where(
                CaseSubject.case_id == case.id, CaseSubject.subject_id == subject_id))).all()
            if not links:
                raise DomainError("the case is not linked to this subject")
            subject = await uow.session.get(Subject, subject_id)
            for link in links:
                await uow.session.delete(link)
            status = Status(case.status)
            self._event(uow, case, actor, "unlink_subject", status, status, now,
                        data={"subject": subject_id, "name": subject.name if subject else None})
            return await self._save(uow, case, now)

    async def rate(self, case_id: int, actor: Actor, score: int, comment: str | None = None) -> CaseView:
        """The complainant's answer to the satisfaction follow-up (回访), once per case. A low rating
        reopens the case for review by 消保分局."""
        if isinstance(score, bool) or not isinstance(score, int) or not 1 <= score <= 5:
            raise DomainError("the rating is a whole number from 1 to 5")
        comment = _optional_text(comment, "the comment")
        async with self._uow() as uow:
            case, now, calendar = await self._begin(uow, case_id)
            if case.rated_at is not None:
                raise AlreadyRated(f"{case.number} was already rated")
            if case.status != Status.CLOSED:
                raise DomainError("the case is not closed yet; the rating comes after the answer")
            if case.anonymous or case.complainant_id is None or case.outcome in ("withdrawn", "duplicate"):
                raise DomainError("this case has no satisfaction follow-up (anonymous, withdrawn or a duplicate)")
            case.satisfaction, case.satisfaction_comment, case.rated_at = score, comment, now
            case.survey_due_on = None
            status = Status(case.status)
            self._event(uow, case, actor, "rate", status, status, now, note=comment, data={"score": score})
            if score <= LOW_RATING:
                target = Status.IN_PROGRESS if case.accepted_at is not None else Status.RECEIVED
                case.status, case.closed_at, case.replied_at = target.value, None, None
                self._start_clocks(case, "accepted" if target == Status.IN_PROGRESS else "received", now, calendar)
                self._event(uow, case, Actor.system(), Action.REOPEN.value, status, target, now,
                            note=f"满意度评价 {score} 分，重新打开由消保分局复核", data={"score": score})
                await self._tell(uow, case, Template.REOPENED, now, unit=_lead_code(case), rating=score)
            return await self._save(uow, case, now)

    async def comment_on_rating(self, case_id: int, actor: Actor, comment: str) -> CaseView:
        """A comment given after the score (the bot asks for it in a second message); the score stays."""
        comment = _required_text(comment, "the comment")
        async with self._uow() as uow:
            case, now, _ = await self._begin(uow, case_id)
            if case.rated_at is None:
                raise DomainError("the case has no rating to comment on")
            if case.satisfaction_comment:
                raise DomainError("the rating already has a comment")
            case.satisfaction_comment = comment
            status = Status(case.status)
            self._event(uow, case, actor, "rating_comment", status, status, now, note=comment)
            return await self._save(uow, case, now)

    async def add_from_complainant(
        self, case_id: int, actor: Actor, *, text: str | None = None, evidence: tuple[EvidenceItem, ...] = ()
    ) -> CaseView:
        """More words or files from the complainant about an open case."""
        if not (text and text.strip()) and not evidence:
            raise DomainError("nothing to add")
        async with self._uow() as uow:
            case, now, _ = await self._begin(uow, case_id)
            if case.status == Status.CLOSED:
                raise DomainError("the case is closed")
            if text and text.strip():
                uow.session.add(CaseMessage(case_id=case.id, direction="in", body=text.strip()[:MAX_DESCRIPTION],
                                            created_at=now))
            self._attach(uow, case, evidence, now)
            self._event(uow, case, actor, "complainant_addition", Status(case.status), Status(case.status), now,
                        data={"text": bool(text), "evidence": [e.sha256 for e in evidence]})
            return await self._save(uow, case, now)

    async def cases_of(self, channel: str, channel_user_id: str) -> list[CaseSummary]:
        async with self._uow() as uow:
            person = await uow.complainants.by_channel_user(channel, channel_user_id)
            if person is None:
                return []
            rows = await uow.session.scalars(
                select(Case).where(Case.complainant_id == person.id).order_by(Case.received_at.desc())
            )
            ids = [row.id for row in rows]
            return [_summary(await uow.cases.get(case_id)) for case_id in ids]

    async def case_of(self, channel: str, channel_user_id: str, number: str) -> CaseSummary:
        """The person's own case by number; someone else's case is 'not found' (no enumeration)."""
        async with self._uow() as uow:
            case = await uow.cases.by_number(number.strip().upper())
            person = await uow.complainants.by_channel_user(channel, channel_user_id)
            if case is None or person is None or case.complainant_id != person.id:
                raise CaseNotFound(f"no case {number} of this person")
            return _summary(await uow.cases.get(case.id))

    async def get(self, case_id: int) -> CaseView:
        async with self._uow() as uow:
            case = await uow.cases.get(case_id)
            if case is None:
                raise CaseNotFound(f"no case with id {case_id}")
            return self._view(case)

    # -- internals ------------------------------------------------------------------------

    async def _begin(self, uow: UnitOfWork, case_id: int) -> tuple[Case, datetime, WorkingCalendar]:
        case = await uow.cases.get(case_id, for_update=True)
        if case is None:
            raise CaseNotFound(f"no case with id {case_id}")
        return case, self._clock.now(), await self._calendar(uow)

    async def _finish(self, uow, case, actor, action, source, now, note=None, data=None) -> CaseView:
        self._event(uow, case, actor, action.value, source, Status(case.status), now, note=note, data=data)
        return await self._save(uow, case, now)

    async def _save(self, uow: UnitOfWork, case: Case, now: datetime) -> CaseView:
        case.updated_at = now
        case.next_due_on = _next_due(case)
        await uow.flush()
        view = self._view(case)
        await uow.commit()
        return view

    @staticmethod
    def _move(case: Case, action: Action) -> Status:
        source = Status(case.status)
        target = check(action, source)
        case.status = target.value
        return source

    async def _calendar(self, uow: UnitOfWork) -> WorkingCalendar:
        return WorkingCalendar(await uow.holidays.as_mapping())

    def _local_date(self, moment: datetime) -> date:
        return moment.astimezone(self._tz).date()

    def _start_clocks(self, case, starts_at, moment, calendar, *, only=(), exclude=()) -> None:
        real_name = not case.anonymous and case.complainant_id is not None
        start = self._local_date(moment)
        governing = self._local_date(case.received_at)
        existing = {d.clock: d for d in case.deadlines}
        for clock in self._policy.clocks_for(Kind(case.kind), starts_at=starts_at, real_name=real_name):
            if (only and clock.id not in only) or clock.id in exclude:
                continue
            version = clock.version_for(governing)
            due = compute_due(version, start, calendar)
            row = existing.get(clock.id)
            if row is None:
                row = CaseDeadline(clock=clock.id)
                case.deadlines.append(row)
            row.started_on, row.due_on, row.provisional = start, due.on, due.provisional
            row.basis, row.extended, row.met_at = version.basis, False, None

    @staticmethod
    def _meet(case: Case, now: datetime, *clocks: str) -> None:
        for row in case.deadlines:
            if row.clock in clocks and row.met_at is None:
                row.met_at = now

    async def _tell(self, uow: UnitOfWork, case: Case, template: Template, now: datetime, **facts) -> None:
        person = await uow.session.get(Complainant, case.complainant_id) if case.complainant_id else None
        notify_complainant(uow.session, case, person, template, now, **facts)

    @staticmethod
    def _tell_lead(uow: UnitOfWork, case: Case, now: datetime, key: str) -> None:
        lead = next((a.unit for a in case.assignments if a.active and a.role == "lead"), None)
        if lead is not None:
            notify_unit(uow.session, lead, Template.UNIT_NEW_CASE, now, key=key, case=case,
                        category=case.category, due_on=_iso(_next_due(case)))

    def _plan_survey(self, case: Case, now: datetime, calendar: WorkingCalendar) -> None:
        """The satisfaction follow-up goes out one working day after close (not to anonymous informants,
        not for a case withdrawn or merged as a duplicate)."""
        if case.anonymous or case.complainant_id is None or case.outcome in ("withdrawn", "duplicate"):
            return
        if case.rated_at is None:
            case.survey_due_on = calendar.add_working_days(self._local_date(now), 1).on

    def _record_reply(self, uow: UnitOfWork, case: Case, actor: Actor, body: str, now: datetime) -> None:
        uow.session.add(CaseMessage(case_id=case.id, direction="out", body=body, is_reply=True,
                                    staff_user_id=_staff(actor), created_at=now))
        case.replied_at = now
        if case.decided_at is not None:
            self._meet(case, now, "informant_notice")

    async def _assign(self, uow: UnitOfWork, case: Case, lead: str | None, co: tuple[str, ...], now) -> None:
        codes = [c for c in (lead, *co) if c]
        units = await uow.units.by_codes(codes)
        missing = [c for c in codes if c not in units]
        if missing:
            raise DomainError(f"routing names units missing from the database: {', '.join(missing)} (run qinglang migrate)")
        for code in codes:
            role = "lead" if code == lead else "co"
            case.assignments.append(CaseUnit(case_id=case.id, unit=units[code], unit_id=units[code].id,
                                             role=role, assigned_at=now))

    @staticmethod
    async def _link_subjects(uow: UnitOfWork, case: Case, now: datetime) -> None:
        """Enter the platform, live room and streamer the case names into the subject registry."""
        named = [("platform", "", case.platform), ("live_room", case.platform or "", case.live_room),
                 ("streamer", case.platform or "", case.streamer)]
        for type_, platform, name in named:
            if name and name.strip():
                subject = await uow.subjects.get_or_create(type_, platform, name.strip()[:200], now)
                uow.session.add(CaseSubject(case_id=case.id, subject_id=subject.id, role="reported"))

    @staticmethod
    def _attach(uow: UnitOfWork, case: Case, items: tuple[EvidenceItem, ...], now: datetime) -> None:
        for item in items:
            uow.session.add(Evidence(case_id=case.id, sha256=item.sha256, size=item.size, mime=item.mime,
                                     original_name=item.original_name, source=item.source, created_at=now))

    @staticmethod
    def _replace_lead(case: Case, unit: Unit, now: datetime) -> None:
        for assignment in case.assignments:
            if assignment.role == "lead" and assignment.active:
                assignment.active = False
        case.assignments.append(CaseUnit(case_id=case.id, unit=unit, unit_id=unit.id, role="lead", assigned_at=now))

    async def _complainant(self, uow: UnitOfWork, new: NewCase, now: datetime) -> Complainant | None:
        info = new.complainant
        if info is None:
            return None
        person = None
        if info.channel_user_id:
            person = await uow.complainants.by_channel_user(new.channel, info.channel_user_id)
        if person is None:
            person = Complainant(channel=new.channel, channel_user_id=info.channel_user_id, created_at=now)
            uow.session.add(person)
        for name in ("name", "phone", "email"):
            if getattr(info, name):
                setattr(person, name, getattr(info, name))
        person.language = info.language
        return person

    @staticmethod
    def _event(uow, case, actor, action, source, target, now, *, note=None, data=None) -> None:
        uow.session.add(CaseEvent(
            case_id=case.id, actor_type=actor.type, actor_id=actor.id, action=action,
            from_status=source.value if source else None, to_status=target.value if target else None,
            note=note, data=data, created_at=now,
        ))

    @staticmethod
    def _view(case: Case, routing: RoutingDecision | None = None) -> CaseView:
        active = [a for a in case.assignments if a.active]
        lead = next((a.unit.code for a in active if a.role == "lead"), None)
        return CaseView(
            id=case.id,
            number=case.number,
            kind=case.kind,
            category=case.category,
            status=Status(case.status),
            lead_unit=lead,
            co_units=tuple(a.unit.code for a in active if a.role == "co"),
            deadlines=tuple(
                DeadlineView(d.clock, d.due_on, d.provisional, d.met_at is not None, d.basis)
                for d in sorted(case.deadlines, key=lambda d: d.due_on)
            ),
            next_due_on=case.next_due_on,
            transfer_authority=case.transfer_authority,
            routing=routing,
            urgent=case.urgent,
            flags=tuple(case.flags),
        )


def _staff(actor: Actor) -> int | None:
    return actor.id if actor.type == "staff" else None


def _lead_code(case: Case) -> str | None:
    return next((a.unit.code for a in case.assignments if a.active and a.role == "lead"), None)


def _provisional_number() -> str:
    """Unique stand-in for the case number until the real one is taken just before commit."""
    return f"pending-{secrets.token_hex(12)}"


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day else None


def _summary(case: Case) -> CaseSummary:
    return CaseSummary(case.id, case.number, case.kind, case.category, Status(case.status), case.received_at,
                       case.next_due_on, _lead_code(case))


def _link_item(url: str) -> EvidenceItem:
    return EvidenceItem(hashlib.sha256(url.encode()).hexdigest(), len(url.encode()), "text/uri-list", url[:255], "link")


def _next_due(case: Case) -> date | None:
    return min((d.due_on for d in case.deadlines if d.met_at is None), default=None)


def _validate_new_case(new: NewCase) -> None:
    if new.category not in CATEGORY_IDS:
        raise DomainError(f"unknown category {new.category!r}")
    if new.focus_area is not None and new.focus_area not in FOCUS_AREAS:
        raise DomainError(f"focus area must be 1-14, got {new.focus_area}")
    _required_text(new.description, "a description of what happened", limit=MAX_DESCRIPTION)
    if new.kind == Kind.COMPLAINT and (new.anonymous or new.complainant is None):
        raise DomainError("a complaint (投诉) needs the complainant's identity; an anonymous report is a tip-off (举报)")
    if new.received_at is not None and new.received_at.tzinfo is None:
        raise DomainError("received_at must carry a time zone")
    if new.amount_fen is not None and new.amount_fen < 0:
        raise DomainError("the amount paid cannot be negative")


def _optional_text(value: str | None, what: str, limit: int = MAX_REPLY) -> str | None:
    return _required_text(value, what, limit) if value is not None and value.strip() else None


def _required_text(value: str | None, what: str, limit: int = MAX_REPLY) -> str:
    if value is None or not value.strip():
        raise DomainError(f"{what} is required")
    if len(value) > limit:
        raise DomainError(f"{what} is longer than {limit} characters")
    return value.strip()
