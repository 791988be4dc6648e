"""callbacks: the worklist state of abandoned and silent calls, and each callback attempt

Revision ID: 0013
Revises: 0011
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "callbacks",
        sa.Column("call_id", sa.Uuid(), nullable=False),
        sa.Column("incident_id", sa.BigInteger(), nullable=True),
        sa.Column("number", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("claimed_by", sa.String(length=120), nullable=True),
        sa.Column("operator_extension", sa.String(length=20), nullable=True),
        sa.Column("claim_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_attempt_by", sa.String(length=20), nullable=True),
        sa.Column("last_outcome", sa.String(length=30), nullable=True),
        sa.Column("reached_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("note", sa.String(length=500), nullable=True),
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
        sa.ForeignKeyConstraint(
            ["call_id"], ["calls.id"], name=op.f("fk_callbacks_call_id_calls"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_callbacks_incident_id_incidents"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("call_id", name=op.f("pk_callbacks")),
    )
    op.create_index(op.f("ix_callbacks_incident_id"), "callbacks", ["incident_id"])
    op.create_index("ix_callbacks_number_reached", "callbacks", ["number", "reached_at"])
    op.create_index(
        "ux_callbacks_number_in_progress",
        "callbacks",
        ["number"],
        unique=True,
        postgresql_where=sa.text("status = 'in_progress'"),
    )
    op.create_table(
        "callback_attempts",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("call_id", sa.Uuid(), nullable=False),
        sa.Column("channel_id", sa.String(length=150), nullable=False),
        sa.Column("operator_extension", sa.String(length=20), nullable=False),
        sa.Column("actor", sa.String(length=120), nullable=False),
        sa.Column("number", sa.String(length=64), nullable=False),
        sa.Column("dialled", sa.String(length=32), nullable=False),
        sa.Column("status_before", sa.String(length=20), nullable=False),
        sa.Column(
            "started_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("originated", sa.Boolean(), nullable=True),
        sa.Column("originate_reason", sa.Integer(), nullable=True),
        sa.Column("operator_answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("dial_status", sa.String(length=20), nullable=True),
        sa.Column("dial_ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("hangup_cause", sa.String(length=80), nullable=True),
        sa.Column("outcome", sa.String(length=30), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["call_id"],
            ["callbacks.call_id"],
            name=op.f("fk_callback_attempts_call_id_callbacks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_callback_attempts")),
        sa.UniqueConstraint("channel_id", name=op.f("uq_callback_attempts_channel_id")),
    )
    op.create_index(op.f("ix_callback_attempts_call_id"), "callback_attempts", ["call_id"])
    op.create_index(
        "ix_callback_attempts_open",
        "callback_attempts",
        ["expires_at"],
        postgresql_where=sa.text("outcome IS NULL"),
    )
    op.create_index(
        "ux_callback_attempts_operator_open",
        "callback_attempts",
        ["operator_extension"],
        unique=True,
        postgresql_where=sa.text("outcome IS NULL"),
    )
    # The worklist reads abandoned calls newest first.
    op.create_index(
        "ix_calls_abandoned_offered_at",
        "calls",
        ["offered_at", "id"],
        postgresql_where=sa.text("state = 'abandoned'"),
    )


def downgrade() -> None:
    op.drop_index("ix_calls_abandoned_offered_at", table_name="calls")
    op.drop_table("callback_attempts")
    op.drop_table("callbacks")
