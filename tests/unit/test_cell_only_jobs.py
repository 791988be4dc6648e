"""Which calls a sweep derives together, set-based: only those whose whole derivation is their
network cell. A call with a PIDF-LO, a reference to fetch (when fetching is on) or a number that
may have AML waiting goes through the per-call path, or that location would be lost."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from siaga112.config import Settings
from siaga112.locations.service import CallLocationJob
from siaga112.locations.worker import LocationWorker
from siaga112.metrics import Metrics

PANI = "3GPP-E-UTRAN-FDD; utran-cell-id-3gpp=5101000A1B2C3D4E"
REFERENCE = "<https://lis.example.invalid/loc/1>"


def _job(**changes: Any) -> CallLocationJob:
    fields: dict[str, Any] = {
        "call_id": uuid.uuid4(),
        "incident_id": 1,
        "pani": PANI,
        "geoloc_effective": None,
        "geoloc_method": None,
        "geolocation": None,
        "aml_number": "081234567890",
        "at": datetime.now(UTC),
    }
    return CallLocationJob(**(fields | changes))


def _worker(*, fetch: bool) -> LocationWorker:
    settings = Settings()
    locations = settings.locations.model_copy(update={"fetch_geolocation_by_reference": fetch})
    return LocationWorker(
        settings=settings.model_copy(update={"locations": locations}),
        sessionmaker=async_sessionmaker(class_=AsyncSession),
        metrics=Metrics(),
    )


NONE_WAITING: frozenset[str] = frozenset()


@pytest.mark.parametrize(
    ("job", "aml", "fetch", "cell_only"),
    [
        (_job(), NONE_WAITING, False, True),
        (_job(pani="junk;;="), NONE_WAITING, False, True),
        (_job(aml_number=None), None, False, True),
        # A resolved PIDF-LO is a location of its own.
        (
            _job(geoloc_effective='shape="Point",crs="2d",pos="-6.2 106.8"'),
            NONE_WAITING,
            False,
            False,
        ),
        (_job(geoloc_effective="   "), NONE_WAITING, False, True),
        # A reference is fetched only when configured.
        (_job(geolocation=REFERENCE), NONE_WAITING, True, False),
        (_job(geolocation=REFERENCE), NONE_WAITING, False, True),
        # AML that may wait for the call: the number in another form counts.
        (_job(), frozenset({"+6281234567890"}), False, False),
        (_job(), frozenset({"+6289999999999"}), False, True),
        # Unknown (the sweep did not read them): always looked up.
        (_job(), None, False, False),
    ],
)
def test_only_a_call_whose_whole_derivation_is_its_cell_is_cell_only(
    job: CallLocationJob, aml: frozenset[str] | None, fetch: bool, cell_only: bool
) -> None:
    assert _worker(fetch=fetch).cell_only(job, aml) is cell_only
