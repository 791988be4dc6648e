from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse

from siaga112.api.deps import Reader, RequestId, SessionDep
from siaga112.audit.service import record_audit
from siaga112.errors import InvalidRequest
from siaga112.events.hub import EventHub, LiveEvent
from siaga112.schemas import ERROR_RESPONSES

router = APIRouter(prefix="/events", tags=["events"], responses=ERROR_RESPONSES)

HEARTBEAT_S = 15.0


def _frame(event: LiveEvent) -> bytes:
    data = json.dumps(event.as_json(), separators=(",", ":"), ensure_ascii=False)
    return f"id: {event.id}\nevent: {event.kind}\ndata: {data}\n\n".encode()


@router.get(
    "/stream",
    summary="Live events (Server-Sent Events), resumable with Last-Event-ID",
    description=(
        "Every line written to an incident's timeline, as it is written: `created`, `updated`, "
        "`status_changed`, `note`, `call_answered`, `call_ended`, `call_abandoned`, "
        "`duplicate_linked`, `location_added`, dispatch events ... Each SSE message has the "
        "event id, the kind as `event`, and JSON `data` with `incident_id`, `at`, `actor`, "
        "`kind` and `data`. Reconnect with the `Last-Event-ID` header (or `last_event_id`) to "
        "receive what was missed. A comment line is sent every 15 s as a heartbeat. "
        "`location_added`/`location_confirmed` carry where the caller is: each connection is "
        "audited once as `location.read` (entity `event_stream`), not each event."
    ),
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def stream(
    request: Request,
    session: SessionDep,
    actor: Reader,
    rid: RequestId,
    kind: Annotated[list[str] | None, Query(max_length=40)] = None,
    incident_id: Annotated[int | None, Query(ge=1)] = None,
    last_event_id_q: Annotated[int | None, Query(alias="last_event_id", ge=0)] = None,
    last_event_id: Annotated[str | None, Header(max_length=20)] = None,
) -> StreamingResponse:
    hub: EventHub | None = getattr(request.app.state, "event_hub", None)
    if hub is None:
        raise InvalidRequest("the live event stream is not running in this process")
    resume_from = last_event_id_q
    if last_event_id is not None:
        if not last_event_id.isdigit():
            raise InvalidRequest(
                "Last-Event-ID is not an event id", details=[{"field": "header.last-event-id"}]
            )
        resume_from = int(last_event_id)
    kinds = set(kind) if kind else None
    # Once per connection (a stream can carry any number of location events). Committing
    # here also ends the request's transaction, so no database connection is held open for
    # as long as the stream lasts.
    await record_audit(
        session=session,
        actor=actor,
        action="location.read",
        entity_type="event_stream",
        entity_id=str(incident_id) if incident_id is not None else "all",
        before=None,
        after={
            "via": "events.stream",
            "kinds": sorted(kinds) if kinds else None,
            "incident_id": incident_id,
            "resume_from": resume_from,
        },
        request_id=rid,
    )
    await session.commit()

    def wanted(event: LiveEvent) -> bool:
        return (kinds is None or event.kind in kinds) and (
            incident_id is None or event.incident_id == incident_id
        )

    async def frames() -> AsyncIterator[bytes]:
        sub = await hub.subscribe()  # before the replay, so nothing falls between the two
        try:
            sent = resume_from if resume_from is not None else hub.last_id
            while resume_from is not None:
                missed = await hub.replay(after_id=sent)
                for event in missed:
                    sent = event.id
                    if wanted(event):
                        yield _frame(event)
                if len(missed) < 1000:
                    break
            yield b": connected\n\n"
            while not sub.overflowed:
                try:
                    item = await asyncio.wait_for(sub.queue.get(), HEARTBEAT_S)
                except TimeoutError:
                    yield b": heartbeat\n\n"
                    continue
                if item is None:
                    return
                if item.id <= sent:
                    continue
                sent = item.id
                if wanted(item):
                    yield _frame(item)
        finally:
            sub.close()

    return StreamingResponse(
        frames(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
