"""Case numbers stay unique when many cases are created at once."""

from __future__ import annotations

import asyncio
import re

from intake.cases import ComplainantInfo, NewCase
from nlu.taxonomy import Kind
from routing.rules import MerchantLocation


def _new(i: int) -> NewCase:
    return NewCase(
        kind=Kind.COMPLAINT,
        category="price",
        description=f"第{i}位消费者：直播间标价与结算价不一致",
        channel="api",
        complainant=ComplainantInfo(channel_user_id=f"user-{i}", name=f"消费者{i}", phone="13800000000"),
        merchant=MerchantLocation(True, "海滨街道", "浙江省"),
    )


async def test_fifty_concurrent_creations_get_fifty_distinct_numbers(container):
    views = await asyncio.gather(*(container.cases.create(_new(i)) for i in range(50)))
    numbers = [v.number for v in views]
    assert len(set(numbers)) == 50
    assert all(re.fullmatch(r"LW-2026-\d{6}", n) for n in numbers)
    # nothing failed or rolled back, so the 50 numbers are exactly 1..50
    assert sorted(int(n.rsplit("-", 1)[1]) for n in numbers) == list(range(1, 51))
    assert len({v.id for v in views}) == 50


async def test_concurrent_cases_naming_one_new_streamer_share_one_subject(container):
    from sqlalchemy import func, select

    from db.models import CaseSubject, Subject

    def named(i: int) -> NewCase:
        return NewCase(**{**_new(i).__dict__, "platform": "抖音", "live_room": "好物严选", "streamer": f"主播{i % 2}"})

    await asyncio.gather(*(container.cases.create(named(i)) for i in range(10)))
    async with container.uow() as uow:
        subjects = (await uow.session.execute(select(Subject.type, Subject.platform, Subject.name))).all()
        links = await uow.session.scalar(select(func.count()).select_from(CaseSubject))
    assert sorted(subjects) == [("live_room", "抖音", "好物严选"), ("platform", "", "抖音"),
                                ("streamer", "抖音", "主播0"), ("streamer", "抖音", "主播1")]
    assert links == 30  # each case: its platform, live room and streamer
