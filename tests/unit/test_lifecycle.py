"""Properties of the incident status lifecycle."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from siaga112.auth.roles import Role
from siaga112.auth.service import Actor
from siaga112.errors import InvalidTransition
from siaga112.incidents.lifecycle import TRANSITIONS, Status, allowed_targets, can_transition
from siaga112.incidents.models import Incident
from siaga112.incidents.service import _apply_status

statuses = st.sampled_from(list(Status))
OPERATOR = Actor(name="op", role=Role.OPERATOR, key_id="k1")
SUPERVISOR = Actor(name="sup", role=Role.SUPERVISOR, key_id="k2")


def _reachable_from_new() -> set[Status]:
    seen, todo = {Status.NEW}, [Status.NEW]
    while todo:
        for nxt in TRANSITIONS[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_every_status_is_reachable_from_new_and_closed_is_reachable() -> None:
    assert _reachable_from_new() == set(Status)


def test_closed_is_final_for_operators() -> None:
    assert allowed_targets(Status.CLOSED) == []
    assert allowed_targets(Status.CLOSED, may_reopen=True) == [Status.IN_PROGRESS]


@given(st.lists(st.tuples(statuses, st.sampled_from([OPERATOR, SUPERVISOR])), max_size=30))
def test_any_sequence_of_requests_only_follows_allowed_edges(
    requests: list[tuple[Status, Actor]],
) -> None:
    incident = Incident(status=Status.NEW.value)
    for target, actor in requests:
        before = Status(incident.status)
        may_reopen = actor.role is Role.SUPERVISOR
        try:
            _apply_status(incident, target, actor)
        except InvalidTransition:
            assert incident.status == before.value, "a refused move changes nothing"
            assert not can_transition(before, target, may_reopen=may_reopen)
            continue
        after = Status(incident.status)
        assert after is before or can_transition(before, after, may_reopen=may_reopen)
        assert (incident.closed_at is not None) == (after is Status.CLOSED) or (
            after is not Status.CLOSED
            and before is not Status.CLOSED
            and incident.closed_at is None
        )


@given(statuses, statuses)
def test_operator_can_never_leave_closed(current: Status, target: Status) -> None:
    if current is Status.CLOSED and target is not Status.CLOSED:
        assert not can_transition(current, target)
