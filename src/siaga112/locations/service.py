"""Caller location use cases: record a location with provenance, list history, pick the best.

Every source (network cell, PIDF-LO, AML, operator) ends in :func:`add_location`, which writes
the row, a ``location_added`` line on the incident timeline and an audit event; the caller
commits.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from siaga112.audit.models import AuditEvent
from siaga112.audit.service import record_audit
from siaga112.auth.service import Actor, system_actor
from siaga112.calls.models import Call
from siaga112.errors import CoordinatesRequired, InvalidRequest, NotFound
from siaga112.incidents.kecamatan import LocationFacts, kecamatan_of_location
from siaga112.incidents.models import Incident, IncidentEvent
from siaga112.incidents.service import add_timeline_event, refresh_kecamatan
from siaga112.locations.cells import CellPosition, cell_key, find_cell, find_cells
from siaga112.locations.georef import FetchedLocation
from siaga112.locations.models import Location
from siaga112.locations.pani import DEFAULT_GNB_ID_BITS, PaniResult, parse_pani
from siaga112.locations.pidf import parse_effective_location
from siaga112.locations.sources import LocationSource

log = logging.getLogger(__name__)

SYSTEM_LOCATIONS = system_actor("locations")
DEFAULT_RECENT_WINDOW = timedelta(minutes=5)
DEFAULT_CELL_MIN_RADIUS_M = 250.0


def location_summary(location: Location) -> dict[str, Any]:
    """What the timeline and the audit trail keep of a location (no raw payload)."""
    return _summary(
        id=location.id,
        call_id=location.call_id,
        source=location.source,
        method=location.method,
        lat=location.lat,
        lon=location.lon,
        radius_m=location.radius_m,
        confidence=location.confidence,
        address=location.address,
        observed_at=location.observed_at,
        confirmed=location.confirmed,
        confirmed_by=location.confirmed_by,
    )


def _summary(
    *,
    id: uuid.UUID,
    call_id: uuid.UUID | None,
    source: str,
    method: str | None,
    lat: float | None,
    lon: float | None,
    radius_m: float | None,
    confidence: int | None,
    address: str | None,
    observed_at: datetime,
    confirmed: bool,
    confirmed_by: str | None,
    **_: Any,
) -> dict[str, Any]:
    # Also takes a location row as a dict of its columns (the set-based path writes those).
    return {
        "location_id": str(id),
        "call_id": str(call_id) if call_id else None,
        "source": source,
        "method": method,
        "lat": lat,
        "lon": lon,
        "radius_m": radius_m,
        "confidence": confidence,
        "address": address,
        "observed_at": observed_at.isoformat(),
        "confirmed": confirmed,
        "confirmed_by": confirmed_by,
    }


async def add_location(
    *,
    session: AsyncSession,
    call_id: uuid.UUID | None,
    incident_id: int | None,
    source: LocationSource,
    lat: float | None,
    lon: float | None,
    radius_m: float | None,
    confidence: int | None,
    method: str | None,
    observed_at: datetime,
    raw: dict[str, Any] | None,
    address: str | None,
    actor: Actor,
    request_id: str | None = None,
) -> Location:
    """Store one location with its provenance; the caller commits.

    The incident is taken from the call when only ``call_id`` is given. Coordinates come in pairs
    (both or neither); a location may have none and still carry what is known in ``raw``.
    """
    if (lat is None) != (lon is None):
        raise InvalidRequest("lat and lon go together", details=[{"field": "lat/lon"}])
    if lat is not None and not -90.0 <= lat <= 90.0:
        raise InvalidRequest(f"latitude {lat} out of range", details=[{"field": "lat"}])
    if lon is not None and not -180.0 <= lon <= 180.0:
        raise InvalidRequest(f"longitude {lon} out of range", details=[{"field": "lon"}])
    if radius_m is not None and radius_m < 0:
        raise InvalidRequest("radius must not be negative", details=[{"field": "radius_m"}])
    if call_id is None and incident_id is None:
        raise InvalidRequest("a location belongs to a call or an incident")
    if call_id is not None:
        call_incident = await session.scalar(select(Call.incident_id).where(Call.id == call_id))
        if call_incident is None and not await session.scalar(
            select(Call.id).where(Call.id == call_id)
        ):
            raise NotFound(f"call {call_id} not found", details=[{"field": "call_id"}])
        if incident_id is None:
            incident_id = call_incident
    location = Location(
        id=uuid.uuid4(),
        call_id=call_id,
        incident_id=incident_id,
        source=LocationSource(source).value,
        method=method,
        lat=lat,
        lon=lon,
        radius_m=radius_m,
        confidence=confidence,
        address=address,
        observed_at=observed_at,
        raw=raw,
        confirmed=False,
    )
    session.add(location)
    await session.flush()
    summary = location_summary(location)
    if incident_id is not None:
        add_timeline_event(
            session, incident_id=incident_id, actor=actor, kind="location_added", data=summary
        )
        await _refresh_kecamatan(session, location, actor=actor, request_id=request_id)
    await record_audit(
        session=session,
        actor=actor,
        action="location.add",
        entity_type="location",
        entity_id=str(location.id),
        before=None,
        after=summary | {"incident_id": incident_id},
        request_id=request_id,
    )
    return location


async def _refresh_kecamatan(
    session: AsyncSession, location: Location, *, actor: Actor, request_id: str | None
) -> None:
    """A location that names a kecamatan (civic A3, or an address with "Kec.") may give the
    incident its kecamatan for the reports; any other location leaves the incident alone."""
    if location.incident_id is None:
        return
    facts = LocationFacts(
        source=location.source,
        address=location.address,
        raw=location.raw,
        observed_at=location.observed_at,
        confirmed=location.confirmed,
    )
    if kecamatan_of_location(facts) is None:
        return
    incident = await session.get(Incident, location.incident_id, with_for_update=True)
    if incident is not None:
        await refresh_kecamatan(
            session=session,
            incident=incident,
            locations=await location_facts(session, incident.id),
            actor=actor,
            request_id=request_id,
        )


async def location_facts(session: AsyncSession, incident_id: int) -> list[LocationFacts]:
    """What the kecamatan rule reads of an incident's caller locations (all of them)."""
    rows = (
        await session.execute(
            select(
                Location.source,
                Location.address,
                Location.raw,
                Location.observed_at,
                Location.confirmed,
            ).where(Location.incident_id == incident_id)
        )
    ).all()
    return [
        LocationFacts(
            source=r.source,
            address=r.address,
            raw=r.raw,
            observed_at=r.observed_at,
            confirmed=r.confirmed,
        )
        for r in rows
    ]


# -- the call side ----------------------------------------------------------------------------


async def _lock_call(session: AsyncSession, call_id: uuid.UUID) -> None:
    # Serialises the location derivation of one call (AGI background task, reconciliation
    # sweep, a replayed AGI request) so each source is stored once per call.
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
        {"key": f"siaga112.locations.call:{call_id}"},
    )


async def _has_location(
    session: AsyncSession, call_id: uuid.UUID, source: LocationSource, method: str
) -> bool:
    found = await session.scalar(
        select(Location.id)
        .where(
            Location.call_id == call_id,
            Location.source == source.value,
            Location.method == method,
        )
        .limit(1)
    )
    return found is not None


async def cell_location_for_call(
    *,
    session: AsyncSession,
    call_id: uuid.UUID,
    incident_id: int | None,
    pani: PaniResult,
    observed_at: datetime,
    actor: Actor = SYSTEM_LOCATIONS,
    min_radius_m: float = DEFAULT_CELL_MIN_RADIUS_M,
) -> Location:
    """A ``network_cell`` location from a parsed PANI; coordinates only when the cell is known.

    An unknown cell, or a header that did not parse, still gives a row: what is known (network,
    area code, the reason) is in ``raw`` so an operator sees it.
    """
    position = None
    if pani.cell is not None:
        position = await find_cell(session=session, cell=pani.cell)
    cell = _cell_fields(pani, position, min_radius_m=min_radius_m)
    return await add_location(
        session=session,
        call_id=call_id,
        incident_id=incident_id,
        source=LocationSource.NETWORK_CELL,
        confidence=None,
        observed_at=observed_at,
        actor=actor,
        **cell,
    )


def _cell_method(pani: PaniResult) -> str:
    return f"cell-{pani.cell.radio.value.lower()}" if pani.cell else "cell-unparsed"


def _cell_fields(
    pani: PaniResult, position: CellPosition | None, *, min_radius_m: float
) -> dict[str, Any]:
    """A network-cell location's own fields (lat, lon, radius_m, method, raw, address) from a
    parsed PANI and where the cell table puts its cell (None: not in the table)."""
    raw: dict[str, Any] = {"pani": pani.as_dict()}
    lat = lon = radius = None
    if pani.cell is not None:
        if position is not None:
            lat, lon = position.lat, position.lon
            radius = max(float(position.range_m), min_radius_m)
            raw["cell_tower"] = {
                "range_m": position.range_m,
                "samples": position.samples,
                "updated": position.updated.isoformat() if position.updated else None,
            }
        else:
            raw["cell_tower"] = None
    return {
        "lat": lat,
        "lon": lon,
        "radius_m": radius,
        "method": _cell_method(pani),
        "raw": raw,
        "address": _cell_label(pani),
    }


def _cell_label(pani: PaniResult) -> str | None:
    """What an operator reads when there are no coordinates: network and area."""
    cell = pani.cell
    if cell is None:
        return None
    network = cell.network or f"PLMN {cell.plmn}"
    return f"{network}, {cell.area_kind.upper()} {cell.area}, {cell.radio.value} cell {cell.cell}"


async def locations_for_call(
    *,
    session: AsyncSession,
    call_id: uuid.UUID,
    incident_id: int | None,
    pani: str | None,
    geoloc_effective: str | None,
    geoloc_method: str | None,
    observed_at: datetime,
    actor: Actor = SYSTEM_LOCATIONS,
    gnb_id_bits: int = DEFAULT_GNB_ID_BITS,
    min_radius_m: float = DEFAULT_CELL_MIN_RADIUS_M,
) -> list[Location]:
    """The locations a call's own signalling gives: its serving cell (PANI) and the PIDF-LO
    location Asterisk resolved. Runs off the AGI hot path; idempotent per call and source, so a
    replayed AGI request or a reconciliation pass adds nothing twice. The caller commits.
    """
    await _lock_call(session, call_id)
    added: list[Location] = []
    if pani and pani.strip():
        parsed = parse_pani(pani, gnb_id_bits=gnb_id_bits)
        method = _cell_method(parsed)
        if not await _has_location(session, call_id, LocationSource.NETWORK_CELL, method):
            added.append(
                await cell_location_for_call(
                    session=session,
                    call_id=call_id,
                    incident_id=incident_id,
                    pani=parsed,
                    observed_at=observed_at,
                    actor=actor,
                    min_radius_m=min_radius_m,
                )
            )
    if geoloc_effective and geoloc_effective.strip():
        exists = await session.scalar(
            select(Location.id)
            .where(
                Location.call_id == call_id,
                Location.source == LocationSource.PIDF_LO.value,
                # one fetched by reference is another location (referenced_location_for_call)
                ~Location.raw.has_key("fetched_from"),
            )
            .limit(1)
        )
        if exists is None:
            pidf = await _pidf_location(
                session=session,
                call_id=call_id,
                incident_id=incident_id,
                geoloc_effective=geoloc_effective,
                geoloc_method=geoloc_method,
                observed_at=observed_at,
                actor=actor,
            )
            if pidf is not None:
                added.append(pidf)
    return added


async def _pidf_location(
    *,
    session: AsyncSession,
    call_id: uuid.UUID,
    incident_id: int | None,
    geoloc_effective: str,
    geoloc_method: str | None,
    observed_at: datetime,
    actor: Actor,
) -> Location | None:
    """The location Asterisk resolved from the call's PIDF-LO (``GEOLOC_PROFILE``), parsed by
    :mod:`siaga112.locations.pidf`; a by-reference or civic-only location is kept without
    coordinates."""
    parsed = parse_effective_location(geoloc_effective, geoloc_method)
    if parsed is None:
        return None
    has_xy = parsed.has_coordinates
    return await add_location(
        session=session,
        call_id=call_id,
        incident_id=incident_id,
        source=LocationSource.PIDF_LO,
        lat=parsed.lat if has_xy else None,
        lon=parsed.lon if has_xy else None,
        radius_m=parsed.radius_m if has_xy else None,
        confidence=parsed.confidence,
        method=(parsed.method or geoloc_method or None),
        observed_at=parsed.observed_at or observed_at,
        raw={
            "effective_location": geoloc_effective[:2000],
            "method": geoloc_method,
            "parsed": parsed.as_dict(),
        },
        address=parsed.address,
        actor=actor,
    )


async def referenced_location_for_call(
    *,
    session: AsyncSession,
    call_id: uuid.UUID,
    incident_id: int | None,
    fetched: FetchedLocation,
    observed_at: datetime,
    actor: Actor = SYSTEM_LOCATIONS,
) -> Location | None:
    """A ``pidf_lo`` location from a dereferenced by-reference Geolocation URI
    (:mod:`siaga112.locations.georef`); once per call and URI, nothing when the fetch gave no
    location. The caller commits."""
    parsed = fetched.location
    if parsed is None:
        return None
    await _lock_call(session, call_id)
    exists = await session.scalar(
        select(Location.id)
        .where(
            Location.call_id == call_id,
            Location.source == LocationSource.PIDF_LO.value,
            Location.raw["fetched_from"].astext == fetched.uri,
        )
        .limit(1)
    )
    if exists is not None:
        return None
    has_xy = parsed.has_coordinates
    return await add_location(
        session=session,
        call_id=call_id,
        incident_id=incident_id,
        source=LocationSource.PIDF_LO,
        lat=parsed.lat if has_xy else None,
        lon=parsed.lon if has_xy else None,
        radius_m=parsed.radius_m if has_xy else None,
        confidence=parsed.confidence,
        method=parsed.method,
        observed_at=parsed.observed_at or observed_at,
        raw={"fetched_from": fetched.uri[:2000], "parsed": parsed.as_dict()},
        address=parsed.address,
        actor=actor,
    )


def aml_number(
    *,
    asserted_number: str | None,
    caller_e164: str | None,
    caller_number: str | None,
    caller_id_available: bool,
) -> str | None:
    """The number an AML message from this caller's handset would carry: the network-asserted
    one when there is one (that is what the handset's own number is likely to equal)."""
    if asserted_number or caller_e164:
        return asserted_number or caller_e164
    return caller_number if caller_id_available else None


@dataclass(frozen=True, slots=True, kw_only=True)
class CallLocationJob:
    """What a call's own signalling says about where the caller is: the input of one location
    derivation, run after the AGI write or, when that was deferred or failed, by the sweep."""

    call_id: uuid.UUID
    incident_id: int | None
    pani: str | None
    geoloc_effective: str | None
    geoloc_method: str | None
    geolocation: str | None
    """The raw Geolocation header (a by-reference URI is fetched only when configured)."""
    aml_number: str | None
    at: datetime

    @property
    def locatable(self) -> bool:
        """Something to derive a location from (what the sweep looks for)."""
        return bool(self.pani or self.geoloc_effective or self.geolocation)


async def pending_location_jobs(
    *, session: AsyncSession, since: datetime, before: datetime, limit: int = 200
) -> list[CallLocationJob]:
    """Calls offered between ``since`` and ``before`` with something to locate whose
    derivation never finished: deferred under load (the backlog was full), failed, cut off by a
    stop, created by the AMI tracker or reconciled from the CDR file. Oldest first."""
    rows = (
        await session.execute(
            select(
                Call.id,
                Call.incident_id,
                Call.pani_raw,
                Call.geoloc_effective,
                Call.geoloc_method,
                Call.geolocation_raw,
                Call.asserted_number,
                Call.caller_e164,
                Call.caller_number,
                Call.caller_id_available,
                Call.offered_at,
            )
            .where(
                Call.locations_done_at.is_(None),
                or_(
                    Call.pani_raw.is_not(None),
                    Call.geoloc_effective.is_not(None),
                    Call.geolocation_raw.is_not(None),
                ),
                Call.offered_at >= since,
                Call.offered_at <= before,
            )
            .order_by(Call.offered_at)
            .limit(limit)
        )
    ).all()
    return [
        CallLocationJob(
            call_id=r.id,
            incident_id=r.incident_id,
            pani=r.pani_raw,
            geoloc_effective=r.geoloc_effective,
            geoloc_method=r.geoloc_method,
            geolocation=r.geolocation_raw,
            aml_number=aml_number(
                asserted_number=r.asserted_number,
                caller_e164=r.caller_e164,
                caller_number=r.caller_number,
                caller_id_available=r.caller_id_available,
            ),
            at=r.offered_at,
        )
        for r in rows
    ]


async def mark_locations_done(*, session: AsyncSession, call_id: uuid.UUID) -> None:
    """The call's own locations are derived (whatever they gave): the sweep leaves it alone.
    The caller commits, in the transaction that stored them."""
    await session.execute(
        update(Call)
        .where(Call.id == call_id, Call.locations_done_at.is_(None))
        .values(locations_done_at=func.now())
    )


async def derive_cell_only_calls(
    *,
    session: AsyncSession,
    jobs: Sequence[CallLocationJob],
    gnb_id_bits: int = DEFAULT_GNB_ID_BITS,
    min_radius_m: float = DEFAULT_CELL_MIN_RADIUS_M,
    actor: Actor = SYSTEM_LOCATIONS,
) -> list[CallLocationJob]:
    """What :func:`locations_for_call` and :func:`mark_locations_done` do for each of ``jobs``,
    set-based: a handful of statements for the lot instead of about ten per call. Only for
    calls whose signalling gives a network cell at most (no PIDF-LO, nothing to fetch, no AML
    waiting: the sweep decides). The same rows come out: the location, its timeline line and
    audit row, the done-mark. Returns the jobs it left alone because their location would
    name a kecamatan (a network cell never does today): those need the per-call path's
    incident refresh. The caller commits."""
    parsed: dict[uuid.UUID, PaniResult] = {}
    for job in jobs:
        if job.pani and job.pani.strip():
            parsed[job.call_id] = parse_pani(job.pani, gnb_id_bits=gnb_id_bits)
    ids = [j.call_id for j in jobs]
    # In one order for every sweep, so that two processes sweeping the same calls queue
    # behind each other instead of deadlocking.
    await session.execute(
        text(
            "SELECT pg_advisory_xact_lock(hashtextextended(k, 0))"
            " FROM unnest(CAST(:keys AS text[])) AS k"
        ),
        {"keys": sorted(f"siaga112.locations.call:{c}" for c in parsed)},
    )
    # Read under the locks: a derivation that finished meanwhile has stored its location.
    existing = select(func.array_agg(Location.method)).where(
        Location.call_id == Call.id, Location.source == LocationSource.NETWORK_CELL.value
    )
    current = {
        r.id: (r.incident_id, set(r.methods or ()))
        for r in await session.execute(
            select(Call.id, Call.incident_id, existing.scalar_subquery().label("methods")).where(
                Call.id.in_(list(parsed))
            )
        )
    }
    positions = await find_cells(
        session=session, cells=[p.cell for p in parsed.values() if p.cell is not None]
    )
    locations: list[dict[str, Any]] = []
    timeline: list[dict[str, Any]] = []
    audit: list[dict[str, Any]] = []
    left: list[CallLocationJob] = []
    for job in jobs:
        pani = parsed.get(job.call_id)
        if pani is None or job.call_id not in current:
            continue
        call_incident, methods = current[job.call_id]
        position = positions.get(cell_key(pani.cell)) if pani.cell is not None else None
        cell = _cell_fields(pani, position, min_radius_m=min_radius_m)
        if cell["method"] in methods:
            continue
        incident_id = job.incident_id if job.incident_id is not None else call_incident
        row: dict[str, Any] = {
            "id": uuid.uuid4(),
            "call_id": job.call_id,
            "incident_id": incident_id,
            "source": LocationSource.NETWORK_CELL.value,
            "confidence": None,
            "observed_at": job.at,
            "confirmed": False,
            "confirmed_by": None,
            **cell,
        }
        facts = LocationFacts(
            source=row["source"],
            address=row["address"],
            raw=row["raw"],
            observed_at=row["observed_at"],
            confirmed=False,
        )
        if incident_id is not None and kecamatan_of_location(facts) is not None:
            left.append(job)
            continue
        summary = _summary(**row)
        del row["confirmed_by"]  # the ORM path leaves it unset too
        locations.append(row)
        if incident_id is not None:
            timeline.append(
                {
                    "incident_id": incident_id,
                    "actor": actor.label,
                    "kind": "location_added",
                    "data": summary,
                }
            )
        audit.append(
            {
                "actor": actor.label,
                "actor_key_id": actor.key_id,
                "action": "location.add",
                "entity_type": "location",
                "entity_id": str(row["id"]),
                "before": None,
                "after": summary | {"incident_id": incident_id},
                "request_id": None,
            }
        )
    if locations:
        await session.execute(insert(Location.metadata.tables[Location.__tablename__]), locations)
    if timeline:
        await session.execute(
            insert(IncidentEvent.metadata.tables[IncidentEvent.__tablename__]), timeline
        )
    if audit:
        await session.execute(insert(AuditEvent.metadata.tables[AuditEvent.__tablename__]), audit)
    skipped = {j.call_id for j in left}
    # The rows locked in id order before they are written (as the lost-node rule locks its
    # calls, siaga112.calls.lost): two multi-row writers of the same calls queue, never
    # deadlock. FOR NO KEY UPDATE (key_share): the locations inserted above hold KEY SHARE
    # locks on their calls in the jobs' order, which a plain FOR UPDATE of another writer
    # would conflict with.
    locked = (
        select(Call.id)
        .where(
            Call.id.in_([c for c in ids if c not in skipped]),
            Call.locations_done_at.is_(None),
        )
        .order_by(Call.id)
        .with_for_update(key_share=True)
    )
    await session.execute(
        update(Call)
        .where(Call.id.in_(locked.scalar_subquery()), Call.locations_done_at.is_(None))
        .values(locations_done_at=func.now())
        .execution_options(synchronize_session=False)
    )
    return left


# -- history, best location, confirmation -------------------------------------------------


@dataclass(frozen=True, slots=True)
class BestLocation:
    location: Location
    reason: str
    """``confirmed``: an operator confirmed it; ``most_precise_recent``: the smallest radius
    among fixes close in time to the newest; ``latest``: none has a radius."""
    newer_unconfirmed: int
    """Locations with coordinates observed after the confirmed one: shown, never applied."""


def _radius_key(location: Location) -> float:
    return location.radius_m if location.radius_m is not None else float("inf")


def best_location(
    locations: Sequence[Location], *, recent_window: timedelta = DEFAULT_RECENT_WINDOW
) -> BestLocation | None:
    """The location to show first.

    1. An operator-confirmed location wins (the most recently confirmed one); a newer fix never
       replaces it silently: it is counted in ``newer_unconfirmed`` for the console to offer.
    2. Else, among locations with coordinates observed within ``recent_window`` of the newest
       one, the most precise (smallest radius; no radius counts as least precise), the newer on
       a tie. "Recent" is relative to the newest fix, not to now, so an incident read later
       shows the same answer.
    """
    placed = [loc for loc in locations if loc.lat is not None and loc.lon is not None]
    confirmed = [loc for loc in placed if loc.confirmed]
    if confirmed:
        chosen = max(confirmed, key=lambda loc: loc.confirmed_at or loc.observed_at)
        newer = sum(
            1 for loc in placed if not loc.confirmed and loc.observed_at > chosen.observed_at
        )
        return BestLocation(chosen, "confirmed", newer)
    if not placed:
        return None
    newest = max(loc.observed_at for loc in placed)
    recent = [loc for loc in placed if loc.observed_at >= newest - recent_window]
    chosen = min(recent, key=lambda loc: (_radius_key(loc), -loc.observed_at.timestamp()))
    reason = "latest" if chosen.radius_m is None else "most_precise_recent"
    return BestLocation(chosen, reason, 0)


async def best_location_of_incident(
    *,
    session: AsyncSession,
    incident_id: int,
    recent_window: timedelta = DEFAULT_RECENT_WINDOW,
) -> BestLocation | None:
    """The incident's best location by :func:`best_location`: the one rule behind the incident
    detail, the location history and what agencies get (dispatch API and webhooks), so that an
    agency is sent to the point the operator sees. Pass the configured window
    (``SIAGA112_LOCATIONS__RECENT_WINDOW_S``). Not audited here: the caller audits the read."""
    rows = (
        await session.scalars(
            select(Location).where(
                Location.incident_id == incident_id,
                Location.lat.is_not(None),
                Location.lon.is_not(None),
            )
        )
    ).all()
    return best_location(rows, recent_window=recent_window)


async def _audit_read(
    session: AsyncSession,
    *,
    actor: Actor,
    entity_type: str,
    entity_id: str,
    count: int,
    request_id: str | None,
) -> None:
    # Where a caller is, is personal data: every read of it is on record.
    await record_audit(
        session=session,
        actor=actor,
        action="location.read",
        entity_type=entity_type,
        entity_id=entity_id,
        before=None,
        after={"locations": count},
        request_id=request_id,
    )


async def list_for_incident(
    *, session: AsyncSession, incident_id: int, actor: Actor, request_id: str | None
) -> list[Location]:
    """An incident's location history, oldest first; the read is audited."""
    if await session.get(Incident, incident_id) is None:
        raise NotFound(f"incident {incident_id} not found")
    rows = list(
        (
            await session.scalars(
                select(Location)
                .where(Location.incident_id == incident_id)
                .order_by(Location.observed_at, Location.created_at)
            )
        ).all()
    )
    # Audited also when there is nothing yet: the attempt to learn where a caller is counts.
    await _audit_read(
        session,
        actor=actor,
        entity_type="incident",
        entity_id=str(incident_id),
        count=len(rows),
        request_id=request_id,
    )
    return rows


async def list_for_call(
    *, session: AsyncSession, call_id: uuid.UUID, actor: Actor, request_id: str | None
) -> list[Location]:
    """A call's location history, oldest first; the read is audited."""
    if await session.get(Call, call_id) is None:
        raise NotFound(f"call {call_id} not found")
    rows = list(
        (
            await session.scalars(
                select(Location)
                .where(Location.call_id == call_id)
                .order_by(Location.observed_at, Location.created_at)
            )
        ).all()
    )
    # Audited also when there is nothing yet: the attempt to learn where a caller is counts.
    await _audit_read(
        session,
        actor=actor,
        entity_type="call",
        entity_id=str(call_id),
        count=len(rows),
        request_id=request_id,
    )
    return rows


async def add_operator_location(
    *,
    session: AsyncSession,
    incident_id: int,
    lat: float | None,
    lon: float | None,
    radius_m: float | None,
    address: str | None,
    call_id: uuid.UUID | None,
    confirm: bool | None,
    note: str | None,
    actor: Actor,
    request_id: str | None,
) -> Location:
    """A location an operator entered (from what the caller said, or a map click).

    ``confirm``: None (the default) confirms it when it has coordinates; an address alone is
    kept, shown in the history and used for the kecamatan, but is not a point to send anyone
    to, so it never becomes the best location. Asking for ``confirm=True`` without coordinates
    is refused (CoordinatesRequired) with nothing stored: the operator learns at once that the
    map point still shown (and sent to agencies) is not the address just typed.
    """
    if await session.get(Incident, incident_id) is None:
        raise NotFound(f"incident {incident_id} not found")
    if lat is None and lon is None and not address:
        raise InvalidRequest(
            "give coordinates, an address, or both", details=[{"field": "body.lat"}]
        )
    placed = lat is not None and lon is not None
    if confirm and not placed:
        raise CoordinatesRequired(
            "a location without coordinates cannot be confirmed: give lat and lon too, "
            "or send it with confirm false",
            details=[{"field": "body.confirm"}],
        )
    if call_id is not None:
        owner = await session.scalar(select(Call.incident_id).where(Call.id == call_id))
        if owner != incident_id:
            raise InvalidRequest(
                f"call {call_id} is not a call of incident {incident_id}",
                details=[{"field": "body.call_id"}],
            )
    location = await add_location(
        session=session,
        call_id=call_id,
        incident_id=incident_id,
        source=LocationSource.OPERATOR,
        lat=lat,
        lon=lon,
        radius_m=radius_m,
        confidence=None,
        method="manual",
        observed_at=datetime.now(UTC),
        raw={"note": note} if note else None,
        address=address,
        actor=actor,
        request_id=request_id,
    )
    if placed if confirm is None else confirm:
        await _confirm(session, location, actor=actor, request_id=request_id)
    return location


async def _confirm(
    session: AsyncSession, location: Location, *, actor: Actor, request_id: str | None
) -> None:
    before = {"confirmed": location.confirmed, "confirmed_by": location.confirmed_by}
    previous: list[str] = []
    if location.incident_id is not None:
        previous = [
            str(i)
            for i in (
                await session.scalars(
                    select(Location.id).where(
                        Location.incident_id == location.incident_id,
                        Location.confirmed.is_(True),
                        Location.id != location.id,
                    )
                )
            ).all()
        ]
    location.confirmed = True
    location.confirmed_by = actor.label
    location.confirmed_at = datetime.now(UTC)
    await session.flush()
    await _refresh_kecamatan(session, location, actor=actor, request_id=request_id)
    data = {
        "location_id": str(location.id),
        "source": location.source,
        "lat": location.lat,
        "lon": location.lon,
        "radius_m": location.radius_m,
        "address": location.address,
        # An earlier confirmation stays on record; this one now takes precedence.
        "supersedes": previous,
    }
    if location.incident_id is not None:
        add_timeline_event(
            session,
            incident_id=location.incident_id,
            actor=actor,
            kind="location_confirmed",
            data=data,
        )
    await record_audit(
        session=session,
        actor=actor,
        action="location.confirm",
        entity_type="location",
        entity_id=str(location.id),
        before=before,
        after={"confirmed": True, "confirmed_by": actor.label, "supersedes": previous},
        request_id=request_id,
    )


async def confirm_location(
    *, session: AsyncSession, location_id: uuid.UUID, actor: Actor, request_id: str | None
) -> Location:
    """An operator or supervisor confirms a location: it becomes the incident's best location
    until someone confirms another (earlier confirmations stay on record). Confirming the
    location that is already the confirmed one changes nothing."""
    location = await session.get(Location, location_id, with_for_update=True)
    if location is None:
        raise NotFound(f"location {location_id} not found")
    if location.lat is None or location.lon is None:
        raise CoordinatesRequired(
            "a location without coordinates cannot be confirmed; add an operator location "
            "with coordinates",
            details=[{"field": "location_id"}],
        )
    if location.confirmed and location.incident_id is not None:
        later = await session.scalar(
            select(Location.id)
            .where(
                Location.incident_id == location.incident_id,
                Location.confirmed.is_(True),
                Location.id != location.id,
                Location.confirmed_at > (location.confirmed_at or datetime.min.replace(tzinfo=UTC)),
            )
            .limit(1)
        )
        if later is None:
            return location  # already the confirmed one: nothing changes
    elif location.confirmed:
        return location
    await _confirm(session, location, actor=actor, request_id=request_id)
    return location
