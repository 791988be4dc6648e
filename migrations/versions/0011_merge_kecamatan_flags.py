"""merge incident kecamatan (0009) and number flags (0010)

Revision ID: 0011
Revises: 0009, 0010
Create Date: 2026-11-23
"""

from collections.abc import Sequence

revision: str = "0011"
down_revision: str | Sequence[str] | None = ("0009", "0010")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
