"""Staff console pages: login, the queue, one case, its evidence files, and the case actions.

Access: every read goes through web.access.case_scope (a case out of scope is "not found": 404, never
403, so numbers and evidence URLs cannot be probed); every action is checked against web.access (403)
and the status machine and the case's own state (409) before anything is written; each refusal is
logged (logger qinglang.console: who, which case, which action, why; never the submitted text). State
changes use Post/Redirect/Get with a flash message. CSRF: the session's token on every form
(web.middlewares.csrf_middleware); the login form, which has no session yet, uses a signed
double-submit cookie.
"""

from __future__ import annotations

import hmac
import logging
import re
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web
from multidict import MultiDictProxy
from sqlalchemy.orm.exc import StaleDataError

from intake.cases import Actor, CaseNotFound
from intake.closing import MAX_AMOUNT_FEN, MAX_COUNT, ClosingFacts
from intake.queries import BadQuery, CaseDetail, CaseFilter
from intake.status import (
    OUTCOMES,
    REJECTION_GROUNDS,
    STAFF_OUTCOMES,
    STATUS_NAMES_ZH,
    Action,
    DomainError,
    IllegalTransition,
    Status,
    allowed_actions,
)
from nlu.taxonomy import CATEGORIES, Kind
from qinglang.i18n import N_
from web import evidence_files
from web.access import case_scope, lead_part, may_act, may_reclassify, may_see_identity
from web.accounts import Role
from web.console.render import (
    LOGIN_CSRF_COOKIE,
    SIGNER,
    CookieSigner,
    format_yuan,
    gettext_for,
    mask_phone,
    redirect_with_flash,
    render,
    request_language,
    secure_cookies,
)
from web.console.store import ConsoleStore
from web.keys import AUTH, CONTAINER, PRINCIPAL, QUERIES, SESSION_COOKIE, URGENT_BANNER
from web.redirects import same_site_target
from web.security import AuthError, Principal

log = logging.getLogger("qinglang.console")

STATIC = Path(__file__).parent / "static"
STORE = web.AppKey("console_store", ConsoleStore)

PAGE_SIZE = 50
MAX_BULK = 200
INLINE_IMAGES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})  # never SVG

# the actions the console offers, in the order of the page; withdraw belongs to the complainant.
# unlink_subject is offered beside each linked subject, not in the list of actions.
CONSOLE_ACTIONS = ("accept", "reject", "transfer", "start", "resolve", "reply", "message", "request_info", "close",
                   "reopen", "extend", "reclassify", "reassign", "duplicate", "link_subject", "unlink_subject",
                   "rate")
BESIDE_SUBJECTS = frozenset({"unlink_subject"})
STATUS_ACTIONS = frozenset(a.value for a in Action) - {Action.WITHDRAW.value}

KIND_NAMES = {Kind.COMPLAINT: N_("投诉"), Kind.TIPOFF: N_("举报"), Kind.CONSULTATION: N_("咨询")}
CHANNEL_NAMES = {"telegram": N_("Telegram"), "web": N_("网页"), "api": N_("接口"), "hotline": N_("12345热线")}
ROLE_NAMES = {Role.ADMIN: N_("管理员"), Role.TRIAGE: N_("分流（消保分局）"), Role.HANDLER: N_("承办人员"),
              Role.LEADER: N_("局领导")}
DUE_NAMES = {"overdue": N_("已超期"), "due_soon": N_("即将到期"), "provisional": N_("暂定期限")}
ACTION_NAMES = {
    "accept": N_("受理"), "reject": N_("不予受理"), "transfer": N_("转办"), "start": N_("开始办理"),
    "resolve": N_("办结"), "reply": N_("答复投诉人"), "close": N_("关闭"), "reopen": N_("重新打开"),
    "extend": N_("延长期限"), "reclassify": N_("更改类别"), "withdraw": N_("撤回"), "create": N_("登记"),
    "view_personal_data": N_("查看个人信息"), "complainant_addition": N_("投诉人补充材料"),
    "download_original_evidence": N_("下载证据原件"), "purge_personal_data": N_("删除个人信息（保存期满）"),
    "message": N_("发送消息"), "request_info": N_("要求补充材料"), "duplicate": N_("重复件并案"),
    "reassign": N_("调整承办单位"), "link_subject": N_("关联主体"), "unlink_subject": N_("取消关联主体"),
    "rate": N_("记录满意度评价"),
    "urgent": N_("紧急件（危机信号），已通知消保分局值班"), "acknowledge_urgent": N_("已知悉紧急件"),
}
DONE = {
    "accept": N_("已受理。"), "reject": N_("已决定不予受理，答复已记录。"), "transfer": N_("已转办。"),
    "start": N_("已开始办理。"), "resolve": N_("已办结，答复已记录。"), "reply": N_("答复已记录。"),
    "close": N_("案件已关闭。"), "reopen": N_("案件已重新打开。"), "extend": N_("期限已延长。"),
    "reclassify": N_("类别已更改。"), "message": N_("消息已发送。"), "request_info": N_("已要求投诉举报人补充材料。"),
    "duplicate": N_("已作为重复件关闭。"), "reassign": N_("承办单位已调整。"), "link_subject": N_("已关联主体。"),
    "unlink_subject": N_("已取消关联主体。"), "rate": N_("满意度评价已记录。"),
}
# the satisfaction rating, 1-5, as the follow-up call (回访) asks it
SCORE_NAMES = {1: N_("非常不满意"), 2: N_("不满意"), 3: N_("基本满意"), 4: N_("满意"), 5: N_("非常满意")}
MAX_SUBJECT_ID = 2**63 - 1
TRANSFER_SCOPES = {"in_province": N_("省内"), "out_of_province": N_("省外")}
# the close form's facts for the statistics forms (附件1); the amounts are typed in yuan
FACT_LABELS = {
    "filed": N_("立案"), "fine_yuan": N_("罚款（元）"), "confiscation_yuan": N_("没收违法所得（元）"),
    "judicial_referral": N_("移送司法机关"), "takedowns": N_("督促平台删除违规信息/下架商品（条/个）"),
    "accounts_disposed": N_("处置发布违规内容账号（个）"), "sites_closed": N_("关闭违法违规问题网站（个）"),
}
YES_NO = {"": N_("未填"), "yes": N_("是"), "no": N_("否")}
YES_NO_VALUES = {"": None, "yes": True, "no": False}
YUAN = re.compile(r"(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.[0-9]+)?")
MAX_TYPED = 24  # characters of a typed amount or count


def setup(app: web.Application) -> None:
    container = app[CONTAINER]
    secret = container.settings.web.secret_key
    app[SIGNER] = CookieSigner(secret.get_secret_value() if secret else None)
    app[STORE] = ConsoleStore(container.uow, container.clock)
    router = app.router
    router.add_get("/login", login_form)
    router.add_post("/login", login_submit)
    router.add_post("/logout", logout)
    router.add_get("/password", password_form)
    router.add_post("/password", password_submit)
    router.add_get("/", queue)
    router.add_post("/queue/transfer", bulk_transfer)
    router.add_get("/cases/{number}", case_page)
    router.add_get("/cases/{number}/evidence/{sha256}", evidence_file)
    router.add_get("/cases/{number}/evidence/{sha256}/original", evidence_original_page)
    router.add_post("/cases/{number}/evidence/{sha256}/original", evidence_original)
    router.add_post("/cases/{number}/actions/{action}", case_action)
    router.add_static("/static/console/", STATIC, name="console_static", append_version=False)
    from web.console import admin, export, followup, reports, subjects, urgent  # they use this module's page helpers

    urgent.register(app)
    admin.register(app)
    export.register(app)
    subjects.register(app)
    followup.register(app)
    reports.register(app)


# -- helpers ----------------------------------------------------------------------------------------


def _principal(request: web.Request) -> Principal | None:
    principal = request.get(PRINCIPAL)
    return principal if principal is not None and principal.via == "session" else None


def _require(request: web.Request) -> Principal:
    principal = _principal(request)
    if principal is None:
        target = request.path_qs if request.method == "GET" else "/"
        raise web.HTTPSeeOther("/login?" + urlencode({"next": target}))
    return principal


def _field(post: MultiDictProxy, name: str, limit: int = 10_000) -> str:
    """A form field as text; NUL dropped (PostgreSQL text cannot hold it, and no person typed it)."""
    value = post.get(name)
    return value.replace("\x00", "").strip()[:limit] if isinstance(value, str) else ""


def _tr(request: web.Request):
    return gettext_for(request_language(request))


def _common(request: web.Request, principal: Principal | None) -> dict[str, Any]:
    container = request.app[CONTAINER]
    language = request_language(request)
    _ = gettext_for(language)
    categories = {c.id: (c.en if language == "en" else c.zh) for c in CATEGORIES}
    return {
        "tz": container.settings.tz,
        "principal": principal,
        "csrf_token": principal.csrf_token if principal else "",
        "role_name": _(ROLE_NAMES.get(principal.role, principal.role)) if principal else "",
        "category_names": categories,
        "status_name": lambda s: _(STATUS_NAMES_ZH[Status(s)]) if s in Status._value2member_map_ else s,
        "kind_name": lambda k: _(KIND_NAMES[Kind(k)]) if k in Kind._value2member_map_ else k,
        "channel_name": lambda c: _(CHANNEL_NAMES[c]) if c in CHANNEL_NAMES else c,
        "action_name": lambda a: _(ACTION_NAMES[a]) if a in ACTION_NAMES else a,
        "due_names": {k: _(v) for k, v in DUE_NAMES.items()},
        "urgent_banner": request.get(URGENT_BANNER) or [],
    }


def _page(request: web.Request, principal: Principal | None, template: str, status: int = 200, **context: Any):
    return render(request, template, {**_common(request, principal), **context}, status=status)


def _error(request: web.Request, principal: Principal | None, status: int, title: str, message: str = "",
           back: str | None = None) -> web.Response:
    return _page(request, principal, "error.html", status=status, code=status, title=title, message=message,
                 back=back)


def _not_found(request: web.Request, principal: Principal | None) -> web.Response:
    _ = _tr(request)
    return _error(request, principal, 404, _("未找到"), _("没有这个案件，或者您无权查看。"), back="/")


def _unit_name(unit, language: str) -> str:
    return (unit.name_en or unit.name) if language == "en" else unit.name


# -- login, logout, password ------------------------------------------------------------------------


def _login_page(request: web.Request, *, status: int = 200, error: str = "", username: str = "") -> web.Response:
    """The login form with a fresh signed double-submit token (cookie + hidden field)."""
    signer = request.app[SIGNER]
    token = signer.sign("login", secrets.token_urlsafe(24))
    response = _page(request, None, "login.html", status=status, error=error, username=username,
                     login_csrf=token, next=same_site_target(request.query.get("next")))
    response.set_cookie(LOGIN_CSRF_COOKIE, token, path="/login", httponly=True, samesite="Lax",
                        secure=secure_cookies(request), max_age=3600)
    return response


async def login_form(request: web.Request) -> web.Response:
    if _principal(request) is not None:
        raise web.HTTPSeeOther(same_site_target(request.query.get("next")))
    return _login_page(request)


async def login_submit(request: web.Request) -> web.StreamResponse:
    _ = _tr(request)
    post = await request.post()
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE)
    given = post.get("csrf_token")
    if not (cookie and isinstance(given, str) and hmac.compare_digest(cookie.encode(), given.encode())
            and request.app[SIGNER].unsign("login", cookie) is not None):
        return _login_page(request, status=403, error=_("登录表单已过期，请重新输入。"))
    username = _field(post, "username", 64)
    password = post.get("password")
    password = password[:1024] if isinstance(password, str) else ""
    if not username or not password:
        return _login_page(request, status=400, error=_("请输入用户名和密码。"), username=username)
    try:
        token, _principal_ = await request.app[AUTH].login(username, password)
    except AuthError as exc:
        return _login_page(request, status=401, error=str(exc), username=username)
    response = web.HTTPSeeOther(same_site_target(_field(post, "next", 2000)))
    response.set_cookie(SESSION_COOKIE, token, path="/", httponly=True, samesite="Lax",
                        secure=secure_cookies(request))
    response.del_cookie(LOGIN_CSRF_COOKIE, path="/login")
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    # the CSRF middleware has checked the token of a live session; without one there is nothing to end
    await request.app[AUTH].logout(request.cookies.get(SESSION_COOKIE))
    response = redirect_with_flash(request, "/login", _tr(request)("您已退出登录。"))
    response.del_cookie(SESSION_COOKIE, path="/")
    raise response


async def password_form(request: web.Request) -> web.Response:
    principal = _require(request)
    return _page(request, principal, "password.html", error="")


async def password_submit(request: web.Request) -> web.StreamResponse:
    principal = _require(request)
    _ = _tr(request)
    post = await request.post()
    old, new, again = (post.get(k) for k in ("current_password", "new_password", "new_password_again"))
    if not all(isinstance(v, str) and v for v in (old, new, again)):
        return _page(request, principal, "password.html", status=400, error=_("请填写全部三项。"))
    if new != again:
        return _page(request, principal, "password.html", status=400, error=_("两次输入的新密码不一致。"))
    if len(new) > 1024:
        return _page(request, principal, "password.html", status=400, error=_("新密码太长。"))
    auth = request.app[AUTH]
    try:
        await auth.change_password(principal.id, old, new)
    except AuthError as exc:
        return _page(request, principal, "password.html", status=400, error=str(exc))
    # every session of the user ended with the change (a stolen cookie dies too); this one starts anew
    token, _fresh = await auth.login(principal.username, new)
    response = redirect_with_flash(request, "/", _("密码已修改。其他设备上的登录已全部退出。"))
    response.set_cookie(SESSION_COOKIE, token, path="/", httponly=True, samesite="Lax",
                        secure=secure_cookies(request))
    raise response


# -- the queue --------------------------------------------------------------------------------------


def _parse_day(value: str | None, problems: list[str], what: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        problems.append(what)
        return None


def _filters(request: web.Request, unit_codes: set[str],
             invalid: str = N_("筛选条件无效，已忽略：{name}")) -> tuple[CaseFilter, list[str]]:
    """The queue's filters from the query string and what was wrong with them (`invalid` says it of a value
    that is not one of the choices; the queue ignores such a value, the export refuses to run)."""
    _ = _tr(request)
    q = request.query
    problems: list[str] = []

    def many(name: str, allowed: set[str]) -> tuple[str, ...]:
        values = tuple(dict.fromkeys(v for v in q.getall(name, []) if v))
        if any(v not in allowed for v in values):
            problems.append(_(invalid).format(name=name))
            values = tuple(v for v in values if v in allowed)
        return values

    unit = q.get("unit") or None
    if unit is not None and unit not in unit_codes:
        problems.append(_(invalid).format(name="unit"))
        unit = None
    due = q.get("due") or None
    if due is not None and due not in DUE_NAMES:
        problems.append(_(invalid).format(name="due"))
        due = None
    received_from = _parse_day(q.get("received_from"), problems, _("起始日期格式应为 YYYY-MM-DD"))
    received_to = _parse_day(q.get("received_to"), problems, _("截止日期格式应为 YYYY-MM-DD"))
    text = (q.get("q") or "").replace("\x00", "").strip()[:100] or None
    platform = (q.get("platform") or "").replace("\x00", "").strip()[:40] or None
    return CaseFilter(
        status=many("status", {s.value for s in Status}),
        kind=many("kind", {k.value for k in Kind}),
        category=many("category", {c.id for c in CATEGORIES}),
        unit=unit,
        channel=tuple(v[:20] for v in dict.fromkeys(q.getall("channel", [])) if v),
        platform=platform,
        due=due,
        received_from=received_from,
        received_to=received_to,
        text=text,
    ), problems


def _query_without(request: web.Request, *names: str, **replace: str) -> str:
    pairs = [(k, v) for k, v in request.query.items() if k not in names and k not in replace and k != "lang"]
    pairs += [(k, v) for k, v in replace.items() if v]
    return "?" + urlencode(pairs) if pairs else ""


async def queue(request: web.Request) -> web.Response:
    principal = _require(request)
    _ = _tr(request)
    language = request_language(request)
    queries = request.app[QUERIES]
    store = request.app[STORE]
    units = await store.units()
    by_code = {u.code: u for u in units}
    filters, problems = _filters(request, set(by_code))
    scope = case_scope(principal)
    try:
        limit = max(1, min(int(request.query.get("limit", PAGE_SIZE)), 200))
    except ValueError:
        limit = PAGE_SIZE
    cursor = request.query.get("cursor") or None
    try:
        page = await queries.page(scope, filters, cursor=cursor, limit=limit)
    except BadQuery as exc:
        problems.append(str(exc))
        cursor = None
        page = await queries.page(scope, filters, limit=limit)
    counts = await queries.counts(scope, filters)
    extras = await store.row_extras([r.id for r in page.rows])
    rows = []
    for row in page.rows:
        anonymous = extras.anonymous.get(row.id, True)
        if anonymous:
            who = _("匿名")
        elif may_see_identity(principal, anonymous, lead_part(principal, row.lead_unit)):
            who = mask_phone(extras.phones.get(row.id)) or "—"
        else:
            who = ""
        lead = by_code.get(row.lead_unit) if row.lead_unit else None
        rows.append({"row": row, "who": who, "provisional": row.id in extras.provisional,
                     "lead": _unit_name(lead, language) if lead else (row.lead_unit or "")})
    statuses = [(s.value, counts.get(s.value, 0 if s != Status.CLOSED else None)) for s in Status]
    return _page(
        request, principal, "queue.html",
        rows=rows, problems=problems, filters=filters, statuses=statuses,
        total_open=sum(counts.get(s, 0) for s in Status if s != Status.CLOSED),
        units=[(u.code, _unit_name(u, language)) for u in units],
        kinds=[(k.value, _(KIND_NAMES[k])) for k in Kind],
        channels=[(c, _(n)) for c, n in CHANNEL_NAMES.items()],
        next_href=("/" + _query_without(request, "cursor", cursor=page.next_cursor)) if page.next_cursor else None,
        first_href=("/" + _query_without(request, "cursor")) if cursor else None,
        status_href=lambda s: "/" + _query_without(request, "cursor", "status", status=s),
        all_href="/" + _query_without(request, "cursor", "status"),
        current_query=request.path_qs,
        export_href="/export.csv" + _query_without(request, "cursor", "limit"),
        can_bulk=principal.role == Role.TRIAGE,
        today=queries.today(),
    )


async def bulk_transfer(request: web.Request) -> web.StreamResponse:
    """Triage: transfer the selected cases to one unit of the bureau."""
    principal = _require(request)
    _ = _tr(request)
    post = await request.post()
    back = same_site_target(_field(post, "back", 2000))
    if not back.startswith("/") or back.startswith("/cases/") or not (back == "/" or back.startswith("/?")):
        back = "/"
    if principal.role != Role.TRIAGE:
        return _error(request, principal, 403, _("无权操作"), _("只有消保分局分流人员可以批量分派。"), back=back)
    unit_code = _field(post, "unit", 40)
    numbers = list(dict.fromkeys(v.strip() for v in post.getall("case", []) if isinstance(v, str) and v.strip()))
    if not numbers:
        raise redirect_with_flash(request, back, _("请先勾选案件。"), "error")
    if len(numbers) > MAX_BULK:
        raise redirect_with_flash(request, back, _("一次最多分派 {n} 件。").format(n=MAX_BULK), "error")
    units = {u.code: u for u in await request.app[STORE].units()}
    if unit_code not in units:
        raise redirect_with_flash(request, back, _("请选择承办单位。"), "error")
    queries, cases = request.app[QUERIES], request.app[CONTAINER].cases
    scope = case_scope(principal)
    actor = Actor("staff", principal.id)
    done, skipped = [], []
    not_found, not_now = _("未找到"), _("当前状态不能转办")
    for number in numbers:
        number = number[:32]
        detail = await queries.detail(scope, number)
        if detail is None:
            skipped.append(f"{number}（{not_found}）")
            continue
        if not _permitted(principal, detail.unit_parts, "transfer") or not _legal(detail, "transfer", []):
            skipped.append(f"{number}（{not_now}）")
            continue
        try:
            await cases.transfer(detail.case.id, actor, unit_code=unit_code)
            done.append(number)
        except (DomainError, StaleDataError) as exc:
            skipped.append(f"{number}（{exc}）")
    message = _("已将 {n} 件转办至 {unit}。").format(n=len(done), unit=_unit_name(units[unit_code], request_language(request)))
    if skipped:
        message += " " + _("未转办：") + "；".join(skipped)
    raise redirect_with_flash(request, back, message, "ok" if done else "error")


# -- one case ---------------------------------------------------------------------------------------


def _permitted(principal: Principal, unit_parts: dict[int, str], action: str) -> bool:
    """web.access decides; an action it does not know (e.g. extend for a handler) is not permitted."""
    if action == "reclassify":
        return may_reclassify(principal)
    try:
        return may_act(principal, unit_parts, action)
    except ValueError:
        return False


def _legal(detail: CaseDetail, action: str, extendable: list[str]) -> bool:
    """Legal for the case's status (intake.status) and the service's own rules."""
    case = detail.case
    status = Status(case.status)
    if action in STATUS_ACTIONS:
        if Action(action) not in allowed_actions(status):
            return False
        # a case transferred inside the bureau is closed by the receiving unit after handling
        return not (action == "close" and status == Status.TRANSFERRED and case.transfer_authority is None)
    if action in ("reply", "message", "reclassify", "reassign"):
        return status != Status.CLOSED
    if action == "request_info":  # an anonymous informant cannot be asked: nobody can be contacted
        return status != Status.CLOSED and not case.anonymous and case.complainant_id is not None
    if action == "extend":
        return bool(extendable)
    if action == "link_subject":  # the registry is kept right at any time, a closed case included
        return True
    if action == "unlink_subject":
        return bool(detail.subjects)
    if action == "rate":  # the follow-up call after the answer, once
        return status == Status.CLOSED and case.rated_at is None
    return False


def _extendable(request: web.Request, detail: CaseDetail) -> list[str]:
    container = request.app[CONTAINER]
    governing = detail.case.received_at.astimezone(container.settings.tz).date()
    clocks = []
    for deadline in detail.deadlines:
        if deadline.met_at is not None or deadline.extended:
            continue
        try:
            version = container.policy.clock(deadline.clock).version_for(governing)
        except KeyError:
            continue
        if version.extension:
            clocks.append(deadline.clock)
    return clocks


def _clock_name(request: web.Request, clock: str) -> str:
    try:
        found = request.app[CONTAINER].policy.clock(clock)
    except KeyError:
        return clock
    return found.label_en if request_language(request) == "en" and found.label_en else found.label_zh


@dataclass(frozen=True)
class EvidenceView:
    sha256: str
    size: int
    mime: str
    name: str
    source: str
    inline: bool
    link: str | None  # a URL the person gave (source "link"), shown only when it is http(s)


def _evidence_views(detail: CaseDetail) -> list[EvidenceView]:
    views = []
    for item in detail.evidence:
        if item.source == "link":
            url = item.original_name or ""
            safe = url if re.match(r"^https?://", url, re.IGNORECASE) else None
            views.append(EvidenceView(item.sha256, item.size, item.mime, url, item.source, False, safe))
        else:
            views.append(EvidenceView(item.sha256, item.size, item.mime, item.original_name or item.sha256[:12],
                                      item.source, item.mime in INLINE_IMAGES, None))
    return views


async def case_page(request: web.Request) -> web.Response:
    principal = _require(request)
    language = request_language(request)
    number = request.match_info["number"][:32]
    detail = await request.app[QUERIES].detail(case_scope(principal), number)
    if detail is None:
        return _not_found(request, principal)
    case, store = detail.case, request.app[STORE]
    identity = None
    if detail.complainant is not None and may_see_identity(principal, case.anonymous, detail.unit_parts):
        fields = [f for f in ("name", "phone", "email") if getattr(detail.complainant, f)]
        if fields:
            await store.audit_identity_view(case.id, principal.id, fields)
            identity = detail.complainant
    extendable = _extendable(request, detail)
    actions = [a for a in CONSOLE_ACTIONS
               if _permitted(principal, detail.unit_parts, a) and _legal(detail, a, extendable)]
    staff_ids = {e.actor_id for e in detail.events if e.actor_type == "staff" and e.actor_id}
    staff_ids |= {m.staff_user_id for m in detail.messages if m.staff_user_id}
    units = await store.units()
    lead_ids = {unit.id for unit, role in detail.units if role == "lead"}
    directory = request.app[CONTAINER].directory
    _ = _tr(request)
    linked = {subject.id for subject in detail.subjects}
    subject_q = (request.query.get("subject_q") or "").strip()[:100]
    found_subjects = platform_subjects = []
    if "link_subject" in actions:
        found_subjects = await store.subjects_named(subject_q, linked) if subject_q else []
        platform_subjects = await store.subjects_of_platform(case.platform, linked)
    from web.console.subjects import TYPE_NAMES  # that module imports this one: not at the top

    return _page(
        request, principal, "case.html",
        d=detail, case=case, identity=identity,
        duplicates=await store.duplicate_links(case_scope(principal), case),
        unit_parts=[(_unit_name(unit, language), role) for unit, role in detail.units],
        side_actions=[a for a in actions if a not in BESIDE_SUBJECTS],
        all_units=[(u.code, _unit_name(u, language)) for u in units],
        lead_code=next((unit.code for unit, role in detail.units if role == "lead"), None),
        co_codes={unit.code for unit, role in detail.units if role == "co"},
        subject_q=subject_q, found_subjects=found_subjects, platform_subjects=platform_subjects,
        subject_types={k: _(v) for k, v in TYPE_NAMES.items()},
        scores={k: _(v) for k, v in SCORE_NAMES.items()},
        deadlines=[(dl, _clock_name(request, dl.clock)) for dl in detail.deadlines],
        evidence=_evidence_views(detail),
        staff=await store.staff_names(staff_ids),
        actions=actions,
        transfer_units=[(u.code, _unit_name(u, language)) for u in units if u.id not in lead_ids],
        authorities=[a.name for a in directory.authorities],
        transfer_scopes={k: _tr(request)(v) for k, v in TRANSFER_SCOPES.items()},
        grounds={k: _tr(request)(v) for k, v in REJECTION_GROUNDS.items()},
        outcomes={k: _tr(request)(v) for k, v in OUTCOMES.items()},
        staff_outcomes={k: _tr(request)(v) for k, v in STAFF_OUTCOMES.items()},
        extendable=[(c, _clock_name(request, c)) for c in extendable],
        categories=[(c.id, c.en if language == "en" else c.zh) for c in CATEGORIES],
        today=request.app[QUERIES].today(),
        fact_labels={k: _(v) for k, v in FACT_LABELS.items()},
        filed_choices={k: _(v) for k, v in YES_NO.items()},
        filed_default=_yes_no(ClosingFacts().validated(case.outcome).filed),
        closing=_closing_rows(request, case) if case.status == Status.CLOSED else [],
    )


def _yes_no(value: bool | None) -> str:
    """The key of YES_NO for a yes/no/not stated value."""
    return next(choice for choice, known in YES_NO_VALUES.items() if known is value)


def _closing_rows(request: web.Request, case) -> list[tuple[str, str]]:
    """The facts recorded at close as (label, text), for the case page's 结案信息."""
    _ = _tr(request)
    unstated = _(YES_NO[""])

    def count(value: int | None) -> str:
        return unstated if value is None else str(value)

    def money(fen: int | None) -> str:
        return unstated if fen is None else format_yuan(fen)

    return [
        (_(FACT_LABELS["filed"]), _(YES_NO[_yes_no(case.filed)])),
        (_(FACT_LABELS["fine_yuan"]), money(case.fine_fen)),
        (_(FACT_LABELS["confiscation_yuan"]), money(case.confiscation_fen)),
        (_(FACT_LABELS["judicial_referral"]), _(YES_NO[_yes_no(bool(case.judicial_referral))])),
        (_(FACT_LABELS["takedowns"]), count(case.takedowns)),
        (_(FACT_LABELS["accounts_disposed"]), count(case.accounts_disposed)),
        (_(FACT_LABELS["sites_closed"]), count(case.sites_closed)),
    ]


async def evidence_file(request: web.Request) -> web.StreamResponse:
    """The copy of an evidence file staff see: an image without its location and other metadata."""
    principal = _require(request)
    found = await _case_evidence(request, principal)
    if found is None:
        return _not_found(request, principal)
    try:
        path = await request.app[CONTAINER].evidence.staff_copy(found.sha256, found.mime)
    except FileNotFoundError:
        return _not_found(request, principal)
    if path is None:  # an image that cannot be made safe is not shown as it is
        return _original_page(request, principal, found, status=409, no_safe_copy=True)
    return evidence_files.file_response(path, found, original=False)


async def evidence_original_page(request: web.Request) -> web.Response:
    """What the original is and that its download is audited, with the form to download it."""
    principal = _require(request)
    found = await _case_evidence(request, principal)
    if found is None or not request.app[CONTAINER].evidence.exists(found.sha256):
        return _not_found(request, principal)
    return _original_page(request, principal, found)


async def evidence_original(request: web.Request) -> web.StreamResponse:
    """The file exactly as uploaded (metadata and all), on an explicit request, in the audit log."""
    principal = _require(request)
    found = await _case_evidence(request, principal)
    if found is None:
        return _not_found(request, principal)
    container = request.app[CONTAINER]
    path = container.evidence.path_for(found.sha256)
    if not path.is_file():
        return _not_found(request, principal)
    await evidence_files.audit_original(container.uow, container.clock, found, principal.id, via="console")
    log.info("console original evidence %s of %s downloaded by %s", found.sha256[:12], found.number,
             principal.username)
    return evidence_files.file_response(path, found, original=True)


async def _case_evidence(request: web.Request, principal: Principal) -> evidence_files.CaseEvidence | None:
    number, sha256 = request.match_info["number"][:32], request.match_info["sha256"]
    return await evidence_files.find(request.app[CONTAINER].uow, case_scope(principal), number, sha256)


def _original_page(request: web.Request, principal: Principal, found: evidence_files.CaseEvidence, *,
                   status: int = 200, no_safe_copy: bool = False) -> web.Response:
    base = f"/cases/{quote(found.number)}"
    return _page(request, principal, "evidence_original.html", status=status, evidence=found,
                 no_safe_copy=no_safe_copy, case_href=base, action=f"{base}/evidence/{found.sha256}/original")


def _refused(request: web.Request, principal: Principal, number: str, action: str, status: int, why: str) -> None:
    # the action and number come from the URL: repr() keeps a line break in them from forging a log line
    log.warning("console refused %s %s -> %d (%s) by %s(%s, unit %s) from %s", repr(action[:40])[1:-1],
                repr(number)[1:-1], status, why, principal.username, principal.role, principal.unit_code,
                request.remote)


async def case_action(request: web.Request) -> web.StreamResponse:
    principal = _require(request)
    _ = _tr(request)
    number, action = request.match_info["number"][:32], request.match_info["action"]
    detail = await request.app[QUERIES].detail(case_scope(principal), number)
    if detail is None or action not in CONSOLE_ACTIONS:
        _refused(request, principal, number, action, 404, "no such case in scope" if detail is None else "no such action")
        return _not_found(request, principal)
    here = f"/cases/{quote(detail.case.number)}"
    if not _permitted(principal, detail.unit_parts, action):
        _refused(request, principal, number, action, 403, "not permitted")
        return _error(request, principal, 403, _("无权操作"),
                      _("您没有对此案件执行“{action}”的权限。").format(action=_(ACTION_NAMES[action])), back=here)
    if not _legal(detail, action, _extendable(request, detail)):
        _refused(request, principal, number, action, 409, f"not possible when {detail.case.status}")
        return _illegal(request, principal, detail, action, here)
    post = await request.post()
    actor = Actor("staff", principal.id)
    try:
        await _perform(request, detail, action, post, actor, principal)
    except IllegalTransition:
        _refused(request, principal, number, action, 409, "illegal transition")
        return _illegal(request, principal, detail, action, here)
    except CaseNotFound:
        return _not_found(request, principal)
    except StaleDataError:
        _refused(request, principal, number, action, 409, "changed concurrently")
        return _error(request, principal, 409, _("案件已被他人修改"), _("请刷新页面后重试。"), back=here)
    except DomainError as exc:
        raise redirect_with_flash(request, here, _("操作未完成：") + str(exc), "error") from None
    raise redirect_with_flash(request, here, _(DONE[action]))


def _illegal(request, principal, detail: CaseDetail, action: str, back: str) -> web.Response:
    _ = _tr(request)
    case = detail.case
    status = Status(case.status)
    if action == "rate" and case.rated_at is not None:
        message = _("此案件已有满意度评价，不能再次记录。")
    elif action == "request_info" and status != Status.CLOSED:
        message = _("匿名举报人无法联系，不能要求补充材料。")
    else:
        message = _("案件状态为“{status}”，不能执行“{action}”。").format(
            status=_(STATUS_NAMES_ZH[status]), action=_(ACTION_NAMES[action]))
    return _error(request, principal, 409, _("当前状态不能执行此操作"), message, back=back)


def _subject_id(request: web.Request, post: MultiDictProxy) -> int:
    value = _field(post, "subject_id", 20)
    if not value.isascii() or not value.isdigit() or not 0 < int(value) <= MAX_SUBJECT_ID:
        raise DomainError(_tr(request)("请选择主体。"))
    return int(value)


def _closing_facts(request: web.Request, post: MultiDictProxy) -> ClosingFacts:
    """The close form's facts as typed; whether they fit the case (立案 and the outcome) is the service's to say."""
    filed = _field(post, "filed", 5)
    if filed not in YES_NO_VALUES:
        raise DomainError(_tr(request)("请选择是否立案。"))
    return ClosingFacts(
        filed=YES_NO_VALUES[filed],
        fine_fen=_typed_fen(request, post, "fine_yuan"),
        confiscation_fen=_typed_fen(request, post, "confiscation_yuan"),
        judicial_referral=_field(post, "judicial_referral", 5) == "1",
        takedowns=_typed_count(request, post, "takedowns"),
        accounts_disposed=_typed_count(request, post, "accounts_disposed"),
        sites_closed=_typed_count(request, post, "sites_closed"),
    )


def _typed(post: MultiDictProxy, name: str) -> str:
    """A typed number with full-width digits and punctuation made ASCII (NFKC), spaces dropped; never cut short."""
    value = post.get(name)
    return unicodedata.normalize("NFKC", value).replace(" ", "") if isinstance(value, str) else ""


def _typed_fen(request: web.Request, post: MultiDictProxy, name: str) -> int | None:
    """An amount typed in yuan ("1200", "1,200.50", "１２００", "¥1200元") in fen; blank: not stated."""
    _ = _tr(request)
    label = _(FACT_LABELS[name])
    text = _typed(post, name).removeprefix("¥").removesuffix("元")
    if not text:
        return None
    if text.startswith("-"):
        raise DomainError(_("{label}不能为负数。").format(label=label))
    if len(text) > MAX_TYPED or not YUAN.fullmatch(text):
        raise DomainError(_("{label}应为金额，例如 1200 或 1,200.50。").format(label=label))
    yuan, _point, cents = text.replace(",", "").partition(".")
    if len(cents) > 2:
        raise DomainError(_("{label}最多两位小数（精确到分）。").format(label=label))
    fen = int(yuan) * 100 + int(cents.ljust(2, "0"))
    if fen > MAX_AMOUNT_FEN:
        raise DomainError(_("{label}超出可记录的范围。").format(label=label))
    return fen


def _typed_count(request: web.Request, post: MultiDictProxy, name: str) -> int | None:
    text = _typed(post, name)
    if not text:
        return None
    if len(text) > MAX_TYPED or not text.isascii() or not text.isdigit() or int(text) > MAX_COUNT:
        _ = _tr(request)
        raise DomainError(_("{label}应为 0 到 {limit} 之间的整数。").format(label=_(FACT_LABELS[name]), limit=MAX_COUNT))
    return int(text)


async def _perform(request: web.Request, detail: CaseDetail, action: str, post: MultiDictProxy, actor: Actor,
                   principal: Principal) -> None:
    cases = request.app[CONTAINER].cases
    case_id = detail.case.id
    note = _field(post, "note", 2000) or None
    _ = _tr(request)
    if action == "accept":
        await cases.accept(case_id, actor, note)
    elif action == "reject":
        await cases.reject(case_id, actor, _field(post, "ground", 40), _field(post, "reply"))
    elif action == "transfer":
        if _field(post, "target", 20) == "authority":
            await cases.transfer(case_id, actor, authority=_field(post, "authority", 200) or None,
                                 scope=_field(post, "scope", 20) or None, note=note)
        else:
            await cases.transfer(case_id, actor, unit_code=_field(post, "unit", 40) or None, note=note)
    elif action == "start":
        await cases.start(case_id, actor, note)
    elif action == "resolve":
        await cases.resolve(case_id, actor, _field(post, "outcome", 40), _field(post, "reply"))
    elif action == "reply":
        await cases.reply(case_id, actor, _field(post, "body"))
    elif action == "close":
        await cases.close(case_id, actor, note, _closing_facts(request, post))
    elif action == "reopen":
        await cases.reopen(case_id, actor, _field(post, "reason", 2000))
    elif action == "extend":
        await cases.extend(case_id, actor, _field(post, "clock", 40), _field(post, "approval", 2000))
    elif action == "reclassify":
        await request.app[STORE].reclassify(case_id, principal.id, _field(post, "category", 32), note)
    elif action == "message":
        await cases.message(case_id, actor, _field(post, "body"))
    elif action == "request_info":
        await cases.request_information(case_id, actor, _field(post, "question"))
    elif action == "duplicate":
        original = _field(post, "original", 40).upper()
        if not original:
            raise DomainError(_("请填写原案件编号。"))
        if not await request.app[STORE].case_visible(case_scope(principal), original[:32]):
            raise DomainError(_("没有案件 {number}。").format(number=original))
        await cases.mark_duplicate(case_id, actor, original, _field(post, "reply"))
    elif action == "reassign":
        co_units = tuple(dict.fromkeys(v.strip()[:40] for v in post.getall("co_units", [])
                                       if isinstance(v, str) and v.strip()))
        if len(co_units) > 100:
            raise DomainError(_("协办单位太多。"))
        lead = _field(post, "lead", 40)
        if not lead:
            raise DomainError(_("请选择主办单位。"))
        current_lead = next((unit.code for unit, role in detail.units if role == "lead"), None)
        if lead == current_lead and {c for c in co_units if c != lead} == {
                unit.code for unit, role in detail.units if role == "co"}:
            raise DomainError(_("承办单位没有变化。"))
        await cases.reassign(case_id, actor, lead, co_units, note)
    elif action == "link_subject":
        await cases.link_subject(case_id, actor, _subject_id(request, post))
    elif action == "unlink_subject":
        await cases.unlink_subject(case_id, actor, _subject_id(request, post))
    elif action == "rate":
        score = _field(post, "score", 2)
        if score not in ("1", "2", "3", "4", "5"):
            raise DomainError(_("请选择 1 到 5 分。"))
        await cases.rate(case_id, actor, int(score), _field(post, "comment") or None)
