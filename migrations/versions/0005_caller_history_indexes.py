"""calls and incidents: a caller's number with the time and id, and what its counts need

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03

A caller's history (its calls and incidents by number, their counts, the console's repeat and
prank badges) grows for years: a nuisance number's thousands of calls. With an index on the
number alone, every lookup read all of them from the tables to return a page (bench/scale).
Each column a number is stored in now has one index on (number, time, id), so a page reads each
column newest first for no more than the page; the columns the counts need ride along
(`INCLUDE`), so counting a history reads index entries, not rows
(`siaga112.callers.matching`). The new indexes serve every lookup the old ones did (the AGI
statement's repeat-caller check among them), so the old ones go. Built CONCURRENTLY: calls and
incidents keep being written while they build.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (new index, table, key columns, included columns, the index it replaces, its columns)
_INDEXES = (
    (
        "ix_calls_caller_e164_offered_at_id",
        "calls",
        ["caller_e164", "offered_at", "id"],
        ["incident_id"],
        "ix_calls_caller_e164",
        ["caller_e164"],
    ),
    (
        "ix_calls_caller_number_offered_at_id",
        "calls",
        ["caller_number", "offered_at", "id"],
        ["incident_id"],
        "ix_calls_caller_number",
        ["caller_number"],
    ),
    (
        "ix_calls_asserted_number_offered_at_id",
        "calls",
        ["asserted_number", "offered_at", "id"],
        ["incident_id"],
        "ix_calls_asserted_number",
        ["asserted_number"],
    ),
    (
        "ix_incidents_caller_number_created_at_id",
        "incidents",
        ["caller_number", "created_at", "id"],
        ["classification"],
        "ix_incidents_caller_number_created_at",
        ["caller_number", "created_at"],
    ),
)


def upgrade() -> None:
    with op.get_context().autocommit_block():
        for name, table, columns, include, old, _ in _INDEXES:
            op.create_index(
                name,
                table,
                columns,
                postgresql_include=include,
                postgresql_concurrently=True,
            )
            op.drop_index(old, table_name=table, postgresql_concurrently=True)


def downgrade() -> None:
    with op.get_context().autocommit_block():
        for name, table, _, _, old, old_columns in reversed(_INDEXES):
            op.create_index(old, table, old_columns, postgresql_concurrently=True)
            op.drop_index(name, table_name=table, postgresql_concurrently=True)
