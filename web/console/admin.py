"""Administration pages of the staff console (role `admin` only): users and roles, units, routing rules
(view, validate, and save: the running routing table is swapped at once), holiday overrides.

Everyone else gets 403; without a login the browser is sent to /login. Every change is audited as a
CaseEvent with case_id None (actor: the administrator). CSRF is enforced by web.middlewares on every POST.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import stat
import tempfile
from dataclasses import dataclass
from datetime import UTC, date
from pathlib import Path

from aiohttp import web
from sqlalchemy import delete, select

from db.models import CaseEvent, HolidayOverride, StaffSession, StaffUser, Unit
from routing.directory import DEFAULT_UNITS_PATH, RoutingConfigError
from routing.rules import DEFAULT_RULES_PATH, RoutingTable, active_rules_path, edited_rules_path, load_rules
from qinglang.durable import write_atomically
from qinglang.yamlfile import YamlError
from web.accounts import AccountError, Role
from web.console.render import redirect_with_flash
from web.console.routes import ROLE_NAMES, _error, _field, _page, _require, _tr
from web.keys import CONTAINER
from web.security import Principal

MAX_RULES_TEXT = 200_000
PASTED_NAME = "rules.yaml"
RULES_SAVE_LOCK = web.AppKey("rules_save_lock", asyncio.Lock)  # one save at a time (per process)


def register(app: web.Application) -> None:
    app[RULES_SAVE_LOCK] = asyncio.Lock()
    router = app.router
    router.add_get("/admin", admin_index)
    router.add_get("/admin/users", users_page)
    router.add_post("/admin/users", user_create)
    router.add_post("/admin/users/{id}/active", user_active)
    router.add_post("/admin/users/{id}/assignment", user_assignment)
    router.add_get("/admin/units", units_page)
    router.add_post("/admin/units/{code}/telegram", unit_telegram)
    router.add_get("/admin/rules", rules_page)
    router.add_post("/admin/rules/validate", rules_validate)
    router.add_post("/admin/rules/save", rules_save)
    router.add_get("/admin/holidays", holidays_page)
    router.add_post("/admin/holidays", holiday_add)
    router.add_post("/admin/holidays/{day}/delete", holiday_delete)


# -- helpers ----------------------------------------------------------------------------------------


class _Forbidden(Exception):
    pass


def _admin(request: web.Request) -> Principal:
    principal = _require(request)  # not logged in: 303 to /login
    if principal.role != Role.ADMIN.value:
        raise _Forbidden
    return principal


def _forbidden(request: web.Request) -> web.Response:
    principal = _require(request)
    _ = _tr(request)
    return _error(request, principal, 403, _("无权访问"), _("只有管理员可以使用系统管理页面。"), back="/")


def _guarded(handler):
    async def wrapper(request: web.Request) -> web.StreamResponse:
        try:
            principal = _admin(request)
        except _Forbidden:
            return _forbidden(request)
        return await handler(request, principal)

    wrapper.__name__ = handler.__name__
    return wrapper


def _audit(uow, principal: Principal, action: str, note: str | None, data: dict, now) -> None:
    uow.session.add(CaseEvent(case_id=None, actor_type="staff", actor_id=principal.id, action=action,
                              note=note, data=data, created_at=now))


def _role_names(request: web.Request) -> dict[str, str]:
    _ = _tr(request)
    return {r.value: _(ROLE_NAMES[r]) for r in Role}


def _user_id(request: web.Request) -> int | None:
    raw = request.match_info["id"]
    return int(raw) if raw.isdigit() and len(raw) < 19 else None


# -- index ------------------------------------------------------------------------------------------


@_guarded
async def admin_index(request: web.Request, principal: Principal) -> web.StreamResponse:
    raise web.HTTPSeeOther("/admin/users")


# -- users ------------------------------------------------------------------------------------------


async def _users_context(request: web.Request) -> dict:
    container = request.app[CONTAINER]
    async with container.uow() as uow:
        rows = (await uow.session.execute(
            select(StaffUser, Unit).join(Unit, Unit.id == StaffUser.unit_id).order_by(StaffUser.username))).all()
        units = list((await uow.session.scalars(select(Unit).where(Unit.active.is_(True)).order_by(Unit.code))).all())
    return {"users": [(u, unit) for u, unit in rows], "units": units, "roles": _role_names(request)}


async def _users(request: web.Request, principal: Principal, *, status: int = 200, error: str = "",
                 created=None, form: dict | None = None) -> web.Response:
    return _page(request, principal, "admin_users.html", status=status, error=error, created=created,
                 form=form or {}, section="users", **await _users_context(request))


@_guarded
async def users_page(request: web.Request, principal: Principal) -> web.Response:
    return await _users(request, principal)


@_guarded
async def user_create(request: web.Request, principal: Principal) -> web.Response:
    _ = _tr(request)
    post = await request.post()
    form = {k: _field(post, k, 100) for k in ("username", "display_name", "unit", "role")}
    if not form["username"] or not form["unit"] or not form["role"]:
        return await _users(request, principal, status=400, error=_("请填写用户名、单位和角色。"), form=form)
    container = request.app[CONTAINER]
    try:
        created = await container.accounts.create_user(form["username"], form["unit"], form["role"],
                                                       display_name=form["display_name"])
    except AccountError as exc:
        return await _users(request, principal, status=400, error=_("未能创建用户：") + str(exc), form=form)
    async with container.uow() as uow:
        _audit(uow, principal, "user_create_by_admin", created.username,
               {"user_id": created.id, "role": created.role.value, "unit": created.unit_code}, container.clock.now())
        await uow.commit()
    # shown once in this response (never in a cookie or a redirect), never stored in plain text
    response = await _users(request, principal, created=created)
    response.headers["Cache-Control"] = "no-store"
    return response


@_guarded
async def user_active(request: web.Request, principal: Principal) -> web.StreamResponse:
    _ = _tr(request)
    user_id = _user_id(request)
    post = await request.post()
    active = _field(post, "active", 1) == "1"
    if user_id == principal.id:
        raise redirect_with_flash(request, "/admin/users", _("不能停用自己的账号。"), "error")
    container = request.app[CONTAINER]
    async with container.uow() as uow:
        user = await uow.session.get(StaffUser, user_id) if user_id is not None else None
        if user is None:
            return _error(request, principal, 404, _("未找到"), _("没有这个用户。"), back="/admin/users")
        if user.active != active:
            user.active = active
            if not active:  # a deactivated account loses its sessions at once
                await uow.session.execute(delete(StaffSession).where(StaffSession.user_id == user.id))
            else:
                user.failed_logins, user.locked_until = 0, None
            _audit(uow, principal, "user_reactivate" if active else "user_deactivate", user.username,
                   {"user_id": user.id}, container.clock.now())
        username = user.username
        await uow.commit()
    message = _("已重新启用用户 {name}。") if active else _("已停用用户 {name}。")
    raise redirect_with_flash(request, "/admin/users", message.format(name=username))


@_guarded
async def user_assignment(request: web.Request, principal: Principal) -> web.StreamResponse:
    _ = _tr(request)
    user_id = _user_id(request)
    post = await request.post()
    role, unit_code = _field(post, "role", 20), _field(post, "unit", 40)
    if role not in {r.value for r in Role}:
        raise redirect_with_flash(request, "/admin/users", _("未知角色。"), "error")
    if user_id == principal.id and role != Role.ADMIN.value:
        raise redirect_with_flash(request, "/admin/users", _("不能取消自己的管理员角色。"), "error")
    container = request.app[CONTAINER]
    async with container.uow() as uow:
        user = await uow.session.get(StaffUser, user_id) if user_id is not None else None
        if user is None:
            return _error(request, principal, 404, _("未找到"), _("没有这个用户。"), back="/admin/users")
        unit = await uow.units.by_code(unit_code)
        if unit is None or not unit.active:
            raise redirect_with_flash(request, "/admin/users", _("未知单位。"), "error")
        old_unit = await uow.session.get(Unit, user.unit_id)
        changes = {}
        if user.role != role:
            changes["role"] = [user.role, role]
            user.role = role
        if user.unit_id != unit.id:
            changes["unit"] = [old_unit.code if old_unit else None, unit.code]
            user.unit_id = unit.id
        if changes:
            _audit(uow, principal, "user_change", user.username, {"user_id": user.id, **changes},
                   container.clock.now())
        username = user.username
        await uow.commit()
    message = _("已更新用户 {name}。") if changes else _("用户 {name} 没有变化。")
    raise redirect_with_flash(request, "/admin/users", message.format(name=username))


# -- units ------------------------------------------------------------------------------------------


@_guarded
async def units_page(request: web.Request, principal: Principal) -> web.Response:
    return await _units(request, principal)


async def _units(request: web.Request, principal: Principal, *, status: int = 200, error: str = "",
                 form: dict | None = None) -> web.Response:
    container = request.app[CONTAINER]
    async with container.uow() as uow:
        units = list((await uow.session.scalars(select(Unit).order_by(Unit.code))).all())
    path = container.settings.rules.units_file or DEFAULT_UNITS_PATH
    return _page(request, principal, "admin_units.html", status=status, units=units, units_file=str(path),
                 section="units", error=error, form=form or {})


TELEGRAM_CHAT_ID = re.compile(r"^-?[1-9][0-9]{0,18}$")


@_guarded
async def unit_telegram(request: web.Request, principal: Principal) -> web.StreamResponse:
    """The Telegram group chat where a unit gets its new cases and reminders (empty: none)."""
    _ = _tr(request)
    post = await request.post()
    code = request.match_info["code"][:40]
    chat_id = _field(post, "telegram_chat_id", 40)
    if chat_id and not TELEGRAM_CHAT_ID.match(chat_id):
        return await _units(request, principal, status=400, form={"code": code, "telegram_chat_id": chat_id},
                                error=_("Telegram 群 ID 是一个整数，群组通常以 -100 开头，例如 -1001234567890。"))
    container = request.app[CONTAINER]
    async with container.uow() as uow:
        unit = await uow.units.by_code(code)
        if unit is None:
            return _error(request, principal, 404, _("未找到"), _("没有这个单位。"), back="/admin/units")
        before = unit.telegram_chat_id
        unit.telegram_chat_id = chat_id or None
        _audit(uow, principal, "unit_telegram_set", None,
               {"unit": code, "before": before, "after": unit.telegram_chat_id}, container.clock.now())
        await uow.commit()
    raise redirect_with_flash(request, "/admin/units", _("已保存 {unit} 的 Telegram 群。").format(unit=unit.name))


# -- routing rules ----------------------------------------------------------------------------------


def _rules_path(request: web.Request) -> Path:
    """The rules file in use: the configured one, else the copy saved here, else the packaged default."""
    settings = request.app[CONTAINER].settings
    return active_rules_path(settings.rules.routing_file, settings.storage.data_dir) or DEFAULT_RULES_PATH


def _save_path(settings) -> Path | None:
    """Where a save goes: the configured rules file, else <data dir>/config/rules.yaml; None when that
    would be inside the installed package (a configured file pointing at the packaged default)."""
    target = Path(settings.rules.routing_file) if settings.rules.routing_file else edited_rules_path(
        settings.storage.data_dir)
    target = Path(os.path.realpath(target))  # a symlinked file stays a symlink: its target is replaced
    if DEFAULT_RULES_PATH.parent in target.parents:
        return None
    return target


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        return f"# cannot read {path}: {exc.strerror or exc}"


async def _rules(request: web.Request, principal: Principal, *, status: int = 200, result=None,
                 pasted: str = "", error: str = "") -> web.Response:
    container = request.app[CONTAINER]
    path = _rules_path(request)
    return _page(request, principal, "admin_rules.html", status=status, section="rules",
                 rules_file=str(path), rules_text=await asyncio.to_thread(_read, path),
                 units_file=str(container.settings.rules.units_file or DEFAULT_UNITS_PATH),
                 directory=container.directory, result=result, pasted=pasted, error=error)


@_guarded
async def rules_page(request: web.Request, principal: Principal) -> web.Response:
    return await _rules(request, principal)


def _check(text: str, directory) -> tuple[dict, RoutingTable | None]:
    """load_rules on a private temporary copy: the result shown on the page, and the table when valid."""
    with tempfile.TemporaryDirectory(prefix="qinglang-rules-") as tmp:
        path = Path(tmp) / PASTED_NAME
        path.write_text(text, encoding="utf-8")
        try:
            table = load_rules(path, directory)
        except (RoutingConfigError, YamlError) as exc:
            file = PASTED_NAME if exc.file == str(path) else exc.file.replace(str(path), PASTED_NAME)
            return {"valid": False, "file": file, "line": exc.line, "problem": exc.problem}, None
    return {"valid": True, "rules": len(getattr(table, "rules", ()) or ())}, table


def _validate(text: str, directory) -> dict:
    """load_rules on a private temporary copy; nothing is saved and the running table is untouched."""
    return _check(text, directory)[0]


async def _pasted(request: web.Request, principal: Principal) -> tuple[str, web.Response | None]:
    """The posted rules text (CRLF made LF), or the 400 page for an empty or oversized one."""
    _ = _tr(request)
    post = await request.post()
    text = post.get("rules")
    text = text if isinstance(text, str) else ""
    if not text.strip():
        return text, await _rules(request, principal, status=400, pasted=text,
                                  result={"valid": False, "file": PASTED_NAME, "line": None,
                                          "problem": _("请粘贴要检查的规则文件内容。")})
    if len(text) > MAX_RULES_TEXT:
        return text, await _rules(request, principal, status=400, pasted="",
                                  result={"valid": False, "file": PASTED_NAME, "line": None,
                                          "problem": _("内容太长。")})
    return text.replace("\r\n", "\n"), None


@_guarded
async def rules_validate(request: web.Request, principal: Principal) -> web.Response:
    text, refused = await _pasted(request, principal)
    if refused is not None:
        return refused
    result = await asyncio.to_thread(_validate, text, request.app[CONTAINER].directory)
    return await _rules(request, principal, result=result, pasted=text)


@dataclass(frozen=True)
class _Saved:
    target: Path
    old_file: Path  # the file the running rules came from (the packaged one before the first save)
    old: bytes | None  # its content (None: unreadable or gone)
    new: bytes
    target_existed: bool
    backup: Path | None


def _sha256(data: bytes | None) -> str | None:
    return hashlib.sha256(data).hexdigest() if data is not None else None


def _save_file(target: Path, old_file: Path, text: str, stamp: str) -> _Saved:
    """Back the running version up beside `target` (rules.yaml.<UTC time>.bak), then write the new text."""
    try:
        old = old_file.read_bytes()
    except OSError:
        old = None
    target_existed = target.exists()
    mode = stat.S_IMODE(target.stat().st_mode) if target_existed else 0o644
    target.parent.mkdir(parents=True, exist_ok=True)
    backup = None
    if old is not None:
        for n in range(1, 1000):
            candidate = target.with_name(f"{target.name}.{stamp}{'' if n == 1 else f'-{n}'}.bak")
            try:
                with open(candidate, "xb") as f:  # never overwrite an earlier backup
                    f.write(old)
            except FileExistsError:
                continue
            backup = candidate
            break
        else:
            raise OSError(f"too many backups named {target.name}.{stamp}*.bak")
    new = text.encode("utf-8")
    write_atomically(target, new, mode)
    return _Saved(target, old_file, old, new, target_existed, backup)


def _undo_save(saved: _Saved) -> None:
    """Put the file back as it was (the audit record of the save could not be written)."""
    if saved.target_existed and saved.old is not None and saved.old_file == saved.target:
        write_atomically(saved.target, saved.old)
    elif not saved.target_existed:
        saved.target.unlink(missing_ok=True)
    if saved.backup is not None:
        saved.backup.unlink(missing_ok=True)


@_guarded
async def rules_save(request: web.Request, principal: Principal) -> web.Response:
    """Validate exactly as rules_validate does; only valid rules are written (atomically, the previous
    version kept as a backup) and swapped into the running routing table, so new cases use them at once.
    Cases already routed keep their units. Audited with the file and the sha256 of old and new text."""
    _ = _tr(request)
    text, refused = await _pasted(request, principal)
    if refused is not None:
        return refused
    container = request.app[CONTAINER]
    target = _save_path(container.settings)
    if target is None:
        return await _rules(request, principal, status=400, pasted=text, error=_(
            "配置的规则文件是程序自带的默认文件，不能在这里修改。请把 QINGLANG_ROUTING_FILE 指向数据目录中的一个副本。"))
    async with request.app[RULES_SAVE_LOCK]:
        result, table = await asyncio.to_thread(_check, text, container.directory)
        if table is None:
            return await _rules(request, principal, status=400, result=result, pasted=text)
        old_file = Path(os.path.realpath(_rules_path(request)))
        stamp = container.clock.now().astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
        try:
            saved = await asyncio.to_thread(_save_file, target, old_file, text, stamp)
        except OSError as exc:
            return await _rules(request, principal, status=500, pasted=text,
                                error=_("未能保存规则文件 {file}：{problem}").format(
                                    file=str(target), problem=exc.strerror or str(exc)))
        try:
            async with container.uow() as uow:
                _audit(uow, principal, "routing_rules_save", str(target), {
                    "username": principal.username, "file": str(target), "previous_file": str(old_file),
                    "backup": str(saved.backup) if saved.backup else None,
                    "old_sha256": _sha256(saved.old), "new_sha256": _sha256(saved.new),
                    "rules": len(table.rules)}, container.clock.now())
                await uow.commit()
        except BaseException:
            await asyncio.to_thread(_undo_save, saved)  # no unaudited change
            raise
        container.routing.replace_with(table, path=str(target))
    raise redirect_with_flash(request, "/admin/rules", _(
        "已保存并启用新规则（共 {n} 条），新案件立即按新规则分办；原文件已备份为 {backup}。").format(
            n=len(table.rules), backup=saved.backup.name if saved.backup else "-"))


# -- holiday overrides ------------------------------------------------------------------------------


async def _holidays(request: web.Request, principal: Principal, *, status: int = 200, error: str = "",
                    form: dict | None = None) -> web.Response:
    async with request.app[CONTAINER].uow() as uow:
        rows = list((await uow.session.scalars(select(HolidayOverride).order_by(HolidayOverride.day))).all())
    return _page(request, principal, "admin_holidays.html", status=status, error=error, form=form or {},
                 overrides=rows, section="holidays")


@_guarded
async def holidays_page(request: web.Request, principal: Principal) -> web.Response:
    return await _holidays(request, principal)


@_guarded
async def holiday_add(request: web.Request, principal: Principal) -> web.StreamResponse:
    _ = _tr(request)
    post = await request.post()
    form = {"day": _field(post, "day", 40), "kind": _field(post, "kind", 20), "note": _field(post, "note", 200)}
    try:
        day = date.fromisoformat(form["day"])
    except ValueError:
        return await _holidays(request, principal, status=400, form=form,
                               error=_("日期格式应为 YYYY-MM-DD，例如 2026-10-01。"))
    if form["kind"] not in ("workday", "holiday"):
        return await _holidays(request, principal, status=400, form=form, error=_("请选择“工作日”或“休息日”。"))
    is_workday = form["kind"] == "workday"
    container = request.app[CONTAINER]
    async with container.uow() as uow:
        row = await uow.session.get(HolidayOverride, day)
        before = None if row is None else {"is_workday": row.is_workday, "note": row.note}
        if row is None:
            uow.session.add(HolidayOverride(day=day, is_workday=is_workday, note=form["note"]))
        else:
            row.is_workday, row.note = is_workday, form["note"]
        _audit(uow, principal, "holiday_override_set", form["note"] or None,
               {"day": day.isoformat(), "is_workday": is_workday, "before": before}, container.clock.now())
        await uow.commit()
    raise redirect_with_flash(request, "/admin/holidays", _("已保存 {day} 的设置。").format(day=day.isoformat()))


@_guarded
async def holiday_delete(request: web.Request, principal: Principal) -> web.StreamResponse:
    _ = _tr(request)
    try:
        day = date.fromisoformat(request.match_info["day"][:20])
    except ValueError:
        return _error(request, principal, 404, _("未找到"), _("没有这个日期的设置。"), back="/admin/holidays")
    await request.post()
    container = request.app[CONTAINER]
    async with container.uow() as uow:
        row = await uow.session.get(HolidayOverride, day)
        if row is None:
            return _error(request, principal, 404, _("未找到"), _("没有这个日期的设置。"), back="/admin/holidays")
        _audit(uow, principal, "holiday_override_delete", row.note or None,
               {"day": day.isoformat(), "is_workday": row.is_workday}, container.clock.now())
        await uow.session.delete(row)
        await uow.commit()
    raise redirect_with_flash(request, "/admin/holidays", _("已删除 {day} 的设置。").format(day=day.isoformat()))
