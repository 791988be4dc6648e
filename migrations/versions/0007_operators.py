"""operators and the PJSIP realtime tables Asterisk reads them from

Revision ID: 0007
Revises: 0002
Create Date: 2026-11-23

``ps_endpoints``, ``ps_auths`` and ``ps_aors`` hold only the columns siaga112 sets (the sorcery
realtime wizard reads ``SELECT *`` and skips what is absent); rows are written by
``siaga112.operators.service`` in the same transaction as the operator, and only for enabled
operators: a disabled or deleted operator has no endpoint and cannot register.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "operators",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("extension", sa.String(length=20), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        # Wanted queue membership, re-applied after an Asterisk restart.
        sa.Column("logged_in", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("paused", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("pause_reason", sa.String(length=80), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.UniqueConstraint("extension", name=op.f("uq_operators_extension")),
    )
    op.create_table(
        "ps_endpoints",
        sa.Column("id", sa.String(length=40), primary_key=True),
        sa.Column("transport", sa.String(length=40)),
        sa.Column("aors", sa.String(length=200)),
        sa.Column("auth", sa.String(length=40)),
        sa.Column("context", sa.String(length=40)),
        sa.Column("disallow", sa.String(length=200)),
        sa.Column("allow", sa.String(length=200)),
        sa.Column("direct_media", sa.String(length=3)),
        sa.Column("rtp_symmetric", sa.String(length=3)),
        sa.Column("force_rport", sa.String(length=3)),
        sa.Column("rewrite_contact", sa.String(length=3)),
        sa.Column("callerid", sa.String(length=200)),
    )
    op.create_table(
        "ps_auths",
        sa.Column("id", sa.String(length=40), primary_key=True),
        sa.Column("auth_type", sa.String(length=20)),
        sa.Column("username", sa.String(length=40)),
        sa.Column("realm", sa.String(length=40)),
        sa.Column("md5_cred", sa.String(length=40)),
    )
    op.create_table(
        "ps_aors",
        sa.Column("id", sa.String(length=40), primary_key=True),
        sa.Column("max_contacts", sa.Integer()),
        sa.Column("remove_existing", sa.String(length=3)),
    )


def downgrade() -> None:
    op.drop_table("ps_aors")
    op.drop_table("ps_auths")
    op.drop_table("ps_endpoints")
    op.drop_table("operators")
