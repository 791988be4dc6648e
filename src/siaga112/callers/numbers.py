"""A caller's number: which raw values are one, and how to find it in stored rows.

The one place that decides what counts as a caller's number (caller history, flag evidence, the
live queue, AML matching, flags): a full subscriber number in E.164. Short codes (3 to 7 digits:
112, 1500xxx, 14045) are service numbers or placeholders some networks put where the caller's
number goes; taking them as a caller would lump unrelated callers together, like the words that
mean "no number" (anonymous, restricted, ...).

A number may have been stored in several forms and columns (``calls.caller_e164``,
``caller_number``, ``asserted_number``, ``incidents.caller_number``: +62812..., 62812...,
0812...); :func:`call_matches` and :func:`incident_matches` look in all of them.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import ColumnElement, or_, select, union

from siaga112.calls.models import Call
from siaga112.incidents.models import Incident
from siaga112.telephony.agi_request import normalise_indonesian_number

# What callers and carriers put where a number would be (agi_request's list, plus Asterisk's).
NO_NUMBER_WORDS = frozenset(
    {
        "",
        "unknown",
        "anonymous",
        "restricted",
        "private",
        "unavailable",
        "withheld",
        "blocked",
        "<unknown>",
        "none",
        "null",
    }
)

# "+" and at least 8 digits: shorter is a short code or a fragment, never a subscriber.
MIN_E164_CHARS = 9


def means_no_number(raw: str) -> bool:
    return raw.strip().lower() in NO_NUMBER_WORDS


def is_short_code(raw: str) -> bool:
    """3 to 7 digits without a leading 0: what :func:`normalise_indonesian_number` keeps as a
    service number rather than a subscriber's."""
    number = normalise_indonesian_number(raw.strip())
    return number is not None and not number.startswith("+")


def subscriber_number(raw: str | None) -> str | None:
    """``raw`` in E.164 when it is a caller's full number, else None (never raises): no-number
    words, short codes and what is not a phone number give None."""
    if raw is None or means_no_number(raw):
        return None
    number = normalise_indonesian_number(raw.strip())
    if number is None or not number.startswith("+") or len(number) < MIN_E164_CHARS:
        return None
    return number


def number_forms(e164: str) -> list[str]:
    """The forms a number may have been stored in: +62812..., 62812..., 0812..."""
    forms = [e164, e164.lstrip("+")]
    if e164.startswith("+62"):
        forms.append("0" + e164[3:])
    return forms


FORM_COUNT = 3


def fixed_forms(e164: str) -> tuple[str, str, str]:
    """:func:`number_forms` padded to :data:`FORM_COUNT` (repeating the E.164 form), for a row
    of a VALUES list that matches many numbers in one statement."""
    forms = number_forms(e164)
    forms += [e164] * (FORM_COUNT - len(forms))
    return forms[0], forms[1], forms[2]


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
