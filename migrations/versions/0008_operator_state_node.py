"""operator_live_states per node: each PBX node's view of each operator

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03

Every node's queue has every operator and each node's AMI follower reports what its node sees,
so one row per operator let two nodes overwrite each other. The key becomes (extension, node);
rows stored before were the one node's, named `pbx` as calls.node names the single node of a
deployment without `pbx.nodes` (a deployment with nodes leaves those rows out of the merge and
its followers write their own at their next AMI login). A few rows per operator: the table is
rewritten in an instant.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "operator_live_states",
        sa.Column("node", sa.String(length=31), nullable=False, server_default="pbx"),
    )
    op.alter_column("operator_live_states", "node", server_default=None)
    op.drop_constraint("pk_operator_live_states", "operator_live_states", type_="primary")
    op.create_primary_key("pk_operator_live_states", "operator_live_states", ["extension", "node"])


def downgrade() -> None:
    # One row per operator again: its most recent state, whichever node reported it.
    op.execute(
        "DELETE FROM operator_live_states o USING operator_live_states n "
        "WHERE o.extension = n.extension AND (o.changed_at, o.node) < (n.changed_at, n.node)"
    )
    op.drop_constraint("pk_operator_live_states", "operator_live_states", type_="primary")
    op.create_primary_key("pk_operator_live_states", "operator_live_states", ["extension"])
    op.drop_column("operator_live_states", "node")
