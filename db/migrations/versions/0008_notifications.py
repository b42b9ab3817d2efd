"""notifications: outbox send state and leases, scheduled runs, escalations, duplicates, surveys

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29
"""

from alembic import op
import sqlalchemy as sa

from db.types import BigId, UtcDateTime

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.add_column(sa.Column('duplicate_of_id', BigId, nullable=True))
        batch_op.add_column(sa.Column('callback_url', sa.String(length=500), nullable=True))
        batch_op.add_column(sa.Column('survey_due_on', sa.Date(), nullable=True))
        batch_op.add_column(sa.Column('satisfaction', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('satisfaction_comment', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('rated_at', UtcDateTime(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_cases_duplicate_of_id_cases'), 'cases', ['duplicate_of_id'], ['id'])
        batch_op.create_index(batch_op.f('ix_cases_duplicate_of_id'), ['duplicate_of_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_cases_survey_due_on'), ['survey_due_on'], unique=False)

    with op.batch_alter_table('case_messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('info_request', sa.Boolean(), server_default=sa.text('false'), nullable=False))

    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('audience', sa.String(length=12), server_default='complainant', nullable=False))
        batch_op.add_column(sa.Column('unit_id', BigId, nullable=True))
        batch_op.add_column(sa.Column('language', sa.String(length=8), server_default='zh', nullable=False))
        batch_op.add_column(sa.Column('lease_until', UtcDateTime(), nullable=True))
        batch_op.add_column(sa.Column('worker', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('body', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('external_id', sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column('handled_by', BigId, nullable=True))
        batch_op.add_column(sa.Column('handled_at', UtcDateTime(), nullable=True))
        batch_op.add_column(sa.Column('handled_note', sa.Text(), nullable=True))
        batch_op.alter_column('recipient', existing_type=sa.String(length=200), type_=sa.String(length=500),
                              existing_nullable=True)
        batch_op.create_foreign_key(batch_op.f('fk_outbox_unit_id_units'), 'units', ['unit_id'], ['id'])
        batch_op.create_foreign_key(batch_op.f('fk_outbox_handled_by_staff_users'), 'staff_users', ['handled_by'], ['id'])
        batch_op.create_index('ix_outbox_recipient_sent', ['channel', 'recipient', 'sent_at'], unique=False)

    op.create_table(
        'scheduled_runs',
        sa.Column('id', BigId, nullable=False),
        sa.Column('job', sa.String(length=40), nullable=False),
        sa.Column('run_key', sa.String(length=40), nullable=False),
        sa.Column('status', sa.String(length=20), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('lease_until', UtcDateTime(), nullable=False),
        sa.Column('started_at', UtcDateTime(), nullable=False),
        sa.Column('finished_at', UtcDateTime(), nullable=True),
        sa.Column('result', sa.JSON(), nullable=True),
        sa.Column('error', sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_scheduled_runs')),
        sa.UniqueConstraint('job', 'run_key', name=op.f('uq_scheduled_runs_job_run_key')),
    )
    op.create_table(
        'escalations',
        sa.Column('id', BigId, nullable=False),
        sa.Column('case_id', BigId, nullable=False),
        sa.Column('clock', sa.String(length=40), nullable=False),
        sa.Column('due_on', sa.Date(), nullable=False),
        sa.Column('unit_id', BigId, nullable=True),
        sa.Column('escalated_on', sa.Date(), nullable=False),
        sa.Column('replied', sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_escalations_case_id_cases'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['unit_id'], ['units.id'], name=op.f('fk_escalations_unit_id_units')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_escalations')),
        sa.UniqueConstraint('case_id', 'clock', 'due_on', name=op.f('uq_escalations_case_id_clock_due_on')),
    )
    with op.batch_alter_table('escalations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_escalations_case_id'), ['case_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_escalations_escalated_on'), ['escalated_on'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('escalations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_escalations_escalated_on'))
        batch_op.drop_index(batch_op.f('ix_escalations_case_id'))
    op.drop_table('escalations')
    op.drop_table('scheduled_runs')

    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_recipient_sent')
        batch_op.drop_constraint(batch_op.f('fk_outbox_handled_by_staff_users'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('fk_outbox_unit_id_units'), type_='foreignkey')
        batch_op.alter_column('recipient', existing_type=sa.String(length=500), type_=sa.String(length=200),
                              existing_nullable=True)
        for column in ('handled_note', 'handled_at', 'handled_by', 'external_id', 'body', 'worker', 'lease_until',
                       'language', 'unit_id', 'audience'):
            batch_op.drop_column(column)

    with op.batch_alter_table('case_messages', schema=None) as batch_op:
        batch_op.drop_column('info_request')

    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_cases_survey_due_on'))
        batch_op.drop_index(batch_op.f('ix_cases_duplicate_of_id'))
        batch_op.drop_constraint(batch_op.f('fk_cases_duplicate_of_id_cases'), type_='foreignkey')
        for column in ('rated_at', 'satisfaction_comment', 'satisfaction', 'survey_due_on', 'callback_url',
                       'duplicate_of_id'):
            batch_op.drop_column(column)
