"""One complaint through its whole life, as the person on Telegram sees it: the conversation, every
notice from the notifier in order, an answer to an information request, the satisfaction survey one
working day after close, and the rating stored on the case."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from sqlalchemy import select

from db.models import Case, CaseMessage, OutboxMessage
from intake.cases import Actor
from intake.notice_templates import NoticeRenderer
from intake.notifier import Notifier, NotifierConfig
from intake.ratelimit import SendRate
from intake.scheduler import Scheduler
from bot.sender import TelegramTransport
from tests.integration.test_bot_flows import (  # noqa: F401 - fixtures
    alice,
    channel,
    fake,
    reach_complaint_summary,
    receipt,
)

FRIDAY_EVENING = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)  # 18:00 in Shanghai
MONDAY_MORNING = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai, the next working day


async def deliver_all(notifier: Notifier) -> None:
    while await notifier.run_once():
        pass


async def test_a_complaint_from_first_message_to_rating(fake, channel, alice, container):
    staff = Actor("staff", (await container.accounts.create_user("handler1", "suo_yongzhong", "handler")).id)
    bot = fake.make_bot()
    notifier = Notifier(container.uow, container.clock, NoticeRenderer(container.directory),
                        {"telegram": TelegramTransport(bot)}, SendRate(30, 0), NotifierConfig(chat_interval=0))
    cases = container.cases
    await asyncio.to_thread(container.nlu.warm_up)  # the classifier is ready before the person writes
    try:
        await reach_complaint_summary(alice)
        (number_line,) = await alice.press("✅ 提交")
        assert number_line.startswith("✅ 已登记，编号 LW-2026-000001。")
        number = "LW-2026-000001"
        case_id = (await container.cases.case_of("telegram", str(alice.user.id), number)).id

        await cases.accept(case_id, staff)
        await cases.start(case_id, staff)
        await cases.request_information(case_id, staff, "请补充商品吊牌的照片")
        await deliver_all(notifier)
        accepted, started, request = await alice.wait(3)
        assert accepted.startswith(f"{number}：已受理，由永中市场监督管理所办理。")
        assert started.startswith(f"{number}：永中市场监督管理所已开始办理。")
        assert "请补充商品吊牌的照片" in request

        (prompt,) = await alice.press("补充材料")
        assert number in prompt
        (attached,) = await alice.send("吊牌上写着100%羊绒，但检测报告显示0%")
        assert number in attached

        await cases.resolve(case_id, staff, "mediated", "经调解，商家同意退货退款399元")
        container.clock.at = FRIDAY_EVENING
        await cases.close(case_id, staff)
        await deliver_all(notifier)
        reply, closed = await alice.wait(2)
        assert "经调解，商家同意退货退款399元" in reply and "调解成功" in reply
        assert closed == f"{number}：已办结归档。感谢您的监督。"

        scheduler = Scheduler(container.uow, container.clock, container.settings.tz, cases, container.policy)
        container.clock.at = datetime(2026, 11, 21, 1, 0, tzinfo=UTC)  # Saturday: no survey yet
        await scheduler.tick()
        await deliver_all(notifier)
        assert alice.unseen() == []
        container.clock.at = MONDAY_MORNING
        await scheduler.tick()
        await deliver_all(notifier)
        (survey,) = await alice.wait(1)
        assert survey.startswith(f"{number} 已办结。您对处理结果满意吗？")

        (thanks,) = await alice.press("5 · 很满意")
        assert thanks.startswith("感谢您的评价：5 分（很满意）。")
        (done,) = await alice.send("处理得很及时，谢谢")
        assert "谢谢" in done
    finally:
        await bot.session.close()

    everything = alice.messages()
    order = [everything.index(text) for text in (accepted, started, request, reply, closed, survey, thanks)]
    assert order == sorted(order)
    async with container.uow() as uow:
        case = await uow.session.get(Case, case_id)
        answer = await uow.session.scalar(select(CaseMessage).where(
            CaseMessage.case_id == case_id, CaseMessage.direction == "in"))
        notices = (await uow.session.execute(
            select(OutboxMessage.template, OutboxMessage.status).where(OutboxMessage.case_id == case_id)
            .order_by(OutboxMessage.id))).all()
    assert (case.status, case.satisfaction, case.satisfaction_comment) == ("closed", 5, "处理得很及时，谢谢")
    assert answer.body == "吊牌上写着100%羊绒，但检测报告显示0%"
    assert [tuple(n) for n in notices] == [(t, "sent") for t in (
        "accepted", "started", "info_requested", "reply", "closed", "survey")]
