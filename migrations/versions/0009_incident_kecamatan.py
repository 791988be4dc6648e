"""incident kecamatan for the reports; number indexes for caller history

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-23

``incidents.kecamatan`` is derived (siaga112.incidents.kecamatan) and kept up to date when the
address changes or a location naming one is added; existing rows are filled here by the same
rules. ``calls.caller_e164`` and ``calls.asserted_number`` get indexes: caller history looks a
number up in every column it may have been stored in.
"""

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

from siaga112.incidents.kecamatan import LocationFacts, derive_kecamatan

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _backfill() -> None:
    conn = op.get_bind()
    addresses: dict[int, str | None] = {
        row.id: row.address
        for row in conn.execute(sa.text("SELECT id, address FROM incidents WHERE address ~* 'kec'"))
    }
    located: dict[int, list[LocationFacts]] = {}
    for row in conn.execute(
        sa.text(
            "SELECT incident_id, source, address, raw, observed_at, confirmed FROM locations "
            "WHERE incident_id IS NOT NULL "
            "AND (raw -> 'parsed' -> 'civic' IS NOT NULL OR address ~* 'kec')"
        )
    ):
        raw: Any = row.raw
        located.setdefault(row.incident_id, []).append(
            LocationFacts(
                source=row.source,
                address=row.address,
                raw=raw if isinstance(raw, dict) else None,
                observed_at=row.observed_at or datetime.min.replace(tzinfo=UTC),
                confirmed=bool(row.confirmed),
            )
        )
    for incident_id in set(addresses) | set(located):
        found = derive_kecamatan(
            address=addresses.get(incident_id), locations=located.get(incident_id, [])
        )
        if found is not None:
            conn.execute(
                sa.text("UPDATE incidents SET kecamatan = :k WHERE id = :id"),
                {"k": found, "id": incident_id},
            )


def upgrade() -> None:
    op.add_column("incidents", sa.Column("kecamatan", sa.String(length=80), nullable=True))
    op.create_index("ix_calls_caller_e164", "calls", ["caller_e164"])
    op.create_index("ix_calls_asserted_number", "calls", ["asserted_number"])
    _backfill()


def downgrade() -> None:
    op.drop_index("ix_calls_asserted_number", table_name="calls")
    op.drop_index("ix_calls_caller_e164", table_name="calls")
    op.drop_column("incidents", "kecamatan")
