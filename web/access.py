"""Who may see and do what. One policy for pages, API and evidence files alike.

Seeing:
- admin, triage (消保分局), leader: every case
- handler: the cases its unit has an active part in (lead ★ or co-unit); any other case is "not found"

Identity (may_see_identity): a named complainant's name, phone and e-mail are shown to those who act on
the case, triage and the lead unit's handlers, and to nobody for an anonymous informant.

Acting (may_act; a case out of scope never gets this far):

| action | triage | handler of the lead unit | handler of a co-unit | leader, admin |
|---|---|---|---|---|
| accept, reject, transfer, start, resolve, close | yes | yes | no | no |
| reply (the official answer), message (not the answer), request_info (补正: ask for more) | yes | yes | no | no |
| link_subject, unlink_subject (the subject registry, 主体名录) | yes | yes | no | no |
| rate (record the satisfaction rating given by phone) | yes | yes | no | no |
| reopen, extend (a deadline, with approval), reclassify | yes | no | no | no |
| duplicate (close as the same matter as another case), reassign (lead and co-units) | yes | no | no | no |

Duplicate and reassign decide which unit handles what, which is 消保分局's job, like reopening and the
category. The lead unit's handler talks to the complainant, keeps the subjects of its cases right and
records the follow-up call's rating. Leaders and administrators read; they never act on a case. An
action this module does not know is refused to everyone. Whether an action is possible *now* (the
status machine, a closed case, an anonymous informant) is decided elsewhere: this is only who.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, exists, select, true

from db.models import Case, CaseUnit
from intake.status import Action
from web.accounts import Role
from web.security import Principal

SEES_ALL = frozenset({Role.ADMIN, Role.TRIAGE, Role.LEADER})
# what a handler of the lead unit may do
HANDLER_ACTIONS = frozenset({
    Action.ACCEPT, Action.REJECT, Action.TRANSFER, Action.START, Action.RESOLVE, Action.CLOSE,
    "reply", "message", "request_info", "link_subject", "unlink_subject", "rate",
})
# what triage may do: everything a handler may, and the decisions about the case as a whole
TRIAGE_ACTIONS = HANDLER_ACTIONS | frozenset({
    Action.REOPEN, "extend", "reclassify", Action.DUPLICATE, "reassign",
})


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
    """Whether `principal` may do `action` on a case with these unit parts (see the table above)."""
    if principal.role == Role.TRIAGE:
        return action in TRIAGE_ACTIONS
    if principal.role != Role.HANDLER:
        return False
    return unit_parts.get(principal.unit_id) == "lead" and action in HANDLER_ACTIONS


def may_reclassify(principal: Principal) -> bool:
    return principal.role == Role.TRIAGE


def may_see_identity(principal: Principal, anonymous: bool, unit_parts: dict[int, str]) -> bool:
    """An anonymous informant's identity is shown to nobody; a named one only to those who act: triage and
    the lead unit's handlers. A co-unit's handler, a leader or an administrator sees the case without it."""
    if anonymous:
        return False
    if principal.role == Role.TRIAGE:
        return True
    return principal.role == Role.HANDLER and unit_parts.get(principal.unit_id) == "lead"


def lead_part(principal: Principal, lead_unit_code: str | None) -> dict[int, str]:
    """The unit parts that matter to may_see_identity when only the lead unit's code is known (a list row)."""
    return {principal.unit_id: "lead"} if lead_unit_code is not None and lead_unit_code == principal.unit_code else {}
