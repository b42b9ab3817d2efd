"""case submission keys: a retried submission of the same draft finds its case instead of filing another

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-29
"""

from alembic import op
import sqlalchemy as sa

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.add_column(sa.Column('submission_key', sa.String(length=64), nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_cases_submission_key'), ['submission_key'])


def downgrade() -> None:
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_cases_submission_key'), type_='unique')
        batch_op.drop_column('submission_key')
