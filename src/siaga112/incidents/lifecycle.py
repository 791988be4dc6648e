"""Incident vocabularies and the status lifecycle, free of I/O so it can be tested alone."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    NEW = "new"
    IN_PROGRESS = "in_progress"
    DISPATCHED = "dispatched"
    RESOLVED = "resolved"
    CLOSED = "closed"


class Category(StrEnum):
    KEBAKARAN = "kebakaran"
    KECELAKAAN = "kecelakaan"
    BENCANA = "bencana"
    KRIMINAL = "kriminal"
    MEDIS = "medis"
    KDRT = "kdrt"
    HEWAN = "hewan"
    ORANG_HILANG = "orang_hilang"
    POHON_TUMBANG = "pohon_tumbang"
    OTHER = "other"


class Classification(StrEnum):
    EMERGENCY = "emergency"
    INFORMATION = "information"
    PRANK = "prank"
    GHOST = "ghost"
    TEST = "test"
    DUPLICATE = "duplicate"


class Channel(StrEnum):
    CALL = "call"
    WALK_IN = "walk_in"
    RADIO = "radio"
    TEXT = "text"
    OTHER = "other"


# Moves an operator may make. A closed incident is reopened only by a supervisor (REOPEN).
TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.NEW: frozenset({Status.IN_PROGRESS, Status.DISPATCHED, Status.CLOSED}),
    Status.IN_PROGRESS: frozenset({Status.DISPATCHED, Status.RESOLVED, Status.CLOSED}),
    Status.DISPATCHED: frozenset({Status.IN_PROGRESS, Status.RESOLVED}),
    Status.RESOLVED: frozenset({Status.CLOSED, Status.IN_PROGRESS}),
    Status.CLOSED: frozenset(),
}
REOPEN: tuple[Status, Status] = (Status.CLOSED, Status.IN_PROGRESS)


def can_transition(current: Status, target: Status, *, may_reopen: bool = False) -> bool:
    """True when `current` may move to `target`; staying put is not a transition."""
    if target in TRANSITIONS[current]:
        return True
    return may_reopen and (current, target) == REOPEN


def allowed_targets(current: Status, *, may_reopen: bool = False) -> list[Status]:
    return [s for s in Status if can_transition(current, s, may_reopen=may_reopen)]
