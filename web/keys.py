"""Typed keys of what the aiohttp application carries."""

from __future__ import annotations

import asyncio

from aiohttp import web

from intake.outbound import OutboundGuard
from intake.queries import CaseQueries
from qinglang.bootstrap import Container
from web.metrics import Metrics
from web.security import Authenticator, Principal

CONTAINER = web.AppKey("container", Container)
AUTH = web.AppKey("auth", Authenticator)
QUERIES = web.AppKey("queries", CaseQueries)
METRICS = web.AppKey("metrics", Metrics)
DRAINING = web.AppKey("draining", asyncio.Event)  # set once the app is shutting down: /readyz says 503
OUTBOUND = web.AppKey("outbound", OutboundGuard)  # checks callback URLs when API cases are created

SESSION_COOKIE = "qinglang_session"
PRINCIPAL = web.RequestKey("principal", Principal)  # the staff member asking, or None
# the urgent cases nobody has acknowledged, for the console's banner (web/console/urgent.py)
URGENT_BANNER = web.RequestKey("console_urgent_banner", list)
