from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse

from siaga112.api.deps import Reader, RequestId, SessionDep
from siaga112.audit.service import record_audit
from siaga112.auth.service import key_usable
from siaga112.errors import EventStreamUnavailable, InvalidRequest
from siaga112.events.hub import EventHub, LiveEvent
from siaga112.schemas import ERROR_RESPONSES

router = APIRouter(prefix="/events", tags=["events"], responses=ERROR_RESPONSES)

HEARTBEAT_S = 15.0
READY_WAIT_S = 5.0
_TYPE = re.compile(r"[a-z][a-z0-9_.]{0,39}")


# Sent before a stream ends because its key was revoked or expired: reconnecting will not help.
_END_FRAME = b'event: stream_end\ndata: {"reason": "key_revoked_or_expired"}\n\n'


async def _key_still_usable(request: Request, key_id: str | None) -> bool:
    if key_id is None:
        return True
    async with request.app.state.sessionmaker() as session:
        return await key_usable(session=session, key_id=key_id)


def _types(raw: str | None, kind: list[str] | None) -> set[str] | None:
    wanted = set(kind or ())
    for item in (raw or "").split(","):
        item = item.strip()
        if not item:
            continue
        if not _TYPE.fullmatch(item):
            raise InvalidRequest(
                f"{item[:40]!r} is not an event type", details=[{"field": "query.types"}]
            )
        wanted.add(item)
    return wanted or None


@router.get(
    "/stream",
    summary="Live events (Server-Sent Events), resumable with Last-Event-ID",
    description=(
        "Every line written to an incident's timeline, as it is committed (`created`, "
        "`call_offered`, `updated`, `status_changed`, `note`, `call_answered`, `call_ended`, "
        "`call_abandoned`, `duplicate_linked`, `location_added`, dispatch events ...), and "
        "events without an incident: `operator_state_changed` (idle, ringing, in_call, "
        "paused, offline, logged_out). Each SSE message has the event id, the type as "
        "`event`, and JSON `data` with `id`, `incident_id` (null for operator events), `at`, "
        "`actor`, `kind` and `data`. Ids grow over both kinds; a client that has id N has "
        "every event below N. `types=call_offered,operator_state_changed` (comma-separated) "
        "keeps only those types. Reconnect with the `Last-Event-ID` header (or "
        "`last_event_id`) to receive what was missed. A comment line is sent every 15 s as a "
        "heartbeat. The key is checked again every few seconds: once revoked or expired, the "
        "stream sends `event: stream_end` and closes. `location_added`/`location_confirmed` "
        "carry where the caller is: each "
        "connection is audited once as `location.read` (entity `event_stream`), not each "
        "event."
    ),
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def stream(
    request: Request,
    session: SessionDep,
    actor: Reader,
    rid: RequestId,
    types: Annotated[str | None, Query(max_length=400)] = None,
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
    kinds = _types(types, kind)
    if hub.closing:
        raise EventStreamUnavailable("this process is stopping; connect again")
    if not await hub.wait_ready(READY_WAIT_S):
        raise EventStreamUnavailable("the live event stream is starting; try again")
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

    check_s = request.app.state.settings.api.stream_key_check_s

    def wanted(event: LiveEvent) -> bool:
        return (kinds is None or event.kind in kinds) and (
            incident_id is None or event.incident_id == incident_id
        )

    async def frames() -> AsyncIterator[bytes]:
        # Subscribed before the replay, and the replay ends where the subscription starts:
        # nothing falls between the two, nothing comes twice.
        sub, start = hub.subscribe()
        try:
            sent = start
            if resume_from is not None and resume_from < start:
                sent = resume_from
                while True:
                    missed = await hub.replay(after_id=sent, up_to=start)
                    for event in missed:
                        sent = event.id
                        if wanted(event):
                            yield event.frame
                    if not missed:
                        break
                sent = start
            elif resume_from is not None:
                sent = resume_from  # ahead of this process: what it has is not sent again
            yield b": connected\n\n"
            loop = asyncio.get_running_loop()
            next_check = loop.time() + check_s
            next_heartbeat = loop.time() + HEARTBEAT_S
            while not sub.overflowed:
                now = loop.time()
                if now >= next_check:
                    # The key was checked at connect; a revoked or expired one ends the
                    # stream within check_s, not whenever the client reconnects.
                    if not await _key_still_usable(request, actor.key_id):
                        yield _END_FRAME
                        return
                    next_check = now + check_s
                if now >= next_heartbeat:
                    yield b": heartbeat\n\n"
                    next_heartbeat = now + HEARTBEAT_S
                try:
                    item = await asyncio.wait_for(
                        sub.queue.get(), max(0.0, min(next_check, next_heartbeat) - now)
                    )
                except TimeoutError:
                    continue
                # Whatever else is waiting goes out in the same write.
                items = [item]
                while not sub.queue.empty():
                    items.append(sub.queue.get_nowait())
                chunk: list[bytes] = []
                for queued in items:
                    if queued is None:
                        break
                    if queued.id <= sent:
                        continue
                    sent = queued.id
                    if wanted(queued):
                        chunk.append(queued.frame)
                if chunk:
                    yield b"".join(chunk)
                if None in items:
                    return
        finally:
            sub.close()

    return StreamingResponse(
        frames(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
