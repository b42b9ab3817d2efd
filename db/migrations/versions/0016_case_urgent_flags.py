"""crisis signals: a case is flagged urgent (flags ["crisis"]) until staff acknowledge it

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-08
"""

from alembic import op
import sqlalchemy as sa

from db.types import BigId, UtcDateTime

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None

UNACKNOWLEDGED = "urgent AND urgent_acknowledged_at IS NULL"


def upgrade() -> None:
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.add_column(sa.Column('urgent', sa.Boolean(), server_default=sa.text('false'), nullable=False))
        batch_op.add_column(sa.Column('urgent_acknowledged_at', UtcDateTime(), nullable=True))
        batch_op.add_column(sa.Column('urgent_acknowledged_by', BigId, nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_cases_urgent_acknowledged_by_staff_users'), 'staff_users',
                                    ['urgent_acknowledged_by'], ['id'])
    op.create_index('ix_cases_urgent_unacknowledged', 'cases', ['id'], unique=False,
                    postgresql_where=sa.text(UNACKNOWLEDGED), sqlite_where=sa.text(UNACKNOWLEDGED))


def downgrade() -> None:
    op.drop_index('ix_cases_urgent_unacknowledged', table_name='cases')
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_cases_urgent_acknowledged_by_staff_users'), type_='foreignkey')
        batch_op.drop_column('urgent_acknowledged_by')
        batch_op.drop_column('urgent_acknowledged_at')
        batch_op.drop_column('urgent')
