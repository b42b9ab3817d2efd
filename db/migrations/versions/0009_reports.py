"""reports: the facts closing records for the statistics forms, staff-entered form figures

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29
"""

from alembic import op
import sqlalchemy as sa

from db.types import BigId, UtcDateTime

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

CLOSE_FACTS = ('filed', 'fine_fen', 'confiscation_fen', 'judicial_referral', 'takedowns', 'accounts_disposed',
               'sites_closed')


def upgrade() -> None:
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.add_column(sa.Column('filed', sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column('fine_fen', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('confiscation_fen', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('judicial_referral', sa.Boolean(), server_default=sa.text('false'),
                                      nullable=False))
        batch_op.add_column(sa.Column('takedowns', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('accounts_disposed', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('sites_closed', sa.Integer(), nullable=True))
        batch_op.create_index('ix_cases_closed_at', ['closed_at'], unique=False)
    op.create_index('ix_case_events_action_created_at', 'case_events', ['action', 'created_at'], unique=False)
    op.create_index('ix_case_messages_replies', 'case_messages', ['case_id'], unique=False,
                    postgresql_where=sa.text('is_reply'), sqlite_where=sa.text('is_reply'))

    op.create_table(
        'report_inputs',
        sa.Column('id', BigId, nullable=False),
        sa.Column('form', sa.String(length=20), nullable=False),
        sa.Column('period', sa.String(length=7), nullable=False),
        sa.Column('unit_code', sa.String(length=40), nullable=False),
        sa.Column('data', sa.JSON(), nullable=False),
        sa.Column('updated_by', BigId, nullable=True),
        sa.Column('updated_at', UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['updated_by'], ['staff_users.id'], name=op.f('fk_report_inputs_updated_by_staff_users')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_report_inputs')),
        sa.UniqueConstraint('form', 'period', 'unit_code', name=op.f('uq_report_inputs_form_period_unit_code')),
    )


def downgrade() -> None:
    op.drop_index('ix_case_messages_replies', table_name='case_messages')
    op.drop_index('ix_case_events_action_created_at', table_name='case_events')
    op.drop_table('report_inputs')
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.drop_index('ix_cases_closed_at')
        for column in reversed(CLOSE_FACTS):
            batch_op.drop_column(column)
