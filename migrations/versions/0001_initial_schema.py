"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-23

Tables for calls, incidents, their timeline, locations, agencies, API keys and audit;
the agencies every Indonesian 112 centre hands cases to are seeded (editable later).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


SEED_AGENCIES = [
    ("damkar", "Pemadam Kebakaran (Damkar)", "fire"),
    ("bpbd", "Badan Penanggulangan Bencana Daerah (BPBD)", "disaster"),
    ("dinkes", "Dinas Kesehatan / Ambulans", "health"),
    ("rumah_sakit", "Rumah Sakit", "hospital"),
    ("satpol_pp", "Satuan Polisi Pamong Praja (Satpol PP)", "public_order"),
    ("polri", "Kepolisian (Polri)", "police"),
    ("tni", "Tentara Nasional Indonesia (TNI)", "military"),
    ("pmi", "Palang Merah Indonesia (PMI)", "red_cross"),
    ("dp3a", "Perlindungan Perempuan dan Anak (DP3A)", "social_protection"),
    ("dishub", "Dinas Perhubungan (Dishub)", "transport"),
]


def upgrade() -> None:
    op.create_table(
        "agencies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("phone", sa.String(length=40), nullable=True),
        sa.Column("active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
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
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agencies")),
        sa.UniqueConstraint("code", name=op.f("uq_agencies_code")),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
    )
    op.create_table(
        "audit_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column(
            "at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("actor", sa.String(length=120), nullable=False),
        sa.Column("actor_key_id", sa.String(length=36), nullable=True),
        sa.Column("action", sa.String(length=60), nullable=False),
        sa.Column("entity_type", sa.String(length=40), nullable=False),
        sa.Column("entity_id", sa.String(length=64), nullable=False),
        sa.Column("before", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("after", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    op.create_index(op.f("ix_audit_events_at"), "audit_events", ["at"], unique=False)
    op.create_table(
        "incidents",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("category", sa.String(length=20), nullable=True),
        sa.Column("classification", sa.String(length=20), nullable=True),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("caller_number", sa.String(length=64), nullable=True),
        sa.Column("caller_name", sa.String(length=200), nullable=True),
        sa.Column("address", sa.String(length=500), nullable=True),
        sa.Column("summary", sa.String(length=4000), nullable=True),
        sa.Column("origin_linkedid", sa.String(length=64), nullable=True),
        sa.Column("duplicate_of_id", sa.BigInteger(), nullable=True),
        sa.Column("created_by", sa.String(length=120), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
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
        sa.CheckConstraint(
            "duplicate_of_id IS NULL OR duplicate_of_id <> id",
            name=op.f("ck_incidents_not_self_dup"),
        ),
        sa.CheckConstraint("priority BETWEEN 1 AND 5", name=op.f("ck_incidents_priority_range")),
        sa.ForeignKeyConstraint(
            ["duplicate_of_id"],
            ["incidents.id"],
            name=op.f("fk_incidents_duplicate_of_id_incidents"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incidents")),
        sa.UniqueConstraint("origin_linkedid", name=op.f("uq_incidents_origin_linkedid")),
    )
    op.create_index("ix_incidents_caller_number", "incidents", ["caller_number"], unique=False)
    op.create_index(op.f("ix_incidents_category"), "incidents", ["category"], unique=False)
    op.create_index(
        op.f("ix_incidents_classification"), "incidents", ["classification"], unique=False
    )
    op.create_index("ix_incidents_created_at_id", "incidents", ["created_at", "id"], unique=False)
    op.create_index(
        op.f("ix_incidents_duplicate_of_id"), "incidents", ["duplicate_of_id"], unique=False
    )
    op.create_index(op.f("ix_incidents_status"), "incidents", ["status"], unique=False)
    op.create_table(
        "calls",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("uniqueid", sa.String(length=64), nullable=False),
        sa.Column("linkedid", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=200), nullable=True),
        sa.Column("caller_number", sa.String(length=64), nullable=True),
        sa.Column("caller_name", sa.String(length=200), nullable=True),
        sa.Column("caller_e164", sa.String(length=32), nullable=True),
        sa.Column("asserted_number", sa.String(length=64), nullable=True),
        sa.Column("presentation", sa.String(length=40), nullable=True),
        sa.Column("caller_id_available", sa.Boolean(), nullable=False),
        sa.Column("dialled_number", sa.String(length=32), nullable=True),
        sa.Column("pai_raw", sa.String(length=1000), nullable=True),
        sa.Column("pani_raw", sa.String(length=1000), nullable=True),
        sa.Column("geolocation_raw", sa.String(length=2000), nullable=True),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("queue", sa.String(length=80), nullable=True),
        sa.Column("operator", sa.String(length=80), nullable=True),
        sa.Column("outcome", sa.String(length=30), nullable=True),
        sa.Column("hangup_cause", sa.String(length=80), nullable=True),
        sa.Column("offered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ringing_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("transferred_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("incident_id", sa.BigInteger(), nullable=True),
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
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_calls_incident_id_incidents"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calls")),
        sa.UniqueConstraint("uniqueid", name=op.f("uq_calls_uniqueid")),
    )
    op.create_index("ix_calls_caller_number", "calls", ["caller_number"], unique=False)
    op.create_index(op.f("ix_calls_incident_id"), "calls", ["incident_id"], unique=False)
    op.create_index(op.f("ix_calls_linkedid"), "calls", ["linkedid"], unique=False)
    op.create_index("ix_calls_offered_at_id", "calls", ["offered_at", "id"], unique=False)
    op.create_table(
        "incident_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("incident_id", sa.BigInteger(), nullable=False),
        sa.Column(
            "at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("actor", sa.String(length=120), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("data", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_incident_events_incident_id_incidents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incident_events")),
    )
    op.create_index(
        op.f("ix_incident_events_incident_id"), "incident_events", ["incident_id"], unique=False
    )
    op.create_table(
        "locations",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("call_id", sa.Uuid(), nullable=True),
        sa.Column("incident_id", sa.BigInteger(), nullable=True),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("method", sa.String(length=40), nullable=True),
        sa.Column("lat", sa.Double(), nullable=True),
        sa.Column("lon", sa.Double(), nullable=True),
        sa.Column("radius_m", sa.Double(), nullable=True),
        sa.Column("confidence", sa.Integer(), nullable=True),
        sa.Column("address", sa.String(length=500), nullable=True),
        sa.Column("observed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("raw", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("confirmed", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("confirmed_by", sa.String(length=120), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "lat IS NULL OR (lat BETWEEN -90 AND 90)", name=op.f("ck_locations_lat_range")
        ),
        sa.CheckConstraint(
            "lon IS NULL OR (lon BETWEEN -180 AND 180)", name=op.f("ck_locations_lon_range")
        ),
        sa.CheckConstraint(
            "radius_m IS NULL OR radius_m >= 0", name=op.f("ck_locations_radius_positive")
        ),
        sa.ForeignKeyConstraint(
            ["call_id"], ["calls.id"], name=op.f("fk_locations_call_id_calls"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_locations_incident_id_incidents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_locations")),
    )
    op.create_index(op.f("ix_locations_call_id"), "locations", ["call_id"], unique=False)
    op.create_index(op.f("ix_locations_incident_id"), "locations", ["incident_id"], unique=False)

    agencies = sa.table(
        "agencies",
        sa.column("code", sa.String),
        sa.column("name", sa.String),
        sa.column("kind", sa.String),
    )
    op.bulk_insert(agencies, [{"code": c, "name": n, "kind": k} for c, n, k in SEED_AGENCIES])


def downgrade() -> None:
    op.drop_index(op.f("ix_locations_incident_id"), table_name="locations")
    op.drop_index(op.f("ix_locations_call_id"), table_name="locations")
    op.drop_table("locations")
    op.drop_index(op.f("ix_incident_events_incident_id"), table_name="incident_events")
    op.drop_table("incident_events")
    op.drop_index("ix_calls_offered_at_id", table_name="calls")
    op.drop_index(op.f("ix_calls_linkedid"), table_name="calls")
    op.drop_index(op.f("ix_calls_incident_id"), table_name="calls")
    op.drop_index("ix_calls_caller_number", table_name="calls")
    op.drop_table("calls")
    op.drop_index(op.f("ix_incidents_status"), table_name="incidents")
    op.drop_index(op.f("ix_incidents_duplicate_of_id"), table_name="incidents")
    op.drop_index("ix_incidents_created_at_id", table_name="incidents")
    op.drop_index(op.f("ix_incidents_classification"), table_name="incidents")
    op.drop_index(op.f("ix_incidents_category"), table_name="incidents")
    op.drop_index("ix_incidents_caller_number", table_name="incidents")
    op.drop_table("incidents")
    op.drop_index(op.f("ix_audit_events_at"), table_name="audit_events")
    op.drop_table("audit_events")
    op.drop_table("api_keys")
    op.drop_table("agencies")
