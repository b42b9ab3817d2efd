"""Case service on a real database: status machine, invariants, events, numbers, deadlines."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from sqlalchemy import func, select

from db.models import Case, CaseEvent, CaseMessage
from intake.cases import Actor, CaseNotFound, ComplainantInfo, NewCase
from intake.status import Action, DomainError, IllegalTransition, Status, allowed_actions
from nlu.taxonomy import Kind
from routing.rules import MerchantLocation

STAFF = Actor("staff", 1)  # the first user, created by the autouse fixture below
IN_YONGZHONG = MerchantLocation(in_district=True, street="永中街道", province="浙江省")


@pytest.fixture(autouse=True)
async def staff_user(container):
    user = await container.accounts.create_user("triage1", "xiaobao", "triage")
    assert user.id == STAFF.id
    return user


def complaint(**overrides) -> NewCase:
    values = dict(
        kind=Kind.COMPLAINT,
        category="consumer_rights",
        description="直播间买的羽绒服七天无理由退货，商家一直不给退款",
        channel="telegram",
        complainant=ComplainantInfo(channel_user_id="42", name="张三", phone="13800138000"),
        merchant=IN_YONGZHONG,
        platform="抖音",
    )
    values.update(overrides)
    return NewCase(**values)


def tipoff(**overrides) -> NewCase:
    values = dict(
        kind=Kind.TIPOFF,
        category="price",
        description="主播说原价999现在99，其实平时一直卖99，虚假折扣",
        channel="web",
        anonymous=True,
        merchant=IN_YONGZHONG,
    )
    values.update(overrides)
    return NewCase(**values)


async def _reach(container, status: Status, *, outside: bool = False) -> int:
    """Create a case and walk it to `status` through legal actions (`outside`: transferred out of the bureau)."""
    cases = container.cases
    view = await cases.create(complaint())
    if outside:
        await cases.transfer(view.id, STAFF, authority="温州市鹿城区市场监督管理局")
        await cases.reply(view.id, STAFF, "已移送鹿城区市场监督管理局")
        return view.id
    steps = {
        Status.RECEIVED: [],
        Status.ACCEPTED: [lambda i: cases.accept(i, STAFF)],
        Status.REJECTED: [lambda i: cases.reject(i, STAFF, "not_consumer_dispute", "您反映的不属于消费争议")],
        Status.TRANSFERRED: [lambda i: cases.transfer(i, STAFF, unit_code="jiajing")],
        Status.IN_PROGRESS: [lambda i: cases.accept(i, STAFF), lambda i: cases.start(i, STAFF)],
        Status.RESOLVED: [
            lambda i: cases.accept(i, STAFF),
            lambda i: cases.start(i, STAFF),
            lambda i: cases.resolve(i, STAFF, "mediated", "经调解，商家同意全额退款"),
        ],
        Status.CLOSED: [
            lambda i: cases.accept(i, STAFF),
            lambda i: cases.resolve(i, STAFF, "mediated", "经调解，商家同意全额退款"),
            lambda i: cases.close(i, STAFF),
        ],
    }
    for step in steps[status]:
        await step(view.id)
    assert (await cases.get(view.id)).status == status
    return view.id


async def _apply(container, action: Action, case_id: int):
    cases = container.cases

    async def duplicate():
        original = await cases.create(complaint(description="同一直播间同一件羽绒服，另一次登记"))
        return await cases.mark_duplicate(case_id, STAFF, original.number, "与另一件登记为同一事项，已并案处理")

    calls = {
        Action.DUPLICATE: duplicate,
        Action.ACCEPT: lambda: cases.accept(case_id, STAFF),
        Action.REJECT: lambda: cases.reject(case_id, STAFF, "no_jurisdiction", "本局无管辖权，请向商家所在地投诉"),
        Action.TRANSFER: lambda: cases.transfer(case_id, STAFF, unit_code="suo_haibin"),
        Action.START: lambda: cases.start(case_id, STAFF),
        Action.RESOLVE: lambda: cases.resolve(case_id, STAFF, "mediated", "已调解"),
        Action.CLOSE: lambda: cases.close(case_id, STAFF),
        Action.REOPEN: lambda: cases.reopen(case_id, STAFF, "投诉人提供了新证据"),
        Action.WITHDRAW: lambda: cases.withdraw(case_id, Actor("complainant", None), "您已撤回本次投诉"),
    }
    return await calls[action]()


EXPECTED_TARGET = {
    (Action.ACCEPT, Status.RECEIVED): Status.ACCEPTED,
    (Action.ACCEPT, Status.TRANSFERRED): Status.ACCEPTED,
    (Action.REJECT, Status.RECEIVED): Status.REJECTED,
    (Action.REJECT, Status.TRANSFERRED): Status.REJECTED,
    (Action.TRANSFER, Status.RECEIVED): Status.TRANSFERRED,
    (Action.TRANSFER, Status.ACCEPTED): Status.TRANSFERRED,
    (Action.TRANSFER, Status.IN_PROGRESS): Status.TRANSFERRED,
    (Action.TRANSFER, Status.TRANSFERRED): Status.TRANSFERRED,
    (Action.START, Status.ACCEPTED): Status.IN_PROGRESS,
    (Action.RESOLVE, Status.ACCEPTED): Status.RESOLVED,
    (Action.RESOLVE, Status.IN_PROGRESS): Status.RESOLVED,
    (Action.CLOSE, Status.RESOLVED): Status.CLOSED,
    (Action.CLOSE, Status.REJECTED): Status.CLOSED,
    (Action.CLOSE, Status.TRANSFERRED): Status.CLOSED,  # only a transfer out of the bureau, replied to
    (Action.REOPEN, Status.CLOSED): Status.IN_PROGRESS,  # the case had been accepted
    (Action.WITHDRAW, Status.RECEIVED): Status.CLOSED,
    (Action.DUPLICATE, Status.RECEIVED): Status.CLOSED,
    (Action.DUPLICATE, Status.ACCEPTED): Status.CLOSED,
    (Action.DUPLICATE, Status.IN_PROGRESS): Status.CLOSED,
    (Action.DUPLICATE, Status.TRANSFERRED): Status.CLOSED,
}
ALL_PAIRS = [(a, s) for a in Action for s in Status]


@pytest.mark.parametrize(("action", "source"), list(EXPECTED_TARGET))
async def test_legal_transition_moves_case_and_writes_event(container, action, source):
    case_id = await _reach(container, source, outside=(action, source) == (Action.CLOSE, Status.TRANSFERRED))
    view = await _apply(container, action, case_id)
    assert view.status == EXPECTED_TARGET[(action, source)]
    async with container.uow() as uow:
        last = (await uow.cases.events(case_id))[-1]
    assert (last.action, last.from_status, last.to_status) == (action.value, source.value, view.status.value)
    expected_actor = ("complainant", None) if action == Action.WITHDRAW else ("staff", STAFF.id)
    assert (last.actor_type, last.actor_id) == expected_actor


ILLEGAL = [(a, s) for a, s in ALL_PAIRS if (a, s) not in EXPECTED_TARGET]


@pytest.mark.parametrize(("action", "source"), ILLEGAL)
async def test_illegal_transition_is_refused_and_changes_nothing(container, action, source):
    case_id = await _reach(container, source)
    async with container.uow() as uow:
        events_before = len(await uow.cases.events(case_id))
    with pytest.raises(IllegalTransition) as caught:
        await _apply(container, action, case_id)
    assert f"cannot {action.value} a case that is {source.value}" in str(caught.value)
    after = await container.cases.get(case_id)
    assert after.status == source
    async with container.uow() as uow:
        assert len(await uow.cases.events(case_id)) == events_before


def test_expected_table_matches_allowed_actions():
    for status in Status:
        expected = {a for (a, s) in EXPECTED_TARGET if s == status}
        assert allowed_actions(status) == expected, status


async def test_case_cannot_close_without_reply_after_outside_transfer(container):
    view = await container.cases.create(complaint(merchant=MerchantLocation(False, None, "广东省")))
    await container.cases.transfer(view.id, STAFF, authority="广州市天河区市场监督管理局", scope="out_of_province")
    with pytest.raises(DomainError, match="before a reply to the complainant is recorded"):
        await container.cases.close(view.id, STAFF)
    assert (await container.cases.get(view.id)).status == Status.TRANSFERRED
    await container.cases.reply(view.id, STAFF, "您的投诉已移送广州市天河区市场监督管理局处理，电话 12315")
    closed = await container.cases.close(view.id, STAFF)
    assert closed.status == Status.CLOSED


async def test_reopened_case_needs_a_new_reply_before_closing_again(container):
    view = await container.cases.create(complaint())
    await container.cases.reject(view.id, STAFF, "court_or_arbitration", "该争议已由法院受理")
    await container.cases.close(view.id, STAFF)
    reopened = await container.cases.reopen(view.id, STAFF, "投诉人称法院已撤案")
    assert reopened.status == Status.RECEIVED  # never accepted: back to triage
    await container.cases.transfer(view.id, STAFF, authority="温州市鹿城区市场监督管理局")
    with pytest.raises(DomainError, match="reply"):
        await container.cases.close(view.id, STAFF)


async def test_internal_transfer_cannot_be_closed_by_sender(container):
    case_id = await _reach(container, Status.TRANSFERRED)
    with pytest.raises(DomainError, match="closed by that unit"):
        await container.cases.close(case_id, STAFF)


async def test_transfer_to_unit_replaces_lead_and_keeps_history(container):
    view = await container.cases.create(complaint())
    assert view.lead_unit == "suo_yongzhong"
    moved = await container.cases.transfer(view.id, STAFF, unit_code="suo_haibin", note="商家实际在海滨街道")
    assert moved.lead_unit == "suo_haibin"
    async with container.uow() as uow:
        case = await uow.cases.get(view.id)
        history = sorted((a.unit.code, a.role, a.active) for a in case.assignments)
    assert history == [("suo_haibin", "lead", True), ("suo_yongzhong", "lead", False)]


async def test_transfer_to_unknown_unit_is_a_clear_error(container):
    view = await container.cases.create(complaint())
    with pytest.raises(DomainError, match="unknown unit 'nowhere'"):
        await container.cases.transfer(view.id, STAFF, unit_code="nowhere")
    assert (await container.cases.get(view.id)).status == Status.RECEIVED


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda c, i: c.reject(i, STAFF, "because", "x"), "unknown rejection ground"),
        (lambda c, i: c.reject(i, STAFF, "other", "   "), "reply telling the complainant why is required"),
        (lambda c, i: c.resolve(i, STAFF, "mediated", ""), "reply to the complainant is required"),
        (lambda c, i: c.resolve(i, STAFF, "won", "ok"), "unknown outcome"),
        (lambda c, i: c.transfer(i, STAFF), "either to a unit"),
        (lambda c, i: c.transfer(i, STAFF, unit_code="xiaobao", authority="税务局"), "either to a unit"),
        (lambda c, i: c.reopen(i, STAFF, ""), "reason for reopening is required"),
    ],
)
async def test_bad_action_arguments_are_refused(container, call, message):
    view = await container.cases.create(complaint())
    with pytest.raises(DomainError, match=message):
        await call(container.cases, view.id)
    assert (await container.cases.get(view.id)).status == Status.RECEIVED


async def test_unknown_case_id(container):
    with pytest.raises(CaseNotFound):
        await container.cases.accept(999_999, STAFF)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"category": "gossip"}, "unknown category"),
        ({"focus_area": 15}, "focus area must be 1-14"),
        ({"description": "  \n "}, "description of what happened is required"),
        ({"description": "长" * 20_001}, "longer than 20000"),
        ({"anonymous": True}, "needs the complainant's identity"),
        ({"complainant": None}, "needs the complainant's identity"),
        ({"amount_fen": -1}, "cannot be negative"),
        ({"received_at": datetime(2026, 9, 30, 9, 0)}, "time zone"),
    ],
)
async def test_bad_new_case_is_refused_and_nothing_stored(container, change, message):
    with pytest.raises(DomainError, match=message):
        await container.cases.create(complaint(**change))
    async with container.uow() as uow:
        assert await uow.session.scalar(select(func.count()).select_from(Case)) == 0


async def test_create_stores_facts_routes_and_numbers(container):
    first = await container.cases.create(complaint())
    second = await container.cases.create(tipoff())
    assert first.number == "LW-2026-000001"
    assert second.number == "LW-2026-000002"
    assert (first.lead_unit, first.co_units) == ("suo_yongzhong", ())
    assert (second.lead_unit, set(second.co_units)) == ("jiajing", {"wangjian", "zongzhi"})
    async with container.uow() as uow:
        created = (await uow.cases.events(first.id))[0]
    assert (created.action, created.from_status, created.to_status) == ("create", None, "received")
    assert created.data["rule"] == first.routing.rule_id


async def test_case_numbers_restart_each_year_by_receipt_date(container):
    late = await container.cases.create(complaint(received_at=datetime(2025, 12, 31, 16, 30, tzinfo=UTC)))
    # 16:30 UTC on Dec 31 is already 00:30 on Jan 1 in Shanghai
    assert late.number == "LW-2026-000001"
    early = await container.cases.create(complaint(received_at=datetime(2025, 12, 31, 15, 59, tzinfo=UTC)))
    assert early.number == "LW-2025-000001"


async def test_resolve_records_the_reply_message(container):
    case_id = await _reach(container, Status.RESOLVED)
    async with container.uow() as uow:
        replies = (await uow.session.scalars(
            select(CaseMessage).where(CaseMessage.case_id == case_id, CaseMessage.is_reply.is_(True))
        )).all()
        case = await uow.cases.get(case_id)
    assert [m.body for m in replies] == ["经调解，商家同意全额退款"]
    assert case.outcome == "mediated" and case.replied_at is not None


async def test_every_change_is_in_the_audit_log(container):
    case_id = await _reach(container, Status.CLOSED)
    async with container.uow() as uow:
        actions = [e.action for e in await uow.cases.events(case_id)]
        others = (await uow.session.scalars(select(CaseEvent.action).where(CaseEvent.case_id.is_(None)))).all()
    assert actions == ["create", "accept", "resolve", "close"]
    assert others == ["user_create"]  # the staff account made by the fixture is audited too


# -- deadlines ---------------------------------------------------------------------------------


def shanghai(y, m, d, hour=10) -> datetime:
    return datetime(y, m, d, hour - 8, 0, tzinfo=UTC)


async def test_complaint_across_national_day_2026(container):
    # Received Wed 2026-09-30. Oct 1-7 are holidays, Sat Oct 10 is a make-up working day:
    # working days after receipt: 10-08, 10-09, 10-10, 10-12, 10-13, 10-14, 10-15.
    view = await container.cases.create(complaint(received_at=shanghai(2026, 9, 30)))
    acceptance = view.deadline("complaint_acceptance")
    assert acceptance.due_on == date(2026, 10, 15)
    assert not acceptance.provisional
    assert view.next_due_on == date(2026, 10, 15)
    assert view.deadline("complaint_mediation") is None  # starts at acceptance


async def test_tipoff_check_across_national_day_2026(container):
    # 15 working days: the seven above, then 10-16, 10-19 .. 10-23, 10-26, 10-27.
    view = await container.cases.create(tipoff(received_at=shanghai(2026, 9, 30)))
    assert view.deadline("tipoff_check").due_on == date(2026, 10, 27)
    assert view.deadline("informant_notice") is None  # anonymous: nobody to notify


async def test_deadline_running_into_2027_is_provisional(container):
    # Thu 2026-12-24: 12-25, 12-28, 12-29, 12-30, 12-31, then 2027 on Mon-Fri: 01-01, 01-04.
    view = await container.cases.create(complaint(received_at=shanghai(2026, 12, 24)))
    acceptance = view.deadline("complaint_acceptance")
    assert acceptance.due_on == date(2027, 1, 4)
    assert acceptance.provisional


async def test_holiday_override_moves_a_provisional_deadline(container):
    from db.models import HolidayOverride

    async with container.uow() as uow:
        uow.session.add(HolidayOverride(day=date(2027, 1, 1), is_workday=False, note="元旦"))
        await uow.commit()
    view = await container.cases.create(complaint(received_at=shanghai(2026, 12, 24)))
    assert view.deadline("complaint_acceptance").due_on == date(2027, 1, 5)


async def test_accept_starts_mediation_and_meets_acceptance(container, clock):
    view = await container.cases.create(complaint(received_at=shanghai(2026, 11, 16)))
    clock.at = shanghai(2026, 11, 18)
    accepted = await container.cases.accept(view.id, STAFF)
    assert accepted.deadline("complaint_acceptance").met
    mediation = accepted.deadline("complaint_mediation")
    # received after 2026-04-15: Order 121, 60 calendar days from acceptance: Sunday 2027-01-17, so the next
    # working day (Art 45), provisional while the 2027 holidays are not known
    assert mediation.due_on == date(2027, 1, 18) and mediation.provisional and not mediation.met
    assert "121" in mediation.basis
    assert accepted.next_due_on == date(2027, 1, 18)


async def test_complaint_received_under_order_20_gets_45_working_days(container, clock):
    view = await container.cases.create(complaint(received_at=shanghai(2026, 3, 2)))
    clock.at = shanghai(2026, 3, 3)
    accepted = await container.cases.accept(view.id, STAFF)
    # 45 working days after Tue 2026-03-03: 20 in March, 21 in April (Qingming Mon 04-06 off),
    # then 05-06, 05-07, 05-08 and the make-up Saturday 05-09 after the Labour Day holiday 05-01..05.
    mediation = accepted.deadline("complaint_mediation")
    assert "20" in mediation.basis
    assert mediation.due_on == date(2026, 5, 9)


async def test_real_name_tipoff_gets_informant_notice_after_decision(container, clock):
    named = tipoff(anonymous=False, complainant=ComplainantInfo(channel_user_id="7", name="李四", phone="13900000000"))
    view = await container.cases.create(named)
    assert view.deadline("tipoff_check") is not None
    clock.at = shanghai(2026, 11, 20)  # Friday
    decided = await container.cases.accept(view.id, STAFF)
    notice = decided.deadline("informant_notice")
    assert notice.due_on == date(2026, 11, 27) and not notice.met  # 5 working days after Fri 11-20
    assert decided.deadline("tipoff_check").met
    replied = await container.cases.reply(view.id, STAFF, "您的举报已立案调查")
    assert replied.deadline("informant_notice").met


async def test_tipoff_check_extension_with_approval(container):
    view = await container.cases.create(tipoff(received_at=shanghai(2026, 11, 2)))
    before = view.deadline("tipoff_check").due_on
    extended = await container.cases.extend(view.id, STAFF, "tipoff_check", "经局领导批准延长十五个工作日")
    after = extended.deadline("tipoff_check").due_on
    assert before == date(2026, 11, 23)
    assert after == date(2026, 12, 14)
    with pytest.raises(DomainError, match="already extended"):
        await container.cases.extend(view.id, STAFF, "tipoff_check", "again")


async def test_out_of_district_case_gets_transfer_clock(container):
    view = await container.cases.create(
        complaint(merchant=MerchantLocation(False, None, "广东省"), received_at=shanghai(2026, 11, 16))
    )
    assert view.routing.transfer is not None
    assert [d.clock for d in view.deadlines] == ["transfer"]
    assert view.deadline("transfer").due_on == date(2026, 11, 25)
    transferred = await container.cases.transfer(view.id, STAFF, authority="广州市市场监督管理局", scope="out_of_province")
    assert transferred.deadline("transfer").met
    assert transferred.next_due_on is None
