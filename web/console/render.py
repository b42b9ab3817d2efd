"""Rendering for the console: Jinja2 environments per language, flash messages, cookies, formatting.

Autoescape is on for every template; texts are gettext message ids in Simplified Chinese. gettext is
installed old-style, so a translation is plain text and is escaped like any other value (a translator
cannot inject markup); placeholders use str.format: `_("共 {n} 件").format(n=count)`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import jinja2
from aiohttp import web

from qinglang.i18n import DEFAULT_LANGUAGE, LANGUAGES, language_of, translations

TEMPLATES = Path(__file__).parent / "templates"
LANG_COOKIE = "qinglang_lang"
FLASH_COOKIE = "qinglang_flash"
LOGIN_CSRF_COOKIE = "qinglang_login_csrf"
FLASH_MAX = 600  # characters of one flash message (a cookie holds about 4 KB)


@dataclass(frozen=True)
class Flash:
    kind: str  # ok | error
    text: str


class CookieSigner:
    """HMAC signatures for the console's own small cookies (flash, login CSRF).

    The key is the configured secret (QINGLANG_SECRET_KEY) so that replicas agree; without one a random
    per-process key is used, which only means a flash can be lost when the redirect lands on another
    replica and a login form must be reloaded after a restart.
    """

    def __init__(self, secret: str | None) -> None:
        raw = secret.encode() if secret else secrets.token_bytes(32)
        self._key = hashlib.sha256(b"qinglang-console\0" + raw).digest()

    def sign(self, purpose: str, value: str) -> str:
        mac = hmac.new(self._key, f"{purpose}\0{value}".encode(), hashlib.sha256).digest()
        return value + "." + base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def unsign(self, purpose: str, signed: str | None) -> str | None:
        if not signed or "." not in signed:
            return None
        value, _, _mac = signed.rpartition(".")
        return value if hmac.compare_digest(self.sign(purpose, value), signed) else None


# -- language ---------------------------------------------------------------------------------------


def request_language(request: web.Request) -> str:
    """?lang= first (remembered in a cookie by `render`), then the cookie, then Accept-Language."""
    asked = request.query.get("lang")
    if asked in LANGUAGES:
        return asked
    cookie = request.cookies.get(LANG_COOKIE)
    if cookie in LANGUAGES:
        return cookie
    return _accept_language(request.headers.get("Accept-Language", ""))


def _accept_language(header: str) -> str:
    best, best_q = DEFAULT_LANGUAGE, -1.0
    for position, part in enumerate(header.split(",")[:20]):
        code, _, params = part.strip().partition(";")
        if not code or code == "*":
            continue
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        primary = code.lower().split("-")[0]
        if primary not in ("zh", "en"):
            continue
        if q > best_q:  # the earliest wins among equal qualities
            best, best_q = language_of(primary), q
    return best


def gettext_for(language: str):
    return translations(language).gettext


# -- templates --------------------------------------------------------------------------------------


@cache
def environment(language: str) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        extensions=["jinja2.ext.i18n"],
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.install_gettext_translations(translations(language), newstyle=False)  # type: ignore[attr-defined]
    env.filters.update(
        yuan=format_yuan,
        amount=format_amount,
        filesize=format_size,
        mask_phone=mask_phone,
        percent=lambda v: "" if v is None else f"{v * 100:.0f}%",
        event_value=format_event_value,
    )
    return env


def render(request: web.Request, template: str, context: dict[str, Any], *, status: int = 200) -> web.Response:
    language = request_language(request)
    tz: ZoneInfo = context.get("tz") or ZoneInfo("Asia/Shanghai")
    base = {
        "lang": language,
        "request_path": request.path,
        "query": request.query,
        "flash": pop_flash(request),
        "local": lambda moment, fmt="%Y-%m-%d %H:%M": format_local(moment, tz, fmt),
        "day": format_day,
        "lang_href": lambda code: _with_lang(request, code),
    }
    body = environment(language).get_template(template).render({**base, **context})
    response = web.Response(text=body, status=status, content_type="text/html", charset="utf-8")
    response.headers["Cache-Control"] = "no-store"
    if request.query.get("lang") in LANGUAGES and request.cookies.get(LANG_COOKIE) != request.query["lang"]:
        response.set_cookie(LANG_COOKIE, request.query["lang"], max_age=365 * 86400, path="/", httponly=True,
                            samesite="Lax", secure=request.secure)
    if request.get(FLASH_SEEN):
        response.del_cookie(FLASH_COOKIE, path="/")
    return response


def _with_lang(request: web.Request, code: str) -> str:
    pairs = [(k, v) for k, v in request.query.items() if k != "lang"] + [("lang", code)]
    return request.path + "?" + urlencode(pairs)


# -- flash messages (Post/Redirect/Get) --------------------------------------------------------------


def redirect_with_flash(request: web.Request, location: str, text: str, kind: str = "ok") -> web.HTTPSeeOther:
    signer: CookieSigner = request.app[SIGNER]
    payload = base64.urlsafe_b64encode(json.dumps({"k": kind, "t": text[:FLASH_MAX]}).encode()).decode()
    response = web.HTTPSeeOther(location)
    response.set_cookie(FLASH_COOKIE, signer.sign("flash", payload), max_age=120, path="/", httponly=True,
                        samesite="Lax", secure=secure_cookies(request))
    return response


def pop_flash(request: web.Request) -> Flash | None:
    raw = request.cookies.get(FLASH_COOKIE)
    if raw is None:
        return None
    request[FLASH_SEEN] = True
    payload = request.app[SIGNER].unsign("flash", raw)
    if payload is None:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(payload.encode()))
        return Flash("error" if data.get("k") == "error" else "ok", str(data["t"])[:FLASH_MAX])
    except (ValueError, KeyError, TypeError):
        return None


def secure_cookies(request: web.Request) -> bool:
    """Secure cookies when the request came over https, or when the settings say the site is https."""
    from web.keys import CONTAINER

    web_settings = request.app[CONTAINER].settings.web
    return request.secure or bool(getattr(web_settings, "cookie_secure", False))


# -- formatting -------------------------------------------------------------------------------------


def format_local(moment: datetime | None, tz: ZoneInfo, fmt: str = "%Y-%m-%d %H:%M") -> str:
    if moment is None:
        return ""
    return moment.astimezone(tz).strftime(fmt)


def format_day(day: date | None) -> str:
    return day.isoformat() if day else ""


def format_amount(fen: int | None) -> str:
    """An amount in fen as yuan with thousands separators and two decimals: 16,000.00."""
    if fen is None:
        return ""
    return f"{fen // 100:,}.{fen % 100:02d}"


def format_yuan(fen: int | None) -> str:
    return "" if fen is None else "¥" + format_amount(fen)


def format_size(size: int | None) -> str:
    if size is None:
        return ""
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def format_event_value(value: Any) -> str:
    """A value of an audit event's data as plain text (escaped by the template like any other):
    lists joined with 、, mappings as `key=value` pairs, e.g. a reassignment's from/to."""
    if isinstance(value, dict):
        return "; ".join(f"{key}={format_event_value(item)}" for key, item in value.items()
                         if item is not None and item != [])
    if isinstance(value, (list, tuple)):
        return "、".join(format_event_value(item) for item in value)
    return str(value)


def mask_phone(phone: str | None) -> str:
    """138****8000: enough to tell two callers apart, not enough to call."""
    if not phone:
        return ""
    digits = "".join(ch for ch in phone if ch.isdigit())
    if len(digits) >= 7:
        return digits[:3] + "****" + digits[-4:]
    if len(digits) >= 2:
        return "*" * (len(digits) - 2) + digits[-2:]
    return "****"


SIGNER = web.AppKey("console_signer", CookieSigner)
FLASH_SEEN = web.RequestKey("console_flash_seen", bool)
