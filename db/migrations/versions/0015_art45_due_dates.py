"""Order 121 Art 45: an open clock whose last day is a rest day or holiday ends on the next working day

Until this revision a period counted in calendar days (the 60-day mediation) could end on a holiday:
a complaint accepted on 2026-08-02 was due 2026-10-01, in the National Day holiday, instead of 2026-10-08.
New clocks are computed right (intake/calendar.py add_calendar_days); this moves the due date of every
clock not yet met that ends on a day that is not a working day, by the same calendar (the package's
holidays and the bureau's holiday table), and the case's next due date with it. Downgrade keeps the moved
dates: they are the right ones under the rules in force.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-08
"""

from alembic import op
import sqlalchemy as sa

from db.types import UtcDateTime
from intake.calendar import WorkingCalendar

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None

DEADLINES = sa.table('case_deadlines', sa.column('id'), sa.column('case_id'), sa.column('due_on', sa.Date()),
                     sa.column('provisional', sa.Boolean()), sa.column('met_at', UtcDateTime()))
CASES = sa.table('cases', sa.column('id'), sa.column('next_due_on', sa.Date()))
OVERRIDES = sa.table('holiday_overrides', sa.column('day', sa.Date()), sa.column('is_workday', sa.Boolean()))


def upgrade() -> None:
    connection = op.get_bind()
    calendar = WorkingCalendar(dict(connection.execute(sa.select(OVERRIDES.c.day, OVERRIDES.c.is_workday)).all()))
    moved_cases: set[int] = set()
    open_clocks = connection.execute(sa.select(DEADLINES.c.id, DEADLINES.c.case_id, DEADLINES.c.due_on,
                                               DEADLINES.c.provisional).where(DEADLINES.c.met_at.is_(None))).all()
    for row_id, case_id, due_on, provisional in open_clocks:
        if calendar.is_workday(due_on):
            continue
        moved = calendar.add_working_days(due_on, 1)  # the first working day after the last day
        connection.execute(sa.update(DEADLINES).where(DEADLINES.c.id == row_id).values(
            due_on=moved.on, provisional=bool(provisional) or moved.provisional or not calendar.knows(due_on)))
        moved_cases.add(case_id)
    for case_id in sorted(moved_cases):
        next_due = connection.execute(sa.select(sa.func.min(DEADLINES.c.due_on)).where(
            DEADLINES.c.case_id == case_id, DEADLINES.c.met_at.is_(None))).scalar()
        connection.execute(sa.update(CASES).where(CASES.c.id == case_id).values(next_due_on=next_due))


def downgrade() -> None:
    pass  # the moved dates are the right ones; the old ones cannot be told apart from any other
