"""The case status machine: which action moves a case from which status to which."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from qinglang.errors import QinglangError
from qinglang.i18n import N_


class Status(StrEnum):
    RECEIVED = "received"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    TRANSFERRED = "transferred"
    IN_PROGRESS = "in_progress"
    RESOLVED = "resolved"
    CLOSED = "closed"


class Action(StrEnum):
    ACCEPT = "accept"  # 受理 (for a tip-off: decide to file, 立案)
    REJECT = "reject"  # 不予受理 / 不予立案, with a ground
    TRANSFER = "transfer"  # to another unit or an outside authority
    START = "start"  # handling begins
    RESOLVE = "resolve"  # outcome and complainant-facing reply recorded
    CLOSE = "close"
    REOPEN = "reopen"
    WITHDRAW = "withdraw"  # by the complainant, before acceptance
    DUPLICATE = "duplicate"  # the same matter as another case: closed with a reference to it


S = Status
# From which statuses each action is legal, and where it leads. A transfer inside the bureau leaves
# the case `transferred` until the receiving unit accepts or rejects it; a transfer to an outside
# authority is answered to the complainant and closed.
TRANSITIONS: dict[Action, tuple[frozenset[Status], Status | None]] = {
    Action.ACCEPT: (frozenset({S.RECEIVED, S.TRANSFERRED}), S.ACCEPTED),
    Action.REJECT: (frozenset({S.RECEIVED, S.TRANSFERRED}), S.REJECTED),
    Action.TRANSFER: (frozenset({S.RECEIVED, S.ACCEPTED, S.IN_PROGRESS, S.TRANSFERRED}), S.TRANSFERRED),
    Action.START: (frozenset({S.ACCEPTED}), S.IN_PROGRESS),
    Action.RESOLVE: (frozenset({S.ACCEPTED, S.IN_PROGRESS}), S.RESOLVED),
    Action.CLOSE: (frozenset({S.RESOLVED, S.REJECTED, S.TRANSFERRED}), S.CLOSED),
    # reopen returns to handling if the case was ever accepted, otherwise to triage: decided by the service
    Action.REOPEN: (frozenset({S.CLOSED}), None),
    Action.WITHDRAW: (frozenset({S.RECEIVED}), S.CLOSED),
    Action.DUPLICATE: (frozenset({S.RECEIVED, S.ACCEPTED, S.IN_PROGRESS, S.TRANSFERRED}), S.CLOSED),
}

STATUS_NAMES_ZH = {
    S.RECEIVED: N_("已接收"),
    S.ACCEPTED: N_("已受理"),
    S.REJECTED: N_("不予受理"),
    S.TRANSFERRED: N_("已转办"),
    S.IN_PROGRESS: N_("办理中"),
    S.RESOLVED: N_("已办结"),
    S.CLOSED: N_("已关闭"),
}

# 不予受理 grounds, after SAMR's complaint-handling rules; the complainant is told the ground in words.
REJECTION_GROUNDS: dict[str, str] = {
    "not_consumer_dispute": N_("不属于为生活消费需要购买、使用商品或者接受服务而发生的消费者权益争议"),
    "no_jurisdiction": N_("本部门不具有处理权限"),
    "court_or_arbitration": N_("法院、仲裁机构、其他行政部门或者消费者协会已经受理或者处理"),
    "already_handled": N_("同一事项已由市场监督管理部门处理过且无新的事实、理由"),
    "time_limit_passed": N_("超过规定时限（自知道或者应当知道权益受到侵害之日起三年）"),
    "missing_information": N_("未提供投诉人或被投诉人的必要信息、具体诉求或事实，经告知仍未补正"),
    "anonymous_complaint": N_("投诉人未提供真实身份信息"),
    "no_clue": N_("举报内容不具体，无法核查的线索"),
    "other": N_("其他依法不予受理的情形"),
}

OUTCOMES: dict[str, str] = {
    "mediated": N_("调解成功"),
    "mediation_failed": N_("调解不成（终止调解）"),
    "case_filed": N_("已立案查处"),
    "not_filed": N_("核查后不予立案"),
    "answered": N_("已答复（咨询）"),
    "withdrawn": N_("投诉人撤回"),
    "duplicate": N_("重复件，已并案处理"),
    "other": N_("其他"),
}


# what staff record when resolving; "withdrawn" and "duplicate" come from their own actions
STAFF_OUTCOMES: dict[str, str] = {k: v for k, v in OUTCOMES.items() if k not in ("withdrawn", "duplicate")}


class DomainError(QinglangError):
    """A request the case rules do not allow; the message says why."""


class IllegalTransition(DomainError):
    def __init__(self, action: Action, status: Status) -> None:
        allowed = ", ".join(sorted(a.value for a in allowed_actions(status))) or "none"
        super().__init__(f"cannot {action.value} a case that is {status.value}; allowed: {allowed}")
        self.action = action
        self.status = status


@dataclass(frozen=True)
class Transition:
    action: Action
    source: Status
    target: Status


def allowed_actions(status: Status) -> frozenset[Action]:
    return frozenset(action for action, (sources, _) in TRANSITIONS.items() if status in sources)


def check(action: Action, status: Status) -> Status | None:
    """The target status of `action` from `status` (None: the service decides); raise if illegal."""
    sources, target = TRANSITIONS[action]
    if status not in sources:
        raise IllegalTransition(action, status)
    return target
