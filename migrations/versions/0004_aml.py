"""AML messages (SMS and HTTPS), matched or waiting for their call

Revision ID: 0004
Revises: 0002
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "aml_messages",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column(
            "received_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("channel", sa.String(length=10), nullable=False),
        sa.Column("sender", sa.String(length=80), nullable=False),
        sa.Column("number", sa.String(length=64), nullable=True),
        sa.Column("number_e164", sa.String(length=32), nullable=True),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("parsed", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("observed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reference_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("call_id", sa.Uuid(), nullable=True),
        sa.Column("incident_id", sa.BigInteger(), nullable=True),
        sa.Column("location_id", sa.Uuid(), nullable=True),
        sa.Column("matched_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "channel IN ('https', 'sms')", name=op.f("ck_aml_messages_channel_known")
        ),
        sa.CheckConstraint(
            "status IN ('matched', 'unmatched')", name=op.f("ck_aml_messages_status_known")
        ),
        sa.ForeignKeyConstraint(
            ["call_id"],
            ["calls.id"],
            name=op.f("fk_aml_messages_call_id_calls"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_aml_messages_incident_id_incidents"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["location_id"],
            ["locations.id"],
            name=op.f("fk_aml_messages_location_id_locations"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_aml_messages")),
        sa.UniqueConstraint("digest", name=op.f("uq_aml_messages_digest")),
    )
    op.create_index(
        op.f("ix_aml_messages_received_at"), "aml_messages", ["received_at"], unique=False
    )
    op.create_index(op.f("ix_aml_messages_call_id"), "aml_messages", ["call_id"], unique=False)
    op.create_index(
        op.f("ix_aml_messages_incident_id"), "aml_messages", ["incident_id"], unique=False
    )
    op.create_index(
        "ix_aml_messages_status_number_e164",
        "aml_messages",
        ["status", "number_e164", "received_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_aml_messages_status_number_e164", table_name="aml_messages")
    op.drop_index(op.f("ix_aml_messages_incident_id"), table_name="aml_messages")
    op.drop_index(op.f("ix_aml_messages_call_id"), table_name="aml_messages")
    op.drop_index(op.f("ix_aml_messages_received_at"), table_name="aml_messages")
    op.drop_table("aml_messages")
