"""baseline: the whole schema of the first release

Revision ID: 0001
Revises:
Create Date: 2026-12-03

Squashes the revisions written while nothing was released (0001..0018); a database migrated
with them has exactly this schema. Seeds the agencies every Indonesian 112 centre hands cases
to and the default agencies per incident category (both editable per site through the API).
"""

from collections.abc import Sequence
from typing import Any

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

# Pohon tumbang goes to BPBD, as Pasuruan's Kominfo instructs BPBD for fallen trees.
DEFAULT_CATEGORY_AGENCIES: dict[str, list[str]] = {
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


def _id() -> "sa.Column[Any]":
    return sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False)


def upgrade() -> None:
    # -- agencies, API keys, audit ---------------------------------------------------------
    op.create_table(
        "agencies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("phone", sa.String(length=40), nullable=True),
        sa.Column("active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        _ts("created_at", nullable=False, now=True),
        _ts("updated_at", nullable=False, now=True),
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
        _ts("created_at", nullable=False, now=True),
        _ts("revoked_at"),
        # An agency key sees only its agency's dispatches.
        sa.Column("agency_id", sa.Integer(), nullable=True),
        sa.CheckConstraint(
            "(role = 'agency') = (agency_id IS NOT NULL)", name=op.f("ck_api_keys_agency_scope")
        ),
        sa.ForeignKeyConstraint(
            ["agency_id"],
            ["agencies.id"],
            name=op.f("fk_api_keys_agency_id_agencies"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
    )
    op.create_index(op.f("ix_api_keys_agency_id"), "api_keys", ["agency_id"])
    op.create_table(
        "audit_events",
        _id(),
        _ts("at", nullable=False, now=True),
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
    op.create_index(op.f("ix_audit_events_at"), "audit_events", ["at"])

    # -- incidents and calls ---------------------------------------------------------------
    op.create_table(
        "incidents",
        _id(),
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
        _ts("closed_at"),
        _ts("created_at", nullable=False, now=True),
        _ts("updated_at", nullable=False, now=True),
        # Derived (siaga112.incidents.kecamatan) from the address and the locations.
        sa.Column("kecamatan", sa.String(length=80), nullable=True),
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
    op.create_index("ix_incidents_caller_number", "incidents", ["caller_number"])
    op.create_index(op.f("ix_incidents_category"), "incidents", ["category"])
    op.create_index(op.f("ix_incidents_classification"), "incidents", ["classification"])
    op.create_index("ix_incidents_created_at_id", "incidents", ["created_at", "id"])
    op.create_index(op.f("ix_incidents_duplicate_of_id"), "incidents", ["duplicate_of_id"])
    op.create_index(op.f("ix_incidents_status"), "incidents", ["status"])

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
        _ts("offered_at", nullable=False),
        _ts("enqueued_at"),
        _ts("ringing_at"),
        _ts("answered_at"),
        _ts("transferred_at"),
        _ts("ended_at"),
        sa.Column("incident_id", sa.BigInteger(), nullable=True),
        _ts("created_at", nullable=False, now=True),
        _ts("updated_at", nullable=False, now=True),
        # What Asterisk resolved from a PIDF-LO.
        sa.Column("geoloc_effective", sa.String(length=2000), nullable=True),
        sa.Column("geoloc_method", sa.String(length=40), nullable=True),
        # When the call's locations were derived (the sweep retries the rest).
        _ts("locations_done_at"),
        # When a waiting caller first rang an overflow destination.
        _ts("overflowed_at"),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_calls_incident_id_incidents"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calls")),
        sa.UniqueConstraint("uniqueid", name=op.f("uq_calls_uniqueid")),
    )
    # Caller history looks a number up in every column it may have been stored in.
    op.create_index("ix_calls_caller_number", "calls", ["caller_number"])
    op.create_index("ix_calls_caller_e164", "calls", ["caller_e164"])
    op.create_index("ix_calls_asserted_number", "calls", ["asserted_number"])
    op.create_index(op.f("ix_calls_incident_id"), "calls", ["incident_id"])
    op.create_index(op.f("ix_calls_linkedid"), "calls", ["linkedid"])
    op.create_index("ix_calls_offered_at_id", "calls", ["offered_at", "id"])
    # The callback worklist reads abandoned calls newest first.
    op.create_index(
        "ix_calls_abandoned_offered_at",
        "calls",
        ["offered_at", "id"],
        postgresql_where=sa.text("state = 'abandoned'"),
    )
    # The location sweep looks for calls with something to locate that were never done; the
    # index holds only those, so it stays small however many calls there are.
    op.create_index(
        "ix_calls_locations_pending",
        "calls",
        ["offered_at"],
        postgresql_where=sa.text(
            "locations_done_at IS NULL AND (pani_raw IS NOT NULL "
            "OR geoloc_effective IS NOT NULL OR geolocation_raw IS NOT NULL)"
        ),
    )

    # -- the live event stream -------------------------------------------------------------
    # Incident timeline lines (incident_events) and events that belong to no incident
    # (stream_events: operator state changes) take their ids from one sequence, so that one
    # Last-Event-ID orders and resumes both. CACHE 1 (the default) matters: ids are handed out
    # in the order the writers ask for them.
    op.execute("CREATE SEQUENCE live_event_id_seq AS bigint CACHE 1")
    op.create_table(
        "incident_events",
        sa.Column(
            "id",
            sa.BigInteger(),
            server_default=sa.text("nextval('live_event_id_seq')"),
            nullable=False,
        ),
        sa.Column("incident_id", sa.BigInteger(), nullable=False),
        _ts("at", nullable=False, now=True),
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
    op.create_index(op.f("ix_incident_events_incident_id"), "incident_events", ["incident_id"])
    op.create_table(
        "stream_events",
        sa.Column(
            "id",
            sa.BigInteger(),
            server_default=sa.text("nextval('live_event_id_seq')"),
            nullable=False,
        ),
        _ts("at", nullable=False, now=True),
        sa.Column("actor", sa.String(length=120), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("data", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stream_events")),
    )
    # One NOTIFY per inserting statement, not per row: listeners re-read the tables from their
    # last id, so the payload carries nothing.
    op.execute(
        """
CREATE FUNCTION siaga112_notify_incident_events() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('siaga112_events', '');
    RETURN NULL;
END
$$
"""
    )
    for table in ("incident_events", "stream_events"):
        op.execute(
            f"CREATE TRIGGER {table}_notify AFTER INSERT ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION siaga112_notify_incident_events()"
        )

    # -- locations, cell towers, AML -------------------------------------------------------
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
        _ts("observed_at", nullable=False),
        sa.Column("raw", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("confirmed", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("confirmed_by", sa.String(length=120), nullable=True),
        _ts("created_at", nullable=False, now=True),
        _ts("confirmed_at"),
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
    op.create_index(op.f("ix_locations_call_id"), "locations", ["call_id"])
    op.create_index(op.f("ix_locations_incident_id"), "locations", ["incident_id"])

    # The OpenCelliD layout; key (radio, mcc, net, area, cell), range in metres.
    op.create_table(
        "cell_towers",
        sa.Column("radio", sa.String(length=8), nullable=False),
        sa.Column("mcc", sa.SmallInteger(), nullable=False),
        sa.Column("net", sa.Integer(), nullable=False),
        sa.Column("area", sa.Integer(), nullable=False),
        sa.Column("cell", sa.BigInteger(), nullable=False),
        sa.Column("unit", sa.Integer(), nullable=True),
        sa.Column("lon", sa.Double(), nullable=False),
        sa.Column("lat", sa.Double(), nullable=False),
        sa.Column("range_m", sa.Integer(), nullable=False),
        sa.Column("samples", sa.Integer(), nullable=True),
        sa.Column("changeable", sa.Boolean(), nullable=True),
        _ts("created"),
        _ts("updated"),
        sa.Column("average_signal", sa.Integer(), nullable=True),
        _ts("imported_at", nullable=False, now=True),
        sa.CheckConstraint("lat BETWEEN -90 AND 90", name=op.f("ck_cell_towers_lat_range")),
        sa.CheckConstraint("lon BETWEEN -180 AND 180", name=op.f("ck_cell_towers_lon_range")),
        sa.CheckConstraint("range_m >= 0", name=op.f("ck_cell_towers_range_positive")),
        sa.PrimaryKeyConstraint("radio", "mcc", "net", "area", "cell", name=op.f("pk_cell_towers")),
    )

    # AML messages (SMS and HTTPS), matched or waiting for their call.
    op.create_table(
        "aml_messages",
        sa.Column("id", sa.Uuid(), nullable=False),
        _ts("received_at", nullable=False, now=True),
        sa.Column("channel", sa.String(length=10), nullable=False),
        sa.Column("sender", sa.String(length=80), nullable=False),
        sa.Column("number", sa.String(length=64), nullable=True),
        sa.Column("number_e164", sa.String(length=32), nullable=True),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("parsed", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        _ts("observed_at"),
        _ts("reference_at", nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("call_id", sa.Uuid(), nullable=True),
        sa.Column("incident_id", sa.BigInteger(), nullable=True),
        sa.Column("location_id", sa.Uuid(), nullable=True),
        _ts("matched_at"),
        sa.Column("late", sa.Boolean(), server_default=sa.text("false"), nullable=False),
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
    op.create_index(op.f("ix_aml_messages_received_at"), "aml_messages", ["received_at"])
    op.create_index(op.f("ix_aml_messages_call_id"), "aml_messages", ["call_id"])
    op.create_index(op.f("ix_aml_messages_incident_id"), "aml_messages", ["incident_id"])
    op.create_index(
        "ix_aml_messages_status_number_e164",
        "aml_messages",
        ["status", "number_e164", "received_at"],
    )

    # -- dispatch to agencies --------------------------------------------------------------
    op.create_table(
        "dispatches",
        _id(),
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
        _id(),
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

    # -- reconciliation from Asterisk's CDR file -------------------------------------------
    op.create_table(
        "read_cursors",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("file_id", sa.String(length=80), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        _ts("updated_at", nullable=False, now=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_read_cursors")),
    )

    # -- operators and the PJSIP realtime tables Asterisk reads them from ------------------
    # The ps_* rows are written by siaga112.operators.service in the same transaction as the
    # operator, and only for enabled operators: a disabled or deleted operator has no endpoint
    # and cannot register. They hold the columns siaga112 sets (the sorcery realtime wizard
    # reads `SELECT *` and skips what is absent), plus the columns Asterisk 22 names in a WHERE
    # clause at start (types as in Asterisk's contrib/ast-db-manage schema): without them
    # every start logs an ERROR for the failed query.
    op.create_table(
        "operators",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("extension", sa.String(length=20), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        # Wanted queue membership, re-applied after an Asterisk restart.
        sa.Column("logged_in", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("paused", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("pause_reason", sa.String(length=80), nullable=True),
        _ts("created_at", nullable=False, now=True),
        _ts("updated_at", nullable=False, now=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operators")),
        sa.UniqueConstraint("extension", name=op.f("uq_operators_extension")),
    )
    op.create_table(
        "ps_endpoints",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("transport", sa.String(length=40), nullable=True),
        sa.Column("aors", sa.String(length=200), nullable=True),
        sa.Column("auth", sa.String(length=40), nullable=True),
        sa.Column("context", sa.String(length=40), nullable=True),
        sa.Column("disallow", sa.String(length=200), nullable=True),
        sa.Column("allow", sa.String(length=200), nullable=True),
        sa.Column("direct_media", sa.String(length=3), nullable=True),
        sa.Column("rtp_symmetric", sa.String(length=3), nullable=True),
        sa.Column("force_rport", sa.String(length=3), nullable=True),
        sa.Column("rewrite_contact", sa.String(length=3), nullable=True),
        sa.Column("callerid", sa.String(length=200), nullable=True),
        # res_pjsip_mwi: SELECT * FROM ps_endpoints WHERE mailboxes != '' (always empty here).
        sa.Column("mailboxes", sa.String(length=40), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ps_endpoints")),
    )
    op.create_table(
        "ps_auths",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("auth_type", sa.String(length=20), nullable=True),
        sa.Column("username", sa.String(length=40), nullable=True),
        sa.Column("realm", sa.String(length=40), nullable=True),
        sa.Column("md5_cred", sa.String(length=40), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ps_auths")),
    )
    op.create_table(
        "ps_aors",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("max_contacts", sa.Integer(), nullable=True),
        sa.Column("remove_existing", sa.String(length=3), nullable=True),
        # res_pjsip's qualify of static contacts: SELECT * FROM ps_aors WHERE contact != ''
        # (always empty here: operators register, their contacts stay in Asterisk's astdb).
        sa.Column("contact", sa.String(length=255), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ps_aors")),
    )
    # Each operator's last state as Asterisk reported it: de-duplicates the state events across
    # restarts and across several siaga112 processes.
    op.create_table(
        "operator_live_states",
        sa.Column("extension", sa.String(length=20), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("pause_reason", sa.String(length=80), nullable=True),
        _ts("changed_at", nullable=False),
        sa.PrimaryKeyConstraint("extension", name=op.f("pk_operator_live_states")),
    )

    # -- number flags: prank and nuisance numbers, routed to the low-priority queue --------
    op.create_table(
        "number_flags",
        _id(),
        sa.Column("number", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        _ts("expires_at", nullable=False),
        sa.Column("created_by", sa.String(length=120), nullable=False),
        _ts("created_at", nullable=False, now=True),
        _ts("revoked_at"),
        sa.Column("revoked_by", sa.String(length=120), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_number_flags")),
    )
    # The AGI statement asks "is this number flagged now?" on every call.
    op.create_index(
        "ix_number_flags_active",
        "number_flags",
        ["number", "expires_at"],
        postgresql_where=sa.text("revoked_at IS NULL"),
    )

    # -- call recordings (MixMonitor files) linked to their calls, with retention ----------
    op.create_table(
        "recordings",
        _id(),
        sa.Column("call_id", sa.Uuid(), nullable=True),
        sa.Column("uniqueid", sa.String(length=64), nullable=False),
        sa.Column("path", sa.String(length=300), nullable=False),
        sa.Column("format", sa.String(length=10), nullable=False),
        _ts("started_at", nullable=False),
        _ts("ended_at", nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("legal_hold", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("legal_hold_reason", sa.String(length=500), nullable=True),
        sa.Column("legal_hold_by", sa.String(length=120), nullable=True),
        _ts("legal_hold_at"),
        _ts("linked_at", nullable=False, now=True),
        _ts("purged_at"),
        sa.ForeignKeyConstraint(
            ["call_id"],
            ["calls.id"],
            name=op.f("fk_recordings_call_id_calls"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recordings")),
        sa.UniqueConstraint("path", name=op.f("uq_recordings_path")),
    )
    op.create_index(op.f("ix_recordings_call_id"), "recordings", ["call_id"])
    op.create_index(
        "ix_recordings_purgeable",
        "recordings",
        ["started_at"],
        postgresql_where=sa.text("status <> 'purged' AND NOT legal_hold"),
    )

    # -- callbacks: the worklist of abandoned and silent calls, and each attempt -----------
    op.create_table(
        "callbacks",
        sa.Column("call_id", sa.Uuid(), nullable=False),
        sa.Column("incident_id", sa.BigInteger(), nullable=True),
        sa.Column("number", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("claimed_by", sa.String(length=120), nullable=True),
        sa.Column("operator_extension", sa.String(length=20), nullable=True),
        _ts("claim_expires_at"),
        _ts("last_attempt_at"),
        sa.Column("last_attempt_by", sa.String(length=20), nullable=True),
        sa.Column("last_outcome", sa.String(length=30), nullable=True),
        _ts("reached_at"),
        sa.Column("note", sa.String(length=500), nullable=True),
        _ts("created_at", nullable=False, now=True),
        _ts("updated_at", nullable=False, now=True),
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
        _id(),
        sa.Column("call_id", sa.Uuid(), nullable=False),
        sa.Column("channel_id", sa.String(length=150), nullable=False),
        sa.Column("operator_extension", sa.String(length=20), nullable=False),
        sa.Column("actor", sa.String(length=120), nullable=False),
        sa.Column("number", sa.String(length=64), nullable=False),
        sa.Column("dialled", sa.String(length=32), nullable=False),
        sa.Column("status_before", sa.String(length=20), nullable=False),
        _ts("started_at", nullable=False, now=True),
        _ts("expires_at", nullable=False),
        sa.Column("originated", sa.Boolean(), nullable=True),
        sa.Column("originate_reason", sa.Integer(), nullable=True),
        _ts("operator_answered_at"),
        sa.Column("dial_status", sa.String(length=20), nullable=True),
        _ts("dial_ended_at"),
        _ts("ended_at"),
        sa.Column("hangup_cause", sa.String(length=80), nullable=True),
        sa.Column("outcome", sa.String(length=30), nullable=True),
        _ts("decided_at"),
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

    # Where this database's record starts: calls Asterisk recorded before it are never
    # reconciled (siaga112.runtime.reconcile), so a new database next to an old PBX adopts none.
    op.create_table(
        "record_start",
        sa.Column("id", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column(
            "started_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("id = 1", name=op.f("ck_record_start_one_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_record_start")),
    )
    op.execute("INSERT INTO record_start (id) VALUES (1)")

    # -- seed rows -------------------------------------------------------------------------
    agencies = sa.table(
        "agencies",
        sa.column("code", sa.String),
        sa.column("name", sa.String),
        sa.column("kind", sa.String),
    )
    op.bulk_insert(agencies, [{"code": c, "name": n, "kind": k} for c, n, k in SEED_AGENCIES])
    conn = op.get_bind()
    for category, codes in DEFAULT_CATEGORY_AGENCIES.items():
        conn.execute(
            sa.text(
                "INSERT INTO category_agencies (category, agency_id) "
                "SELECT :category, id FROM agencies WHERE code = ANY(:codes)"
            ),
            {"category": category, "codes": codes},
        )


def downgrade() -> None:
    for table in (
        "record_start",
        "callback_attempts",
        "callbacks",
        "recordings",
        "number_flags",
        "operator_live_states",
        "ps_aors",
        "ps_auths",
        "ps_endpoints",
        "operators",
        "read_cursors",
        "webhook_outbox",
        "agency_dispatch_settings",
        "category_agencies",
        "dispatches",
        "aml_messages",
        "cell_towers",
        "locations",
        "stream_events",
        "incident_events",
        "calls",
        "incidents",
        "audit_events",
        "api_keys",
        "agencies",
    ):
        op.drop_table(table)
    op.execute("DROP FUNCTION siaga112_notify_incident_events()")
    op.execute("DROP SEQUENCE live_event_id_seq")
