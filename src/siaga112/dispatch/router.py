"""Dispatch routes: hand incidents to agencies, agency updates, defaults, delivery settings,
the webhook outbox. Agency keys reach only the /dispatches routes, scoped to their agency."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, status

from siaga112.api.deps import (
    AgencyManager,
    CurrentActor,
    IncidentWriter,
    Reader,
    RequestId,
    SessionDep,
)
from siaga112.auth.roles import Permission
from siaga112.auth.service import Actor
from siaga112.dispatch import service
from siaga112.dispatch.lifecycle import DispatchStatus
from siaga112.dispatch.schemas import (
    CategoryDefaults,
    CategoryDefaultsUpdate,
    DispatchBatchOut,
    DispatchCreate,
    DispatchOut,
    DispatchPage,
    DispatchSettingsOut,
    DispatchSettingsUpdate,
    DispatchUpdate,
    OutboxOut,
    OutboxPage,
    OutboxStatus,
)
from siaga112.dispatch.webhooks import WebhookMessage
from siaga112.errors import Forbidden
from siaga112.incidents.lifecycle import Category
from siaga112.schemas import ERROR_RESPONSES, ErrorOut

router = APIRouter(tags=["dispatch"], responses=ERROR_RESPONSES)

IncidentId = Annotated[int, Path(ge=1, le=2**62, description="incident number")]
DispatchId = Annotated[int, Path(ge=1, le=2**62, description="dispatch number")]
AgencyId = Annotated[int, Path(ge=1, le=2**31 - 1)]
_404: dict[int | str, dict[str, Any]] = {
    404: {
        "model": ErrorOut,
        "description": "no such dispatch, or (for an agency key) one sent to another agency",
    }
}
_409: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorOut, "description": "invalid status transition, or closed incident"}
}


def _any_of(*permissions: Permission) -> Callable[[Actor], Awaitable[Actor]]:
    async def _check(actor: CurrentActor) -> Actor:
        if not any(actor.can(p) for p in permissions):
            raise Forbidden(f"role {actor.role.value} may not do this")
        return actor

    return _check


DispatchReader = Annotated[Actor, Depends(_any_of(Permission.READ, Permission.AGENCY_DISPATCHES))]
DispatchUpdater = Annotated[
    Actor, Depends(_any_of(Permission.WRITE_INCIDENTS, Permission.AGENCY_DISPATCHES))
]


def _out(view: service.DispatchView) -> DispatchOut:
    return DispatchOut.model_validate(view.as_dict())


def _recent_window(request: Request) -> timedelta:
    """The best-location window the operator's views use: agencies get the same point."""
    return timedelta(seconds=request.app.state.settings.locations.recent_window_s)


def _wake_worker(request: Request) -> None:
    worker = getattr(request.app.state, "dispatch_worker", None)
    if worker is not None:
        worker.wake()


@router.post(
    "/incidents/{incident_id}/dispatches",
    response_model=DispatchBatchOut,
    status_code=status.HTTP_201_CREATED,
    responses=_409 | {404: {"model": ErrorOut, "description": "no such incident"}},
    summary="Hand the incident to agencies (named, or the category's defaults)",
    description=(
        "Creates one dispatch (status `sent`) per agency that has no active dispatch for this "
        "incident yet; the others are listed in `already_active`. The first dispatch moves the "
        "incident to `dispatched` when its lifecycle allows. Agencies with a webhook get a "
        "signed message (see the `dispatch-event` webhook), written in the same transaction."
    ),
)
async def create_dispatches(
    incident_id: IncidentId,
    data: DispatchCreate,
    request: Request,
    session: SessionDep,
    actor: IncidentWriter,
    rid: RequestId,
) -> DispatchBatchOut:
    batch = await service.create_dispatches(
        session=session,
        incident_id=incident_id,
        agencies=data.agencies,
        note=data.note,
        actor=actor,
        request_id=rid,
        recent_window=_recent_window(request),
    )
    await session.commit()
    _wake_worker(request)
    return DispatchBatchOut(
        items=[_out(v) for v in batch.created],
        already_active=[_out(v) for v in batch.already_active],
    )


@router.get(
    "/incidents/{incident_id}/dispatches",
    response_model=list[DispatchOut],
    summary="The incident's dispatches",
)
async def incident_dispatches(
    incident_id: IncidentId, session: SessionDep, actor: Reader
) -> list[DispatchOut]:
    views, _ = await service.list_dispatches(
        session=session,
        actor=actor,
        filters=service.DispatchFilter(incident_id=incident_id),
        limit=200,
        cursor=None,
    )
    return [_out(v) for v in views]


@router.get(
    "/dispatches",
    response_model=DispatchPage,
    summary="List dispatches, newest first (an agency key: only its own)",
)
async def list_dispatches(
    session: SessionDep,
    actor: DispatchReader,
    status_: Annotated[list[DispatchStatus] | None, Query(alias="status")] = None,
    agency: Annotated[str | None, Query(max_length=40, pattern=r"^[a-z][a-z0-9_]*$")] = None,
    incident_id: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> DispatchPage:
    views, next_cursor = await service.list_dispatches(
        session=session,
        actor=actor,
        filters=service.DispatchFilter(status=status_, agency=agency, incident_id=incident_id),
        limit=limit,
        cursor=cursor,
    )
    return DispatchPage(items=[_out(v) for v in views], next_cursor=next_cursor)


@router.get(
    "/dispatches/{dispatch_id}",
    response_model=DispatchOut,
    responses=_404,
    summary="One dispatch with the incident's facts and best location (read audited)",
)
async def get_dispatch(
    dispatch_id: DispatchId,
    request: Request,
    session: SessionDep,
    actor: DispatchReader,
    rid: RequestId,
) -> DispatchOut:
    view = await service.get_dispatch(
        session=session,
        dispatch_id=dispatch_id,
        actor=actor,
        request_id=rid,
        recent_window=_recent_window(request),
    )
    await session.commit()
    return _out(view)


@router.patch(
    "/dispatches/{dispatch_id}",
    response_model=DispatchOut,
    responses=_404 | _409,
    summary="Move a dispatch along: acknowledged, en_route, on_scene, completed, or declined",
    description=(
        "sent -> acknowledged -> en_route -> on_scene -> completed, one step at a time; "
        "`declined` (with `reason`) from sent or acknowledged. Repeating the current status "
        "changes nothing (safe to retry). Agency keys may update only their own dispatches."
    ),
)
async def update_dispatch(
    dispatch_id: DispatchId,
    data: DispatchUpdate,
    request: Request,
    session: SessionDep,
    actor: DispatchUpdater,
    rid: RequestId,
) -> DispatchOut:
    view = await service.update_dispatch_status(
        session=session,
        dispatch_id=dispatch_id,
        target=data.status,
        reason=data.reason,
        remark=data.remark,
        actor=actor,
        request_id=rid,
        recent_window=_recent_window(request),
    )
    await session.commit()
    _wake_worker(request)
    return _out(view)


@router.post(
    "/dispatches/{dispatch_id}/resend",
    response_model=DispatchOut,
    responses=_404
    | {
        409: {
            "model": ErrorOut,
            "description": "`dispatch_not_waiting`: the agency already acknowledged (or "
            "declined, or finished) it; `conflict`: the incident is closed",
        }
    },
    summary="Send a dispatch its agency has not acknowledged yet again",
    description=(
        "For a dispatch still `sent`. Agencies with a webhook get a new signed message "
        "(`dispatch.resent`, the incident as it is now, `dispatch.resend` = n); the others see "
        "it marked as resent on their page. Writes a `dispatch_resent` timeline line and an "
        "audit row, and counts the resends (`resend_count`). The acknowledgement time keeps "
        "counting from the first send; the overdue alert (`dispatch_unacknowledged`) is "
        "re-armed from the resend. Whoever may dispatch may resend."
    ),
)
async def resend_dispatch(
    dispatch_id: DispatchId,
    request: Request,
    session: SessionDep,
    actor: IncidentWriter,
    rid: RequestId,
) -> DispatchOut:
    view = await service.resend_dispatch(
        session=session,
        dispatch_id=dispatch_id,
        actor=actor,
        request_id=rid,
        recent_window=_recent_window(request),
    )
    await session.commit()
    _wake_worker(request)
    return _out(view)


@router.get(
    "/dispatch-defaults",
    response_model=list[CategoryDefaults],
    summary="Default agencies per category",
)
async def get_defaults(session: SessionDep, _: Reader) -> list[CategoryDefaults]:
    defaults = await service.get_defaults(session=session)
    return [CategoryDefaults(category=c, agencies=codes) for c, codes in defaults.items()]


@router.put(
    "/dispatch-defaults/{category}",
    response_model=CategoryDefaults,
    summary="Set the default agencies of a category (this site)",
)
async def set_defaults(
    category: Category,
    data: CategoryDefaultsUpdate,
    session: SessionDep,
    actor: AgencyManager,
    rid: RequestId,
) -> CategoryDefaults:
    codes = await service.set_defaults(
        session=session, category=category, codes=data.agencies, actor=actor, request_id=rid
    )
    await session.commit()
    return CategoryDefaults(category=category, agencies=codes)


@router.get(
    "/agencies/{agency_id}/dispatch-settings",
    response_model=DispatchSettingsOut,
    tags=["agencies"],
    summary="The agency's webhook and caller sharing (never the secret)",
)
async def get_dispatch_settings(
    agency_id: AgencyId, session: SessionDep, _: AgencyManager
) -> DispatchSettingsOut:
    view = await service.get_dispatch_settings(session=session, agency_id=agency_id)
    return DispatchSettingsOut.model_validate(view.as_dict())


@router.put(
    "/agencies/{agency_id}/dispatch-settings",
    response_model=DispatchSettingsOut,
    tags=["agencies"],
    summary="Set the agency's webhook URL, HMAC secret and caller sharing",
    description=(
        "When a webhook URL is set for the first time without `webhook_secret`, or with "
        "`rotate_secret`, siaga112 generates the secret and returns it in this response only."
    ),
)
async def put_dispatch_settings(
    agency_id: AgencyId,
    data: DispatchSettingsUpdate,
    request: Request,
    session: SessionDep,
    actor: AgencyManager,
    rid: RequestId,
) -> DispatchSettingsOut:
    view = await service.update_dispatch_settings(
        session=session,
        agency_id=agency_id,
        data=data,
        outbound=request.app.state.outbound,
        actor=actor,
        request_id=rid,
    )
    await session.commit()
    return DispatchSettingsOut.model_validate(view.as_dict())


def _outbox_out(row: Any, code: str) -> OutboxOut:
    return OutboxOut.model_validate(
        {
            "id": row.id,
            "agency_id": row.agency_id,
            "agency_code": code,
            "dispatch_id": row.dispatch_id,
            "event": row.event,
            "idempotency_key": row.idempotency_key,
            "attempts": row.attempts,
            "next_attempt_at": row.next_attempt_at,
            "delivered_at": row.delivered_at,
            "last_error": row.last_error,
            "last_status_code": row.last_status_code,
            "created_at": row.created_at,
        }
    )


@router.get(
    "/webhooks/outbox",
    response_model=OutboxPage,
    tags=["webhooks"],
    summary="Webhook messages to agencies; `status=failing` shows what is not getting through",
    description=(
        "`pending`: not delivered yet; `failing`: not delivered and the last attempt failed; "
        "`delivered`; `all`. Newest first."
    ),
)
async def list_outbox(
    session: SessionDep,
    _: AgencyManager,
    status_: Annotated[OutboxStatus, Query(alias="status")] = "all",
    agency: Annotated[str | None, Query(max_length=40, pattern=r"^[a-z][a-z0-9_]*$")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> OutboxPage:
    rows, next_cursor = await service.list_outbox(
        session=session, status=status_, agency=agency, limit=limit, cursor=cursor
    )
    return OutboxPage(items=[_outbox_out(r, c) for r, c in rows], next_cursor=next_cursor)


@router.post(
    "/webhooks/outbox/{outbox_id}/retry",
    response_model=OutboxOut,
    tags=["webhooks"],
    responses={404: {"model": ErrorOut, "description": "no such undelivered message"}},
    summary="Make an undelivered message due now (after the receiver was fixed)",
)
async def retry_outbox(
    outbox_id: Annotated[int, Path(ge=1, le=2**62)],
    request: Request,
    session: SessionDep,
    actor: AgencyManager,
    rid: RequestId,
) -> OutboxOut:
    row, code = await service.retry_now(
        session=session, outbox_id=outbox_id, actor=actor, request_id=rid
    )
    await session.commit()
    _wake_worker(request)
    return _outbox_out(row, code)


# Documentation of what siaga112 sends (OpenAPI `webhooks`), mounted by the app.
webhook_docs = APIRouter()


@webhook_docs.post(
    "dispatch-event",
    summary="siaga112 -> agency system: a dispatch was sent or changed",
    description=(
        "POSTed to the agency's `webhook_url` for every dispatch change, in order per "
        "dispatch, retried with exponential backoff until a 2xx. Headers: "
        "`X-Siaga112-Signature: sha256=<hex HMAC-SHA256 of the raw body, keyed with the "
        "agency's secret>`, `X-Siaga112-Timestamp` (Unix seconds of this attempt), "
        "`Idempotency-Key` (= `message_id`; a retry repeats it with the same body), "
        "`X-Siaga112-Event`. Verify the signature over the raw bytes, dedup on the key, and "
        "answer 2xx quickly. The caller is included only for agencies allowed to see it."
    ),
    status_code=status.HTTP_204_NO_CONTENT,
)
async def dispatch_event(body: WebhookMessage) -> None:  # pragma: no cover - documentation
    return None
