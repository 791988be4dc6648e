"""A caller's number: which raw values are one, and how to find it in stored rows.

The one place that decides what counts as a caller's number (caller history, flag evidence, the
live queue, AML matching, flags): a full subscriber number in E.164. Short codes (3 to 7 digits:
112, 1500xxx, 14045) are service numbers or placeholders some networks put where the caller's
number goes; taking them as a caller would lump unrelated callers together, like the words that
mean "no number" (anonymous, restricted, ...).

A number may have been stored in several forms and columns (``calls.caller_e164``,
``caller_number``, ``asserted_number``, ``incidents.caller_number``: +62812..., 62812...,
0812...); `siaga112.callers.matching` looks in all of them.
"""

from __future__ import annotations

import re

# What callers, carriers and Asterisk put where a number would be: never a caller's number.
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

_VISUAL_SEPARATORS = re.compile(r"[\s\-.()/]")
_PHONE = re.compile(r"\+?[0-9]{2,20}", re.ASCII)

# "+" and at least 8 digits: shorter is a short code or a fragment, never a subscriber.
MIN_E164_CHARS = 9


def normalise_indonesian_number(number: str) -> str | None:
    """Return ``number`` as E.164 (``+62...``) when that is unambiguous, else None.

    ``0812...`` and ``62812...`` become ``+62812...``; ``+<digits>`` stays (also foreign
    numbers); short codes (3 to 7 digits, e.g. 112, 14045, 1500xxx) are returned unchanged.
    Anything else (too short or long, ``00`` international prefixes, letters) gives None: a wrong
    callback number is worse than none.
    """
    cleaned = _VISUAL_SEPARATORS.sub("", number)
    if not _PHONE.fullmatch(cleaned):
        return None
    if cleaned.startswith("+"):
        digits = cleaned[1:]
        return cleaned if 7 <= len(digits) <= 15 and digits[0] != "0" else None
    if cleaned.startswith("62") and 10 <= len(cleaned) <= 15 and cleaned[2] != "0":
        return "+" + cleaned
    if cleaned.startswith("0") and not cleaned.startswith("00") and 9 <= len(cleaned) <= 14:
        return "+62" + cleaned[1:]
    if 3 <= len(cleaned) <= 7 and cleaned[0] != "0":
        return cleaned
    return None


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
