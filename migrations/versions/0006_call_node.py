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


def downgrade() -> None:
    op.drop_column("calls", "node")
