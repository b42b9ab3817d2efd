"""The web chat's limits on anonymous visitors, counted with intake/counters.py (QINGLANG_LOOKUP_*,
QINGLANG_STATUS_POST*, QINGLANG_UPLOAD_*; LimitSettings).

- Status look-ups: every try (case number + access code) is counted per client address, per chat cookie
  and per case number before the access code is hashed, all three or none; over any of them the page
  answers "too many tries" until that window ends. A guesser with many addresses still has the case's
  tries only.
- The status page's posts (answers, ratings) per chat cookie.
- Files sent in the chat, before any complaint exists: files and bytes per cookie, per address and for
  all visitors together, per day. The files and the bytes a request announces (Content-Length) are
  counted before the file is read; afterwards the count is corrected to the bytes stored. A file streamed
  without a length may use at most what is left, and its bytes are counted once it is stored (a file
  that no longer fits is then removed again).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import timedelta

from intake.clock import Clock
from intake.counters import Count, Limit, RateCounters, Taken
from qinglang.settings import LimitSettings

DAY = timedelta(days=1)
FILES = ("upload-files-chat", "upload-files-ip", "upload-files-all")
BYTES = ("upload-bytes-chat", "upload-bytes-ip", "upload-bytes-all")


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
    def __init__(self, counters: RateCounters, settings: LimitSettings, clock: Clock) -> None:
        self.counters = counters
        self.clock = clock
        self.settings = settings
        window = settings.lookup_window
        self.lookup_address = Limit("lookup-ip", settings.lookup_tries_per_address, window)
        self.lookup_cookie = Limit("lookup-chat", settings.lookup_tries_per_cookie, window)
        self.lookup_case = Limit("lookup-case", settings.lookup_tries_per_case, window)
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

    async def lookup(self, ip: str, user_id: str, number: str) -> Taken:
        """One look-up try, counted before the code is checked."""
        counts = [Count(self.lookup_address, f"ip:{ip}"), Count(self.lookup_cookie, f"chat:{user_id}")]
        if number:
            counts.append(Count(self.lookup_case, f"case:{number}"))
        return await self.counters.take(*counts)

    def lookup_wait(self, taken: Taken) -> timedelta:
        """How long until the window of these tries ends (the look-up limits share one window)."""
        ends = max(start + count.limit.seconds for count, start in zip(taken.counts, taken.window_starts, strict=True))
        return timedelta(seconds=max(0.0, ends - self.clock.now().timestamp()))

    async def status_post(self, user_id: str) -> Taken:
        return await self.counters.take(Count(self.post_limit, f"chat:{user_id}"))

    # -- uploads before a complaint ------------------------------------------------------------------

    def _upload_counts(self, user_id: str, ip: str, files: int, size: int) -> list[Count]:
        subjects = (f"chat:{user_id}", f"ip:{ip}", "all")
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
        count, start = taken.counts[tightest], taken.window_starts[tightest]
        wait = timedelta(seconds=max(0.0, start + count.limit.seconds - self.clock.now().timestamp()))
        return dataclasses.replace(taken, allowed=False, refused_by=count, retry_after=wait)

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
