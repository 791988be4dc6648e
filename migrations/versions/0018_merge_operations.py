"""merge recordings (0012), callbacks (0013), overflow (0014), live stream (0015) and the
location sweep (0017)

Revision ID: 0018
Revises: 0012, 0013, 0014, 0015, 0017
Create Date: 2026-12-01

Written side by side from 0011; they touch separate tables or add separate columns to
``calls``, so their order does not matter. From here on there is one head again.
"""

from collections.abc import Sequence

revision: str = "0018"
down_revision: str | Sequence[str] | None = ("0012", "0013", "0014", "0015", "0017")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
