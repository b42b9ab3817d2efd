"""The console's urgent-case banner: cases with a crisis signal that nobody has acknowledged yet.

Every console page a staff member opens lists the urgent cases they may see (web.access.case_scope)
that are not acknowledged; "已知悉" (POST, CSRF-checked by web.middlewares.csrf_middleware) records who
acknowledged it (CaseService.acknowledge_urgent, an audit event on the case) and the case leaves the
banner. The list is read by a middleware because pages are rendered synchronously.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from aiohttp import web
from sqlalchemy import select

from db.models import Case
from intake.cases import Actor, CaseNotFound
from intake.status import DomainError
from web.access import case_scope
from web.console.render import redirect_with_flash
from web.console.routes import _not_found, _principal, _require, _tr
from web.keys import CONTAINER, URGENT_BANNER

log = logging.getLogger("qinglang.console")

BANNER_LIMIT = 20  # the oldest unacknowledged first; more than this is a queue, not a banner
# pages that are not rendered console HTML: no banner query for them
NOT_CONSOLE = ("/api/", "/chat", "/static/", "/healthz", "/readyz", "/metrics", "/login", "/logout")


@dataclass(frozen=True)
class UrgentItem:
    number: str
    category: str
    received_at: datetime


async def unacknowledged(request: web.Request, principal) -> list[UrgentItem]:
    async with request.app[CONTAINER].uow() as uow:
        rows = await uow.session.execute(
            select(Case.number, Case.category, Case.received_at)
            .where(Case.urgent.is_(True), Case.urgent_acknowledged_at.is_(None), case_scope(principal))
            .order_by(Case.id).limit(BANNER_LIMIT)
        )
        return [UrgentItem(*row) for row in rows]


@web.middleware
async def urgent_banner_middleware(request: web.Request, handler):
    principal = _principal(request)
    if (principal is not None and request.method == "GET" and not request.path.startswith(NOT_CONSOLE)
            and "/evidence/" not in request.path):
        request[URGENT_BANNER] = await unacknowledged(request, principal)
    return await handler(request)


async def acknowledge(request: web.Request) -> web.StreamResponse:
    principal = _require(request)
    _ = _tr(request)
    number = request.match_info["number"][:32]
    container = request.app[CONTAINER]
    async with container.uow() as uow:
        case_id = await uow.session.scalar(select(Case.id).where(Case.number == number, case_scope(principal)))
    if case_id is None:
        return _not_found(request, principal)
    back = "/cases/" + number
    try:
        await container.cases.acknowledge_urgent(case_id, Actor("staff", principal.id))
    except (CaseNotFound, DomainError) as exc:
        log.info("refused acknowledge_urgent on %s by staff %s: %s", number, principal.id, exc)
        raise redirect_with_flash(request, back, str(exc), "error") from None
    raise redirect_with_flash(request, back, _("已知悉，紧急提示已从各页面撤下。"))


def register(app: web.Application) -> None:
    app.middlewares.append(urgent_banner_middleware)
    app.router.add_post("/cases/{number}/urgent/acknowledge", acknowledge)
