"""notify listeners when incident events are written (live event stream)

Revision ID: 0006
Revises: 0002
Create Date: 2026-11-23

One NOTIFY per inserting statement, not per row: listeners re-read the table from their last
id, so the payload carries nothing.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
CREATE FUNCTION siaga112_notify_incident_events() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('siaga112_events', '');
    RETURN NULL;
END
$$
"""
    )
    op.execute(
        """
CREATE TRIGGER incident_events_notify AFTER INSERT ON incident_events
FOR EACH STATEMENT EXECUTE FUNCTION siaga112_notify_incident_events()
"""
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS incident_events_notify ON incident_events")
    op.execute("DROP FUNCTION IF EXISTS siaga112_notify_incident_events()")
