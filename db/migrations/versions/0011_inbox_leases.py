"""inbox leases: which process is handling a stored update, until when (several bot replicas)

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-29
"""

from alembic import op
import sqlalchemy as sa

from db.types import UtcDateTime

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('inbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lease_until', UtcDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('inbox', schema=None) as batch_op:
        batch_op.drop_column('lease_until')
