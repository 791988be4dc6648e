"""API keys: the operator an operator key acts as, and an expiry

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("api_keys", sa.Column("operator_extension", sa.String(length=8), nullable=True))
    op.add_column("api_keys", sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
    op.create_check_constraint(
        op.f("ck_api_keys_operator_extension_role"),
        "api_keys",
        "operator_extension IS NULL OR role = 'operator'",
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_api_keys_operator_extension_role"), "api_keys", type_="check")
    op.drop_column("api_keys", "expires_at")
    op.drop_column("api_keys", "operator_extension")
