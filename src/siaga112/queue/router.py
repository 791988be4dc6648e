"""/v1/queue: the live queue for supervisors and operator consoles."""

from __future__ import annotations

from fastapi import APIRouter

from siaga112.api.deps import Reader, SessionDep
from siaga112.callcontrol.deps import Control
from siaga112.operators.router import Target
from siaga112.queue.schemas import LiveQueue
from siaga112.queue.service import live_queue
from siaga112.schemas import ERROR_RESPONSES

router = APIRouter(prefix="/queue", tags=["queue"], responses=ERROR_RESPONSES)


@router.get(
    "",
    response_model=LiveQueue,
    summary="Callers waiting now, longest wait, operators by state",
)
async def get_queue(session: SessionDep, _: Reader, control: Control, target: Target) -> LiveQueue:
    return await live_queue(session=session, control=control, target=target)
