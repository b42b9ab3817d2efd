"""Key rotation, the second half: rewrite every stored personal value under the current data key, after which
the old keys can leave QINGLANG_OLD_DATA_KEYS: the complainants' identity, the inbox's stored updates and
errors, and the conversation drafts (drafts kept in Redis: db/drafts.py, reencrypt_redis_drafts)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Text, or_, select, type_coerce
from sqlalchemy.orm.attributes import flag_modified

from db.crypto import DataCipher
from db.models import BotState, Complainant, InboxUpdate
from db.uow import UnitOfWorkFactory

BATCH = 500


@dataclass(frozen=True)
class Rekeyed:
    people: int = 0  # complainants rewritten
    inbox: int = 0  # stored updates
    drafts: int = 0  # conversation drafts in the database

    @property
    def total(self) -> int:
        return self.people + self.inbox + self.drafts


async def reencrypt_personal_data(uow: UnitOfWorkFactory, cipher: DataCipher) -> Rekeyed:
    """Rewrite the rows that hold a value under another key than `cipher`'s current one (the cipher bound to
    the engine behind `uow`); returns how many of each. Safe to repeat or interrupt, and to run beside the
    service: each batch locks its rows, so a draft changed meanwhile is not written back as it was."""
    return Rekeyed(
        people=await _rewrite(uow, cipher, Complainant, Complainant.id, ("name", "phone", "email")),
        inbox=await _rewrite(uow, cipher, InboxUpdate, InboxUpdate.id, ("payload", "error")),
        drafts=await _rewrite(uow, cipher, BotState, BotState.key, ("data",)),
    )


async def _rewrite(uow: UnitOfWorkFactory, cipher: DataCipher, model, key, fields: tuple[str, ...]) -> int:
    stored = [type_coerce(getattr(model, f), Text) for f in fields]  # the ciphertext, not decrypted
    rewritten, after = 0, None
    while True:
        async with uow() as work:
            query = (select(key, *stored).where(or_(*(s.is_not(None) for s in stored)))
                     .order_by(key).limit(BATCH).with_for_update())
            rows = (await work.session.execute(query if after is None else query.where(key > after))).all()
            if not rows:
                return rewritten
            after = rows[-1][0]
            stale = [row[0] for row in rows if any(v is not None and not cipher.is_current(v) for v in row[1:])]
            for item in (await work.session.scalars(select(model).where(key.in_(stale)))).all():
                for field in fields:
                    if getattr(item, field) is not None:
                        flag_modified(item, field)
            await work.commit()
            rewritten += len(stale)
