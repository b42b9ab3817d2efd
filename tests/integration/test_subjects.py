"""The subject ledgers (主体名录) of the staff console over real HTTP: the four ledgers with scoped case
counts, one subject with exactly its cases, the hotspot list of live rooms and streamers for 7 and 30
days, escaping of untrusted names, and 400/404 pages for bad parameters.

The tip-offs of test_console (price, merchant in 永中街道) have 价竞分局 (jiajing) as lead; 质量监管科
(zhiliang) has no part in them, so its handler sees none of their cases and every count as zero.
The clock is fixed at Monday 2026-11-16 10:00 in Shanghai.
"""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import select

from db.models import Subject
from tests.integration.test_console import (  # noqa: F401  (console is a fixture)
    IMG,
    IMG_ESCAPED,
    SCRIPT,
    SCRIPT_ESCAPED,
    case_numbers,
    console,
    tipoff,
)


async def subject_id(container, type_: str, name: str, platform: str = "抖音") -> int:
    async with container.uow() as uow:
        found = await uow.session.scalar(
            select(Subject.id).where(Subject.type == type_, Subject.name == name, Subject.platform == platform))
    assert found is not None, (type_, name)
    return found


def counts(html: str) -> dict[int, int]:
    """Subject id -> the case count shown for it."""
    return {int(i): int(n) for i, n in re.findall(r'data-subject="(\d+)">(\d+)<', html)}


def ranking(html: str, section: str) -> list[tuple[str, int]]:
    """The (name, count) rows of one hotspot table, in the order shown."""
    match = re.search(rf'<section class="hotspots hotspots-{section}">(.*?)</section>', html, re.S)
    assert match, section
    return [(name, int(n)) for name, n in re.findall(
        r'<a href="/subjects/\d+">([^<]*)</a></td>\s*<td>[^<]*</td>\s*<td class="count" data-subject="\d+">(\d+)<',
        match.group(1))]


async def test_ledgers_list_subjects_with_counts(console):
    container = console.container
    numbers_a = [(await container.cases.create(tipoff(live_room="甲直播间", streamer="主播甲"))).number
                 for _ in range(2)]
    await container.cases.create(tipoff(live_room="乙直播间", streamer="主播乙"))
    await container.cases.create(tipoff(platform="快手", live_room="甲直播间", streamer=None))
    triage = await console.person("triage", "xiaobao", "triage")

    status, html = await triage.get("/subjects?type=live_room")
    assert status == 200 and "主体名录" in html and "直播间运营者" in html
    room_a, room_b = await subject_id(container, "live_room", "甲直播间"), await subject_id(container, "live_room", "乙直播间")
    room_a_ks = await subject_id(container, "live_room", "甲直播间", "快手")  # another platform, another room
    assert counts(html) == {room_a: 2, room_b: 1, room_a_ks: 1}
    assert html.index(f'data-subject="{room_a}"') < html.index(f'data-subject="{room_b}"')  # most cases first

    status, html = await triage.get("/subjects?type=streamer")
    assert status == 200
    assert counts(html) == {await subject_id(container, "streamer", "主播甲"): 2,
                            await subject_id(container, "streamer", "主播乙"): 1}

    status, html = await triage.get("/subjects?type=platform")
    assert status == 200
    assert counts(html) == {await subject_id(container, "platform", "抖音", ""): 3,
                            await subject_id(container, "platform", "快手", ""): 1}

    status, html = await triage.get("/subjects?type=streamer&q=%E7%94%B2")  # q=甲
    assert status == 200 and "主播甲" in html and "主播乙" not in html
    status, html = await triage.get("/subjects?type=service_agency")
    assert status == 200 and "没有符合条件的主体。" in html

    # the subject page: exactly its cases
    status, html = await triage.get(f"/subjects/{room_a}")
    assert status == 200 and "甲直播间" in html
    assert sorted(case_numbers(html)) == sorted(numbers_a)
    # the nav leads to the ledgers
    status, html = await triage.get("/")
    assert status == 200 and 'href="/subjects"' in html


async def test_ledger_pages_are_paginated(console):
    container = console.container
    for i in range(55):
        await container.cases.create(tipoff(live_room=f"直播间{i:02d}"))
    triage = await console.person("triage", "xiaobao", "triage")
    status, first = await triage.get("/subjects?type=live_room")
    assert status == 200 and len(counts(first)) == 50 and 'rel="next"' in first
    status, second = await triage.get("/subjects?type=live_room&page=2")
    assert status == 200 and len(counts(second)) == 5 and 'rel="next"' not in second
    assert not set(counts(first)) & set(counts(second))


async def test_counts_and_cases_are_scoped(console):
    container = console.container
    numbers = [(await container.cases.create(tipoff(live_room="丙直播间", streamer="主播丙"))).number for _ in range(3)]
    room = await subject_id(container, "live_room", "丙直播间")
    streamer = await subject_id(container, "streamer", "主播丙")
    lead = await console.person("lead", "jiajing", "handler")
    other = await console.person("other", "zhiliang", "handler")
    leader = await console.person("leader", "bangongshi", "leader")

    for person in (lead, leader):
        status, html = await person.get(f"/subjects/{room}")
        assert status == 200 and sorted(case_numbers(html)) == sorted(numbers)
        status, html = await person.get("/subjects?type=live_room")
        assert counts(html)[room] == 3

    status, html = await other.get(f"/subjects/{room}")
    assert status == 200 and case_numbers(html) == [] and "LW-" not in html
    assert '<dd class="count">0</dd>' in html
    status, html = await other.get("/subjects?type=live_room")
    assert status == 200 and counts(html)[room] == 0
    status, html = await other.get("/subjects?type=streamer")
    assert counts(html)[streamer] == 0
    status, html = await other.get("/subjects/hotspots?days=30")
    assert status == 200 and ranking(html, "live_room") == [] and ranking(html, "streamer") == []
    status, html = await lead.get("/subjects/hotspots?days=30")
    assert ranking(html, "live_room") == [("丙直播间", 3)] and ranking(html, "streamer") == [("主播丙", 3)]


async def test_hotspots_rank_by_window(console):
    container, now = console.container, console.container.clock.now()

    async def cases(n: int, days_ago: int, room: str, streamer: str) -> None:
        for _ in range(n):
            await container.cases.create(tipoff(live_room=room, streamer=streamer,
                                                received_at=now - timedelta(days=days_ago, hours=1)))

    await cases(4, 20, "旧直播间", "旧主播")  # only in the 30-day window
    await cases(2, 2, "近直播间", "近主播")
    await cases(1, 0, "新直播间", "新主播")
    await cases(1, 40, "很旧直播间", "很旧主播")  # in neither
    triage = await console.person("triage", "xiaobao", "triage")

    status, html = await triage.get("/subjects/hotspots?days=7")
    assert status == 200
    assert ranking(html, "live_room") == [("近直播间", 2), ("新直播间", 1)]
    assert ranking(html, "streamer") == [("近主播", 2), ("新主播", 1)]
    status, default = await triage.get("/subjects/hotspots")
    assert status == 200 and ranking(default, "live_room") == ranking(html, "live_room")

    status, html = await triage.get("/subjects/hotspots?days=30")
    assert status == 200
    assert ranking(html, "live_room") == [("旧直播间", 4), ("近直播间", 2), ("新直播间", 1)]
    assert ranking(html, "streamer") == [("旧主播", 4), ("近主播", 2), ("新主播", 1)]


async def test_hotspots_show_top_twenty(console):
    container = console.container
    for i in range(22):
        for _ in range(1 + (i == 21)):
            await container.cases.create(tipoff(live_room=f"房间{i:02d}"))
    triage = await console.person("triage", "xiaobao", "triage")
    status, html = await triage.get("/subjects/hotspots?days=7")
    rows = ranking(html, "live_room")
    assert status == 200 and len(rows) == 20 and rows[0] == ("房间21", 2)


async def test_untrusted_names_are_escaped(console):
    container = console.container
    await container.cases.create(tipoff(live_room=IMG, streamer=SCRIPT))
    streamer = await subject_id(container, "streamer", SCRIPT)
    triage = await console.person("triage", "xiaobao", "triage")
    for path in ("/subjects?type=streamer", "/subjects?type=live_room", f"/subjects/{streamer}",
                 "/subjects/hotspots?days=7", "/subjects?type=streamer&q=" + "%3Cscript%3E"):
        status, html = await triage.get(path)
        assert status == 200, path
        assert SCRIPT not in html and IMG not in html, path
        assert SCRIPT_ESCAPED in html or IMG_ESCAPED in html, path
    status, html = await triage.get("/subjects?type=" + "%3Cscript%3Ealert(1)%3C%2Fscript%3E")
    assert status == 400 and SCRIPT not in html


async def test_bad_parameters_are_400_or_404(console):
    triage = await console.person("triage", "xiaobao", "triage")
    for path in ("/subjects/hotspots?days=abc", "/subjects/hotspots?days=14", "/subjects/hotspots?days=-7",
                 "/subjects?type=xyz", "/subjects?type=live_room&page=0", "/subjects?type=live_room&page=abc"):
        status, html = await triage.get(path)
        assert status == 400, path
        assert "请求参数无效" in html, path
    for path in ("/subjects/999999", "/subjects/0", "/subjects/abc", "/subjects/99999999999999999999",
                 "/subjects/9223372036854775808"):
        status, html = await triage.get(path)
        assert status == 404, path
        assert "没有这个主体。" in html, path


async def test_subject_pages_need_a_login(console):
    client = await console.browser()
    for path in ("/subjects", "/subjects/1", "/subjects/hotspots?days=7"):
        response = await client.get(path, allow_redirects=False)
        assert response.status == 303 and response.headers["Location"].startswith("/login?next=")
