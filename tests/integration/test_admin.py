"""The console's administration pages (role admin only): users and roles, units, routing rules (view,
validate, save with an immediate swap of the running table), holiday overrides. Real HTTP through the aiohttp test client; the helpers and the
`console` fixture come from test_console.py. The clock is fixed at Monday 2026-11-16 10:00 Shanghai."""

from __future__ import annotations

import hashlib
import html as htmllib
import re
from datetime import date
from pathlib import Path

from sqlalchemy import select

from db.models import CaseEvent, HolidayOverride, StaffUser
from qinglang.bootstrap import load_rules_files
from routing.rules import DEFAULT_RULES_PATH, edited_rules_path
from tests.integration.test_console import (  # noqa: F401  (console is a fixture)
    IMG,
    IMG_ESCAPED,
    SCRIPT,
    SCRIPT_ESCAPED,
    Staff,
    console,
    find_form,
    tipoff,
)

PAGES = ("/admin", "/admin/users", "/admin/units", "/admin/rules", "/admin/holidays")
FORMS = ("/admin/users", "/admin/users/1/active", "/admin/users/1/assignment", "/admin/rules/validate",
         "/admin/rules/save", "/admin/holidays", "/admin/holidays/2026-11-17/delete", "/admin/units/xiaobao/telegram")


async def admin_events(container, action: str) -> list[CaseEvent]:
    async with container.uow() as uow:
        return list((await uow.session.scalars(
            select(CaseEvent).where(CaseEvent.action == action).order_by(CaseEvent.id))).all())


async def user_named(container, username: str) -> StaffUser | None:
    async with container.uow() as uow:
        return await uow.users.by_username(username)


async def create_via_form(admin: Staff, username: str, unit: str, role: str) -> str:
    response = await admin.submit("/admin/users", "/admin/users",
                                  {"username": username, "display_name": "王五", "unit": unit, "role": role})
    body = await response.text()
    assert response.status == 200, body
    assert response.headers.get("Cache-Control") == "no-store"
    match = re.search(r'<code class="password" id="new-password">([^<]+)</code>', body)
    assert match, body
    return htmllib.unescape(match.group(1))


async def test_admin_pages_need_login_and_the_admin_role(console):
    client = await console.browser()
    for path in PAGES:
        response = await client.get(path, allow_redirects=False)
        assert response.status == 303 and response.headers["Location"].startswith("/login?next=")
    for path in FORMS:
        response = await client.post(path, data={}, allow_redirects=False)
        assert response.status in (303, 403)  # no session: login redirect (or CSRF refusal)
    staff = await console.everyone()
    for key in ("triage", "lead", "leader"):
        person = staff[key]
        for path in PAGES:
            status, html = await person.get(path)
            assert status == 403, (key, path, status)
            assert "系统管理" not in html.split("<main>")[0]  # no nav link either
        for path in FORMS:
            response = await person.post(path, {"username": "x1", "unit": "xiaobao", "role": "admin",
                                                "day": "2026-11-17", "kind": "holiday", "rules": "rules: []",
                                                "active": "0"})
            assert response.status == 403, (key, path, response.status)
    assert await user_named(console.container, "x1") is None
    admin = staff["admin"]
    status, html = await admin.get("/")
    assert status == 200 and 'href="/admin"' in html
    response = await admin.client.get("/admin", allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == "/admin/users"
    for path in PAGES[1:]:
        status, html = await admin.get(path)
        assert status == 200, (path, html)


async def test_create_user_then_login_deactivate_reactivate(console):
    admin = await console.person("admin", "bangongshi", "admin")
    password = await create_via_form(admin, "wangwu", "jiajing", "handler")
    new = Staff(await console.browser(), "wangwu", password, 0)
    response = await new.login()
    assert response.status == 303
    status, html = await new.get("/")
    assert status == 200 and "王五" in html
    # the password is shown once: the list does not show it again
    status, html = await admin.get("/admin/users")
    assert password not in html and "wangwu" in html and "价竞分局" in html
    created = await admin_events(console.container, "user_create_by_admin")
    assert created[-1].case_id is None and created[-1].actor_id == admin.id and created[-1].note == "wangwu"

    user = await user_named(console.container, "wangwu")
    response = await admin.submit("/admin/users", f"/admin/users/{user.id}/active")
    assert response.status == 303
    assert not (await user_named(console.container, "wangwu")).active
    status, _html = await new.get("/")
    assert status == 303  # the running session ended
    response = await Staff(await console.browser(), "wangwu", password, 0).login()
    assert response.status == 401
    event = (await admin_events(console.container, "user_deactivate"))[-1]
    assert event.case_id is None and event.data["user_id"] == user.id

    response = await admin.submit("/admin/users", f"/admin/users/{user.id}/active")
    assert response.status == 303
    response = await Staff(await console.browser(), "wangwu", password, 0).login()
    assert response.status == 303
    assert (await admin_events(console.container, "user_reactivate"))[-1].data["user_id"] == user.id


async def test_create_user_errors_are_shown(console):
    admin = await console.person("admin", "bangongshi", "admin")
    response = await admin.submit("/admin/users", "/admin/users",
                                  {"username": "bad name!", "unit": "jiajing", "role": "handler"})
    assert response.status == 400 and "未能创建用户" in await response.text()
    await create_via_form(admin, "dup", "jiajing", "handler")
    response = await admin.submit("/admin/users", "/admin/users",
                                  {"username": "dup", "unit": "jiajing", "role": "handler"})
    assert response.status == 400 and "exists already" in await response.text()


async def test_role_and_unit_change_take_effect(console):
    admin = await console.person("admin", "bangongshi", "admin")
    handler = await console.person("h1", "jiajing", "handler")
    status, _html = await handler.get("/admin/users")
    assert status == 403
    response = await admin.submit("/admin/users", f"/admin/users/{handler.id}/assignment",
                                  {"role": "admin", "unit": "xiaobao"})
    assert response.status == 303
    status, html = await handler.get("/admin/users")
    assert status == 200 and "消保分局" in html.split("<main>")[0]
    event = (await admin_events(console.container, "user_change"))[-1]
    assert event.case_id is None and event.actor_id == admin.id
    assert event.data["role"] == ["handler", "admin"] and event.data["unit"] == ["jiajing", "xiaobao"]
    # an admin cannot take away the own admin role (nobody would be left to give it back)
    response = await admin.submit("/admin/users", f"/admin/users/{admin.id}/assignment",
                                  {"role": "handler", "unit": "bangongshi"})
    assert response.status == 303
    assert (await user_named(console.container, "admin")).role == "admin"


async def test_units_page_lists_database_units(console):
    admin = await console.person("admin", "bangongshi", "admin")
    status, html = await admin.get("/admin/units")
    assert status == 200
    for text in ("xiaobao", "消保分局", "jiajing", "units.yaml"):
        assert text in html


async def test_a_units_telegram_group_is_set_checked_and_audited(console):
    admin = await console.person("admin", "bangongshi", "admin")
    response = await admin.submit("/admin/units", "/admin/units/xiaobao/telegram", {"telegram_chat_id": "-1001234567890"})
    assert response.status == 303
    async with console.container.uow() as uow:
        assert (await uow.units.by_code("xiaobao")).telegram_chat_id == "-1001234567890"
    [event] = await admin_events(console.container, "unit_telegram_set")
    assert event.data == {"unit": "xiaobao", "before": None, "after": "-1001234567890"}
    for bad in ("@xiaobao_group", "12ab", "-0", "1" * 25, "<script>"):
        response = await admin.submit("/admin/units", "/admin/units/xiaobao/telegram", {"telegram_chat_id": bad})
        assert response.status == 400, bad
        assert "<script>" not in await response.text()
    async with console.container.uow() as uow:
        assert (await uow.units.by_code("xiaobao")).telegram_chat_id == "-1001234567890"
    response = await admin.submit("/admin/units", "/admin/units/xiaobao/telegram", {"telegram_chat_id": ""})
    async with console.container.uow() as uow:
        assert (await uow.units.by_code("xiaobao")).telegram_chat_id is None
    assert (await admin.post("/admin/units/nosuchunit/telegram", {"telegram_chat_id": "-100"})).status == 404
    handler = await console.person("h1", "jiajing", "handler")
    assert (await handler.post("/admin/units/xiaobao/telegram", {"telegram_chat_id": "-100"})).status == 403


async def test_rules_view_and_validate_without_saving(console):
    admin = await console.person("admin", "bangongshi", "admin")
    status, html = await admin.get("/admin/rules")
    assert status == 200 and "rules.yaml" in html and "消保分局" in html
    packaged = DEFAULT_RULES_PATH.read_text(encoding="utf-8")
    before = console.container.routing
    response = await admin.submit("/admin/rules", "/admin/rules/validate", {"rules": packaged})
    body = await response.text()
    assert response.status == 200 and "valid" in body and "规则有效" in body, body
    broken = "rules:\n  - id: a\n    match: {}\n    route: {lead: nosuchunit}\n"
    response = await admin.submit("/admin/rules", "/admin/rules/validate", {"rules": broken})
    body = await response.text()
    assert response.status == 200 and "规则无效" in body
    match = re.search(r"<code>rules\.yaml:(\d+): ([^<]+)</code>", body)
    assert match, body
    assert int(match.group(1)) in (2, 3, 4)
    assert "qinglang-rules-" not in body  # the temporary copy's path (a TemporaryDirectory with that prefix) is not shown
    response = await admin.submit("/admin/rules", "/admin/rules/validate", {"rules": "rules: [\n  - id: x\n"})
    body = await response.text()
    assert "规则无效" in body and re.search(r"<code>rules\.yaml:\d+: ", body), body
    # nothing saved, nothing swapped
    assert console.container.routing is before
    assert DEFAULT_RULES_PATH.read_text(encoding="utf-8") == packaged


async def test_holiday_override_changes_later_deadlines(console):
    container = console.container
    admin = await console.person("admin", "bangongshi", "admin")
    before = await container.cases.create(tipoff())
    response = await admin.submit("/admin/holidays", "/admin/holidays",
                                  {"day": "2026-11-17", "kind": "holiday", "note": "区里停电"})
    assert response.status == 303
    status, html = await admin.get("/admin/holidays")
    assert status == 200 and "2026-11-17" in html and "区里停电" in html
    async with container.uow() as uow:
        row = await uow.session.get(HolidayOverride, date(2026, 11, 17))
    assert row is not None and row.is_workday is False
    event = (await admin_events(container, "holiday_override_set"))[-1]
    assert event.case_id is None and event.data["day"] == "2026-11-17" and event.actor_id == admin.id

    after = await container.cases.create(tipoff(received_at=container.clock.now()))
    changed = [(d.clock, d.due_on, after.deadline(d.clock).due_on) for d in before.deadlines
               if d.basis != "calendar_days" and after.deadline(d.clock) is not None]
    assert any(new > old for _clock, old, new in changed), (before.deadlines, after.deadlines)

    response = await admin.submit("/admin/holidays", "/admin/holidays/2026-11-17/delete")
    assert response.status == 303
    async with container.uow() as uow:
        assert await uow.session.get(HolidayOverride, date(2026, 11, 17)) is None
    assert (await admin_events(container, "holiday_override_delete"))[-1].data["day"] == "2026-11-17"
    again = await container.cases.create(tipoff())
    assert [d.due_on for d in again.deadlines] == [d.due_on for d in before.deadlines]


async def test_bad_holiday_date_is_a_form_error(console):
    admin = await console.person("admin", "bangongshi", "admin")
    response = await admin.submit("/admin/holidays", "/admin/holidays", {"day": "2026-13-45", "note": "x"})
    body = await response.text()
    assert response.status == 400 and "日期格式应为 YYYY-MM-DD" in body
    async with console.container.uow() as uow:
        assert (await uow.session.scalars(select(HolidayOverride))).first() is None


async def test_csrf_is_required(console):
    admin = await console.person("admin", "bangongshi", "admin")
    for path in FORMS:
        response = await admin.post(path, {"username": "csrfuser", "unit": "xiaobao", "role": "admin",
                                           "day": "2026-11-18", "kind": "holiday", "rules": "rules: []"}, csrf=None)
        assert response.status == 403, path
        response = await admin.post(path, {"day": "2026-11-18", "kind": "holiday"}, csrf="wrong")
        assert response.status == 403, path
    assert await user_named(console.container, "csrfuser") is None
    async with console.container.uow() as uow:
        assert (await uow.session.scalars(select(HolidayOverride))).first() is None


async def test_notes_and_names_are_escaped(console):
    admin = await console.person("admin", "bangongshi", "admin")
    response = await admin.submit("/admin/holidays", "/admin/holidays",
                                  {"day": "2026-11-19", "kind": "workday", "note": SCRIPT})
    assert response.status == 303
    status, html = await admin.get("/admin/holidays")
    assert status == 200 and SCRIPT not in html and SCRIPT_ESCAPED in html
    response = await admin.submit("/admin/users", "/admin/users",
                                  {"username": "esc", "display_name": IMG, "unit": "jiajing", "role": "handler"})
    assert response.status == 200
    status, html = await admin.get("/admin/users")
    assert IMG not in html and IMG_ESCAPED in html
    response = await admin.submit("/admin/rules", "/admin/rules/validate", {"rules": "rules:\n  - id: '" + SCRIPT + "'\n"})
    body = await response.text()
    assert SCRIPT not in body


# -- saving routing rules -----------------------------------------------------------------------------

# a first rule sending price tip-offs about merchants in the district to 质量监管科 instead of 价竞分局
# (rule tipoff_price still routes those with the merchant's location unknown)
PRICE_TO_QUALITY = """  - id: tipoff_price_to_quality
    match:
      kind: [tipoff]
      category: [price]
      merchant: in_district
    route:
      lead: zhiliang
      co: [wangjian]
    reason: 价格举报改由质量监管科办理

"""


def with_price_rule(text: str) -> str:
    head, sep, tail = text.partition("\nrules:\n")
    assert sep, "the packaged rules file has no top-level rules:"
    return head + sep + PRICE_TO_QUALITY + tail


async def save_rules(person: Staff, text: str):
    """Press "save" under the rules form: the validate form's fields, sent to its save button's formaction."""
    status, html = await person.get("/admin/rules")
    assert status == 200, html
    form = find_form(html, "/admin/rules/validate")
    assert form is not None and "rules" in form.names
    section = html[html.index('action="/admin/rules/validate"'):]
    assert 'formaction="/admin/rules/save"' in section[:section.index("</form>")]  # the button is in that form
    return await person.client.post("/admin/rules/save", data={**form.values, "rules": text},
                                    allow_redirects=False)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def backups(target: Path) -> list[Path]:
    return sorted(target.parent.glob(target.name + ".*.bak"))


async def test_save_rules_writes_the_file_and_routes_new_cases_at_once(console):
    container = console.container
    admin = await console.person("admin", "bangongshi", "admin")
    packaged = DEFAULT_RULES_PATH.read_bytes()
    target = edited_rules_path(container.settings.storage.data_dir)
    assert not target.exists()
    before = await container.cases.create(tipoff())
    assert before.routing.rule_id == "tipoff_price" and before.lead_unit == "jiajing"

    edited = with_price_rule(packaged.decode("utf-8"))
    response = await save_rules(admin, edited.replace("\n", "\r\n"))  # as a browser sends a textarea
    assert response.status == 303, await response.text()
    assert response.headers["Location"] == "/admin/rules"

    # written (LF, as validated), the previous version kept beside it, the package untouched
    assert target.read_bytes() == edited.encode("utf-8")
    [backup] = backups(target)
    assert backup.read_bytes() == packaged
    assert DEFAULT_RULES_PATH.read_bytes() == packaged
    assert not list(target.parent.glob(".rules.yaml.*.tmp"))  # no temporary file left behind

    # audited: who, which file, sha256 of the old and the new text
    [event] = await admin_events(container, "routing_rules_save")
    assert event.case_id is None and event.actor_type == "staff" and event.actor_id == admin.id
    assert Path(event.data["file"]) == target.resolve() and event.data["username"] == "admin"
    assert event.data["old_sha256"] == sha256(packaged)
    assert event.data["new_sha256"] == sha256(edited.encode("utf-8"))
    assert Path(event.data["backup"]) == backup.resolve()

    # the running table is swapped in place: the case service routes new cases by the new rule at once
    assert container.routing.rules[0].id == "tipoff_price_to_quality"
    after = await container.cases.create(tipoff())
    assert after.routing.rule_id == "tipoff_price_to_quality"
    assert after.lead_unit == "zhiliang" and after.co_units == ("wangjian",)
    other = await container.cases.create(tipoff(category="advertising"))
    assert other.routing.rule_id != "tipoff_price_to_quality"  # the other rules still apply

    # the page shows the saved file as the one in use, and says so
    status, html = await admin.get("/admin/rules")
    assert status == 200 and str(target) in html
    assert "tipoff_price_to_quality" in html and "已保存并启用新规则" in html

    # the next start loads the saved copy (no QINGLANG_ROUTING_FILE set)
    _directory, routing, _policy = load_rules_files(container.settings)
    assert routing.rules[0].id == "tipoff_price_to_quality"

    # saving again (the packaged text back) keeps a second backup, never overwriting the first
    response = await save_rules(admin, packaged.decode("utf-8"))
    assert response.status == 303
    assert target.read_bytes() == packaged
    assert len(backups(target)) == 2 and backup.read_bytes() == packaged
    assert edited.encode("utf-8") in [b.read_bytes() for b in backups(target)]
    assert (await container.cases.create(tipoff())).routing.rule_id == "tipoff_price"
    events = await admin_events(container, "routing_rules_save")
    assert [e.data["old_sha256"] for e in events] == [sha256(packaged), sha256(edited.encode("utf-8"))]


async def test_invalid_rules_are_not_saved(console):
    container = console.container
    admin = await console.person("admin", "bangongshi", "admin")
    target = edited_rules_path(container.settings.storage.data_dir)
    packaged = DEFAULT_RULES_PATH.read_text(encoding="utf-8")
    rules_before = container.routing.rules

    unknown_unit = packaged.replace("      lead: jiajing\n", "      lead: nosuchunit\n", 1)
    assert unknown_unit != packaged
    cases = {
        "unknown unit": (unknown_unit, "nosuchunit"),
        "bad yaml": ("rules: [\n  - id: x\n", "rules.yaml"),
        "not covering": ("rules:\n  - id: a\n    match: {kind: [tipoff]}\n    route: {lead: xiaobao}\n", "no rule routes"),
        "empty": ("   ", "请粘贴"),
        "oversized": ("# " + "x" * 200_001 + "\n" + packaged, "内容太长"),
    }
    for name, (text, shown) in cases.items():
        response = await save_rules(admin, text)
        body = await response.text()
        assert response.status == 400, (name, response.status)
        assert "规则无效" in body and shown in body, (name, body[-3000:])
        assert "qinglang-rules-" not in body
        assert not target.exists() and not backups(target), name
        assert container.routing.rules is rules_before, name
    assert not target.exists()
    assert DEFAULT_RULES_PATH.read_text(encoding="utf-8") == packaged
    assert await admin_events(container, "routing_rules_save") == []
    assert (await container.cases.create(tipoff())).routing.rule_id == "tipoff_price"

    # over a saved file too: an invalid text leaves it (and the running rules) as they were
    response = await save_rules(admin, with_price_rule(packaged))
    assert response.status == 303
    saved, rules_saved = target.read_bytes(), container.routing.rules
    response = await save_rules(admin, unknown_unit)
    assert response.status == 400
    assert target.read_bytes() == saved and len(backups(target)) == 1
    assert container.routing.rules is rules_saved
    assert len(await admin_events(container, "routing_rules_save")) == 1


async def test_only_admins_save_rules_and_only_with_csrf(console):
    container = console.container
    target = edited_rules_path(container.settings.storage.data_dir)
    edited = with_price_rule(DEFAULT_RULES_PATH.read_text(encoding="utf-8"))
    rules_before = container.routing.rules
    staff = await console.everyone()
    for key in ("triage", "lead", "leader"):
        response = await staff[key].post("/admin/rules/save", {"rules": edited})
        assert response.status == 403, key
    admin = staff["admin"]
    response = await admin.post("/admin/rules/save", {"rules": edited}, csrf=None)
    assert response.status == 403
    response = await admin.post("/admin/rules/save", {"rules": edited}, csrf="wrong")
    assert response.status == 403
    client = await console.browser()  # no session at all
    response = await client.post("/admin/rules/save", data={"rules": edited}, allow_redirects=False)
    assert response.status in (303, 403)
    assert not target.exists()
    assert container.routing.rules is rules_before
    assert await admin_events(container, "routing_rules_save") == []


async def test_save_goes_to_the_configured_rules_file(console, tmp_path, monkeypatch):
    container = console.container
    admin = await console.person("admin", "bangongshi", "admin")
    packaged = DEFAULT_RULES_PATH.read_text(encoding="utf-8")
    own = tmp_path / "etc" / "my-rules.yaml"
    own.parent.mkdir()
    own.write_text(packaged, encoding="utf-8")
    monkeypatch.setattr(container.settings.rules, "routing_file", own)
    edited = with_price_rule(packaged)
    response = await save_rules(admin, edited)
    assert response.status == 303
    assert own.read_text(encoding="utf-8") == edited and [b.read_text(encoding="utf-8") for b in backups(own)] == [packaged]
    assert not edited_rules_path(container.settings.storage.data_dir).exists()
    [event] = await admin_events(container, "routing_rules_save")
    assert Path(event.data["file"]) == own.resolve()
    assert (await container.cases.create(tipoff())).routing.rule_id == "tipoff_price_to_quality"

    # a configured file that is the packaged default is never written
    monkeypatch.setattr(container.settings.rules, "routing_file", DEFAULT_RULES_PATH)
    rules_before = container.routing.rules
    response = await save_rules(admin, packaged)
    body = await response.text()
    assert response.status == 400 and "QINGLANG_ROUTING_FILE" in body
    assert DEFAULT_RULES_PATH.read_text(encoding="utf-8") == packaged
    assert container.routing.rules is rules_before
