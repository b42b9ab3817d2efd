"""The console's administration pages (role admin only): users and roles, units, routing rules (view and
validate without saving), holiday overrides. Real HTTP through the aiohttp test client; the helpers and the
`console` fixture come from test_console.py. The clock is fixed at Monday 2026-11-16 10:00 Shanghai."""

from __future__ import annotations

import html as htmllib
import re
from datetime import date

from sqlalchemy import select

from db.models import CaseEvent, HolidayOverride, StaffUser
from routing.rules import DEFAULT_RULES_PATH
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
         "/admin/holidays", "/admin/holidays/2026-11-17/delete")


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
