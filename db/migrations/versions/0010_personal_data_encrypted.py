"""personal data encrypted at rest: complainants' name, phone and e-mail become ciphertext (db/crypto.py)

The columns widen to TEXT and the rows already there are encrypted in place with the data key that
db.migrate hands over (the one bootstrap loads for the application); downgrade decrypts them back.
Either way a database holding personal data needs the key; an empty one migrates without.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from alembic import context, op
import sqlalchemy as sa

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

# (column, width before) ; the purpose is authenticated with each value: "complainants.<column>"
COLUMNS = (('name', 100), ('phone', 40), ('email', 200))
PEOPLE = sa.table('complainants', sa.column('id'), *(sa.column(name) for name, _ in COLUMNS))


def upgrade() -> None:
    with op.batch_alter_table('complainants', schema=None) as batch_op:
        for name, width in COLUMNS:
            batch_op.alter_column(name, existing_type=sa.String(length=width), type_=sa.Text(), existing_nullable=True)
    _rewrite(lambda cipher, value, purpose: cipher.encrypt(value, purpose))


def downgrade() -> None:
    _rewrite(lambda cipher, value, purpose: cipher.decrypt(value, purpose))
    with op.batch_alter_table('complainants', schema=None) as batch_op:
        for name, width in COLUMNS:
            batch_op.alter_column(name, existing_type=sa.Text(), type_=sa.String(length=width), existing_nullable=True)


def _rewrite(transform) -> None:
    connection = op.get_bind()
    names = [name for name, _ in COLUMNS]
    rows = connection.execute(
        sa.select(PEOPLE.c.id, *(PEOPLE.c[n] for n in names))
        .where(sa.or_(*(PEOPLE.c[n].is_not(None) for n in names))).order_by(PEOPLE.c.id)
    ).all()
    if not rows:
        return
    cipher = context.config.attributes.get('data_cipher')
    if cipher is None:
        raise RuntimeError('complainants hold personal data and no data key was given: migrate through '
                           '`qinglang migrate`, which loads QINGLANG_DATA_KEY (or the key file in the data dir)')
    update = (sa.update(PEOPLE).where(PEOPLE.c.id == sa.bindparam('row_id'))
              .values({n: sa.bindparam(f'new_{n}') for n in names}))
    connection.execute(update, [
        {'row_id': row.id, **{f'new_{n}': None if getattr(row, n) is None
                              else transform(cipher, getattr(row, n), f'complainants.{n}') for n in names}}
        for row in rows
    ])
