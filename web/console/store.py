"""The console's own small reads and writes that CaseQueries / CaseService do not offer.

Reads take the access scope as a SQL clause (web.access.case_scope), like CaseQueries. The writes
(reclassification, the audit of a view of personal data or of an export) each run in one unit of work
and leave a CaseEvent, as CaseService does for status actions. Reads of the subject registry (主体名录) for the
case page's "link a subject" form are not scoped: the registry itself holds no personal data.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, and_, or_, select

from db.models import Case, CaseDeadline, CaseEvent, CaseSubject, Complainant, StaffUser, Subject, Unit
from db.uow import UnitOfWorkFactory
from intake.cases import CaseNotFound
from intake.clock import Clock
from intake.status import DomainError, Status
from nlu.taxonomy import CATEGORY_IDS


@dataclass(frozen=True)
class RowExtras:
    """What the queue shows beside CaseQueries' rows: who wrote (for the masked phone) and provisional deadlines."""

    anonymous: dict[int, bool]
    phones: dict[int, str | None]
    provisional: set[int]



@dataclass(frozen=True)
class DuplicateLinks:
    """A case's place among duplicates: the case it repeats, and the cases that repeat it."""

    original: str | None  # the number of the case this one is a duplicate of
    original_visible: bool  # whether the viewer may open that case (else the number is shown as text)
    duplicates: list[str]  # numbers of the cases marked duplicate of this one that the viewer may see


SUBJECT_CHOICES = 200  # at most this many subjects in the "same platform" select
SUBJECT_RESULTS = 20  # at most this many results of a name search


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class ConsoleStore:
    def __init__(self, uow: UnitOfWorkFactory, clock: Clock) -> None:
        self._uow = uow
        self._clock = clock

    async def units(self) -> list[Unit]:
        async with self._uow() as uow:
            return list(await uow.units.all(active_only=True))

    async def row_extras(self, case_ids: list[int]) -> RowExtras:
        if not case_ids:
            return RowExtras({}, {}, set())
        async with self._uow() as uow:
            people = (await uow.session.execute(
                select(Case.id, Case.anonymous, Complainant.phone)
                .outerjoin(Complainant, Complainant.id == Case.complainant_id)
                .where(Case.id.in_(case_ids))
            )).all()
            provisional = (await uow.session.scalars(
                select(CaseDeadline.case_id).where(
                    CaseDeadline.case_id.in_(case_ids), CaseDeadline.provisional.is_(True),
                    CaseDeadline.met_at.is_(None))
            )).all()
        return RowExtras(
            anonymous={case_id: anonymous for case_id, anonymous, _ in people},
            phones={case_id: phone for case_id, _, phone in people},
            provisional=set(provisional),
        )

    async def staff_names(self, ids: set[int]) -> dict[int, str]:
        if not ids:
            return {}
        async with self._uow() as uow:
            rows = (await uow.session.execute(
                select(StaffUser.id, StaffUser.username, StaffUser.display_name).where(StaffUser.id.in_(ids)))).all()
        return {user_id: (display or username) for user_id, username, display in rows}

    async def audit_identity_view(self, case_id: int, staff_id: int, fields: list[str]) -> None:
        """Every view of a complainant's name/phone/email by staff is in the audit log."""
        async with self._uow() as uow:
            uow.session.add(CaseEvent(case_id=case_id, actor_type="staff", actor_id=staff_id,
                                      action="view_personal_data", data={"fields": fields},
                                      created_at=self._clock.now()))
            await uow.commit()

    async def audit_export(self, staff_id: int, data: dict) -> None:
        """An export of the case list, in the audit log (case_id NULL: it is about many cases)."""
        async with self._uow() as uow:
            uow.session.add(CaseEvent(case_id=None, actor_type="staff", actor_id=staff_id, action="export_cases",
                                      data=data, created_at=self._clock.now()))
            await uow.commit()

    async def reclassify(self, case_id: int, staff_id: int, category: str, note: str | None = None) -> tuple[str, str]:
        """Triage corrects the category. The change and the NLU's proposal are kept in a CaseEvent
        (action "reclassify", data from/to): corrections are training data for the classifier.
        The units stay as they are; a different unit is a transfer, decided separately."""
        if category not in CATEGORY_IDS:
            raise DomainError(f"unknown category {category!r}")
        async with self._uow() as uow:
            case = await uow.cases.get(case_id, for_update=True)
            if case is None:
                raise CaseNotFound(f"no case with id {case_id}")
            if case.status == Status.CLOSED:
                raise DomainError("the case is closed; reopen it before changing its category")
            old = case.category
            if old == category:
                raise DomainError("the case already has this category")
            now: datetime = self._clock.now()
            case.category = category
            case.updated_at = now
            status = case.status
            uow.session.add(CaseEvent(
                case_id=case.id, actor_type="staff", actor_id=staff_id, action="reclassify",
                from_status=status, to_status=status, note=(note or "").strip()[:2000] or None,
                data={"from": old, "to": category, "nlu_category": case.nlu_category,
                      "nlu_confidence": case.nlu_confidence, "kind": case.kind},
                created_at=now,
            ))
            await uow.commit()
        return old, category

    async def case_visible(self, scope: ColumnElement[bool], number: str) -> bool:
        async with self._uow() as uow:
            return await uow.session.scalar(select(Case.id).where(Case.number == number, scope)) is not None

    async def duplicate_links(self, scope: ColumnElement[bool], case: Case) -> DuplicateLinks:
        """The original (by number, whether in scope or not) and the duplicates in scope."""
        async with self._uow() as uow:
            original, visible = None, False
            if case.duplicate_of_id is not None:
                original = await uow.session.scalar(select(Case.number).where(Case.id == case.duplicate_of_id))
                visible = original is not None and await uow.session.scalar(
                    select(Case.id).where(Case.id == case.duplicate_of_id, scope)) is not None
            duplicates = list((await uow.session.scalars(
                select(Case.number).where(Case.duplicate_of_id == case.id, scope).order_by(Case.id).limit(500)
            )).all())
        return DuplicateLinks(original, visible, duplicates)

    async def subjects_named(self, text: str, exclude: set[int], limit: int = SUBJECT_RESULTS) -> list[Subject]:
        """Subjects of the registry whose name contains `text` (case-insensitive), not already linked."""
        text = text.strip()
        if not text:
            return []
        query = select(Subject).where(Subject.name.ilike(_like(text), escape="\\"))
        if exclude:
            query = query.where(Subject.id.not_in(exclude))
        async with self._uow() as uow:
            return list((await uow.session.scalars(
                query.order_by(Subject.type, Subject.name, Subject.id).limit(limit))).all())

    async def subjects_of_platform(self, platform: str | None, exclude: set[int],
                                   limit: int = SUBJECT_CHOICES) -> list[Subject]:
        """The platform itself and the live rooms, operators and streamers registered on it."""
        if not platform:
            return []
        query = select(Subject).where(or_(Subject.platform == platform,
                                          and_(Subject.type == "platform", Subject.name == platform)))
        if exclude:
            query = query.where(Subject.id.not_in(exclude))
        async with self._uow() as uow:
            return list((await uow.session.scalars(
                query.order_by(Subject.type, Subject.name, Subject.id).limit(limit))).all())
