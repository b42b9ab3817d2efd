"""queue counts: a unit's cases and the open cases' statuses, both answered from an index

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29

A handler sees the cases its unit has an active part in (web/access.py: EXISTS over case_units). At
1,000,000 cases the queue's status counts read every open case's row and every row of the unit's
case_units (bench/console.py --explain: 440-1090 ms, mostly reading table pages). Now:

- case_units (unit_id, active, case_id) replaces (unit_id, active), of which it is an extension: the
  unit's case ids come in order from the index alone, and the queue page's per-case check
  (case_id, unit_id, active) is an index-only probe;
- cases (id, status) for the open cases only (the predicate of ix_cases_open_next_due, implied by the
  queue's `status IN (open statuses)`): the counts are a merge of the two indexes, no table rows read
  (45-60 ms; the handler's queue page over HTTP: ~800 ms -> ~130-175 ms p50 on the same busy machine,
  where the triage queue took 60-135 ms).
"""

from alembic import op
import sqlalchemy as sa

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

OPEN = sa.text("status <> 'closed'")


def upgrade() -> None:
    op.create_index('ix_case_units_unit_active_case', 'case_units', ['unit_id', 'active', 'case_id'], unique=False)
    op.drop_index('ix_case_units_unit_active', table_name='case_units')
    op.create_index('ix_cases_open_id_status', 'cases', ['id', 'status'], unique=False,
                    postgresql_where=OPEN, sqlite_where=OPEN)


def downgrade() -> None:
    op.drop_index('ix_cases_open_id_status', table_name='cases')
    op.create_index('ix_case_units_unit_active', 'case_units', ['unit_id', 'active'], unique=False)
    op.drop_index('ix_case_units_unit_active_case', table_name='case_units')
