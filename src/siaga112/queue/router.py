"""/v1/queue: the live queue for supervisors and operator consoles."""

from __future__ import annotations

from fastapi import APIRouter, Request

from siaga112.api.deps import Reader, RequestId, SessionDep
from siaga112.audit.service import record_audit
from siaga112.callcontrol.deps import Control
from siaga112.operators.router import Target
from siaga112.queue.schemas import LiveQueue
from siaga112.queue.service import QueueSnapshot, live_queue
from siaga112.schemas import ERROR_RESPONSES

router = APIRouter(prefix="/queue", tags=["queue"], responses=ERROR_RESPONSES)


@router.get(
    "",
    response_model=LiveQueue,
    summary="Callers waiting now, longest wait, operators by state",
    description="A read that shows any caller's location is audited once (`location.read`, "
    "entity `queue`, with the ids of the calls whose location it showed). The same snapshot "
    "is answered to every reader for up to `api.queue_snapshot_s` (its `at` says when it was "
    "taken).",
)
async def get_queue(
    request: Request,
    session: SessionDep,
    actor: Reader,
    control: Control,
    target: Target,
    rid: RequestId,
) -> LiveQueue:
    snapshot: QueueSnapshot | None = getattr(request.app.state, "queue_snapshot", None)
    if snapshot is None:
        queue = await live_queue(session=session, control=control, target=target)
    else:
        queue = await snapshot.get(
            lambda: live_queue(session=session, control=control, target=target)
        )
    # Any key that may read the queue sees every waiting caller's location: once per read
    # (not per caller), as the event stream is audited once per connection.
    shown = [str(w.call_id) for w in queue.waiting if w.location is not None and w.call_id]
    if shown:
        await record_audit(
            session=session,
            actor=actor,
            action="location.read",
            entity_type="queue",
            entity_id="live",
            before=None,
            after={"via": "queue", "call_ids": shown},
            request_id=rid,
        )
        await session.commit()
    return queue
