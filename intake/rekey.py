"""Key rotation, the second half: rewrite every stored identity under the current data key, after which
the old keys can leave QINGLANG_OLD_DATA_KEYS."""

from __future__ import annotations

from sqlalchemy import Text, or_, select, type_coerce
from sqlalchemy.orm.attributes import flag_modified

from db.crypto import DataCipher
from db.models import Complainant
from db.uow import UnitOfWorkFactory

BATCH = 500
FIELDS = ("name", "phone", "email")


async def reencrypt_personal_data(uow: UnitOfWorkFactory, cipher: DataCipher) -> int:
    """Rewrite the complainants that hold a value under another key than `cipher`'s current one (the
    cipher bound to the engine behind `uow`); returns how many. Safe to repeat or interrupt."""
    stored = [type_coerce(getattr(Complainant, f), Text) for f in FIELDS]  # the ciphertext, not decrypted
    rewritten, after = 0, 0
    while True:
        async with uow() as work:
            rows = (await work.session.execute(
                select(Complainant.id, *stored).where(Complainant.id > after, or_(*(s.is_not(None) for s in stored)))
                .order_by(Complainant.id).limit(BATCH))).all()
            if not rows:
                return rewritten
            after = rows[-1][0]
            stale = [row[0] for row in rows if any(v is not None and not cipher.is_current(v) for v in row[1:])]
            for person in (await work.session.scalars(select(Complainant).where(Complainant.id.in_(stale)))).all():
                for field in FIELDS:
                    flag_modified(person, field)
            await work.commit()
            rewritten += len(stale)
