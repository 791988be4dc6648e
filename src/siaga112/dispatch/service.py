"""Dispatch use cases: hand an incident to agencies, move dispatches along their lifecycle,
default agencies per category, agency delivery settings, the outbox and the acknowledgement
watchdog. Every change writes a timeline event and an audit event, and (when the agency has a
webhook) an outbox message, all in the caller's transaction.

Agency keys (Role.AGENCY) see only dispatches of their own agency; any other dispatch is
reported as not found (404), so that an agency cannot learn which incidents exist.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import BigInteger, ColumnElement, Select, delete, exists, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from siaga112.agencies.models import Agency
from siaga112.api.pagination import keyset, page
from siaga112.audit.service import record_audit
from siaga112.auth.roles import Permission, Role
from siaga112.auth.service import Actor
from siaga112.dispatch.lifecycle import DispatchStatus, allowed_targets, can_transition
from siaga112.dispatch.models import (
    AgencyDispatchSettings,
    CategoryAgency,
    Dispatch,
    WebhookOutbox,
)
from siaga112.dispatch.schemas import (
    CallerFacts,
    DispatchSettingsUpdate,
    IncidentCore,
    IncidentFacts,
    LocationFacts,
)
from siaga112.dispatch.webhooks import (
    RESENT_EVENT,
    AgencyRef,
    DispatchComponent,
    NoteComponent,
    WebhookMessage,
    event_name,
    idempotency_key,
    message_payload,
    resend_key,
)
from siaga112.errors import (
    Conflict,
    DestinationRefused,
    DispatchNotWaiting,
    Forbidden,
    InvalidRequest,
    InvalidTransition,
    NotFound,
)
from siaga112.incidents.lifecycle import Category, Status
from siaga112.incidents.models import Incident, IncidentEvent
from siaga112.incidents.service import (
    advance_status,
    get_incident,
    record_change,
    record_status_change,
)
from siaga112.locations.models import Location
from siaga112.locations.service import DEFAULT_RECENT_WINDOW, best_location_of_incident
from siaga112.net import OutboundPolicy, UnsafeDestination

# The timestamp column set when a dispatch reaches each status (sent is created_at).
_STATUS_AT: dict[DispatchStatus, str] = {
    DispatchStatus.ACKNOWLEDGED: "acknowledged_at",
    DispatchStatus.EN_ROUTE: "en_route_at",
    DispatchStatus.ON_SCENE: "on_scene_at",
    DispatchStatus.COMPLETED: "completed_at",
    DispatchStatus.DECLINED: "declined_at",
}
MAX_NOTES = 50


# ---------------------------------------------------------------- scoping


def _agency_scope(actor: Actor) -> int | None:
    """The agency an actor is confined to; None for centre staff."""
    if actor.role is not Role.AGENCY:
        return None
    if actor.agency_id is None:  # the database forbids it; refuse rather than show all
        raise Forbidden("agency key without an agency")
    return actor.agency_id


def _scoped(stmt: Select[Any], actor: Actor) -> Select[Any]:
    scope = _agency_scope(actor)
    return stmt if scope is None else stmt.where(Dispatch.agency_id == scope)


# ---------------------------------------------------------------- facts


async def _best_location(
    *, session: AsyncSession, incident_id: int, recent_window: timedelta
) -> Location | None:
    # The operator's rule (siaga112.locations.service.best_location), never one of our own.
    best = await best_location_of_incident(
        session=session, incident_id=incident_id, recent_window=recent_window
    )
    return best.location if best is not None else None


async def _notes(*, session: AsyncSession, incident_id: int) -> list[NoteComponent]:
    rows = (
        await session.scalars(
            select(IncidentEvent)
            .where(IncidentEvent.incident_id == incident_id, IncidentEvent.kind == "note")
            .order_by(IncidentEvent.id.desc())
            .limit(MAX_NOTES)
        )
    ).all()
    return [
        NoteComponent(at=r.at, author=r.actor, text=str(r.data.get("text", "")))
        for r in reversed(rows)
    ]


async def _share_caller(*, session: AsyncSession, agency_id: int) -> bool:
    value = await session.scalar(
        select(AgencyDispatchSettings.share_caller).where(
            AgencyDispatchSettings.agency_id == agency_id
        )
    )
    return bool(value)


def _caller(incident: Incident, share: bool) -> CallerFacts | None:
    if not share or (incident.caller_number is None and incident.caller_name is None):
        return None
    return CallerFacts(number=incident.caller_number, name=incident.caller_name)


# ---------------------------------------------------------------- views


# The timeline line of a resend: the record of how often, when and by whom a dispatch was sent
# again (its count and last time are read from these lines, not kept twice).
RESENT_KIND = "dispatch_resent"


def _resent_lines(dispatch: Dispatch) -> list[ColumnElement[bool]]:
    return [
        IncidentEvent.incident_id == dispatch.incident_id,
        IncidentEvent.kind == RESENT_KIND,
        IncidentEvent.data["dispatch_id"].astext.cast(BigInteger) == dispatch.id,
    ]


Resends = tuple[int, datetime | None]


async def _resends(*, session: AsyncSession, dispatch: Dispatch) -> Resends:
    """How often the dispatch was resent, and when last."""
    count, last = (
        await session.execute(
            select(func.count(), func.max(IncidentEvent.at)).where(*_resent_lines(dispatch))
        )
    ).one()
    return int(count or 0), last


async def _resends_of(*, session: AsyncSession, dispatches: list[Dispatch]) -> dict[int, Resends]:
    """:func:`_resends` of many dispatches in one statement (a list of them)."""
    if not dispatches:
        return {}
    dispatch_id = IncidentEvent.data["dispatch_id"].astext.cast(BigInteger)
    rows = await session.execute(
        select(dispatch_id, func.count(), func.max(IncidentEvent.at))
        .where(
            IncidentEvent.incident_id.in_({d.incident_id for d in dispatches}),
            IncidentEvent.kind == RESENT_KIND,
            dispatch_id.in_([d.id for d in dispatches]),
        )
        .group_by(dispatch_id)
    )
    return {int(i): (int(n), last) for i, n, last in rows.all()}


@dataclass(frozen=True, slots=True)
class DispatchView:
    dispatch: Dispatch
    agency: Agency
    incident: IncidentFacts
    resends: int = 0
    last_resent_at: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        d = self.dispatch
        return {
            "id": d.id,
            "incident_id": d.incident_id,
            "agency_id": d.agency_id,
            "agency_code": self.agency.code,
            "agency_name": self.agency.name,
            "status": d.status,
            "note": d.note,
            "decline_reason": d.decline_reason,
            "created_by": d.created_by,
            "created_at": d.created_at,
            "updated_at": d.updated_at,
            "acknowledged_at": d.acknowledged_at,
            "en_route_at": d.en_route_at,
            "on_scene_at": d.on_scene_at,
            "completed_at": d.completed_at,
            "declined_at": d.declined_at,
            "unack_alerted_at": d.unack_alerted_at,
            "resend_count": self.resends,
            "last_resent_at": self.last_resent_at,
            "allowed_statuses": allowed_targets(DispatchStatus(d.status)),
            "incident": self.incident,
        }


def _core(incident: Incident) -> IncidentCore:
    return IncidentCore.model_validate(incident)


async def _view(
    *,
    session: AsyncSession,
    dispatch: Dispatch,
    with_location: bool,
    actor: Actor,
    request_id: str | None,
    recent_window: timedelta = DEFAULT_RECENT_WINDOW,
    resends: Resends | None = None,
) -> DispatchView:
    agency = await session.get_one(Agency, dispatch.agency_id)
    incident = await session.get_one(Incident, dispatch.incident_id)
    location = await _best_location(
        session=session, incident_id=incident.id, recent_window=recent_window
    )
    # Centre staff see the caller on the incident anyway; an agency only when allowed.
    share = actor.role is not Role.AGENCY or await _share_caller(
        session=session, agency_id=agency.id
    )
    facts = IncidentFacts(
        **_core(incident).model_dump(),
        has_location=location is not None,
        caller=_caller(incident, share),
    )
    if with_location:
        if location is not None:
            facts.location = LocationFacts.model_validate(location)
        # Where a caller is, is personal data: every read of it is on record (also one that
        # found none yet).
        await record_audit(
            session=session,
            actor=actor,
            action="location.read",
            entity_type="incident",
            entity_id=str(incident.id),
            before=None,
            after={
                "via": "dispatch",
                "dispatch_id": dispatch.id,
                "location_id": str(location.id) if location is not None else None,
            },
            request_id=request_id,
        )
    count, last_resent_at = (
        resends if resends is not None else await _resends(session=session, dispatch=dispatch)
    )
    return DispatchView(dispatch, agency, facts, count, last_resent_at)


# ---------------------------------------------------------------- outbox


async def _enqueue(
    *,
    session: AsyncSession,
    dispatch: Dispatch,
    agency: Agency,
    incident: Incident,
    remark: str | None,
    actor: Actor,
    notes: list[NoteComponent] | None = None,
    location: Location | None = None,
    recent_window: timedelta = DEFAULT_RECENT_WINDOW,
    resend: int = 0,
) -> bool:
    """Writes the agency's message into the outbox (same transaction). False when the agency
    has no webhook: it then works from the API alone. ``resend``: the n-th resend of a dispatch
    still `sent` (event `dispatch.resent`, a key of its own)."""
    settings = await session.get(AgencyDispatchSettings, agency.id)
    if settings is None or not settings.webhook_url:
        return False
    status = DispatchStatus(dispatch.status)
    key = resend_key(dispatch.id, resend) if resend else idempotency_key(dispatch.id, status)
    now = datetime.now(UTC)
    if notes is None:
        notes = await _notes(session=session, incident_id=incident.id)
    if location is None:
        location = await _best_location(
            session=session, incident_id=incident.id, recent_window=recent_window
        )
    message = WebhookMessage(
        message_id=key,
        event=RESENT_EVENT if resend else event_name(status),
        created_at=now,
        incident=_core(incident),
        location=LocationFacts.model_validate(location) if location is not None else None,
        caller=_caller(incident, settings.share_caller),
        notes=notes,
        dispatch=DispatchComponent(
            id=dispatch.id,
            agency=AgencyRef(code=agency.code, name=agency.name),
            status=status,
            note=dispatch.note,
            decline_reason=dispatch.decline_reason,
            remark=remark,
            sent_at=dispatch.created_at,
            status_changed_at=now,
            changed_by=actor.label,
            resend=resend,
        ),
    )
    await session.execute(
        insert(WebhookOutbox)
        .values(
            agency_id=agency.id,
            dispatch_id=dispatch.id,
            event=message.event,
            payload=message_payload(message),
            idempotency_key=key,
        )
        .on_conflict_do_nothing(index_elements=[WebhookOutbox.idempotency_key])
    )
    return True


# ---------------------------------------------------------------- defaults


async def get_defaults(*, session: AsyncSession) -> dict[Category, list[str]]:
    rows = (
        await session.execute(
            select(CategoryAgency.category, Agency.code)
            .join(Agency, Agency.id == CategoryAgency.agency_id)
            .order_by(CategoryAgency.category, Agency.code)
        )
    ).all()
    out: dict[Category, list[str]] = {c: [] for c in Category}
    for category, code in rows:
        if category in out:
            out[Category(category)].append(code)
    return out


async def _agencies_by_code(*, session: AsyncSession, codes: list[str]) -> list[Agency]:
    wanted = list(dict.fromkeys(codes))
    found = {
        a.code: a
        for a in (await session.scalars(select(Agency).where(Agency.code.in_(wanted)))).all()
    }
    missing = [c for c in wanted if c not in found]
    if missing:
        raise InvalidRequest(
            f"unknown agencies: {', '.join(missing)}",
            details=[{"field": "body.agencies", "unknown": missing}],
        )
    return [found[c] for c in wanted]


async def set_defaults(
    *,
    session: AsyncSession,
    category: Category,
    codes: list[str],
    actor: Actor,
    request_id: str | None,
) -> list[str]:
    agencies = await _agencies_by_code(session=session, codes=codes)
    before = (await get_defaults(session=session))[category]
    await session.execute(delete(CategoryAgency).where(CategoryAgency.category == category.value))
    for agency in agencies:
        session.add(CategoryAgency(category=category.value, agency_id=agency.id))
    await session.flush()
    after = sorted(a.code for a in agencies)
    if after != before:
        await record_audit(
            session=session,
            actor=actor,
            action="dispatch_defaults.update",
            entity_type="category",
            entity_id=category.value,
            before={"agencies": before},
            after={"agencies": after},
            request_id=request_id,
        )
    return after


# ---------------------------------------------------------------- agency delivery settings


@dataclass(frozen=True, slots=True)
class SettingsView:
    agency: Agency
    settings: AgencyDispatchSettings | None
    generated_secret: str | None = None

    def as_dict(self) -> dict[str, Any]:
        s = self.settings
        return {
            "agency_id": self.agency.id,
            "agency_code": self.agency.code,
            "webhook_url": s.webhook_url if s else None,
            "has_webhook_secret": bool(s and s.webhook_secret),
            "share_caller": bool(s and s.share_caller),
            "updated_at": s.updated_at if s else None,
            "webhook_secret": self.generated_secret,
        }


async def _agency(session: AsyncSession, agency_id: int) -> Agency:
    agency = await session.get(Agency, agency_id)
    if agency is None:
        raise NotFound(f"agency {agency_id} not found")
    return agency


async def get_dispatch_settings(*, session: AsyncSession, agency_id: int) -> SettingsView:
    agency = await _agency(session, agency_id)
    return SettingsView(agency, await session.get(AgencyDispatchSettings, agency_id))


async def check_webhook_url(url: str, *, outbound: OutboundPolicy) -> None:
    try:
        await outbound.resolve(url)
    except UnsafeDestination as exc:
        if exc.reason == "unresolvable":
            return
        raise DestinationRefused(
            f"webhook URL refused: {exc}",
            details=[{"field": "body.webhook_url", "reason": exc.reason}],
        ) from exc


async def update_dispatch_settings(
    *,
    session: AsyncSession,
    agency_id: int,
    data: DispatchSettingsUpdate,
    outbound: OutboundPolicy,
    actor: Actor,
    request_id: str | None,
) -> SettingsView:
    """Sets the webhook URL and whether the caller is shared. The secret is stored for signing
    and never returned again, except right here when siaga112 generated it.

    The URL is checked against the outbound policy now (and again at every delivery: DNS
    answers change); a name that does not resolve yet is accepted, one that resolves to a
    refused address is not."""
    if data.webhook_url is not None:
        await check_webhook_url(str(data.webhook_url), outbound=outbound)
    agency = await _agency(session, agency_id)
    row = await session.get(AgencyDispatchSettings, agency_id, with_for_update=True)
    if row is None:
        row = AgencyDispatchSettings(agency_id=agency_id, share_caller=False)
        session.add(row)
    before = {
        "webhook_url": row.webhook_url,
        "share_caller": bool(row.share_caller),
        "has_webhook_secret": bool(row.webhook_secret),
    }
    generated: str | None = None
    secret_changed = False
    if data.webhook_secret is not None:
        row.webhook_secret = data.webhook_secret
        secret_changed = True
    elif data.rotate_secret or (data.webhook_url is not None and not row.webhook_secret):
        generated = secrets.token_urlsafe(32)
        row.webhook_secret = generated
        secret_changed = True
    row.webhook_url = str(data.webhook_url) if data.webhook_url is not None else None
    row.share_caller = data.share_caller
    await session.flush()
    after = {
        "webhook_url": row.webhook_url,
        "share_caller": row.share_caller,
        "has_webhook_secret": bool(row.webhook_secret),
    }
    if after != before or secret_changed:
        await record_audit(
            session=session,
            actor=actor,
            action="agency.dispatch_settings",
            entity_type="agency",
            entity_id=str(agency_id),
            before=before,
            # Whether the secret changed, never the secret itself.
            after=after | {"secret_changed": secret_changed},
            request_id=request_id,
        )
    await session.refresh(row)
    return SettingsView(agency, row, generated)


# ---------------------------------------------------------------- dispatching


@dataclass(frozen=True, slots=True)
class DispatchBatch:
    created: list[DispatchView]
    already_active: list[DispatchView]


async def create_dispatches(
    *,
    session: AsyncSession,
    incident_id: int,
    agencies: list[str] | Literal["defaults"],
    note: str | None,
    actor: Actor,
    request_id: str | None,
    recent_window: timedelta = DEFAULT_RECENT_WINDOW,
) -> DispatchBatch:
    # The incident row lock serialises dispatching of one incident.
    incident = await get_incident(session=session, incident_id=incident_id, lock=True)
    if incident.status == Status.CLOSED.value:
        raise Conflict(f"incident {incident_id} is closed", details=[{"field": "path.incident_id"}])
    if agencies == "defaults":
        if incident.category is None:
            raise InvalidRequest(
                "the incident has no category: name the agencies",
                details=[{"field": "body.agencies"}],
            )
        codes = (await get_defaults(session=session))[Category(incident.category)]
        if not codes:
            raise InvalidRequest(
                f"no default agencies for category {incident.category}: name the agencies",
                details=[{"field": "body.agencies"}],
            )
    else:
        codes = list(agencies)
    targets = await _agencies_by_code(session=session, codes=codes)
    inactive = [a.code for a in targets if not a.active]
    if inactive:
        raise Conflict(
            f"inactive agencies: {', '.join(inactive)}",
            details=[{"field": "body.agencies", "inactive": inactive}],
        )
    active = {
        d.agency_id: d
        for d in (
            await session.scalars(
                select(Dispatch).where(
                    Dispatch.incident_id == incident_id,
                    Dispatch.status.not_in(
                        [DispatchStatus.COMPLETED.value, DispatchStatus.DECLINED.value]
                    ),
                )
            )
        ).all()
    }
    created: list[Dispatch] = []
    existing: list[Dispatch] = []
    for agency in targets:
        if agency.id in active:
            existing.append(active[agency.id])
            continue
        dispatch = Dispatch(
            incident_id=incident_id,
            agency_id=agency.id,
            status=DispatchStatus.SENT.value,
            note=note,
            created_by=actor.label,
        )
        session.add(dispatch)
        created.append(dispatch)
    try:
        await session.flush()
    except IntegrityError as exc:  # a concurrent request won; the lock makes this rare
        raise Conflict("the incident was dispatched concurrently; try again") from exc

    # Any new dispatch puts the incident in `dispatched` where the lifecycle allows it: the first
    # one, and one sent after the operator took the incident back (a decline, a wrong agency).
    # A resolved incident stays resolved (no resolved -> dispatched). Set before the messages
    # are written, so that the agencies' documents carry the incident's new status.
    moved = advance_status(incident, Status.DISPATCHED) if created else None
    if moved is not None:
        await session.flush()

    by_id = {a.id: a for a in targets}
    notes = await _notes(session=session, incident_id=incident.id) if created else []
    location = (
        await _best_location(session=session, incident_id=incident.id, recent_window=recent_window)
        if created
        else None
    )
    for dispatch in created:
        await session.refresh(dispatch)
        agency = by_id[dispatch.agency_id]
        data = {
            "dispatch_id": dispatch.id,
            "agency": agency.code,
            "status": DispatchStatus.SENT.value,
            "note": note,
        }
        webhook = await _enqueue(
            session=session,
            dispatch=dispatch,
            agency=agency,
            incident=incident,
            remark=None,
            actor=actor,
            notes=notes,
            location=location,
        )
        await record_change(
            session,
            incident_id=incident.id,
            actor=actor,
            kind="dispatch_created",
            data=data,
            action="dispatch.create",
            entity_type="dispatch",
            entity_id=str(dispatch.id),
            before=None,
            after=data | {"incident_id": incident.id, "webhook": webhook},
            request_id=request_id,
        )
    if moved is not None:
        # After the dispatch lines: the story reads "sent to X, so dispatched".
        await record_status_change(
            session, incident=incident, previous=moved, actor=actor, request_id=request_id
        )

    await session.flush()
    views = [
        await _view(
            session=session, dispatch=d, with_location=False, actor=actor, request_id=request_id
        )
        for d in created
    ]
    already = [
        await _view(
            session=session, dispatch=d, with_location=False, actor=actor, request_id=request_id
        )
        for d in existing
    ]
    return DispatchBatch(views, already)


async def _get_scoped(
    *, session: AsyncSession, dispatch_id: int, actor: Actor, lock: bool = False
) -> Dispatch:
    stmt = _scoped(select(Dispatch).where(Dispatch.id == dispatch_id), actor)
    if lock:
        stmt = stmt.with_for_update()
    dispatch: Dispatch | None = (await session.scalars(stmt)).first()
    if dispatch is None:
        # Same answer whether it does not exist or belongs to another agency.
        raise NotFound(f"dispatch {dispatch_id} not found")
    return dispatch


async def get_dispatch(
    *,
    session: AsyncSession,
    dispatch_id: int,
    actor: Actor,
    request_id: str | None,
    recent_window: timedelta = DEFAULT_RECENT_WINDOW,
) -> DispatchView:
    dispatch = await _get_scoped(session=session, dispatch_id=dispatch_id, actor=actor)
    return await _view(
        session=session,
        dispatch=dispatch,
        with_location=True,
        actor=actor,
        request_id=request_id,
        recent_window=recent_window,
    )


@dataclass(frozen=True, slots=True)
class DispatchFilter:
    status: list[DispatchStatus] | None = None
    agency: str | None = None
    incident_id: int | None = None


async def list_dispatches(
    *,
    session: AsyncSession,
    actor: Actor,
    filters: DispatchFilter,
    limit: int,
    cursor: str | None,
) -> tuple[list[DispatchView], str | None]:
    stmt = _scoped(select(Dispatch), actor)
    if filters.status:
        stmt = stmt.where(Dispatch.status.in_([s.value for s in filters.status]))
    if filters.agency is not None:
        stmt = stmt.join(Agency, Agency.id == Dispatch.agency_id).where(
            Agency.code == filters.agency
        )
    if filters.incident_id is not None:
        stmt = stmt.where(Dispatch.incident_id == filters.incident_id)
    stmt = keyset(
        stmt, at=Dispatch.created_at, ident=Dispatch.id, id_kind="int", cursor=cursor, limit=limit
    )
    rows, next_cursor = page(
        (await session.scalars(stmt)).all(), limit=limit, key=lambda d: (d.created_at, d.id)
    )
    resends = await _resends_of(session=session, dispatches=list(rows))
    views = [
        await _view(
            session=session,
            dispatch=d,
            with_location=False,
            actor=actor,
            request_id=None,
            resends=resends.get(d.id, (0, None)),
        )
        for d in rows
    ]
    return views, next_cursor


async def update_dispatch_status(
    *,
    session: AsyncSession,
    dispatch_id: int,
    target: DispatchStatus,
    reason: str | None,
    remark: str | None,
    actor: Actor,
    request_id: str | None,
    recent_window: timedelta = DEFAULT_RECENT_WINDOW,
) -> DispatchView:
    if not (actor.can(Permission.WRITE_INCIDENTS) or actor.can(Permission.AGENCY_DISPATCHES)):
        raise Forbidden(f"role {actor.role.value} may not update dispatches")
    dispatch = await _get_scoped(session=session, dispatch_id=dispatch_id, actor=actor, lock=True)
    current = DispatchStatus(dispatch.status)
    if target is current:
        # A retried request: nothing changes, nothing is recorded.
        return await _view(
            session=session, dispatch=dispatch, with_location=False, actor=actor, request_id=None
        )
    if not can_transition(current, target):
        raise InvalidTransition(
            f"dispatch cannot go from {current.value} to {target.value}",
            details=[
                {
                    "field": "body.status",
                    "from": current.value,
                    "allowed": [s.value for s in allowed_targets(current)],
                }
            ],
        )
    if target is DispatchStatus.DECLINED and not reason:
        raise InvalidRequest(
            "declining needs a reason", details=[{"field": "body.reason", "message": "required"}]
        )
    dispatch.status = target.value
    setattr(dispatch, _STATUS_AT[target], datetime.now(UTC))
    if target is DispatchStatus.DECLINED:
        dispatch.decline_reason = reason
    await session.flush()
    await session.refresh(dispatch)
    agency = await session.get_one(Agency, dispatch.agency_id)
    incident = await session.get_one(Incident, dispatch.incident_id)
    data: dict[str, Any] = {
        "dispatch_id": dispatch.id,
        "agency": agency.code,
        "from": current.value,
        "to": target.value,
    }
    if reason:
        data["reason"] = reason
    if remark:
        data["remark"] = remark
    webhook = await _enqueue(
        session=session,
        dispatch=dispatch,
        agency=agency,
        incident=incident,
        remark=remark,
        actor=actor,
        recent_window=recent_window,
    )
    await record_change(
        session,
        incident_id=incident.id,
        actor=actor,
        kind="dispatch_status_changed",
        data=data,
        action="dispatch.update",
        entity_type="dispatch",
        entity_id=str(dispatch.id),
        before={"status": current.value},
        after={"status": target.value, "reason": reason, "remark": remark, "webhook": webhook},
        request_id=request_id,
    )
    await session.flush()
    return await _view(
        session=session, dispatch=dispatch, with_location=False, actor=actor, request_id=None
    )


# ---------------------------------------------------------------- resend


async def resend_dispatch(
    *,
    session: AsyncSession,
    dispatch_id: int,
    actor: Actor,
    request_id: str | None,
    recent_window: timedelta = DEFAULT_RECENT_WINDOW,
) -> DispatchView:
    """Sends a dispatch its agency has not acknowledged yet again: a new webhook message with the
    incident as it is now (``dispatch.resent``; agencies without a webhook see the dispatch
    marked as resent on their page), a timeline line and an audit row.

    The acknowledgement time still counts from the first send (what the agency is measured
    on, and what the operator's timer shows); the overdue alert is re-armed from the resend, so
    that a dispatch resent because it was overdue is flagged again only if this resend too goes
    unanswered for the acknowledgement timeout."""
    if not actor.can(Permission.WRITE_INCIDENTS):
        raise Forbidden(f"role {actor.role.value} may not resend dispatches")
    dispatch = await _get_scoped(session=session, dispatch_id=dispatch_id, actor=actor, lock=True)
    current = DispatchStatus(dispatch.status)
    if current is not DispatchStatus.SENT:
        raise DispatchNotWaiting(
            f"dispatch {dispatch_id} is {current.value}: only a dispatch waiting for its "
            "acknowledgement can be resent",
            details=[{"field": "path.dispatch_id", "status": current.value}],
        )
    incident = await get_incident(session=session, incident_id=dispatch.incident_id)
    if incident.status == Status.CLOSED.value:
        raise Conflict(f"incident {incident.id} is closed", details=[{"field": "path.dispatch_id"}])
    agency = await session.get_one(Agency, dispatch.agency_id)
    before, _ = await _resends(session=session, dispatch=dispatch)
    resend = before + 1
    was_alerted = dispatch.unack_alerted_at
    dispatch.unack_alerted_at = None  # re-armed: the watchdog counts from this resend
    webhook = await _enqueue(
        session=session,
        dispatch=dispatch,
        agency=agency,
        incident=incident,
        remark=None,
        actor=actor,
        recent_window=recent_window,
        resend=resend,
    )
    # A dispatch's messages go out in order: the resend waits for every earlier one. Those the
    # receiver refused are due again now, not at the end of their back-off (up to
    # webhook.retry_max_s): the resend is the operator saying "try again". One in flight may be
    # delivered twice; the receiver dedups on its Idempotency-Key, as with any retry.
    earlier_due = (
        (
            await session.execute(
                update(WebhookOutbox)
                .where(
                    WebhookOutbox.dispatch_id == dispatch.id,
                    WebhookOutbox.delivered_at.is_(None),
                    WebhookOutbox.next_attempt_at > func.now(),
                )
                .values(next_attempt_at=func.now())
                .returning(WebhookOutbox.id)
            )
        )
        .scalars()
        .all()
    )
    data = {
        "dispatch_id": dispatch.id,
        "agency": agency.code,
        "resend": resend,
        "sent_at": dispatch.created_at.isoformat(),
        "webhook": webhook,
    }
    await record_change(
        session,
        incident_id=incident.id,
        actor=actor,
        kind=RESENT_KIND,
        data=data,
        action="dispatch.resend",
        entity_type="dispatch",
        entity_id=str(dispatch.id),
        before={
            "resends": before,
            "unack_alerted_at": was_alerted.isoformat() if was_alerted else None,
        },
        after={
            "resends": resend,
            "unack_alerted_at": None,
            "webhook": webhook,
            "earlier_messages_due_now": len(earlier_due),
        },
        request_id=request_id,
    )
    await session.flush()
    await session.refresh(dispatch)  # updated_at, set by the database
    return await _view(
        session=session, dispatch=dispatch, with_location=False, actor=actor, request_id=None
    )


# ---------------------------------------------------------------- watchdog


async def alert_unacknowledged(
    *, session: AsyncSession, timeout_s: float, actor: Actor, limit: int = 100
) -> list[int]:
    """Dispatches still `sent` after `timeout_s` from their sending, or from their last resend
    (:func:`resend_dispatch` re-arms the alert): one `dispatch_unacknowledged` timeline event
    and audit event each, once per arming. Safe with several workers (SKIP LOCKED, and the
    mark)."""
    cutoff = datetime.now(UTC) - timedelta(seconds=timeout_s)
    recent_resend = exists().where(
        IncidentEvent.incident_id == Dispatch.incident_id,
        IncidentEvent.kind == RESENT_KIND,
        IncidentEvent.data["dispatch_id"].astext.cast(BigInteger) == Dispatch.id,
        IncidentEvent.at >= cutoff,
    )
    rows = (
        await session.scalars(
            select(Dispatch)
            .where(
                Dispatch.status == DispatchStatus.SENT.value,
                Dispatch.unack_alerted_at.is_(None),
                Dispatch.created_at < cutoff,
                ~recent_resend,
            )
            .order_by(Dispatch.created_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    ).all()
    if not rows:
        return []
    codes: dict[int, str] = {
        agency_id: code
        for agency_id, code in (
            await session.execute(
                select(Agency.id, Agency.code).where(Agency.id.in_({d.agency_id for d in rows}))
            )
        ).all()
    }
    now = datetime.now(UTC)
    for dispatch in rows:
        dispatch.unack_alerted_at = now
        waited = round((now - dispatch.created_at).total_seconds(), 1)
        data = {
            "dispatch_id": dispatch.id,
            "agency": codes.get(dispatch.agency_id),
            "sent_at": dispatch.created_at.isoformat(),
            "waited_s": waited,
            "timeout_s": timeout_s,
        }
        await record_change(
            session,
            incident_id=dispatch.incident_id,
            actor=actor,
            kind="dispatch_unacknowledged",
            data=data,
            action="dispatch.unacknowledged",
            entity_type="dispatch",
            entity_id=str(dispatch.id),
            before=None,
            after=data,
            request_id=None,
        )
    await session.flush()
    return [d.id for d in rows]


# ---------------------------------------------------------------- outbox views


async def list_outbox(
    *,
    session: AsyncSession,
    status: Literal["pending", "failing", "delivered", "all"],
    agency: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[tuple[WebhookOutbox, str]], str | None]:
    stmt = select(WebhookOutbox, Agency.code).join(Agency, Agency.id == WebhookOutbox.agency_id)
    if status == "pending":
        stmt = stmt.where(WebhookOutbox.delivered_at.is_(None))
    elif status == "failing":
        stmt = stmt.where(
            WebhookOutbox.delivered_at.is_(None), WebhookOutbox.last_error.is_not(None)
        )
    elif status == "delivered":
        stmt = stmt.where(WebhookOutbox.delivered_at.is_not(None))
    if agency is not None:
        stmt = stmt.where(Agency.code == agency)
    stmt = keyset(
        stmt,
        at=WebhookOutbox.created_at,
        ident=WebhookOutbox.id,
        id_kind="int",
        cursor=cursor,
        limit=limit,
    )
    return page(
        [(r[0], r[1]) for r in (await session.execute(stmt)).all()],
        limit=limit,
        key=lambda row: (row[0].created_at, row[0].id),
    )


async def retry_now(
    *, session: AsyncSession, outbox_id: int, actor: Actor, request_id: str | None
) -> tuple[WebhookOutbox, str]:
    """Makes an undelivered message due at once (after the receiver was fixed)."""
    result = await session.execute(
        update(WebhookOutbox)
        .where(WebhookOutbox.id == outbox_id, WebhookOutbox.delivered_at.is_(None))
        .values(next_attempt_at=func.now())
        .returning(WebhookOutbox.id)
    )
    if result.scalar_one_or_none() is None:
        raise NotFound(f"no undelivered outbox message {outbox_id}")
    await record_audit(
        session=session,
        actor=actor,
        action="webhook.retry",
        entity_type="webhook_outbox",
        entity_id=str(outbox_id),
        before=None,
        after={"retry": "now"},
        request_id=request_id,
    )
    row = (
        await session.execute(
            select(WebhookOutbox, Agency.code)
            .join(Agency, Agency.id == WebhookOutbox.agency_id)
            .where(WebhookOutbox.id == outbox_id)
            .execution_options(populate_existing=True)
        )
    ).one()
    return row[0], row[1]
