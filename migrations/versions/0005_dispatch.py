"""dispatch to agencies: dispatches, default agencies per category, agency delivery settings,
webhook outbox, agency-scoped API keys

Revision ID: 0005
Revises: 0002
Create Date: 2026-11-24
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The default agencies per category (editable per site through the API). Pohon tumbang goes to
# BPBD, as Pasuruan's Kominfo instructs BPBD for fallen trees.
DEFAULTS: dict[str, list[str]] = {
    "kebakaran": ["damkar"],
    "kecelakaan": ["dinkes", "polri"],
    "kdrt": ["dp3a", "polri"],
    "bencana": ["bpbd"],
    "medis": ["dinkes"],
    "pohon_tumbang": ["bpbd"],
    "kriminal": ["polri"],
    "hewan": ["damkar"],
    "orang_hilang": ["polri", "bpbd"],
}


def _ts(name: str, *, nullable: bool = True, now: bool = False) -> "sa.Column[Any]":
    return sa.Column(
        name,
        sa.DateTime(timezone=True),
        server_default=sa.text("now()") if now else None,
        nullable=nullable,
    )


def upgrade() -> None:
    op.add_column("api_keys", sa.Column("agency_id", sa.Integer(), nullable=True))
    op.create_foreign_key(
        op.f("fk_api_keys_agency_id_agencies"),
        "api_keys",
        "agencies",
        ["agency_id"],
        ["id"],
        ondelete="RESTRICT",
    )
    op.create_index(op.f("ix_api_keys_agency_id"), "api_keys", ["agency_id"], unique=False)
    op.create_check_constraint(
        op.f("ck_api_keys_agency_scope"),
        "api_keys",
        "(role = 'agency') = (agency_id IS NOT NULL)",
    )

    op.create_table(
        "dispatches",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("incident_id", sa.BigInteger(), nullable=False),
        sa.Column("agency_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("note", sa.String(length=4000), nullable=True),
        sa.Column("decline_reason", sa.String(length=500), nullable=True),
        sa.Column("created_by", sa.String(length=120), nullable=False),
        _ts("acknowledged_at"),
        _ts("en_route_at"),
        _ts("on_scene_at"),
        _ts("completed_at"),
        _ts("declined_at"),
        _ts("unack_alerted_at"),
        _ts("created_at", nullable=False, now=True),
        _ts("updated_at", nullable=False, now=True),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_dispatches_incident_id_incidents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["agency_id"],
            ["agencies.id"],
            name=op.f("fk_dispatches_agency_id_agencies"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dispatches")),
    )
    op.create_index(op.f("ix_dispatches_incident_id"), "dispatches", ["incident_id"])
    op.create_index("ix_dispatches_agency_created", "dispatches", ["agency_id", "created_at", "id"])
    op.create_index(
        "uq_dispatches_active_incident_agency",
        "dispatches",
        ["incident_id", "agency_id"],
        unique=True,
        postgresql_where=sa.text("status NOT IN ('completed', 'declined')"),
    )
    op.create_index(
        "ix_dispatches_unacknowledged",
        "dispatches",
        ["created_at"],
        postgresql_where=sa.text("status = 'sent' AND unack_alerted_at IS NULL"),
    )

    op.create_table(
        "category_agencies",
        sa.Column("category", sa.String(length=20), nullable=False),
        sa.Column("agency_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["agency_id"],
            ["agencies.id"],
            name=op.f("fk_category_agencies_agency_id_agencies"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("category", "agency_id", name=op.f("pk_category_agencies")),
    )

    op.create_table(
        "agency_dispatch_settings",
        sa.Column("agency_id", sa.Integer(), nullable=False),
        sa.Column("webhook_url", sa.String(length=500), nullable=True),
        sa.Column("webhook_secret", sa.String(length=200), nullable=True),
        sa.Column("share_caller", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        _ts("updated_at", nullable=False, now=True),
        sa.ForeignKeyConstraint(
            ["agency_id"],
            ["agencies.id"],
            name=op.f("fk_agency_dispatch_settings_agency_id_agencies"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("agency_id", name=op.f("pk_agency_dispatch_settings")),
    )

    op.create_table(
        "webhook_outbox",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("agency_id", sa.Integer(), nullable=False),
        sa.Column("dispatch_id", sa.BigInteger(), nullable=False),
        sa.Column("event", sa.String(length=40), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("idempotency_key", sa.String(length=120), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        _ts("next_attempt_at", nullable=False, now=True),
        _ts("delivered_at"),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        _ts("created_at", nullable=False, now=True),
        sa.ForeignKeyConstraint(
            ["agency_id"],
            ["agencies.id"],
            name=op.f("fk_webhook_outbox_agency_id_agencies"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["dispatch_id"],
            ["dispatches.id"],
            name=op.f("fk_webhook_outbox_dispatch_id_dispatches"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_outbox")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_webhook_outbox_idempotency_key")),
    )
    op.create_index(op.f("ix_webhook_outbox_agency_id"), "webhook_outbox", ["agency_id"])
    op.create_index("ix_webhook_outbox_dispatch_id", "webhook_outbox", ["dispatch_id", "id"])
    op.create_index(
        "ix_webhook_outbox_due",
        "webhook_outbox",
        ["next_attempt_at"],
        postgresql_where=sa.text("delivered_at IS NULL"),
    )

    conn = op.get_bind()
    for category, codes in DEFAULTS.items():
        conn.execute(
            sa.text(
                "INSERT INTO category_agencies (category, agency_id) "
                "SELECT :category, id FROM agencies WHERE code = ANY(:codes) "
                "ON CONFLICT DO NOTHING"
            ),
            {"category": category, "codes": codes},
        )


def downgrade() -> None:
    op.drop_index("ix_webhook_outbox_due", table_name="webhook_outbox")
    op.drop_index("ix_webhook_outbox_dispatch_id", table_name="webhook_outbox")
    op.drop_index(op.f("ix_webhook_outbox_agency_id"), table_name="webhook_outbox")
    op.drop_table("webhook_outbox")
    op.drop_table("agency_dispatch_settings")
    op.drop_table("category_agencies")
    op.drop_index("ix_dispatches_unacknowledged", table_name="dispatches")
    op.drop_index("uq_dispatches_active_incident_agency", table_name="dispatches")
    op.drop_index("ix_dispatches_agency_created", table_name="dispatches")
    op.drop_index(op.f("ix_dispatches_incident_id"), table_name="dispatches")
    op.drop_table("dispatches")
    # Agency keys cannot exist without the column that scopes them: revoke them by removal.
    op.execute("DELETE FROM api_keys WHERE role = 'agency'")
    op.drop_constraint(op.f("ck_api_keys_agency_scope"), "api_keys", type_="check")
    op.drop_index(op.f("ix_api_keys_agency_id"), table_name="api_keys")
    op.drop_constraint(op.f("fk_api_keys_agency_id_agencies"), "api_keys", type_="foreignkey")
    op.drop_column("api_keys", "agency_id")
