"""calls.node: the PBX node (Asterisk systemname) that took each call

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03

With several Asterisk nodes a call's channel lives on one of them: call control goes there, and
the call's record says where it was taken. NULL for calls recorded before (one node then).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("calls", sa.Column("node", sa.String(length=31), nullable=True))
    # A node's open calls, read by the lost-node rule at every AMI login (siaga112.calls.lost);
    # built without holding up the calls' writes on a large table.
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_calls_open_by_node",
            "calls",
            ["node", "offered_at"],
            postgresql_where=sa.text("state NOT IN ('ended', 'abandoned')"),
            postgresql_concurrently=True,
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index("ix_calls_open_by_node", table_name="calls", postgresql_concurrently=True)
    op.drop_column("calls", "node")
