"""Notices to the originating system of an API case (e.g. the 12345 hotline platform): a JSON POST.

The receiver gets an `Idempotency-Key` header and the same key in the body; a retry after a timeout
carries the same key, so the receiver can drop the repeat (documented in the OpenAPI description).
"""

from __future__ import annotations

import asyncio

import aiohttp

from intake.delivery import Delivered, Outgoing, Result, Retry, Undeliverable


class CallbackTransport:
    def __init__(self, timeout: float = 10.0) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def send(self, item: Outgoing) -> Result:
        if not item.recipient or not item.recipient.startswith(("http://", "https://")):
            return Undeliverable("no callback URL for this case: call the complainant")
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        body = {
            "idempotency_key": item.idempotency_key,
            "case": item.case_number,
            "event": item.template,
            "language": item.language,
            "text": item.notice.text,
            "facts": item.facts,
        }
        try:
            async with self._session.post(item.recipient, json=body,
                                          headers={"Idempotency-Key": item.idempotency_key}) as response:
                status = response.status
                retry_after = response.headers.get("Retry-After")
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            return Retry(f"callback failed: {type(exc).__name__}: {exc}"[:500])
        if 200 <= status < 300:
            return Delivered()
        if status in (408, 429) or status >= 500:
            return Retry(f"callback answered {status}", after=_seconds(retry_after))
        return Undeliverable(f"callback answered {status}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None
