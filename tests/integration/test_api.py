"""The JSON API /api/v1 end to end through aiohttp's test client, on SQLite (and PostgreSQL when configured).

Covers every endpoint and transition, the access matrix (role x unit x endpoint), bad tokens, bad input
(each refused with a clear error, nothing changed, and logged) and untrusted text coming back inert.
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select, update

from db.models import Case, CaseEvent, CaseMessage, Evidence, StaffUser
from intake.evidence import EvidenceLimits, EvidenceStore
from intake.outbound import OutboundGuard, OutboundPolicy
from nlu.classifier import EmbeddedBackend
from nlu.result import Entities, NluResult, Scored
from web.api.openapi import document
from web.api.schemas import AssignmentIn, CaseOut, MessageIn, NewCaseIn, RatingIn, SubjectLinkIn
from web.app import create_app
from web.keys import AUTH, OUTBOUND, SESSION_COOKIE
from tests.fakes.dns import PUBLIC, FakeResolver
from tests.fakes.images import png

API = "/api/v1"
PRICE_TIPOFF = "抖音直播间主播说原价999现在99，其实平时一直卖99，虚假折扣"
REFUND_COMPLAINT = "我在快手直播间买的羽绒服七天无理由退货，商家一直不给退款，订单号 123456789012"
IN_DISTRICT = {"in_district": True, "street": "永中街道", "province": "浙江省"}




@pytest.fixture(scope="module")
def trained_nlu(tmp_path_factory) -> EmbeddedBackend:
    backend = EmbeddedBackend(cache_dir=tmp_path_factory.mktemp("nlu"), progress=False)
    backend.warm_up()  # once for the module, not per app
    return backend


@dataclass
class Api:
    client: TestClient
    container: object
    tokens: dict[str, str]
    ids: dict[str, int]

    def headers(self, who: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"} if who else {}

    async def call(self, method: str, path: str, who: str | None = "triage", **kwargs):
        headers = {**self.headers(who), **kwargs.pop("headers", {})}
        response = await self.client.request(method, API + path, headers=headers, **kwargs)
        body = await response.read()
        return response, (json.loads(body) if body else None)

    async def user(self, name: str, unit: str, role: str) -> str:
        created = await self.container.accounts.create_user(name, unit, role, with_api_token=True)
        self.tokens[name], self.ids[name] = created.api_token, created.id
        return created.api_token

    async def create(self, who: str = "triage", **fields) -> dict:
        body = {"description": PRICE_TIPOFF, "channel": "12345", "kind": "tipoff", "category": "price",
                "complainant": {"name": "张三", "phone": "13800138000"}, "merchant_location": IN_DISTRICT, **fields}
        response, data = await self.call("POST", "/cases", who, json=body)
        assert response.status == 201, data
        return data

    async def count(self, model) -> int:
        async with self.container.uow() as uow:
            return await uow.session.scalar(select(func.count()).select_from(model))

    async def events(self, action: str) -> list[CaseEvent]:
        async with self.container.uow() as uow:
            return list((await uow.session.scalars(select(CaseEvent).where(CaseEvent.action == action))).all())


@pytest.fixture
async def api(container, trained_nlu) -> Api:
    container.nlu = trained_nlu
    app = create_app(container, with_bot=False)
    # callback URLs resolve through a table (the hotline's host is public), never the network's DNS
    app[OUTBOUND] = OutboundGuard(OutboundPolicy.from_settings(container.settings.outbound),
                                  FakeResolver({"hotline.example.gov.cn": PUBLIC}))
    async with TestClient(TestServer(app)) as client:
        api = Api(client, container, {}, {})
        await api.user("triage", "xiaobao", "triage")  # the hotline's account
        yield api


def assert_error(response, data, status: int, code: str, field: str | None = None) -> None:
    assert response.status == status, data
    assert response.content_type == "application/json"
    assert data["error"]["code"] == code, data
    assert data["error"]["message"]
    if field is not None:
        assert data["error"].get("field") == field, data


# -- the document ----------------------------------------------------------------------------------


async def test_openapi_document_is_public_and_derived_from_the_models(api):
    response, doc = await api.call("GET", "/openapi.json", who=None)
    assert response.status == 200 and response.content_type == "application/json"
    assert doc["openapi"] == "3.1.0"
    assert doc == json.loads(json.dumps(document()))
    operations = {(path, method) for path, item in doc["paths"].items() for method in item}
    assert operations == {
        ("/api/v1/openapi.json", "get"), ("/api/v1/cases", "post"), ("/api/v1/cases", "get"),
        ("/api/v1/cases/{number}", "get"), ("/api/v1/cases/{number}/transitions", "post"),
        ("/api/v1/cases/{number}/messages", "post"), ("/api/v1/cases/{number}/assignment", "post"),
        ("/api/v1/cases/{number}/subjects", "post"), ("/api/v1/cases/{number}/subjects/{subject_id}", "delete"),
        ("/api/v1/cases/{number}/rating", "post"), ("/api/v1/cases/{number}/evidence/{sha256}", "get"),
        ("/api/v1/cases/{number}/evidence/{sha256}/original", "get"),
    }
    schemas = doc["components"]["schemas"]
    ref = "#/components/schemas/{model}"
    for model in (NewCaseIn, MessageIn, AssignmentIn, SubjectLinkIn, RatingIn):
        own = model.model_json_schema(ref_template=ref)
        assert schemas[model.__name__]["properties"] == own["properties"]
        assert schemas[model.__name__]["additionalProperties"] is False
    assert set(schemas["CaseOut"]["properties"]) == set(CaseOut.model_fields)
    assert set(schemas["TransitionIn"]["discriminator"]["mapping"]) == {
        "accept", "reject", "transfer", "start", "resolve", "close", "reopen", "duplicate"}
    assert {"duplicate_of", "satisfaction", "subjects"} <= set(schemas["CaseOut"]["properties"])
    assert "info_request" in schemas["MessageOut"]["properties"]
    assert "callback_url" in schemas["NewCaseIn"]["properties"]
    assert "caseNotice" in doc["paths"]["/api/v1/cases"]["post"]["callbacks"]
    assert doc["security"] == [{"bearerAuth": []}]
    assert doc["paths"]["/api/v1/openapi.json"]["get"]["security"] == []


# -- POST /cases -------------------------------------------------------------------------------------


async def test_create_minimal_case_from_the_hotline(api):
    response, case = await api.call("POST", "/cases", json={"description": PRICE_TIPOFF, "channel": "12345"})
    assert response.status == 201, case
    assert response.headers["Location"] == f"{API}/cases/{case['number']}"
    assert case["number"].startswith("LW-2026-")
    assert case["status"] == "received" and case["channel"] == "12345"
    assert case["kind"] == "tipoff"  # no complainant: never a complaint
    assert case["category"] == "price" and case["nlu"]["category"] == "price"
    assert case["facts"]["platform"] == "抖音"  # taken from the text
    assert case["identity"] == "none" and case["complainant"] is None
    assert isinstance(case["lead_unit"], dict) and set(case["lead_unit"]) == {"code", "name"}
    assert all(set(d) == {"clock", "due_on", "provisional", "met", "basis"} for d in case["deadlines"])
    assert [e["action"] for e in case["events"]] == ["create"]
    assert case["events"][0]["actor_type"] == "staff" and case["events"][0]["actor_id"] == api.ids["triage"]
    response, again = await api.call("GET", f"/cases/{case['number']}")
    assert response.status == 200 and again["number"] == case["number"]


async def test_create_with_every_field(api):
    body = {
        "description": REFUND_COMPLAINT, "channel": "webform", "kind": "complaint", "category": "consumer_rights",
        "focus_area": 10, "complainant": {"name": "李四", "phone": "+86 138-0013-8000"}, "anonymous": False,
        "platform": "快手", "live_room": "好物直播间", "streamer": "小王", "product": "羽绒服", "merchant_name": "某某服饰店",
        "amount": 399.5, "order_no": "A-123", "purchase_date": "2026-11-01", "merchant_location": IN_DISTRICT,
        "received_at": "2026-11-15T09:30:00+08:00",
        "evidence_urls": ["https://example.com/order/1", "http://example.com/chat.png", "https://example.com/order/1"],
    }
    response, case = await api.call("POST", "/cases", json=body)
    assert response.status == 201, case
    assert (case["kind"], case["category"], case["focus_area"]) == ("complaint", "consumer_rights", 10)
    assert case["facts"] == {
        "platform": "快手", "live_room": "好物直播间", "streamer": "小王", "product": "羽绒服",
        "merchant_name": "某某服饰店", "amount": 399.5, "order_no": "A-123", "purchase_date": "2026-11-01",
        "merchant_location": IN_DISTRICT,
    }
    assert case["received_at"] == "2026-11-15T01:30:00Z"
    assert case["identity"] == "not_shown" and case["complainant"] is None  # not echoed: nobody viewed it
    assert [(e["name"], e["source"], e["mime"]) for e in case["evidence"]] == [
        ("https://example.com/order/1", "link", "text/uri-list"), ("http://example.com/chat.png", "link", "text/uri-list")]
    assert case["lead_unit"]["code"].startswith("suo_")  # a complaint goes to the station of the merchant's street


class FakeNlu:
    """A classifier that says nothing about the kind, to test the fallback."""

    name = "fake"

    def __init__(self, kind: str | None = None) -> None:
        self.kind = kind

    def warm_up(self) -> None:
        pass

    async def parse(self, text, *, now):
        return NluResult(text=text, intent="price", category="price", confidence=0.9,
                         ranking=(Scored("price", 0.9),), kind=self.kind, kind_confidence=0.5,
                         entities=Entities(), explanation=(), backend=self.name)


@pytest.mark.parametrize(("nlu_kind", "with_person", "expected"), [
    (None, True, "complaint"), (None, False, "tipoff"),
    ("complaint", False, "tipoff"), ("consultation", False, "consultation"), ("tipoff", True, "tipoff"),
])
async def test_kind_falls_back_by_complainant(api, nlu_kind, with_person, expected):
    api.container.nlu = FakeNlu(nlu_kind)
    body = {"description": "一段说明", "channel": "12345"}
    if with_person:
        body["complainant"] = {"phone": "13800138000"}
    response, case = await api.call("POST", "/cases", json=body)
    assert response.status == 201, case
    assert case["kind"] == expected


async def test_create_multipart_with_files(api):
    form = aiohttp.FormData(quote_fields=False)  # raw UTF-8 names, as browsers send them
    form.add_field("case", json.dumps({"description": REFUND_COMPLAINT, "channel": "webform",
                                       "complainant": {"name": "王五"}, "evidence_urls": ["https://example.com/x"]}),
                   content_type="application/json")
    form.add_field("files", png(1), filename="截图1.png", content_type="image/png")
    form.add_field("files", io.BytesIO(b"order 123, paid 399 yuan\n"), filename="order.txt",
                   content_type="application/octet-stream")  # the type is decided from the content
    form.add_field("files", png(1), filename="same-again.png")  # a duplicate is kept once
    response, case = await api.call("POST", "/cases", data=form)
    assert response.status == 201, case
    uploads = [e for e in case["evidence"] if e["source"] != "link"]
    assert [(e["name"], e["mime"], e["source"]) for e in uploads] == [
        ("截图1.png", "image/png", "webform"), ("order.txt", "text/plain", "webform")]
    assert uploads[0]["size"] == len(png(1)) and len(uploads[0]["sha256"]) == 64
    assert api.container.evidence.exists(uploads[0]["sha256"])


@pytest.mark.parametrize(("parts", "status", "code", "field"), [
    ([("files", png(2), "a.png"), ("case", None, None)], 400, "validation_error", "case"),
    ([("case", None, None), ("photos", png(2), "a.png")], 400, "unknown_field", "photos"),
    ([("case", None, None), ("files", b"MZ\x90\x00" + b"\x00" * 200, "setup.png")], 415,
     "evidence_type_not_allowed", "files"),
    ([("case", None, None), ("files", b"", "empty.png")], 400, "evidence_empty", "files"),
    ([("case", None, None), ("files", b"A" * 5000, "big.txt")], 413, "evidence_too_large", "files"),
    ([("case", b'{"description": "x"}', None)], 400, "validation_error", "case.channel"),
])
async def test_multipart_refusals_change_nothing(api, caplog, parts, status, code, field):
    container = api.container
    container.evidence = EvidenceStore(container.evidence.root, EvidenceLimits(max_bytes=4096))
    form = aiohttp.FormData(quote_fields=False)  # raw UTF-8 names, as browsers send them
    for name, content, filename in parts:
        if name == "case":
            content = content or json.dumps({"description": PRICE_TIPOFF, "channel": "webform"}).encode()
            form.add_field(name, content.decode(), content_type="application/json")
        else:
            form.add_field(name, content, filename=filename, content_type="application/octet-stream")
    with caplog.at_level(logging.WARNING, logger="qinglang.api"):
        response, data = await api.call("POST", "/cases", data=form)
    assert_error(response, data, status, code, field)
    assert await api.count(Case) == 0 and await api.count(Evidence) == 0
    assert any(code in r.getMessage() for r in caplog.records)


# -- GET /cases ---------------------------------------------------------------------------------------


async def test_list_filters_and_pages(api):
    made = [await api.create() for _ in range(3)]
    other = await api.create(channel="webform", category="food_safety", description="直播间买的零食吃了拉肚子，包装上没有生产日期")
    response, page = await api.call("GET", "/cases", params={"limit": "2"})
    assert response.status == 200
    assert len(page["items"]) == 2 and page["next_cursor"]
    response, rest = await api.call("GET", "/cases", params={"limit": "2", "cursor": page["next_cursor"]})
    assert len(rest["items"]) == 2 and rest["next_cursor"] is None
    numbers = [i["number"] for i in page["items"] + rest["items"]]
    assert sorted(numbers) == sorted([c["number"] for c in made] + [other["number"]])
    item = rest["items"][0]
    assert set(item) == {"number", "kind", "category", "status", "channel", "platform", "received_at",
                         "next_due_on", "lead_unit", "excerpt", "overdue", "due_soon"}

    async def numbers_for(**params) -> set[str]:
        response, data = await api.call("GET", "/cases", params=params)
        assert response.status == 200, data
        return {i["number"] for i in data["items"]}

    assert await numbers_for(channel="webform") == {other["number"]}
    assert await numbers_for(category="food_safety,price") == set(numbers)
    assert await numbers_for(category="food_safety") == {other["number"]}
    assert await numbers_for(kind="complaint") == set()
    assert await numbers_for(status="closed") == set()
    assert await numbers_for(unit=other["lead_unit"]["code"]) >= {other["number"]}
    assert await numbers_for(q="零食") == {other["number"]}
    assert await numbers_for(platform="抖音") == {c["number"] for c in made}
    assert await numbers_for(received_from="2026-11-16", received_to="2026-11-16") == set(numbers)
    assert await numbers_for(received_to="2026-11-15") == set()
    assert await numbers_for(due="overdue") == set()
    assert await numbers_for(due="due_soon") == set()  # the first clock ends in more than 3 days
    api.container.clock.advance(days=30)
    assert await numbers_for(due="overdue") == set(numbers)
    # repeated parameter form works like the comma form
    response, data = await api.call("GET", "/cases?status=received&status=accepted")
    assert response.status == 200 and len(data["items"]) == 4


@pytest.mark.parametrize(("query", "field", "code"), [
    ("status=lost", "status.0", "validation_error"),
    ("kind=rumour", "kind.0", "validation_error"),
    ("category=nope", "category.0", "validation_error"),
    ("due=someday", "due", "validation_error"),
    ("limit=0", "limit", "validation_error"),
    ("limit=201", "limit", "validation_error"),
    ("limit=ten", "limit", "validation_error"),
    ("received_from=16/11/2026", "received_from", "validation_error"),
    ("received_from=2026-11-20&received_to=2026-11-01", None, "validation_error"),
    ("received_to=9999-12-31", "received_to", "validation_error"),
    ("cursor=!!", "cursor", "validation_error"),
    ("cursor=bm90IGpzb24", "cursor", "validation_error"),
    ("cursor=WyIyMDI2LTAxLTAxIiwgMTAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMF0", "cursor", "validation_error"),
    ("sort=asc", "sort", "unknown_field"),
    ("limit=5&limit=6", "limit", "validation_error"),
    ("unit=XIAOBAO", "unit", "validation_error"),
])
async def test_list_rejects_bad_parameters(api, query, field, code):
    response, data = await api.call("GET", f"/cases?{query}")
    assert_error(response, data, 400, code, field)


# -- GET /cases/{number} -------------------------------------------------------------------------------


async def test_detail_shows_identity_to_triage_and_audits_it(api):
    case = await api.create()
    assert await api.events("view_personal_data") == []
    response, data = await api.call("GET", f"/cases/{case['number']}")
    assert response.status == 200
    assert data["identity"] == "shown" and data["complainant"] == {"name": "张三", "phone": "13800138000"}
    views = await api.events("view_personal_data")
    assert [(v.actor_type, v.actor_id, v.case_id is not None) for v in views] == [("staff", api.ids["triage"], True)]
    assert {"events", "messages", "evidence", "deadlines", "facts", "co_units"} <= set(data)


async def test_anonymous_identity_is_shown_to_nobody(api):
    response, case = await api.call("POST", "/cases", json={"description": PRICE_TIPOFF, "channel": "12345",
                                                            "anonymous": True})
    assert response.status == 201
    response, data = await api.call("GET", f"/cases/{case['number']}")
    assert data["identity"] == "anonymous" and data["complainant"] is None and data["anonymous"] is True
    assert await api.events("view_personal_data") == []


@pytest.mark.parametrize("number", ["LW-2026-999999", "nothing", "x" * 40, "LW%00", "..%2F..%2Fetc"])
async def test_detail_of_unknown_case_is_404(api, number):
    response, data = await api.call("GET", f"/cases/{number}")
    assert_error(response, data, 404, "not_found")


# -- transitions ---------------------------------------------------------------------------------------


async def _transition(api, number, who="triage", **body):
    return await api.call("POST", f"/cases/{number}/transitions", who, json=body)


async def test_every_transition_action(api):
    reply = "经核查，已责令商家整改并退款。"
    # accept -> start -> resolve -> close -> reopen
    n = (await api.create())["number"]
    steps = [
        ({"action": "accept", "note": "受理"}, "accepted"),
        ({"action": "start"}, "in_progress"),
        ({"action": "resolve", "outcome": "case_filed", "reply": reply}, "resolved"),
        ({"action": "close"}, "closed"),
        ({"action": "reopen", "reason": "举报人补充了新证据"}, "in_progress"),
    ]
    for body, status in steps:
        response, state = await _transition(api, n, **body)
        assert response.status == 200, state
        assert state["status"] == status and state["number"] == n
    _, data = await api.call("GET", f"/cases/{n}")
    assert [e["action"] for e in data["events"]][-5:] == ["accept", "start", "resolve", "close", "reopen"]
    assert data["outcome"] == "case_filed"
    assert any(m["body"] == reply and m["is_reply"] for m in data["messages"])

    # reject with a ground and a reply
    n = (await api.create())["number"]
    response, state = await _transition(api, n, action="reject", ground="no_clue", reply="线索不具体，无法核查。")
    assert response.status == 200 and state["status"] == "rejected"
    _, data = await api.call("GET", f"/cases/{n}")
    assert data["rejection_ground"] == "no_clue"

    # transfer to a unit of the bureau: the new lead
    n = (await api.create())["number"]
    response, state = await _transition(api, n, action="transfer", unit="zhichan", note="涉及商标")
    assert response.status == 200 and state["status"] == "transferred"
    assert state["lead_unit"] == {"code": "zhichan", "name": "知识产权科"}
    assert "close" not in state["allowed_actions"]  # the receiving unit closes it after handling

    # transfer to an outside authority by directory code, and by name with a scope
    n = (await api.create())["number"]
    response, state = await _transition(api, n, action="transfer", authority="tax")
    assert response.status == 200 and state["transfer"]["authority"] == "国家税务总局温州市龙湾区税务局"
    n = (await api.create())["number"]
    response, state = await _transition(api, n, action="transfer", authority="广州市天河区市场监督管理局",
                                        scope="out_of_province")
    assert response.status == 200
    _, data = await api.call("GET", f"/cases/{n}")
    assert data["transfer"] == {"authority": "广州市天河区市场监督管理局", "scope": "out_of_province"}
    # the merchant's own bureau: the scope follows the merchant's province
    n = (await api.create(merchant_location={"in_district": False, "province": "广东省"}))["number"]
    response, state = await _transition(api, n, action="transfer", authority="other_msa")
    assert response.status == 200, state
    _, data = await api.call("GET", f"/cases/{n}")
    assert data["transfer"] == {"authority": "商户所在地市场监督管理部门", "scope": "out_of_province"}


@pytest.mark.parametrize(("path", "body"), [
    ([], {"action": "start"}),
    ([], {"action": "resolve", "outcome": "mediated", "reply": "已调解"}),
    ([], {"action": "close"}),
    ([], {"action": "reopen", "reason": "再查"}),
    ([{"action": "accept"}], {"action": "accept"}),
    ([{"action": "accept"}], {"action": "reject", "ground": "other", "reply": "不予受理"}),
    ([{"action": "reject", "ground": "other", "reply": "不予受理"}], {"action": "start"}),
])
async def test_illegal_transition_is_409_and_changes_nothing(api, caplog, path, body):
    n = (await api.create())["number"]
    for step in path:
        assert (await _transition(api, n, **step))[0].status == 200
    _, before = await api.call("GET", f"/cases/{n}")
    with caplog.at_level(logging.WARNING, logger="qinglang.api"):
        response, data = await _transition(api, n, **body)
    assert_error(response, data, 409, "illegal_transition", "action")
    assert body["action"] in data["error"]["message"] and before["status"] in data["error"]["message"]
    _, after = await api.call("GET", f"/cases/{n}")
    assert after["status"] == before["status"]
    assert [e["action"] for e in after["events"] if e["action"] != "view_personal_data"] == \
        [e["action"] for e in before["events"] if e["action"] != "view_personal_data"]
    assert any("illegal_transition" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(("body", "status", "code", "field"), [
    ({}, 400, "validation_error", "action"),
    ({"action": "fly"}, 400, "validation_error", "action"),
    ({"action": "reject", "reply": "x"}, 400, "validation_error", "ground"),
    ({"action": "reject", "ground": "because", "reply": "x"}, 400, "validation_error", "ground"),
    ({"action": "reject", "ground": "other"}, 400, "validation_error", "reply"),
    ({"action": "reject", "ground": "other", "reply": "   "}, 400, "validation_error", "reply"),
    ({"action": "resolve", "outcome": "won", "reply": "x"}, 400, "validation_error", "outcome"),
    ({"action": "transfer"}, 400, "validation_error", None),
    ({"action": "transfer", "unit": "zhichan", "authority": "tax"}, 400, "validation_error", None),
    ({"action": "transfer", "unit": "zhichan", "scope": "in_province"}, 400, "validation_error", None),
    ({"action": "transfer", "unit": "nowhere"}, 422, "domain_error", None),
    ({"action": "reopen"}, 400, "validation_error", "reason"),
    ({"action": "accept", "urgent": True}, 400, "unknown_field", "urgent"),
    ({"action": "accept", "note": 5}, 400, "validation_error", "note"),
    (["accept"], 400, "invalid_json", None),
])
async def test_transition_input_errors(api, body, status, code, field):
    n = (await api.create())["number"]
    response, data = await _transition(api, n, **body) if isinstance(body, dict) else \
        await api.call("POST", f"/cases/{n}/transitions", json=body)
    assert_error(response, data, status, code, field)
    _, after = await api.call("GET", f"/cases/{n}")
    assert after["status"] == "received"


async def test_close_needs_a_reply_first_is_a_domain_error(api):
    n = (await api.create())["number"]
    assert (await _transition(api, n, action="transfer", authority="tax"))[0].status == 200
    response, data = await _transition(api, n, action="close")
    assert_error(response, data, 422, "domain_error")
    assert "reply" in data["error"]["message"]


# -- messages --------------------------------------------------------------------------------------------


async def test_message_to_the_complainant(api):
    n = (await api.create())["number"]
    response, data = await api.call("POST", f"/cases/{n}/messages", json={"text": "您好，您的举报已收到，正在核查。"})
    assert response.status == 201, data
    assert data["number"] == n and data["message"]["direction"] == "out" and data["message"]["is_reply"] is True
    _, case = await api.call("GET", f"/cases/{n}")
    assert [m["body"] for m in case["messages"]] == ["您好，您的举报已收到，正在核查。"]
    assert "reply" in [e["action"] for e in case["events"]]
    # a closed case takes no message until reopened
    await _transition(api, n, action="transfer", authority="tax")
    await _transition(api, n, action="close")
    response, data = await api.call("POST", f"/cases/{n}/messages", json={"text": "再补充一句"})
    assert_error(response, data, 409, "case_closed")
    for body, code, field in [({}, "validation_error", "text"), ({"text": ""}, "validation_error", "text"),
                              ({"text": "hi", "to": "x"}, "unknown_field", "to"), ({"text": ["a"]}, "validation_error", "text")]:
        response, data = await api.call("POST", f"/cases/{n}/messages", json=body)
        assert_error(response, data, 400, code, field)


# -- access matrix ------------------------------------------------------------------------------------------

# who: (create, sees in list, GET detail, identity shown, accept, message, reopen a closed case)
# lead/co/other are handlers of the case's lead unit, of a co-unit, of a unit with no part in it
ACCESS = {
    "triage": (201, True, 200, True, 200, 201, 200),
    "lead": (201, True, 200, True, 200, 201, 403),
    "co": (201, True, 200, False, 403, 403, 403),  # sees the case, not who sent it (only those who act)
    "other": (201, False, 404, None, 404, 404, 404),
    "leader": (403, True, 200, False, 403, 403, 403),
    "admin": (403, True, 200, False, 403, 403, 403),
}


@pytest.mark.parametrize("who", list(ACCESS))
async def test_access_matrix(api, who):
    create, listed, get, identity, accept, message, reopen = ACCESS[who]
    template = await api.create()  # a price tip-off in the district: a lead unit and co-units
    lead, co = template["lead_unit"]["code"], [u["code"] for u in template["co_units"]]
    assert co, "the matrix needs a case with co-units"
    involved = {lead, *co}
    unrelated = next(u.code for u in api.container.directory.units if u.code not in involved | {"xiaobao"})
    unit = {"lead": lead, "co": co[0], "other": unrelated}.get(who, "bangongshi")
    role = {"lead": "handler", "co": "handler", "other": "handler"}.get(who, who)
    if who != "triage":
        await api.user(who, unit, role)

    response, data = await api.call("POST", "/cases", who, json={"description": PRICE_TIPOFF, "channel": "12345"})
    assert response.status == create, data

    n = (await api.create())["number"]
    response, data = await api.call("GET", "/cases", who)
    assert response.status == 200
    assert (n in {i["number"] for i in data["items"]}) is listed

    views_before = len(await api.events("view_personal_data"))
    response, data = await api.call("GET", f"/cases/{n}", who)
    assert response.status == get, data
    if get == 200:
        assert (data["identity"] == "shown") is identity
        assert (data["complainant"] is not None) is identity
        assert len(await api.events("view_personal_data")) == views_before + (1 if identity else 0)
        expected = {"triage": ["accept", "reject", "transfer", "duplicate"], "lead": ["accept", "reject", "transfer"]}
        assert data["allowed_actions"] == expected.get(who, [])
    else:
        assert_error(response, data, 404, "not_found")

    response, data = await _transition(api, n, who, action="accept")
    assert response.status == accept, data
    response, data = await api.call("POST", f"/cases/{n}/messages", who, json={"text": "您好"})
    assert response.status == message, data

    closed = (await api.create())["number"]
    await _transition(api, closed, action="reject", ground="no_clue", reply="线索不具体")
    await _transition(api, closed, action="close")
    response, data = await _transition(api, closed, who, action="reopen", reason="补充材料")
    assert response.status == reopen, data
    if reopen == 403:
        assert data["error"]["code"] == "forbidden"
        assert ("handlers may not reopen" in data["error"]["message"]) is (who == "lead")
        _, state = await api.call("GET", f"/cases/{closed}")
        assert state["status"] == "closed"


@pytest.mark.parametrize(("action", "body", "lead_may"), [
    ("accept", {}, True), ("reject", {"ground": "no_clue", "reply": "线索不具体"}, True),
    ("transfer", {"authority": "tax"}, True),
])
async def test_handler_actions_follow_the_lead(api, action, body, lead_may):
    case = await api.create()
    await api.user("lead", case["lead_unit"]["code"], "handler")
    await api.user("co", case["co_units"][0]["code"], "handler")
    response, _ = await _transition(api, case["number"], "co", action=action, **body)
    assert response.status == 403
    response, _ = await _transition(api, case["number"], "lead", action=action, **body)
    assert (response.status == 200) is lead_may


async def test_transfer_moves_visibility_to_the_new_lead(api):
    case = await api.create()
    await api.user("lead", case["lead_unit"]["code"], "handler")
    await api.user("ip", "zhichan", "handler")
    n = case["number"]
    assert (await api.call("GET", f"/cases/{n}", "ip"))[0].status == 404
    response, state = await _transition(api, n, "lead", action="transfer", unit="zhichan")
    assert response.status == 200 and state["allowed_actions"] == []  # no longer the lead
    response, data = await api.call("GET", f"/cases/{n}", "ip")
    assert response.status == 200 and data["allowed_actions"] == ["accept", "reject", "transfer"]
    assert (await _transition(api, n, "ip", action="accept"))[0].status == 200


# -- tokens --------------------------------------------------------------------------------------------------


async def test_bad_tokens(api):
    container = api.container
    cases = [
        ({}, "unauthorized"),
        ({"Authorization": "Basic dHJpYWdlOnNlY3JldA=="}, "unauthorized"),
        ({"Authorization": "Bearer"}, "unauthorized"),
        ({"Authorization": "Bearer "}, "unauthorized"),
        ({"Authorization": "bearer " + api.tokens["triage"]}, "unauthorized"),
        ({"Authorization": "Bearer not-a-token"}, "invalid_token"),
        ({"Authorization": "Bearer " + api.tokens["triage"][:-1]}, "invalid_token"),
    ]
    for path, method in [("/cases", "GET"), ("/cases", "POST"), ("/cases/LW-2026-000001", "GET"),
                         ("/cases/LW-2026-000001/transitions", "POST"), ("/cases/LW-2026-000001/messages", "POST")]:
        for headers, code in cases:
            response, data = await api.call(method, path, None, headers=headers, json={"action": "accept"})
            assert_error(response, data, 401, code)
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
    # a disabled account's token stops working
    async with container.uow() as uow:
        await uow.session.execute(update(StaffUser).where(StaffUser.username == "triage").values(active=False))
        await uow.commit()
    response, data = await api.call("GET", "/cases")
    assert_error(response, data, 401, "invalid_token")
    assert await api.count(Case) == 0


async def test_console_session_cookie_is_not_an_api_credential(api):
    created = await api.container.accounts.create_user("clerk", "xiaobao", "triage")
    token, _ = await api.client.app[AUTH].login("clerk", created.password)
    response = await api.client.post(f"{API}/cases", json={"description": PRICE_TIPOFF, "channel": "12345"},
                                     cookies={SESSION_COOKIE: token})
    data = await response.json()
    assert_error(response, data, 401, "unauthorized")
    assert await api.count(Case) == 0


# -- bad input ------------------------------------------------------------------------------------------------

GOOD = {"description": PRICE_TIPOFF, "channel": "12345"}


@pytest.mark.parametrize(("body", "status", "code", "field"), [
    (b"{not json", 400, "invalid_json", None),
    (b'{"description": "x", "channel": "12345"', 400, "invalid_json", None),
    (b"\xff\xfe{}", 400, "invalid_json", None),
    (b"", 400, "invalid_json", None),
    (b"[1, 2]", 400, "invalid_json", None),
    (b'"just text"', 400, "invalid_json", None),
    ({**GOOD, "priority": "high"}, 400, "unknown_field", "priority"),
    ({**GOOD, "complainant": {"name": "张三", "id_card": "1"}}, 400, "unknown_field", "complainant.id_card"),
    ({**GOOD, "merchant_location": {"city": "温州"}}, 400, "unknown_field", "merchant_location.city"),
    ({"channel": "12345"}, 400, "validation_error", "description"),
    ({"description": PRICE_TIPOFF}, 400, "validation_error", "channel"),
    ({**GOOD, "description": "   "}, 400, "validation_error", "description"),
    ({**GOOD, "description": 42}, 400, "validation_error", "description"),
    ({**GOOD, "description": "x" * 20_001}, 400, "validation_error", "description"),
    ({**GOOD, "description": "bad\x00byte"}, 400, "validation_error", "description"),
    ({**GOOD, "channel": "12 345"}, 400, "validation_error", "channel"),
    ({**GOOD, "channel": "telegram"}, 400, "validation_error", None),
    ({**GOOD, "anonymous": "yes"}, 400, "validation_error", "anonymous"),
    ({**GOOD, "amount": "99"}, 400, "validation_error", "amount"),
    ({**GOOD, "amount": -1}, 400, "validation_error", "amount"),
    ({**GOOD, "amount": True}, 400, "validation_error", "amount"),
    ({**GOOD, "focus_area": 15}, 400, "validation_error", "focus_area"),
    ({**GOOD, "kind": "rumour"}, 400, "validation_error", "kind"),
    ({**GOOD, "category": "gossip"}, 400, "validation_error", "category"),
    ({**GOOD, "purchase_date": "2026/11/01"}, 400, "validation_error", "purchase_date"),
    ({**GOOD, "purchase_date": "2026-12-01"}, 400, "validation_error", "purchase_date"),
    ({**GOOD, "received_at": "2026-11-16T10:00:00"}, 400, "validation_error", "received_at"),
    ({**GOOD, "received_at": "2026-12-16T10:00:00+08:00"}, 400, "validation_error", "received_at"),
    ({**GOOD, "received_at": "2024-01-01T10:00:00+08:00"}, 400, "validation_error", "received_at"),
    ({**GOOD, "platform": "抖音\n快手"}, 400, "validation_error", "platform"),
    ({**GOOD, "platform": "x" * 41}, 400, "validation_error", "platform"),
    ({**GOOD, "complainant": {}}, 400, "validation_error", "complainant"),
    ({**GOOD, "complainant": {"phone": "call me"}}, 400, "validation_error", "complainant.phone"),
    ({**GOOD, "complainant": "张三"}, 400, "validation_error", "complainant"),
    ({**GOOD, "anonymous": True, "complainant": {"name": "张三"}}, 400, "validation_error", None),
    ({**GOOD, "evidence_urls": "https://example.com"}, 400, "validation_error", "evidence_urls"),
    ({**GOOD, "evidence_urls": ["javascript:alert(1)"]}, 400, "validation_error", "evidence_urls.0"),
    ({**GOOD, "evidence_urls": ["https://"]}, 400, "validation_error", "evidence_urls.0"),
    ({**GOOD, "evidence_urls": ["https://example.com/" + str(i) for i in range(21)]}, 400, "validation_error",
     "evidence_urls"),
    ({**GOOD, "kind": "complaint"}, 422, "domain_error", "kind"),
    ({**GOOD, "kind": "complaint", "anonymous": True}, 422, "domain_error", "kind"),
])
async def test_create_refuses_bad_input_and_changes_nothing(api, caplog, body, status, code, field):
    kwargs = {"data": body, "headers": {"Content-Type": "application/json"}} if isinstance(body, bytes) else {"json": body}
    with caplog.at_level(logging.WARNING, logger="qinglang.api"):
        response, data = await api.call("POST", "/cases", **kwargs)
    assert_error(response, data, status, code, field)
    if field:
        assert field.split(".")[0] in data["error"]["message"] or status == 422
    assert await api.count(Case) == 0 and await api.count(CaseEvent) == 1  # only the user_create of the fixture
    refused = [r for r in caplog.records if r.name == "qinglang.api" and code in r.getMessage()]
    assert refused and "triage" in refused[0].getMessage()


@pytest.mark.parametrize(("content_type", "body"), [
    ("text/plain", json.dumps(GOOD)),
    ("application/x-www-form-urlencoded", "description=x&channel=12345"),
    ("application/xml", "<case/>"),
    ("application/json; charset=latin-1", json.dumps(GOOD)),
    (None, json.dumps(GOOD)),
])
async def test_wrong_content_type_is_415(api, content_type, body):
    headers = {"Content-Type": content_type} if content_type else {}
    response, data = await api.call("POST", "/cases", data=body.encode(), headers=headers)
    assert_error(response, data, 415, "unsupported_media_type")
    n = (await api.create())["number"]
    for path in (f"/cases/{n}/transitions", f"/cases/{n}/messages"):
        response, data = await api.call("POST", path, data=b'{"action": "accept"}', headers=headers)
        assert_error(response, data, 415, "unsupported_media_type")
    assert await api.count(Case) == 1


async def test_oversized_bodies_are_413(api):
    big = json.dumps({**GOOD, "description": "很" * 400_000}).encode()  # > 1 MB of UTF-8
    assert len(big) > 1024 * 1024
    response, data = await api.call("POST", "/cases", data=big, headers={"Content-Type": "application/json"})
    assert_error(response, data, 413, "payload_too_large")

    async def chunked():  # no Content-Length: the limit holds while reading
        for start in range(0, len(big), 65536):
            yield big[start:start + 65536]

    response, data = await api.call("POST", "/cases", data=chunked(), headers={"Content-Type": "application/json"})
    assert_error(response, data, 413, "payload_too_large")
    n = (await api.create())["number"]
    response, data = await api.call("POST", f"/cases/{n}/messages", data=big,
                                    headers={"Content-Type": "application/json"})
    assert_error(response, data, 413, "payload_too_large")
    assert await api.count(Case) == 1 and await api.count(CaseMessage) == 0


@pytest.mark.parametrize("body", [
    b"no boundary at all",
    b"--b\r\nContent-Disposition: form-data; name=\"case\"\r\n\r\n{}",  # never closed
    b"--b\r\nContent-Disposition: form-data; name=\"\x01\x00\"\r\n\r\nnull\r\n--b--\r\n",
])
async def test_malformed_multipart_is_400(api, body):
    for content_type in ("multipart/form-data", "multipart/form-data; boundary=b"):
        response, data = await api.call("POST", "/cases", data=body, headers={"Content-Type": content_type})
        assert response.status == 400, data
        assert data["error"]["code"] in ("invalid_multipart", "validation_error", "invalid_json")
    assert await api.count(Case) == 0


async def test_unknown_paths_and_methods_answer_json(api):
    response, data = await api.call("GET", "/nothing")
    assert_error(response, data, 404, "not_found")
    response, data = await api.call("DELETE", "/cases")
    assert_error(response, data, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]


# -- untrusted text ---------------------------------------------------------------------------------------------

XSS = '<script>alert("x")</script><img src=x onerror=alert(1)> & \u2028 end'


async def test_xss_text_is_stored_and_returned_inert(api):
    form = aiohttp.FormData(quote_fields=False)  # raw UTF-8 names, as browsers send them
    form.add_field("case", json.dumps({"description": XSS + " 直播间虚假宣传", "channel": "webform",
                                       "live_room": "<b>直播间</b>", "complainant": {"name": "<svg onload=alert(1)>"}}),
                   content_type="application/json")
    form.add_field("files", png(7), filename='"><img src=x onerror=alert(2)>.png')
    response, case = await api.call("POST", "/cases", data=form)
    assert response.status == 201, case
    n = case["number"]
    await api.call("POST", f"/cases/{n}/messages", json={"text": XSS})
    for path in (f"/cases/{n}", "/cases"):
        response = await api.client.get(API + path, headers=api.headers("triage"))
        raw = await response.read()
        assert response.content_type == "application/json" and response.charset == "utf-8"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert b"<" not in raw and b">" not in raw and "\u2028".encode() not in raw  # escaped as \u003c etc.
    response, data = await api.call("GET", f"/cases/{n}")
    assert data["description"].startswith(XSS)
    assert data["facts"]["live_room"] == "<b>直播间</b>"
    assert data["complainant"]["name"] == "<svg onload=alert(1)>"
    assert data["messages"][0]["body"] == XSS
    assert data["evidence"][0]["name"] == '"><img src=x onerror=alert(2)>.png'
