"""Finding a number's calls and incidents in stored rows, in whichever column and form it was
stored (see `siaga112.callers.numbers`).

A number's history grows for years (a nuisance caller's thousands of calls), so nothing here
reads all of it from the tables: pages read each column and form on its own index, newest
first, for no more than the page (:func:`calls_page`, :func:`incidents_page`), and counts read
the indexes alone (:func:`call_keys`, :func:`incident_keys`: each index holds what they count).
The indexes are those of migration 0005: the number, then the time, then the id, with the few
columns the counts need.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    CompoundSelect,
    Select,
    except_,
    or_,
    select,
    union,
    union_all,
)

from siaga112.api.pagination import PagedFilter
from siaga112.callers.numbers import number_forms, subscriber_number
from siaga112.calls.models import Call
from siaga112.incidents.models import Incident

# A number in E.164 and its stored forms: literals, or columns of a VALUES list when many
# numbers are matched in one statement.
NumberText = str | ColumnElement[str]


def _call_columns(e164: NumberText, forms: Sequence[NumberText]) -> list[ColumnElement[bool]]:
    """One condition per index: each holds the number in one column and form."""
    return [
        Call.caller_e164 == e164,
        *(Call.caller_number == f for f in forms),
        *(Call.asserted_number == f for f in forms),
    ]


def calls_of(e164: NumberText, forms: Sequence[NumberText]) -> ColumnElement[bool]:
    """Calls of the number, in whichever column and form it was stored."""
    return or_(*_call_columns(e164, forms))


def call_keys(
    e164: NumberText, forms: Sequence[NumberText]
) -> CompoundSelect[uuid.UUID, datetime, int | None]:
    """(id, offered_at, incident_id) of every call of the number, once each, from the indexes
    alone (no table row is read for them)."""
    # correlate_except: each part reads its own table, and takes the number's columns (when
    # they are columns) from the enclosing statement rather than joining a copy of them.
    return union(
        *(
            select(Call.id, Call.offered_at, Call.incident_id).where(c).correlate_except(Call)
            for c in _call_columns(e164, forms)
        )
    )


def _extra_incident_ids(e164: NumberText, forms: Sequence[NumberText]) -> CompoundSelect[Any]:
    """Incidents of the number's calls whose own caller number is another (a call whose From
    header and asserted identity differ, another leg of the same call): rare, found from the
    indexes alone."""
    calls = [
        select(Call.incident_id).where(c, Call.incident_id.is_not(None)).correlate_except(Call)
        for c in _call_columns(e164, forms)
    ]
    own = select(Incident.id).where(Incident.caller_number.in_(forms)).correlate_except(Incident)
    return except_(union(*calls), own)


def incident_keys(
    e164: NumberText, forms: Sequence[NumberText]
) -> CompoundSelect[int, datetime, str | None]:
    """(id, created_at, classification) of every incident of the number: its own caller number
    (from the index alone), or a call of the number (see :func:`_extra_incident_ids`)."""
    keys = (Incident.id, Incident.created_at, Incident.classification)
    return union_all(
        select(*keys).where(Incident.caller_number.in_(forms)).correlate_except(Incident),
        select(*keys)
        .where(Incident.id.in_(_extra_incident_ids(e164, forms)))
        .correlate_except(Incident),
    )


def calls_page(e164: NumberText, forms: Sequence[NumberText]) -> PagedFilter:
    """The number's calls for a page newest first by (offered_at, id): each column and form
    read on its own index for no more than the page, the newest of them kept."""
    columns = _call_columns(e164, forms)

    def page_of(where: Sequence[ColumnElement[bool]], rows: int) -> ColumnElement[bool]:
        parts = union(
            *(
                select(Call.id, Call.offered_at)
                .where(c, *where)
                .order_by(Call.offered_at.desc(), Call.id.desc())
                .limit(rows)
                .correlate_except(Call)
                for c in columns
            )
        ).subquery("caller_calls")
        newest = select(parts.c.id).order_by(parts.c.offered_at.desc(), parts.c.id.desc())
        return Call.id.in_(newest.limit(rows))

    return page_of


def incidents_page(e164: NumberText, forms: Sequence[NumberText]) -> PagedFilter:
    """The number's incidents for a page newest first by (created_at, id): its own caller
    number in each form on its index, and the rare incidents only its calls name (found from
    the indexes), each for no more than the page; the newest of them kept."""

    def page_of(where: Sequence[ColumnElement[bool]], rows: int) -> ColumnElement[bool]:
        def newest(cond: ColumnElement[bool]) -> Select[int, datetime]:
            return (
                select(Incident.id, Incident.created_at)
                .where(cond, *where)
                .order_by(Incident.created_at.desc(), Incident.id.desc())
                .limit(rows)
                .correlate_except(Incident)
            )

        parts = union(
            *(newest(Incident.caller_number == f) for f in forms),
            newest(Incident.id.in_(_extra_incident_ids(e164, forms))),
        ).subquery("caller_incidents")
        kept = select(parts.c.id).order_by(parts.c.created_at.desc(), parts.c.id.desc())
        return Incident.id.in_(kept.limit(rows))

    return page_of


def _distinct(forms: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(forms))


def _plain(cond: ColumnElement[bool]) -> PagedFilter:
    # One index that reads in page order already: the condition is the page.
    return lambda where, rows: cond


def incidents_of(e164: NumberText, forms: Sequence[NumberText]) -> ColumnElement[bool]:
    """Incidents of the number: its own caller number, or a call of the number (the whole
    history, for reads that want it all: enforcement evidence)."""
    return Incident.id.in_(select(incident_keys(e164, forms).subquery().c.id))


def call_matches(e164: str) -> ColumnElement[bool]:
    return calls_of(e164, number_forms(e164))


def incident_matches(e164: str) -> ColumnElement[bool]:
    return incidents_of(e164, number_forms(e164))


def calls_of_number(raw: str) -> PagedFilter:
    """The calls of a number as someone typed it: a subscriber's number in whichever form and
    column it was stored (0812..., 62812..., +62812...); anything else (a short code, an
    extension) as typed."""
    e164 = subscriber_number(raw)
    if e164 is not None:
        return calls_page(e164, _distinct(number_forms(e164)))
    return _plain(Call.caller_number == raw)


def incidents_of_number(raw: str) -> PagedFilter:
    """The incidents of a number as someone typed it (see :func:`calls_of_number`)."""
    e164 = subscriber_number(raw)
    if e164 is not None:
        return incidents_page(e164, _distinct(number_forms(e164)))
    return _plain(Incident.caller_number == raw)
