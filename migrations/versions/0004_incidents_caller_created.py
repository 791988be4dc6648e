"""incidents: the caller's number with the creation time in one index

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03

The AGI statement asks on every call whether the number called within the repeat window
(`siaga112.calls.recorder`). With an index on the number alone, PostgreSQL reads every incident
the number ever had (a nuisance caller's thousands, after years) or every incident of the last
minutes (a surge's thousands) and intersects them; with the time beside the number it reads only
that number's last minutes (bench/scale). The new index serves every lookup by number the old
one did, so the old one goes. Built CONCURRENTLY: incidents keep being written while it builds.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_incidents_caller_number_created_at",
            "incidents",
            ["caller_number", "created_at"],
            postgresql_concurrently=True,
        )
        op.drop_index(
            "ix_incidents_caller_number", table_name="incidents", postgresql_concurrently=True
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_incidents_caller_number",
            "incidents",
            ["caller_number"],
            postgresql_concurrently=True,
        )
        op.drop_index(
            "ix_incidents_caller_number_created_at",
            table_name="incidents",
            postgresql_concurrently=True,
        )
