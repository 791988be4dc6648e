"""Finding a number's calls and incidents in stored rows, in whichever column and form it was
stored (see `siaga112.callers.numbers`)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import ColumnElement, or_, select, union

from siaga112.callers.numbers import number_forms, subscriber_number
from siaga112.calls.models import Call
from siaga112.incidents.models import Incident

# A number in E.164 and its stored forms: literals, or columns of a VALUES list when many
# numbers are matched in one statement.
NumberText = str | ColumnElement[str]


def calls_of(e164: NumberText, forms: Sequence[NumberText]) -> ColumnElement[bool]:
    """Calls of the number, in whichever column and form it was stored."""
    return or_(
        Call.caller_e164 == e164,
        Call.caller_number.in_(forms),
        Call.asserted_number.in_(forms),
    )


def incidents_of(e164: NumberText, forms: Sequence[NumberText]) -> ColumnElement[bool]:
    """Incidents of the number: its own caller number, or a call of the number."""
    # A union of ids rather than an OR, so that each side uses its index and the incidents are
    # then fetched by primary key: no scan of the incidents table however large it grows.
    # correlate_except: each side reads its own table, and takes the number's columns (when
    # they are columns) from the enclosing statement rather than joining a copy of them.
    return Incident.id.in_(
        union(
            select(Incident.id).where(Incident.caller_number.in_(forms)).correlate_except(Incident),
            select(Call.incident_id)
            .where(calls_of(e164, forms), Call.incident_id.is_not(None))
            .correlate_except(Call),
        )
    )


def call_matches(e164: str) -> ColumnElement[bool]:
    return calls_of(e164, number_forms(e164))


def incident_matches(e164: str) -> ColumnElement[bool]:
    return incidents_of(e164, number_forms(e164))


def calls_of_number(raw: str) -> ColumnElement[bool]:
    """The calls of a number as someone typed it: a subscriber's number in whichever form and
    column it was stored (0812..., 62812..., +62812...); anything else (a short code, an
    extension) as typed."""
    e164 = subscriber_number(raw)
    return call_matches(e164) if e164 is not None else Call.caller_number == raw


def incidents_of_number(raw: str) -> ColumnElement[bool]:
    """The incidents of a number as someone typed it (see :func:`calls_of_number`)."""
    e164 = subscriber_number(raw)
    return incident_matches(e164) if e164 is not None else Incident.caller_number == raw
