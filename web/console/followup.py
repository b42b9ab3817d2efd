"""Where the promise "every tip gets a reply" is checked by people: the call list and the overdue record.

- /followup (待电话联系): notices that could not be delivered (bot blocked, account deleted, no channel)
  or whose delivery is unconfirmed; staff call the person and mark the notice handled. The phone
  number is shown only to those who may see identities, and each view of it is in the audit log.
- /overdue (超期督办): the escalations the scheduler records for every missed deadline, the record
  督查考绩科 uses, with the cases still lacking a complainant-facing reply flagged.

Every case and count goes through web.access.case_scope (a handler sees its own unit's only).
"""

from __future__ import annotations

from datetime import date, timedelta

from aiohttp import web
from sqlalchemy import select

from db.models import Case, CaseEvent, CaseUnit, Complainant, Escalation, OutboxMessage, Unit
from intake.outbound import REFUSED
from intake.queries import CaseQueries
from qinglang.i18n import N_
from web.access import case_scope, lead_part, may_act, may_see_identity
from web.console.render import redirect_with_flash, request_language
from web.console.routes import _clock_name, _error, _field, _page, _require, _tr
from web.keys import CONTAINER, QUERIES

SHOWN = 200
OPEN_PROBLEMS = ("undeliverable", "unconfirmed")
TEMPLATE_NAMES = {
    "received": N_("登记回执"), "accepted": N_("受理通知"), "started": N_("开始办理通知"), "rejected": N_("不予受理通知"),
    "transferred": N_("转办通知"), "info_requested": N_("补充材料请求"), "staff_message": N_("承办人员留言"),
    "reply": N_("办理答复"), "closed": N_("办结通知"), "reopened": N_("重新打开通知"), "duplicate": N_("并案通知"),
    "still_in_progress": N_("办理进度通知"), "survey": N_("满意度回访"),
}
PROBLEM_NAMES = {"undeliverable": N_("无法送达"), "unconfirmed": N_("送达未确认")}
OVERDUE_DAYS = (7, 30, 90)


def register(app: web.Application) -> None:
    app.router.add_get("/followup", followup_list)
    app.router.add_post(r"/followup/{id:\d{1,19}}/handled", followup_handled)
    app.router.add_get("/overdue", overdue_list)


async def followup_list(request: web.Request) -> web.Response:
    principal = _require(request)
    container = request.app[CONTAINER]
    _ = _tr(request)
    async with container.uow() as uow:
        rows = (await uow.session.execute(
            select(OutboxMessage, Case, Complainant)
            .join(Case, Case.id == OutboxMessage.case_id)
            .outerjoin(Complainant, Complainant.id == Case.complainant_id)
            .where(OutboxMessage.audience == "complainant", OutboxMessage.status.in_(OPEN_PROBLEMS),
                   OutboxMessage.handled_at.is_(None), case_scope(principal))
            .order_by(OutboxMessage.created_at, OutboxMessage.id).limit(SHOWN)
        )).all()
        shown: dict[int, list[str]] = {}  # case id -> the personal fields this page shows of it
        leads = await CaseQueries.lead_codes(uow, [case.id for _notice, case, _person in rows])
        items = []
        for notice, case, person in rows:
            parts = lead_part(principal, leads.get(case.id))
            phone = person.phone if person is not None and may_see_identity(principal, case.anonymous, parts) else None
            name = person.name if phone and person is not None else None
            if phone:
                shown[case.id] = ["name", "phone"] if name else ["phone"]
            items.append({"notice": notice, "case": case, "phone": phone, "name": name,
                          "error": _delivery_error(_, notice.last_error)})
        now = container.clock.now()
        for case_id, fields in shown.items():
            uow.session.add(CaseEvent(case_id=case_id, actor_type="staff", actor_id=principal.id,
                                      action="view_personal_data", data={"fields": fields, "page": "followup"},
                                      created_at=now))
        await uow.commit()
    return _page(request, principal, "followup.html", items=items,
                 template_names={k: _(v) for k, v in TEMPLATE_NAMES.items()},
                 problem_names={k: _(v) for k, v in PROBLEM_NAMES.items()}, limit=SHOWN)


def _delivery_error(_, last_error: str | None) -> str:
    """What staff read of a failed delivery: a callback the outbound policy refused says so, and only that."""
    if not last_error:
        return ""
    _before, refused, reason = last_error.partition(f"{REFUSED}: ")
    if refused:
        return _("回调地址被安全策略拒绝：{reason}").format(reason=reason)
    return last_error


async def followup_handled(request: web.Request) -> web.StreamResponse:
    principal = _require(request)
    _ = _tr(request)
    container = request.app[CONTAINER]
    post = await request.post()
    note = _field(post, "note", 2000)
    if not note:
        raise redirect_with_flash(request, "/followup", _("请写明联系结果（例如：已电话告知办理结果）。"), "error")
    notice_id = int(request.match_info["id"])
    async with container.uow() as uow:
        case = await uow.session.scalar(
            select(Case).join(OutboxMessage, OutboxMessage.case_id == Case.id)
            .where(OutboxMessage.id == notice_id, OutboxMessage.audience == "complainant", case_scope(principal)))
        parts = {} if case is None else dict((await uow.session.execute(
            select(CaseUnit.unit_id, CaseUnit.role).where(CaseUnit.case_id == case.id, CaseUnit.active.is_(True))
        )).all())
    if case is None:
        return _error(request, principal, 404, _("未找到"), _("没有这条通知，或者您无权查看。"), back="/followup")
    if not may_act(principal, parts, "message"):
        return _error(request, principal, 403, _("无权操作"), _("只有承办单位和消保分局可以登记联系结果。"),
                      back="/followup")
    async with container.uow() as uow:
        notice = await uow.session.get(OutboxMessage, notice_id, with_for_update=True)
        if notice.status not in OPEN_PROBLEMS or notice.handled_at is not None:
            raise redirect_with_flash(request, "/followup", _("这条通知已经处理过了。"), "error")
        now = container.clock.now()
        notice.handled_by, notice.handled_at, notice.handled_note = principal.id, now, note
        uow.session.add(CaseEvent(case_id=case.id, actor_type="staff", actor_id=principal.id,
                                  action="contacted", from_status=case.status, to_status=case.status, note=note,
                                  data={"notice": notice.id, "template": notice.template}, created_at=now))
        await uow.commit()
    raise redirect_with_flash(request, "/followup", _("已登记：{number}").format(number=case.number))


async def overdue_list(request: web.Request) -> web.Response:
    principal = _require(request)
    _ = _tr(request)
    try:
        days = int(request.query.get("days", "30"))
    except ValueError:
        days = 0
    if days not in OVERDUE_DAYS:
        return _error(request, principal, 400, _("参数无效"), _("统计天数只能是 7、30 或 90。"), back="/overdue")
    today: date = request.app[QUERIES].today()
    async with request.app[CONTAINER].uow() as uow:
        rows = (await uow.session.execute(
            select(Escalation, Case.number, Case.status, Case.replied_at, Unit)
            .join(Case, Case.id == Escalation.case_id)
            .outerjoin(Unit, Unit.id == Escalation.unit_id)
            .where(Escalation.escalated_on >= today - timedelta(days=days), case_scope(principal))
            .order_by(Escalation.escalated_on.desc(), Escalation.due_on, Escalation.id).limit(SHOWN)
        )).all()
    language = request_language(request)
    items = [{"escalation": e, "number": number, "status": status, "replied": replied_at is not None,
              "unit": ((unit.name_en or unit.name) if language == "en" else unit.name) if unit else "",
              "clock": _clock_name(request, e.clock)} for e, number, status, replied_at, unit in rows]
    return _page(request, principal, "overdue.html", items=items, days=days, windows=OVERDUE_DAYS, limit=SHOWN)
