"""The web chat's limits on anonymous visitors, counted with intake/counters.py (QINGLANG_LOOKUP_*,
QINGLANG_STATUS_POST*, QINGLANG_UPLOAD_*; LimitSettings).

- Status look-ups: every try (case number + access code) is counted per client address, per chat cookie
  and per case number before the access code is hashed, all three or none; over any of them the page
  answers "too many tries" until that window ends. A guesser with many addresses still has the case's
  tries only. The case's count is skipped for a cookie that knows the case already (granted it before,
  or the one that filed it): strangers' wrong tries cannot lock its complainant out.
- The status page's posts (answers, ratings) per chat cookie.
- Files sent in the chat, before any complaint exists: files and bytes per cookie, per address and for
  all visitors together, per day. The files and the bytes a request announces (Content-Length) are
  counted before the file is read; afterwards the count is corrected to the bytes stored. A file streamed
  without a length may use at most what is left, and its bytes are counted once it is stored (a file
  that no longer fits is then removed again).

"Per address" is per IPv4 address, and per /64 network for IPv6 (address_subject): one IPv6 subscriber
is usually given a whole /64, whose 2^64 addresses would otherwise each have a budget of their own.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass
from datetime import timedelta

from intake.counters import Count, Limit, RateCounters, Taken
from qinglang.settings import LimitSettings

DAY = timedelta(days=1)
FILES = ("upload-files-chat", "upload-files-ip", "upload-files-all")
BYTES = ("upload-bytes-chat", "upload-bytes-ip", "upload-bytes-all")
IPV6_PREFIX = 64  # the least an IPv6 subscriber is given (one LAN); many get a /56 or a /48


def address_subject(address: str) -> str:
    """The subject of every per-address counter: an IPv4 address (also when written IPv4-mapped, as a
    dual-stack socket sees it), or the /64 network of an IPv6 address. Anything else (no peer address)
    is counted as itself."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return f"ip:{address}"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return f"ip:{ip.ipv4_mapped}"
        return f"ip:{ipaddress.IPv6Network((ip, IPV6_PREFIX), strict=False)}"
    return f"ip:{ip}"


@dataclass(frozen=True)
class UploadQuota:
    """What a chat upload took before its file was read: one file, and the bytes announced (at least one)."""

    taken: Taken
    reserved: int
    announced: bool  # the request said its length; else one byte was taken and the rest is counted after

    @property
    def allowed(self) -> bool:
        return self.taken.allowed

    @property
    def may_stream(self) -> int | None:
        """The most bytes the file may have within the quota; None: bounded by the length announced (a
        file over the evidence limit, of which only that limit was reserved, is the store's to refuse)."""
        return None if self.announced else self.reserved + self.taken.remaining(*BYTES)


class ChatLimits:
    def __init__(self, counters: RateCounters, settings: LimitSettings) -> None:
        self.counters = counters
        self.settings = settings
        window = settings.lookup_window
        self.lookup_address = Limit("lookup-ip", settings.lookup_tries_per_address, window)
        self.lookup_cookie = Limit("lookup-chat", settings.lookup_tries_per_cookie, window)
        # named to sort after the visitor's own two: counters.take goes in key order and stops at the first
        # refusal, so a refusal by the case's count means this visitor still had tries (is_case_limit)
        self.lookup_case = Limit("lookup-number", settings.lookup_tries_per_case, window)
        self.post_limit = Limit("status-post-chat", settings.status_posts_per_cookie, settings.status_post_window)
        self._files = (Limit(FILES[0], settings.upload_files_per_cookie, DAY),
                       Limit(FILES[1], settings.upload_files_per_address, DAY),
                       Limit(FILES[2], settings.upload_files_total, DAY))
        self._bytes = (Limit(BYTES[0], settings.upload_bytes_per_cookie, DAY),
                       Limit(BYTES[1], settings.upload_bytes_per_address, DAY),
                       Limit(BYTES[2], settings.upload_bytes_total, DAY))

    # -- status look-ups and posts -------------------------------------------------------------------

    @property
    def lookup_tries(self) -> int:
        """The tries one person has in a window (shown on the form)."""
        return min(self.lookup_address.limit, self.lookup_cookie.limit)

    @property
    def lookup_minutes(self) -> int:
        return max(1, self.lookup_address.seconds // 60)

    async def lookup(self, ip: str, user_id: str, number: str, *, known_case: bool = False) -> Taken:
        """One look-up try, counted before the code is checked; `known_case`: the cookie knows this case
        already, so the case's own count (which strangers' tries use up too) is not taken."""
        counts = [Count(self.lookup_address, address_subject(ip)), Count(self.lookup_cookie, f"chat:{user_id}")]
        if number and not known_case:
            counts.append(Count(self.lookup_case, f"case:{number}"))
        return await self.counters.take(*counts)

    def is_case_limit(self, taken: Taken) -> bool:
        """Refused by the case's tries, used up from elsewhere: this visitor's address and cookie had tries."""
        return taken.refused_by is not None and taken.refused_by.limit == self.lookup_case

    async def status_post(self, user_id: str) -> Taken:
        return await self.counters.take(Count(self.post_limit, f"chat:{user_id}"))

    # -- uploads before a complaint ------------------------------------------------------------------

    def _upload_counts(self, user_id: str, ip: str, files: int, size: int) -> list[Count]:
        subjects = (f"chat:{user_id}", address_subject(ip), "all")
        return ([Count(limit, subject, files) for limit, subject in zip(self._files, subjects, strict=True)]
                + [Count(limit, subject, size) for limit, subject in zip(self._bytes, subjects, strict=True)])

    async def reserve_upload(self, user_id: str, ip: str, announced: int | None) -> UploadQuota:
        """One file and the bytes announced (None: not said), before the file is read."""
        reserved = announced if announced else 1
        taken = await self.counters.take(*self._upload_counts(user_id, ip, 1, reserved))
        return UploadQuota(taken, reserved, bool(announced))

    async def settle_upload(self, quota: UploadQuota, user_id: str, ip: str, stored: int) -> Taken | None:
        """Count the bytes actually stored (0: nothing kept) instead of those reserved: None when that is
        done, else the refusal (the file no longer fits: the caller removes it)."""
        extra = stored - quota.reserved
        if extra < 0:
            await self.counters.give_back(quota.taken, {name: -extra for name in BYTES})
        elif extra > 0:
            taken = await self.counters.take(*self._upload_counts(user_id, ip, 0, extra))
            if not taken.allowed:
                return taken
        return None

    def over_stream(self, quota: UploadQuota) -> Taken:
        """The refusal of a file that streamed past `quota.may_stream`: by the tightest byte quota."""
        taken = quota.taken
        tightest = min((i for i, c in enumerate(taken.counts) if c.limit.name in BYTES), key=lambda i: taken.left[i])
        return dataclasses.replace(taken, allowed=False, refused_by=taken.counts[tightest])

    def is_own_quota(self, taken: Taken) -> bool:
        """Refused by the cookie's own quota (rather than its address's or everyone's)."""
        return taken.refused_by is not None and taken.refused_by.limit.name in (FILES[0], BYTES[0])

    def is_address_quota(self, taken: Taken) -> bool:
        return taken.refused_by is not None and taken.refused_by.limit.name in (FILES[1], BYTES[1])

    @property
    def upload_files_per_cookie(self) -> int:
        return self.settings.upload_files_per_cookie

    @property
    def upload_mb_per_cookie(self) -> int:
        return max(1, self.settings.upload_bytes_per_cookie // (1024 * 1024))
