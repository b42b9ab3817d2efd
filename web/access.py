"""Who may see and do what. One policy for pages, API and evidence files alike.

- admin: users, units, rules; sees every case but acts on none
- triage (消保分局): every case, every action
- handler: the cases its unit has a part in (lead or co-unit); acts only where its unit is the lead
- leader: every case, read-only
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, exists, select, true

from db.models import Case, CaseUnit
from intake.status import Action
from web.accounts import Role
from web.security import Principal

SEES_ALL = frozenset({Role.ADMIN, Role.TRIAGE, Role.LEADER})
# what a handler of the lead unit may do; triage may do everything
HANDLER_ACTIONS = frozenset({Action.ACCEPT, Action.REJECT, Action.TRANSFER, Action.START, Action.RESOLVE, Action.CLOSE})


def sees_all_cases(principal: Principal) -> bool:
    return principal.role in SEES_ALL


def case_scope(principal: Principal) -> ColumnElement[bool]:
    """A WHERE clause limiting cases to those the principal may see."""
    if sees_all_cases(principal):
        return true()
    return exists(
        select(CaseUnit.id).where(
            CaseUnit.case_id == Case.id, CaseUnit.unit_id == principal.unit_id, CaseUnit.active.is_(True)
        )
    )


def may_view(principal: Principal, unit_parts: dict[int, str]) -> bool:
    """`unit_parts`: unit id -> role (lead/co) of the case's active assignments."""
    return sees_all_cases(principal) or principal.unit_id in unit_parts


def may_act(principal: Principal, unit_parts: dict[int, str], action: Action | str) -> bool:
    if principal.role == Role.TRIAGE:
        return True
    if principal.role != Role.HANDLER:
        return False
    if action in ("reply", "message", "request_info"):
        return unit_parts.get(principal.unit_id) == "lead"
    return unit_parts.get(principal.unit_id) == "lead" and action in HANDLER_ACTIONS


def may_reclassify(principal: Principal) -> bool:
    return principal.role == Role.TRIAGE


def may_see_identity(principal: Principal, anonymous: bool) -> bool:
    """An anonymous informant's identity is shown to nobody; a named one only to those who act."""
    return not anonymous and principal.role in (Role.TRIAGE, Role.HANDLER)
