"""Incident use cases: list, read, open, change, annotate, link duplicates. All writes audited."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncSession

from siaga112.api.pagination import PagedFilter, after_cursor, keyset, page
from siaga112.audit.service import record_audit
from siaga112.auth.roles import Permission
from siaga112.auth.service import Actor, system_actor
from siaga112.errors import InvalidRequest, InvalidTransition, NotFound
from siaga112.incidents.kecamatan import LocationFacts, derive_kecamatan, kecamatan_from_text
from siaga112.incidents.lifecycle import (
    Category,
    Channel,
    Classification,
    Status,
    allowed_targets,
    can_transition,
)
from siaga112.incidents.models import Incident, IncidentEvent
from siaga112.incidents.schemas import IncidentCreate, IncidentPatch

_FIELDS = (
    "status",
    "category",
    "classification",
    "priority",
    "address",
    "landmark",
    "summary",
    "duplicate_of_id",
)


def snapshot(incident: Incident) -> dict[str, Any]:
    return {f: getattr(incident, f) for f in _FIELDS}


@dataclass(frozen=True, slots=True)
class IncidentFilter:
    status: list[Status] | None = None
    category: list[Category] | None = None
    classification: list[Classification] | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    # `siaga112.callers.matching.incidents_of_number`: the number in any stored form.
    caller: PagedFilter | None = None


async def list_incidents(
    *, session: AsyncSession, filters: IncidentFilter, limit: int, cursor: str | None
) -> tuple[list[Incident], str | None]:
    where: list[ColumnElement[bool]] = []
    if filters.status:
        where.append(Incident.status.in_([s.value for s in filters.status]))
    if filters.category:
        where.append(Incident.category.in_([c.value for c in filters.category]))
    if filters.classification:
        where.append(Incident.classification.in_([c.value for c in filters.classification]))
    if filters.created_from is not None:
        where.append(Incident.created_at >= filters.created_from)
    if filters.created_to is not None:
        where.append(Incident.created_at < filters.created_to)
    if filters.caller is not None:
        after = after_cursor(
            at=Incident.created_at, ident=Incident.id, id_kind="int", cursor=cursor
        )
        where.append(filters.caller([*where, *([after] if after is not None else [])], limit + 1))
    stmt = keyset(
        select(Incident).where(*where),
        at=Incident.created_at,
        ident=Incident.id,
        id_kind="int",
        cursor=cursor,
        limit=limit,
    )
    rows = (await session.scalars(stmt)).all()
    return page(rows, limit=limit, key=lambda i: (i.created_at, i.id))


async def get_incident(*, session: AsyncSession, incident_id: int, lock: bool = False) -> Incident:
    incident = await session.get(Incident, incident_id, with_for_update=lock)
    if incident is None:
        raise NotFound(f"incident {incident_id} not found")
    return incident


# Timeline lines that carry a caller location (coordinates, address).
LOCATION_EVENT_KINDS = frozenset({"location_added", "location_confirmed"})


def location_event_count(rows: list[IncidentEvent]) -> int:
    return sum(1 for r in rows if r.kind in LOCATION_EVENT_KINDS)


async def timeline_rows(*, session: AsyncSession, incident_id: int) -> list[IncidentEvent]:
    rows = await session.scalars(
        select(IncidentEvent)
        .where(IncidentEvent.incident_id == incident_id)
        .order_by(IncidentEvent.at, IncidentEvent.id)
    )
    return list(rows.all())


async def get_timeline(
    *, session: AsyncSession, incident_id: int, actor: Actor, request_id: str | None
) -> list[IncidentEvent]:
    """The incident's timeline, oldest first. Its location lines carry where the caller is, so
    the read is audited as ``location.read`` (via the timeline), whatever it holds; the caller
    commits."""
    await get_incident(session=session, incident_id=incident_id)
    rows = await timeline_rows(session=session, incident_id=incident_id)
    await record_audit(
        session=session,
        actor=actor,
        action="location.read",
        entity_type="incident",
        entity_id=str(incident_id),
        before=None,
        after={"via": "timeline", "location_events": location_event_count(rows)},
        request_id=request_id,
    )
    return rows


# The facts of an incident's caller locations (`siaga112.locations.service.location_facts`):
# the locations capability builds on incidents, so it is handed in rather than imported.
LocationFactsReader = Callable[[AsyncSession, int], Awaitable[list[LocationFacts]]]


async def refresh_kecamatan(
    *,
    session: AsyncSession,
    incident: Incident,
    locations: Sequence[LocationFacts],
    actor: Actor,
    request_id: str | None = None,
) -> None:
    """Re-derive the incident's kecamatan (siaga112.incidents.kecamatan) from its address and
    ``locations`` (all of the incident's); a change is written to the timeline and audited with
    ``actor``. The caller holds the incident row locked, so that two writers cannot leave an
    answer computed from what the other had not yet committed."""
    before = incident.kecamatan
    after = derive_kecamatan(address=incident.address, locations=list(locations))
    if after == before:
        return
    incident.kecamatan = after
    await record_change(
        session,
        incident_id=incident.id,
        actor=actor,
        kind="kecamatan_changed",
        data={"from": before, "to": after},
        action="incident.kecamatan",
        entity_type="incident",
        entity_id=str(incident.id),
        before={"kecamatan": before},
        after={"kecamatan": after},
        request_id=request_id,
    )


def add_timeline_event(
    session: AsyncSession, *, incident_id: int, actor: Actor, kind: str, data: dict[str, Any]
) -> None:
    """A line on the incident's timeline alone (for a change whose audit row is written with
    another line, see :func:`record_change`)."""
    session.add(IncidentEvent(incident_id=incident_id, actor=actor.label, kind=kind, data=data))


async def record_change(
    session: AsyncSession,
    *,
    incident_id: int,
    actor: Actor,
    kind: str,
    data: dict[str, Any],
    action: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    request_id: str | None,
    entity_type: str = "incident",
    entity_id: str | None = None,
) -> None:
    """A change on the record: its line on the incident's timeline (``kind``, ``data``) and its
    audit row (``action`` on ``entity_type``/``entity_id``, the incident by default, with
    ``before`` and ``after``), written together in the caller's transaction."""
    add_timeline_event(session, incident_id=incident_id, actor=actor, kind=kind, data=data)
    await record_audit(
        session=session,
        actor=actor,
        action=action,
        entity_type=entity_type,
        entity_id=entity_id if entity_id is not None else str(incident_id),
        before=before,
        after=after,
        request_id=request_id,
    )


async def create_incident(
    *, session: AsyncSession, data: IncidentCreate, actor: Actor, request_id: str | None
) -> Incident:
    if data.channel is Channel.CALL:
        raise InvalidRequest(
            "incidents from calls are opened by the telephony service",
            details=[{"field": "body.channel", "message": "use walk_in, radio, text or other"}],
        )
    incident = Incident(
        status=Status.NEW.value,
        category=data.category.value if data.category else None,
        classification=data.classification.value if data.classification else None,
        priority=data.priority,
        channel=data.channel.value,
        caller_number=data.caller_number,
        caller_name=data.caller_name,
        address=data.address,
        landmark=data.landmark,
        kecamatan=kecamatan_from_text(data.address),
        summary=data.summary,
        created_by=actor.label,
    )
    session.add(incident)
    await session.flush()
    after = snapshot(incident) | {"channel": incident.channel, "kecamatan": incident.kecamatan}
    await record_change(
        session,
        incident_id=incident.id,
        actor=actor,
        kind="created",
        data=after,
        action="incident.create",
        entity_type="incident",
        entity_id=str(incident.id),
        before=None,
        after=after,
        request_id=request_id,
    )
    return incident


def _apply_status(incident: Incident, target: Status, actor: Actor) -> None:
    current = Status(incident.status)
    if target is current:
        return
    may_reopen = actor.can(Permission.REOPEN_INCIDENTS)
    if not can_transition(current, target, may_reopen=may_reopen):
        allowed = [s.value for s in allowed_targets(current, may_reopen=may_reopen)]
        raise InvalidTransition(
            f"status cannot go from {current.value} to {target.value}",
            details=[{"field": "body.status", "from": current.value, "allowed": allowed}],
        )
    incident.status = target.value
    if target is Status.CLOSED:
        incident.closed_at = datetime.now(UTC)
    elif current is Status.CLOSED:
        incident.closed_at = None


def advance_status(incident: Incident, target: Status) -> Status | None:
    """Move the incident to ``target`` on the system's account (a new dispatch puts it in
    ``dispatched``) where the lifecycle allows it without a reopen; the status it had, or None
    when it stays where it is. Record it with :func:`record_status_change`."""
    current = Status(incident.status)
    if target is current or not can_transition(current, target, may_reopen=False):
        return None
    _apply_status(incident, target, system_actor("lifecycle"))
    return current


async def record_status_change(
    session: AsyncSession,
    *,
    incident: Incident,
    previous: Status,
    actor: Actor,
    request_id: str | None,
) -> None:
    """The timeline line and audit row of a status change made by :func:`advance_status`."""
    await record_change(
        session,
        incident_id=incident.id,
        actor=actor,
        kind="status_changed",
        data={"status": {"from": previous.value, "to": incident.status}},
        action="incident.update",
        before={"status": previous.value},
        after={"status": incident.status},
        request_id=request_id,
    )


async def update_incident(
    *,
    session: AsyncSession,
    incident_id: int,
    data: IncidentPatch,
    actor: Actor,
    request_id: str | None,
    location_facts: LocationFactsReader,
) -> Incident:
    incident = await get_incident(session=session, incident_id=incident_id, lock=True)
    before = snapshot(incident)
    changes = data.model_dump(exclude_unset=True)
    if "status" in changes:
        if changes["status"] is None:
            raise InvalidRequest("status cannot be null", details=[{"field": "body.status"}])
        _apply_status(incident, changes.pop("status"), actor)
    if "priority" in changes:
        if changes["priority"] is None:
            raise InvalidRequest("priority cannot be null", details=[{"field": "body.priority"}])
        incident.priority = changes.pop("priority")
    for field in ("category", "classification", "address", "landmark", "summary"):
        if field in changes:
            value = changes[field]
            setattr(incident, field, value.value if hasattr(value, "value") else value)
    after = snapshot(incident)
    diff = {k: {"from": before[k], "to": after[k]} for k in after if before[k] != after[k]}
    if "address" in diff:
        await refresh_kecamatan(
            session=session,
            incident=incident,
            locations=await location_facts(session, incident.id),
            actor=actor,
            request_id=request_id,
        )
    if diff:
        await session.flush()
        kind = "status_changed" if set(diff) == {"status"} else "updated"
        await record_change(
            session,
            incident_id=incident.id,
            actor=actor,
            kind=kind,
            data=diff,
            action="incident.update",
            entity_type="incident",
            entity_id=str(incident.id),
            before={k: before[k] for k in diff},
            after={k: after[k] for k in diff},
            request_id=request_id,
        )
    return incident


async def add_note(
    *, session: AsyncSession, incident_id: int, text: str, actor: Actor, request_id: str | None
) -> IncidentEvent:
    incident = await get_incident(session=session, incident_id=incident_id)
    event = IncidentEvent(
        incident_id=incident.id, actor=actor.label, kind="note", data={"text": text}
    )
    session.add(event)
    await session.flush()
    await record_audit(
        session=session,
        actor=actor,
        action="incident.note",
        entity_type="incident",
        entity_id=str(incident.id),
        before=None,
        after={"note_id": event.id, "text": text},
        request_id=request_id,
    )
    return event


async def link_duplicate(
    *,
    session: AsyncSession,
    incident_id: int,
    duplicate_of: int,
    actor: Actor,
    request_id: str | None,
) -> Incident:
    if incident_id == duplicate_of:
        raise InvalidRequest(
            "an incident cannot duplicate itself", details=[{"field": "body.duplicate_of"}]
        )
    # Lock both rows in id order so two opposite links cannot deadlock or form a cycle.
    first, second = sorted((incident_id, duplicate_of))
    locked = {
        i.id: i
        for i in (
            await session.scalars(
                select(Incident)
                .where(Incident.id.in_((first, second)))
                .order_by(Incident.id)
                .with_for_update()
            )
        ).all()
    }
    if incident_id not in locked:
        raise NotFound(f"incident {incident_id} not found")
    if duplicate_of not in locked:
        raise NotFound(
            f"incident {duplicate_of} not found", details=[{"field": "body.duplicate_of"}]
        )
    incident, target = locked[incident_id], locked[duplicate_of]
    # Point at the root of the chain so that duplicates never form cycles or long chains.
    root = target
    seen = {incident.id}
    while root.duplicate_of_id is not None:
        if root.id in seen or root.duplicate_of_id in seen:
            raise InvalidTransition(
                "linking would make a cycle of duplicates",
                details=[{"field": "body.duplicate_of"}],
            )
        seen.add(root.id)
        root = await get_incident(session=session, incident_id=root.duplicate_of_id)
    if root.id == incident.id:
        raise InvalidTransition(
            "linking would make a cycle of duplicates", details=[{"field": "body.duplicate_of"}]
        )
    before = snapshot(incident)
    incident.duplicate_of_id = root.id
    incident.classification = Classification.DUPLICATE.value
    # Re-point incidents that were duplicates of this one at the same root.
    children = (
        await session.scalars(
            select(Incident)
            .where(Incident.duplicate_of_id == incident.id)
            .order_by(Incident.id)
            .with_for_update()
        )
    ).all()
    relinked: list[tuple[Incident, dict[str, Any]]] = []
    for child in children:
        child_before = snapshot(child)
        child.duplicate_of_id = root.id
        relinked.append((child, child_before))
    after = snapshot(incident)
    await session.flush()
    await record_change(
        session,
        incident_id=incident.id,
        actor=actor,
        kind="duplicate_linked",
        data={"duplicate_of": root.id},
        action="incident.link_duplicate",
        entity_id=str(incident.id),
        before=before,
        after=after,
        request_id=request_id,
    )
    add_timeline_event(
        session,
        incident_id=root.id,
        actor=actor,
        kind="duplicate_received",
        data={"incident": incident.id},
    )
    for child, child_before in relinked:
        # A child moves with its parent: its own timeline and the root's say so, and the audit
        # trail has its before and after like any other change.
        await record_change(
            session,
            incident_id=child.id,
            actor=actor,
            kind="duplicate_relinked",
            data={"from": incident.id, "to": root.id},
            action="incident.link_duplicate",
            entity_id=str(child.id),
            before=child_before,
            after=snapshot(child) | {"via": incident.id},
            request_id=request_id,
        )
        add_timeline_event(
            session,
            incident_id=root.id,
            actor=actor,
            kind="duplicate_received",
            data={"incident": child.id, "via": incident.id},
        )
    return incident


def with_allowed(incident: Incident, actor: Actor) -> list[Status]:
    return allowed_targets(
        Status(incident.status), may_reopen=actor.can(Permission.REOPEN_INCIDENTS)
    )
