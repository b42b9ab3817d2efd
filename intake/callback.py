"""Notices to the originating system of an API case (e.g. the 12345 hotline platform): a JSON POST.

The receiver gets an `Idempotency-Key` header and the same key in the body; a retry after a timeout
carries the same key, so the receiver can drop the repeat (documented in the OpenAPI description).

Every request goes through the outbound policy (intake/outbound.py): the URL is checked again at each send
and the connection is made only to an address the policy's resolver checked; redirects are not followed.
A refusal is `Undeliverable("refused by policy: ...")` and nothing is sent. What is recorded of a failure
is the status code or the exception's type, never the remote text (the full error goes to the log).
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp

from intake.delivery import Delivered, Outgoing, Result, Retry, Undeliverable
from intake.outbound import REFUSED, OutboundGuard, OutboundPolicy, OutboundRefused

log = logging.getLogger(__name__)


class CallbackTransport:
    def __init__(self, timeout: float = 10.0, guard: OutboundGuard | None = None) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._guard = guard or OutboundGuard(OutboundPolicy())  # the production default: public https only
        self._session: aiohttp.ClientSession | None = None

    async def send(self, item: Outgoing) -> Result:
        if not item.recipient:
            return Undeliverable("no callback URL for this case: call the complainant")
        try:
            destination = self._guard.policy.destination(item.recipient)
        except OutboundRefused as exc:
            return Undeliverable(str(exc))
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout, connector=self._guard.connector(),
                                                  cookie_jar=aiohttp.DummyCookieJar())
        body = {
            "idempotency_key": item.idempotency_key,
            "case": item.case_number,
            "event": item.template,
            "language": item.language,
            "text": item.notice.text,
            "facts": item.facts,
        }
        try:
            async with self._session.post(destination.url, json=body, allow_redirects=False,
                                          headers={"Idempotency-Key": item.idempotency_key}) as response:
                status = response.status
                retry_after = response.headers.get("Retry-After")
        except OutboundRefused as exc:  # from the policy's resolver: the host resolves to a refused address
            return Undeliverable(str(exc))
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            log.warning("callback for notice %s to %s failed: %r", item.id, destination.host, exc)
            return Retry(f"callback failed: {type(exc).__name__}")
        if 200 <= status < 300:
            return Delivered()
        if 300 <= status < 400:
            return Undeliverable(f"{REFUSED}: the receiver redirected ({status}); redirects are not followed")
        if status in (408, 429) or status >= 500:
            return Retry(f"callback answered {status}", after=_seconds(retry_after))
        return Undeliverable(f"callback answered {status}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        await self._guard.close()


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None
