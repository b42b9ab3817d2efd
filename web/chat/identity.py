"""Who is chatting: an unguessable random token in the HttpOnly cookie `qinglang_chat`.

The database never sees the token: the citizen is `Person("web", sha256(token))`, and the drafts are
stored under a key built from that hash. The CSRF token of the chat's forms is derived from the cookie
token too (double submit: an attacker's page can neither read the cookie nor compute the token), and
every POST must also come from this site according to its Origin (or, without one, its Referer) header.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import ipaddress
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiogram.fsm.storage.base import StorageKey
from aiohttp import web

COOKIE = "qinglang_chat"
COOKIE_PATH = "/chat"
COOKIE_MAX_AGE = 180 * 24 * 3600  # a draft and the /status list live as long as the cookie
CHANNEL = "web"
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{43}$")  # secrets.token_urlsafe(32)


@dataclass(frozen=True)
class ChatIdentity:
    token: str  # the cookie's value: never stored, never logged
    new: bool = False  # the cookie must be set on the response

    @property
    def user_id(self) -> str:
        """Person.user_id and the complainant's channel_user_id: sha256 hex of the token."""
        return hashlib.sha256(self.token.encode()).hexdigest()

    @property
    def csrf_token(self) -> str:
        return hashlib.sha256(b"qinglang-chat-csrf\0" + self.token.encode()).hexdigest()

    @property
    def storage_key(self) -> StorageKey:
        return storage_key_of(self.user_id)

    def csrf_matches(self, given: str | None) -> bool:
        # bytes: compare_digest refuses non-ASCII str (a forged token must not end in a 500)
        return bool(given) and hmac.compare_digest(self.csrf_token.encode(), given.encode())


def storage_key_of(user_id: str) -> StorageKey:
    """The FSM storage key of a web chat person. bot_id 0 is never a Telegram bot, and the full hash in
    `destiny` keeps two people apart even if the 60-bit number (shown as chat and user id) collides."""
    number = int(user_id[:15], 16)
    return StorageKey(bot_id=0, chat_id=number, user_id=number, destiny=f"web:{user_id}")


def identity_of(request: web.Request) -> ChatIdentity | None:
    token = request.cookies.get(COOKIE)
    return ChatIdentity(token) if token and _TOKEN.match(token) else None


def identity_or_new(request: web.Request) -> ChatIdentity:
    return identity_of(request) or ChatIdentity(secrets.token_urlsafe(32), new=True)


def set_cookie(request: web.Request, response: web.StreamResponse, identity: ChatIdentity) -> None:
    if identity.new:
        response.set_cookie(COOKIE, identity.token, max_age=COOKIE_MAX_AGE, path=COOKIE_PATH, httponly=True,
                            samesite="Lax", secure=secure_cookies(request))


def secure_cookies(request: web.Request) -> bool:
    """Secure when the request came over https, or when the settings say the site is (behind a proxy)."""
    from web.keys import CONTAINER

    return request.secure or bool(request.app[CONTAINER].settings.web.cookie_secure)


def same_origin(request: web.Request) -> bool:
    """The POST comes from a page of this site: its Origin, else its Referer, names this host.

    Browsers send Origin with every form POST today and the app's Referrer-Policy (same-origin) keeps the
    Referer on same-site requests; a request with neither still needs the CSRF token. Only the host (and
    port) are compared: behind a TLS-terminating proxy the scheme seen here is not the browser's.
    """
    host = (request.host or "").lower()
    origin = request.headers.get("Origin")
    if origin is not None:
        return origin != "null" and _netloc(origin) == host
    referer = request.headers.get("Referer")
    if referer is not None:
        return _netloc(referer) == host
    return True


def client_ip(request: web.Request, trusted: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> str:
    """The citizen's address. When the request comes from a trusted reverse proxy (QINGLANG_TRUSTED_PROXIES)
    it is the last address that proxy appended to X-Forwarded-For; a client cannot forge that one. From
    anyone else the header is ignored: it is the connection's address."""
    remote = request.remote or "unknown"
    forwarded = request.headers.get("X-Forwarded-For")
    if forwarded and _among(remote, trusted):
        last = forwarded.split(",")[-1].strip()
        with contextlib.suppress(ValueError):
            return str(ipaddress.ip_address(last))
    return remote


def _among(address: str, networks: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:  # a dual-stack socket's view
        ip = ip.ipv4_mapped
    return any(ip.version == network.version and ip in network for network in networks)


def _netloc(url: str) -> str | None:
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https"):
        return None
    return parts.netloc.lower()
