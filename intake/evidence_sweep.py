"""The daily removal of evidence uploads nothing refers to (and of interrupted uploads' leftovers).

A file of the evidence store is referred to by
- a case: a row of `evidence` with its sha256;
- a conversation draft: the FSM data of the bot or the web chat holds the draft, whose evidence list
  (intake/draft.py `Draft.evidence`, filled by ConversationEngine._attachment) is
  `{"draft": {"evidence": [{"sha256": ...}, ...]}}`; in the table `bot_states` (read through the ORM,
  which decrypts it) and, with QINGLANG_REDIS_URL, the bot's drafts in Redis (`qinglang:fsm:*:data`);
- a web chat message not handled yet: its inbox row's payload `{"attachment": {"sha256": ...}}` (a
  failed handling is replayed later; the payload is emptied once the message is handled).
Any "sha256" key anywhere in a draft or a payload counts, so a digest kept at a new place is covered too.

A file nothing refers to goes once no put has stored or claimed it for the grace period
(QINGLANG_UNREFERENCED_GRACE_HOURS): a person may send a screenshot and tell the rest days later.

Why this cannot remove a file a submission relies on: drafts and inbox messages are read before the
evidence rows, and a submission writes the case's evidence rows before it drops the draft, so a draft
gone by the time drafts are read has left rows the later read sees. Every other way to a reference
goes through a put of the file, which claims it (a fresh mtime) and so keeps it. Right before a file is
removed, while it is moved aside, its evidence rows are asked once more (EvidenceStore.sweep).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from db.models import BotState, Evidence, InboxUpdate
from db.uow import UnitOfWorkFactory
from intake.clock import Clock
from intake.evidence import EvidenceStore, SweepResult

if TYPE_CHECKING:
    from db.crypto import DataCipher
    from qinglang.bootstrap import Container

log = logging.getLogger(__name__)

_SHA256 = re.compile(r"[0-9a-f]{64}")
_PAGE = 500


class RedisDrafts:
    """The digests in the bot's drafts in Redis, decrypted with the data key."""

    def __init__(self, url: str, cipher: DataCipher, *, prefix: str | None = None) -> None:
        self._url = url
        self._cipher = cipher
        self._prefix = prefix

    async def digests(self) -> set[str]:
        from redis.asyncio import Redis

        from bot.storage import REDIS_PREFIX, SealedJson, redis_connection_options

        sealed = SealedJson(self._cipher)
        found: set[str] = set()
        client = Redis.from_url(self._url, **redis_connection_options())
        try:
            async for name in client.scan_iter(match=f"{self._prefix or REDIS_PREFIX}:*:data", count=_PAGE):
                stored = await client.get(name)
                if stored is not None:
                    _collect(sealed.loads(stored.decode() if isinstance(stored, bytes) else stored), found)
        finally:
            await client.aclose()
        return found


class EvidenceSweep:
    def __init__(self, store: EvidenceStore, uow: UnitOfWorkFactory, clock: Clock, grace: timedelta, *,
                 redis_drafts: RedisDrafts | None = None) -> None:
        self._store = store
        self._uow = uow
        self._clock = clock
        self._grace = grace
        self._redis_drafts = redis_drafts

    async def run(self, *, dry_run: bool = False) -> SweepResult:
        result = await self._store.sweep(self._clock.now(), self._grace, references=self.references,
                                         referenced=self.referenced_by_a_case, dry_run=dry_run)
        log.info("evidence sweep%s: %d unreferenced files (%d bytes), %d leftovers of interrupted uploads",
                 " (dry run)" if dry_run else "", result.files, result.bytes, result.incoming)
        return result

    async def references(self, candidates: list[str]) -> set[str]:
        """The candidates a draft, a message not handled yet, or a case refers to (in this order: see above)."""
        wanted = set(candidates)
        found = wanted & await self.draft_references()
        rest = sorted(wanted - found)
        for start in range(0, len(rest), _PAGE):
            async with self._uow() as uow:
                found |= set((await uow.session.scalars(
                    select(Evidence.sha256).where(Evidence.sha256.in_(rest[start:start + _PAGE])).distinct()
                )).all())
        return found

    async def draft_references(self) -> set[str]:
        found: set[str] = set()
        last_key = ""
        while True:
            async with self._uow() as uow:
                rows = (await uow.session.execute(
                    select(BotState.key, BotState.data).where(BotState.key > last_key)
                    .order_by(BotState.key).limit(_PAGE))).all()
            for key, data in rows:
                _collect(data, found)
                last_key = key
            if len(rows) < _PAGE:
                break
        last_id = 0
        while True:
            async with self._uow() as uow:
                rows = (await uow.session.execute(
                    select(InboxUpdate.id, InboxUpdate.payload)
                    .where(InboxUpdate.payload.is_not(None), InboxUpdate.id > last_id)
                    .order_by(InboxUpdate.id).limit(_PAGE))).all()
            for row_id, payload in rows:
                _collect(payload, found)
                last_id = row_id
            if len(rows) < _PAGE:
                break
        if self._redis_drafts is not None:
            found |= await self._redis_drafts.digests()
        return found

    async def referenced_by_a_case(self, sha256: str) -> bool:
        return await referenced_by_a_case(self._uow, sha256)


async def referenced_by_a_case(uow: UnitOfWorkFactory, sha256: str) -> bool:
    """Whether an evidence row (of any case) names this file: for EvidenceStore.discard(referenced=...)."""
    async with uow() as session_uow:
        found = await session_uow.session.scalar(select(Evidence.id).where(Evidence.sha256 == sha256).limit(1))
    return found is not None


def build_evidence_sweep(container: Container) -> EvidenceSweep:
    settings = container.settings
    redis_drafts = None
    if settings.redis.redis_url is not None:
        from db.crypto import bound_cipher

        redis_drafts = RedisDrafts(settings.redis.redis_url.get_secret_value(), bound_cipher(container.engine))
    return EvidenceSweep(container.evidence, container.uow, container.clock, settings.storage.unreferenced_grace,
                         redis_drafts=redis_drafts)


def _collect(value: Any, into: set[str]) -> None:
    """Every string under a "sha256" key, at any depth of a JSON value."""
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        children: Iterable[Any]
        if isinstance(item, dict):
            digest = item.get("sha256")
            if isinstance(digest, str) and _SHA256.fullmatch(digest):
                into.add(digest)
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        stack.extend(child for child in children if isinstance(child, (dict, list)))
