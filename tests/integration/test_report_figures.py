"""The report figures over a known set of cases, built through the case service on a fixed clock across
October and November 2026 (the campaign starting 2026-10-01), on SQLite and PostgreSQL.

The cases, in the order they are created (times are Shanghai local):

| name | received | kind, category | what happens |
|---|---|---|---|
| before | 09-30 23:30 | complaint, consumer_rights | rejected and closed the same night: before the campaign |
| c1 | 10-12 | complaint, consumer_rights, 抖音 | accepted 10-13, mediated 10-20, closed 10-21, rated 5 |
| c2 | 10-14 | tip-off, price, 抖音 A直播间 主播甲 | accepted 10-15, case filed 10-28, closed 11-03 with 8000+3000 yuan |
| c3 | 10-20 | tip-off, food_safety, merchant in 广东 | transferred out of province 10-21, replied, closed 10-22 |
| c14 | 10-14 | tip-off, unfair_competition, 快手 B直播间 主播乙 | nothing: its check is overdue since 11-04 |
| c3b | 10-31 23:30 | tip-off, other | nothing: its check is due today (11-20), not overdue |
| c4 | 11-01 00:10 | complaint, consumer_rights, 抖音 A直播间 主播甲 | accepted 11-03, mediated 11-10, closed 11-11, rated 4 |
| c5 | 11-02 00:30 | complaint, product_quality, 快手 B直播间 | nothing: acceptance overdue since 11-11 |
| c6 | 11-02 | complaint, consumer_rights, 快手 B直播间 | accepted at 00:30 on 11-12, a day late (still 11-11 in UTC) |
| c7 | 11-04 | tip-off, orientation (focus area 1), 抖音 | rejected and closed 11-05 |
| c8 | 11-05 | tip-off, advertising, 抖音 A直播间 主播甲 | a duplicate of c2, 11-06 |
| c9 | 11-06 | complaint, consumer_rights | withdrawn the same day |
| c10 | 11-09 | consultation, other | answered 11-09, closed 11-10, rated 3 |
| c11 | 11-10 | tip-off, tax | transferred to the tax authority 11-11, replied, closed 11-12 |
| c12 | 11-12 | tip-off, platform_duty (focus area 2), 快手 B直播间 | transferred from 价竞分局 to 质量监管科 11-13 |
| c13 | 11-16 | tip-off, ip_infringement, real name, 抖音 | accepted 11-17, case filed 11-18, closed with 5000 yuan and a referral |

Today is 2026-11-20.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, time
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from db.models import Subject
from intake.cases import Actor, ComplainantInfo, NewCase
from intake.closing import ClosingFacts
from nlu.taxonomy import CATEGORIES, Kind
from reports.fields import STATS_DATA_FIELDS
from reports.figures import ClockCounts, Hotspot, OverdueRow, WeekCounts, compute_figures, fen_to_wan
from reports.period import Period, ReportScope
from routing.rules import MerchantLocation

SHANGHAI = ZoneInfo("Asia/Shanghai")
STAFF = Actor("staff", 1)
CAMPAIGN_START = date(2026, 10, 1)
TODAY = date(2026, 11, 20)
NOVEMBER = Period.month("2026-11")
IN_YONGZHONG = MerchantLocation(in_district=True, street="永中街道", province="浙江省")
IN_GUANGDONG = MerchantLocation(in_district=False, street=None, province="广东省")


def local(month: int, day: int, hour: int = 10, minute: int = 0) -> datetime:
    return datetime.combine(date(2026, month, day), time(hour, minute), SHANGHAI).astimezone(UTC)


def complaint(user: str, **overrides) -> NewCase:
    values = dict(kind=Kind.COMPLAINT, category="consumer_rights", channel="telegram",
                  description="直播间买的羽绒服七天无理由退货，商家一直不给退款",
                  complainant=ComplainantInfo(channel_user_id=user, name="张三", phone="13800138000"),
                  merchant=IN_YONGZHONG)
    return NewCase(**(values | overrides))


def tipoff(category: str, **overrides) -> NewCase:
    values = dict(kind=Kind.TIPOFF, category=category, channel="web", anonymous=True,
                  description="主播说原价999现在99，其实平时一直卖99，虚假折扣", merchant=IN_YONGZHONG)
    return NewCase(**(values | overrides))


class Story:
    """Acts on the cases at given local times."""

    def __init__(self, container) -> None:
        self.cases = container.cases
        self.clock = container.clock
        self.ids: dict[str, int] = {}
        self.numbers: dict[str, str] = {}

    def at(self, month: int, day: int, hour: int = 10, minute: int = 0) -> Story:
        self.clock.at = local(month, day, hour, minute)
        return self

    async def create(self, name: str, new: NewCase) -> None:
        view = await self.cases.create(replace(new, received_at=self.clock.now()))
        self.ids[name], self.numbers[name] = view.id, view.number

    async def do(self, action: str, name: str, *args, **kwargs):
        return await getattr(self.cases, action)(self.ids[name], STAFF, *args, **kwargs)


@pytest.fixture
async def story(container) -> Story:
    await container.accounts.create_user("triage1", "xiaobao", "triage")
    s = Story(container)
    await s.at(9, 30, 23, 30).create("before", complaint("1"))
    await s.at(9, 30, 23, 45).do("reject", "before", "not_consumer_dispute", "不属于消费争议")
    await s.at(9, 30, 23, 50).do("close", "before")

    await s.at(10, 12).create("c1", complaint("2", platform="抖音"))
    await s.at(10, 13).do("accept", "c1")
    await s.at(10, 20).do("resolve", "c1", "mediated", "经调解，商家同意退款")
    await s.at(10, 21).do("close", "c1")
    await s.at(10, 23).do("rate", "c1", 5)

    await s.at(10, 14).create("c2", tipoff("price", platform="抖音", live_room="A直播间", streamer="主播甲"))
    await s.at(10, 14, 15).create("c14", tipoff("unfair_competition", platform="快手", live_room="B直播间",
                                                 streamer="主播乙"))
    await s.at(10, 15).do("accept", "c2")
    await s.at(10, 28).do("resolve", "c2", "case_filed", "已立案查处")

    await s.at(10, 20).create("c3", tipoff("food_safety", channel="api", merchant=IN_GUANGDONG))
    await s.at(10, 21).do("transfer", "c3", authority="广州市天河区市场监督管理局", scope="out_of_province")
    await s.at(10, 21, 11).do("reply", "c3", "已移送商户所在地市场监管部门")
    await s.at(10, 22).do("close", "c3")

    await s.at(10, 31, 23, 30).create("c3b", tipoff("other"))
    await s.at(11, 1, 0, 10).create("c4", complaint("2", platform="抖音", live_room="A直播间", streamer="主播甲"))
    await s.at(11, 2, 0, 30).create("c5", complaint("3", category="product_quality", platform="快手", live_room="B直播间"))
    await s.at(11, 2, 11).create("c6", complaint("4", platform="快手", live_room="B直播间"))
    await s.at(11, 3).do("accept", "c4")
    await s.at(11, 3, 15).do("close", "c2", facts=ClosingFacts(fine_fen=800_000, confiscation_fen=300_000,
                                                                takedowns=3, accounts_disposed=1))
    await s.at(11, 4).create("c7", tipoff("orientation", focus_area=1, platform="抖音"))
    await s.at(11, 5).do("reject", "c7", "no_clue", "举报内容不具体，无法核查")
    await s.at(11, 5, 11).do("close", "c7")
    await s.at(11, 5, 12).create("c8", tipoff("advertising", platform="抖音", live_room="A直播间", streamer="主播甲"))
    await s.at(11, 6).do("mark_duplicate", "c8", s.numbers["c2"], "与已立案查处的线索为同一事项")
    await s.at(11, 6, 11).create("c9", complaint("5", channel="web"))
    await s.at(11, 6, 14).do("withdraw", "c9", "您已撤回本次投诉")
    await s.at(11, 9).create("c10", NewCase(kind=Kind.CONSULTATION, category="other", channel="web",
                                             description="直播间买东西能七天无理由退货吗",
                                             complainant=ComplainantInfo(channel_user_id="6")))
    await s.at(11, 9, 11).do("accept", "c10")
    await s.at(11, 9, 12).do("resolve", "c10", "answered", "可以，依法享有七日无理由退货")
    await s.at(11, 10, 9).do("resolve", "c4", "mediated", "经调解，商家同意退款")
    await s.at(11, 10, 10).do("close", "c10")
    await s.at(11, 10, 11).create("c11", tipoff("tax"))
    await s.at(11, 11).do("transfer", "c11", authority="国家税务总局温州市龙湾区税务局")
    await s.at(11, 11, 11).do("reply", "c11", "已移送税务部门")
    await s.at(11, 11, 12).do("close", "c4")
    await s.at(11, 12, 0, 30).do("accept", "c6")
    await s.at(11, 12).do("close", "c11", facts=ClosingFacts())
    await s.at(11, 12, 11).do("rate", "c10", 3)
    await s.at(11, 12, 12).create("c12", tipoff("platform_duty", focus_area=2, platform="快手", live_room="B直播间"))
    await s.at(11, 13, 11).do("transfer", "c12", unit_code="zhiliang")
    await s.at(11, 13, 12).do("rate", "c4", 4)
    await s.at(11, 16).create("c13", tipoff("ip_infringement", platform="抖音", anonymous=False,
                                            complainant=ComplainantInfo(channel_user_id="7", name="李四")))
    await s.at(11, 17).do("accept", "c13")
    await s.at(11, 18).do("resolve", "c13", "case_filed", "已立案查处")
    await s.at(11, 18, 11).do("close", "c13", facts=ClosingFacts(fine_fen=500_000, judicial_referral=True,
                                                                  sites_closed=2))
    s.at(11, 20)
    await registry_entries(container)
    return s


async def registry_entries(container) -> None:
    """Entries of the subject registry beside those the cases made (platforms, live rooms, streamers)."""
    async with container.uow() as uow:
        now = container.clock.now()
        for type_, name, in_district in (("operator", "龙湾某传媒有限公司", True), ("operator", "外地传媒", False),
                                         ("service_agency", "龙湾某MCN", True), ("streamer", "本地主播", True)):
            uow.session.add(Subject(type=type_, name=name, platform="", in_district=in_district, created_at=now))
        await uow.commit()


async def figures(container, scope: ReportScope = ReportScope(), period: Period = NOVEMBER):
    async with container.uow() as uow:
        return await compute_figures(uow.session, scope=scope, period=period, campaign_start=CAMPAIGN_START,
                                     tz=SHANGHAI, today=TODAY)


def categories(**counts: int) -> dict[str, int]:
    return {c.id: counts.get(c.id, 0) for c in CATEGORIES}


async def test_a_month(container, story):
    month = (await figures(container)).period
    assert month.span == NOVEMBER
    received = month.received
    assert (received.total, received.duplicates) == (10, 1)
    assert received.by_channel == {"telegram": 3, "web": 7}
    assert received.by_kind == {"complaint": 4, "tipoff": 5, "consultation": 1}
    assert received.by_category == categories(consumer_rights=3, product_quality=1, orientation=1, advertising=1,
                                              other=1, tax=1, platform_duty=1, ip_infringement=1)
    # c12 counts for the unit that leads it now, 质量监管科, not for 价竞分局 that had it first
    assert received.by_unit == {"suo_yongzhong": 4, "jiajing": 1, "hetong": 1, "xiaobao": 2, "zhiliang": 1,
                                "zhichan": 1}
    assert received.by_platform == {"抖音": 4, "快手": 3, None: 3}
    assert (month.accepted, month.rejected) == (4, 1)
    assert (month.transfers.inside, month.transfers.in_province, month.transfers.out_of_province) == (1, 1, 0)
    assert month.resolved == {"mediated": 1, "answered": 1, "case_filed": 1, "duplicate": 1, "withdrawn": 1}

    closings = month.closings
    assert closings.total == 8  # c2 (received in October), c4, c7, c8, c9, c10, c11, c13
    assert closings.by_kind == {"complaint": 2, "tipoff": 5, "consultation": 1}
    assert (closings.filed, closings.filed_by_category) == (2, categories(price=1, ip_infringement=1))
    assert (closings.fines_fen, closings.confiscation_fen, closings.penalties_fen) == (1_300_000, 300_000, 1_600_000)
    assert (closings.cases_over_10k, closings.judicial_referrals) == (1, 1)
    assert (closings.takedowns, closings.accounts_disposed, closings.sites_closed) == (3, 1, 2)

    # c8 (duplicate) and c9 (withdrawn) aside; c5, c6 and c12 have no answer yet
    assert (month.replies.received, month.replies.replied, month.replies.rate) == (8, 5, 5 / 8)
    satisfaction = month.satisfaction
    assert satisfaction.distribution == {1: 0, 2: 0, 3: 1, 4: 1, 5: 0}
    assert (satisfaction.rated, satisfaction.mean, satisfaction.satisfied, satisfaction.satisfied_share) == (
        2, 3.5, 1, 0.5)


async def test_deadlines_on_time_late_and_overdue(container, story):
    views = {name: await container.cases.get(case_id) for name, case_id in story.ids.items()}

    def due(name: str, clock: str) -> date:
        return views[name].deadline(clock).due_on

    # the facts the counts rest on (working days of the 2026 calendar)
    assert due("c4", "complaint_acceptance") == date(2026, 11, 10)  # met 11-03
    assert due("c5", "complaint_acceptance") == date(2026, 11, 11)  # never met
    assert due("c6", "complaint_acceptance") == date(2026, 11, 11)  # met 00:30 on 11-12: late
    assert due("c9", "complaint_acceptance") == date(2026, 11, 17)  # met by the withdrawal
    assert due("c2", "tipoff_check") == due("c14", "tipoff_check") == date(2026, 11, 4)
    assert due("c3b", "tipoff_check") == TODAY  # due today: not decided yet
    assert due("c7", "tipoff_check") == date(2026, 11, 25)  # met 11-05
    assert due("c8", "tipoff_check") == date(2026, 11, 26)  # met by the duplicate
    assert due("c12", "tipoff_check") > NOVEMBER.end and due("c13", "tipoff_check") > NOVEMBER.end
    assert due("c11", "transfer") == date(2026, 11, 19)  # met 11-11
    assert due("c13", "informant_notice") == date(2026, 11, 24)  # met by the answer 11-18
    assert all(due(name, "complaint_mediation") > NOVEMBER.end for name in ("c1", "c4", "c6"))
    october = {"before": "complaint_acceptance", "c1": "complaint_acceptance", "c3": "transfer"}
    assert all(due(name, clock).month == 10 for name, clock in october.items())

    result = await figures(container)
    assert result.period.clocks == {
        "complaint_acceptance": ClockCounts("complaint_acceptance", on_time=2, late=1, overdue=1),
        "tipoff_check": ClockCounts("tipoff_check", on_time=3, late=0, overdue=1),
        "transfer": ClockCounts("transfer", on_time=1, late=0, overdue=0),
        "informant_notice": ClockCounts("informant_notice", on_time=1, late=0, overdue=0),
    }
    assert result.period.clocks["complaint_acceptance"].rate == 0.5
    # "before" was received before the campaign, but its deadline fell due in October
    assert result.cumulative.clocks == {
        "complaint_acceptance": ClockCounts("complaint_acceptance", on_time=4, late=1, overdue=1),
        "tipoff_check": ClockCounts("tipoff_check", on_time=3, late=0, overdue=1),
        "transfer": ClockCounts("transfer", on_time=2, late=0, overdue=0),
        "informant_notice": ClockCounts("informant_notice", on_time=1, late=0, overdue=0),
    }


async def test_since_the_campaign_began(container, story):
    total = (await figures(container)).cumulative
    assert total.span == Period(CAMPAIGN_START, NOVEMBER.end)
    assert (total.received.total, total.received.duplicates) == (15, 1)  # not "before" (09-30)
    assert total.received.by_kind == {"complaint": 5, "tipoff": 9, "consultation": 1}
    assert (total.accepted, total.rejected) == (6, 1)
    assert (total.transfers.inside, total.transfers.in_province, total.transfers.out_of_province) == (1, 1, 1)
    assert total.resolved == {"mediated": 2, "answered": 1, "case_filed": 2, "duplicate": 1, "withdrawn": 1}
    assert total.closings.total == 10
    assert total.closings.by_kind == {"complaint": 3, "tipoff": 6, "consultation": 1}
    assert (total.replies.received, total.replies.replied) == (13, 8)
    assert total.satisfaction.distribution == {1: 0, 2: 0, 3: 1, 4: 1, 5: 1}
    assert (total.satisfaction.mean, total.satisfaction.satisfied_share) == (4.0, 2 / 3)


async def test_stats_form_values(container, story):
    values = (await figures(container)).stats_form_values()
    assert list(values) == [f.key for f in STATS_DATA_FIELDS]
    assert values == {
        "subjects_platform": 0, "subjects_operator": 1, "subjects_streamer": 1, "subjects_service_agency": 1,
        "complaints_handled": 5, "complaints_closed": 3, "other_channel_count": 9,
        "accounts_disposed": 1, "sites_closed": 2, "takedowns": 3,
        "criminal_cases": 1, "administrative_cases": 2, "cases_over_10k": 1, "penalties_wan": Decimal("1.60"),
        **{f"filed_{c}": n for c, n in categories(price=1, ip_infringement=1).items()},
        "judicial_referrals": 1, "out_of_province_transfers": 1,
    }


async def test_weekly_overdue_hotspots_registry_and_focus_rows(container, story):
    result = await figures(container)
    weeks = {w.start: (w.received, w.closed) for w in result.weekly if w.received or w.closed}
    assert len(result.weekly) == 12
    assert (result.weekly[0].start, result.weekly[-1].start) == (date(2026, 9, 14), date(2026, 11, 30))
    assert weeks == {
        date(2026, 9, 28): (1, 1),  # "before": weeks are not limited to the campaign
        date(2026, 10, 12): (3, 0),
        date(2026, 10, 19): (1, 2),
        date(2026, 10, 26): (2, 0),  # c3b at 23:30 on the 31st, c4 at 00:10 on 11-01: both in this week
        date(2026, 11, 2): (5, 4),  # c5 at 00:30 on Monday, still Sunday in UTC
        date(2026, 11, 9): (3, 3),
        date(2026, 11, 16): (1, 1),
    }
    assert result.weekly[-1] == WeekCounts(date(2026, 11, 30), 0, 0)

    assert result.overdue.rows == (
        OverdueRow(story.numbers["c14"], "unfair_competition", "tipoff", "jiajing", "tipoff_check",
                   date(2026, 11, 4), 16),
        OverdueRow(story.numbers["c5"], "product_quality", "complaint", "suo_yongzhong", "complaint_acceptance",
                   date(2026, 11, 11), 9),
    )
    assert (result.overdue.total, result.overdue.cases) == (2, 2)

    hotspots = result.hotspots
    assert hotspots.live_rooms == (Hotspot("B直播间", "快手", 3), Hotspot("A直播间", "抖音", 2))
    assert hotspots.platforms == (Hotspot("抖音", None, 4), Hotspot("快手", None, 3))
    assert hotspots.streamers == (Hotspot("主播甲", "抖音", 2),)

    assert result.subjects.all == {"platform": 2, "live_room": 2, "operator": 2, "service_agency": 1, "streamer": 3}
    assert result.subjects.in_district == {"platform": 0, "live_room": 0, "operator": 1, "service_agency": 1,
                                           "streamer": 1}

    # found: the focus area given, else the category's first (consumer_rights -> 10, tax and other -> 14);
    # consultations (c10) and duplicates (c8) are not problems found
    found_solved = {row.focus_area: (row.found, row.solved) for row in result.focus_rows}
    assert [row.focus_area for row in result.focus_rows] == list(range(1, 15))
    assert found_solved == {1: (2, 0), 2: (1, 0), 3: (1, 0), 4: (1, 1), 5: (1, 0), 6: (0, 0), 7: (1, 1), 8: (0, 0),
                            9: (0, 0), 10: (4, 2), 11: (0, 0), 12: (0, 0), 13: (0, 0), 14: (2, 0)}


async def test_a_unit_sees_the_cases_it_leads(container, story):
    result = await figures(container, ReportScope("jiajing"))  # c2, c7, c14; c12 went on to 质量监管科
    month, total = result.period, result.cumulative
    assert (month.received.total, total.received.total) == (1, 3)
    assert month.received.by_unit == {"jiajing": 1}
    assert (month.rejected, month.transfers.inside) == (1, 0)
    assert (month.closings.total, month.closings.filed, month.closings.penalties_fen) == (2, 1, 1_100_000)
    assert month.clocks == {"tipoff_check": ClockCounts("tipoff_check", on_time=2, late=0, overdue=1)}
    assert [row.number for row in result.overdue.rows] == [story.numbers["c14"]]
    assert {row.focus_area: (row.found, row.solved) for row in result.focus_rows if row.found} == {
        1: (2, 0), 7: (1, 1)}
    assert result.subjects.in_district["operator"] == 1  # the registry is the bureau's, whatever the unit

    receiving = (await figures(container, ReportScope("zhiliang"))).period
    assert (receiving.received.total, receiving.transfers.inside) == (1, 1)


async def test_nothing_to_count(container, story):
    quiet = await figures(container, ReportScope("zhuce"))
    assert (quiet.period.received.total, quiet.period.replies.rate, quiet.period.satisfaction.mean) == (0, None, None)
    assert quiet.period.clocks == {} and quiet.overdue.rows == () and quiet.hotspots.platforms == ()
    assert quiet.stats_form_values()["penalties_wan"] == Decimal("0.00")


async def test_refusals(container):
    with pytest.raises(ValueError, match="unknown unit 'nowhere'"):
        await figures(container, ReportScope("nowhere"))
    with pytest.raises(ValueError, match="before the campaign began"):
        await figures(container, period=Period.month("2026-09"))


@pytest.mark.parametrize(("fen", "wan"), [(0, "0.00"), (1_600_000, "1.60"), (4_999, "0.00"), (5_000, "0.01"),
                                          (123_456_789, "123.46"), (1_005_000, "1.01")])
def test_fen_to_wan_rounds_half_up(fen, wan):
    assert fen_to_wan(fen) == Decimal(wan)
