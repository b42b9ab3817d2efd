"""conversations encrypted at rest: the inbox's stored updates and errors, and the conversation drafts

What a person typed (their name and phone at those steps, every message of the web chat and of Telegram)
rested in clear in `inbox.payload`, `inbox.error` and `bot_states.data`. The JSON columns become TEXT holding
ciphertext (db/crypto.py, the purpose "<table>.<column>" authenticated with each value), encrypted in place
with the data key that db.migrate hands over; an update already handled keeps no payload at all (only its
ids, which drop a repeated delivery). After the commit db.migrate compacts the two tables (SQLite: VACUUM of
the whole file, then the write-ahead log emptied; PostgreSQL: VACUUM FULL), so no page of the database files
keeps the clear text the rows held before.

Downgrade decrypts back into JSON; a handled update's payload, gone, comes back as {}.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-09
"""

import json

from alembic import context, op
import sqlalchemy as sa

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None

INBOX = sa.table('inbox', sa.column('id'), sa.column('processed_at'), sa.column('payload', sa.Text()),
                 sa.column('error', sa.Text()))
DRAFTS = sa.table('bot_states', sa.column('key'), sa.column('data', sa.Text()))
REWRITTEN_TABLES = 'rewritten_tables'  # db.migrate.REWRITTEN_TABLES
BATCH = 1000


def upgrade() -> None:
    with op.batch_alter_table('inbox', schema=None) as batch_op:
        batch_op.alter_column('payload', existing_type=sa.JSON(), type_=sa.Text(), existing_nullable=False,
                              nullable=True, postgresql_using='payload::text')
    with op.batch_alter_table('bot_states', schema=None) as batch_op:
        batch_op.alter_column('data', existing_type=sa.JSON(), type_=sa.Text(), existing_nullable=False,
                              postgresql_using='data::text')
    connection = op.get_bind()
    # the web chat's wrong look-ups were counted in drafts' storage until 0013's rate_counters took over
    connection.execute(sa.delete(DRAFTS).where(DRAFTS.c.key.like('%"web-status-failures:%')))
    # handled: nothing of what was sent is needed any more
    connection.execute(sa.update(INBOX).where(INBOX.c.processed_at.is_not(None)).values(payload=None, error=None))
    _rewrite(connection, INBOX.c.id, {
        INBOX.c.payload: lambda cipher, text: cipher.encrypt(_canonical_json(text), 'inbox.payload'),
        INBOX.c.error: lambda cipher, text: cipher.encrypt(text, 'inbox.error'),
    })
    _rewrite(connection, DRAFTS.c.key, {
        DRAFTS.c.data: lambda cipher, text: cipher.encrypt(_canonical_json(text), 'bot_states.data'),
    })
    context.config.attributes.setdefault(REWRITTEN_TABLES, set()).update({'inbox', 'bot_states'})


def downgrade() -> None:
    connection = op.get_bind()
    _rewrite(connection, INBOX.c.id, {
        INBOX.c.payload: lambda cipher, text: cipher.decrypt(text, 'inbox.payload'),
        INBOX.c.error: lambda cipher, text: cipher.decrypt(text, 'inbox.error'),
    })
    connection.execute(sa.update(INBOX).where(INBOX.c.payload.is_(None)).values(payload='{}'))
    _rewrite(connection, DRAFTS.c.key, {
        DRAFTS.c.data: lambda cipher, text: cipher.decrypt(text, 'bot_states.data'),
    })
    with op.batch_alter_table('bot_states', schema=None) as batch_op:
        batch_op.alter_column('data', existing_type=sa.Text(), type_=sa.JSON(), existing_nullable=False,
                              postgresql_using='data::json')
    with op.batch_alter_table('inbox', schema=None) as batch_op:
        batch_op.alter_column('payload', existing_type=sa.Text(), type_=sa.JSON(), existing_nullable=True,
                              nullable=False, postgresql_using='payload::json')


def _canonical_json(text: str) -> str:
    """The stored JSON as db.types.EncryptedJSON writes a value."""
    return json.dumps(json.loads(text), separators=(',', ':'))


def _rewrite(connection, key: sa.ColumnClause, transforms: dict) -> None:
    """Every non-NULL value of the given columns through its transform, BATCH rows at a time in key order."""
    table = key.table
    columns = list(transforms)
    cipher, after = None, None
    while True:
        query = (sa.select(key, *columns).where(sa.or_(*(c.is_not(None) for c in columns)))
                 .order_by(key).limit(BATCH))
        rows = connection.execute(query if after is None else query.where(key > after)).all()
        if not rows:
            return
        cipher = cipher or _cipher()
        after = rows[-1][0]
        update = (sa.update(table).where(key == sa.bindparam('row_key'))
                  .values({c.name: sa.bindparam(f'new_{c.name}') for c in columns}))
        connection.execute(update, [
            {'row_key': row[0], **{f'new_{c.name}': None if value is None else transforms[c](cipher, value)
                                   for c, value in zip(columns, row[1:])}}
            for row in rows])


def _cipher():
    cipher = context.config.attributes.get('data_cipher')
    if cipher is None:
        raise RuntimeError('the inbox or the conversation drafts hold personal data and no data key was given: '
                           'migrate through `qinglang migrate`, which loads QINGLANG_DATA_KEY (or the key file in '
                           'the data dir)')
    return cipher
