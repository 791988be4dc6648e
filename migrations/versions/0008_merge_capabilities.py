"""merge the capability branches (locations, AML, dispatch, live events, operators)

Revision ID: 0008
Revises: 0003, 0004, 0005, 0006, 0007
Create Date: 2026-11-23

They were written side by side from 0002 and touch separate tables; from here on there is one
head again.
"""

from collections.abc import Sequence

revision: str = "0008"
down_revision: str | Sequence[str] | None = ("0003", "0004", "0005", "0006", "0007")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
