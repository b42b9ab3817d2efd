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

Why this cannot remove a file a submission relies on: a reference moves one way, from a web chat
message not handled yet to a draft (ChatService._process writes the draft, then the inbox empties the
payload) and from a draft to the case's evidence rows (a submission writes the rows before it drops the
draft). The sweep reads in that order: inbox payloads, then drafts in the database, then drafts in Redis,
then evidence rows. A reference is written to its next place before it leaves the one before, so when a
place is read the reference is in it or in a place read later: one of the reads sees it. Every other way
to a reference goes through a put of the file, which claims it (a fresh mtime, or a fresh copy) and so
keeps it. Right before a file is removed, while it is moved aside, its evidence rows are asked once more
(EvidenceStore.sweep).
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import InstrumentedAttribute

from db.drafts import REDIS_PREFIX, SealedJson, draft_names, redis_client, stored_text
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
        self._prefix = prefix or REDIS_PREFIX

    async def digests(self) -> set[str]:
        sealed = SealedJson(self._cipher)
        found: set[str] = set()
        client = redis_client(self._url)
        try:
            async for name in draft_names(client, prefix=self._prefix):
                stored = await client.get(name)
                if stored is not None:
                    _collect(sealed.loads(stored_text(stored)), found)
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
        """The candidates a message not handled yet, a draft or a case refers to, read in the order a
        reference moves (see above): messages, drafts in the database, drafts in Redis, evidence rows."""
        wanted = set(candidates)
        found: set[str] = set()
        async for payload in self._column(InboxUpdate.id, InboxUpdate.payload, InboxUpdate.payload.is_not(None)):
            _collect(payload, found)
        async for data in self._column(BotState.key, BotState.data):
            _collect(data, found)
        if self._redis_drafts is not None:
            found |= await self._redis_drafts.digests()
        found &= wanted
        rest = sorted(wanted - found)
        for start in range(0, len(rest), _PAGE):
            async with self._uow() as uow:
                found |= set((await uow.session.scalars(
                    select(Evidence.sha256).where(Evidence.sha256.in_(rest[start:start + _PAGE])).distinct()
                )).all())
        return found

    async def _column(self, key: InstrumentedAttribute, value: InstrumentedAttribute,
                      *where: ColumnElement[bool]) -> AsyncIterator[Any]:
        """Every `value` of the table, in pages ordered by its unique `key`, one short transaction a page."""
        last = None
        while True:
            query = select(key, value).where(*where).order_by(key).limit(_PAGE)
            if last is not None:
                query = query.where(key > last)
            async with self._uow() as uow:
                rows = (await uow.session.execute(query)).all()
            for _, item in rows:
                yield item
            if len(rows) < _PAGE:
                return
            last = rows[-1][0]

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
