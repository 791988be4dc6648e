"""The dispatch status lifecycle, free of I/O so it can be tested alone.

sent -> acknowledged -> en_route -> on_scene -> completed, one step at a time; an agency may
decline (with a reason) while the dispatch is sent or acknowledged. completed and declined are
final. Setting the status a dispatch already has is not a transition (an agency that retries a
request changes nothing).
"""

from __future__ import annotations

from enum import StrEnum


class DispatchStatus(StrEnum):
    SENT = "sent"
    ACKNOWLEDGED = "acknowledged"
    EN_ROUTE = "en_route"
    ON_SCENE = "on_scene"
    COMPLETED = "completed"
    DECLINED = "declined"


TRANSITIONS: dict[DispatchStatus, frozenset[DispatchStatus]] = {
    DispatchStatus.SENT: frozenset({DispatchStatus.ACKNOWLEDGED, DispatchStatus.DECLINED}),
    DispatchStatus.ACKNOWLEDGED: frozenset({DispatchStatus.EN_ROUTE, DispatchStatus.DECLINED}),
    DispatchStatus.EN_ROUTE: frozenset({DispatchStatus.ON_SCENE}),
    DispatchStatus.ON_SCENE: frozenset({DispatchStatus.COMPLETED}),
    DispatchStatus.COMPLETED: frozenset(),
    DispatchStatus.DECLINED: frozenset(),
}

FINAL: frozenset[DispatchStatus] = frozenset({DispatchStatus.COMPLETED, DispatchStatus.DECLINED})

# The order statuses are reached in along the main path (declined stands apart).
PATH: tuple[DispatchStatus, ...] = (
    DispatchStatus.SENT,
    DispatchStatus.ACKNOWLEDGED,
    DispatchStatus.EN_ROUTE,
    DispatchStatus.ON_SCENE,
    DispatchStatus.COMPLETED,
)


def can_transition(current: DispatchStatus, target: DispatchStatus) -> bool:
    return target in TRANSITIONS[current]


def allowed_targets(current: DispatchStatus) -> list[DispatchStatus]:
    return [s for s in DispatchStatus if can_transition(current, s)]


def is_active(status: DispatchStatus) -> bool:
    """An active dispatch still binds the agency; one per agency and incident at a time."""
    return status not in FINAL
