"""Operator-facing text from gettext catalogs (Bahasa Indonesia first, English second).

Message ids are stable keys (``queue.join``); each language's ``console.po`` gives the text.
The catalogs are read once with Babel; templates call ``_()`` and the browser gets the same
catalog as JSON rendered into the page."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from babel.messages.pofile import read_po

LANGUAGES = ("id", "en")
LOCALE_DIR = Path(__file__).parent / "locale"
DOMAIN = "console"


@cache
def catalog(lang: str) -> dict[str, str]:
    """Every key with its text in `lang`; a key missing there falls back to Indonesian."""
    if lang not in LANGUAGES:
        lang = LANGUAGES[0]
    out: dict[str, str] = {}
    if lang != LANGUAGES[0]:
        out.update(catalog(LANGUAGES[0]))
    with (LOCALE_DIR / lang / "LC_MESSAGES" / f"{DOMAIN}.po").open("rb") as fh:
        for message in read_po(fh):
            if isinstance(message.id, str) and isinstance(message.string, str) and message.string:
                out[message.id] = message.string
    return out


def translator(lang: str) -> dict[str, str]:
    return catalog(lang)


def pick_language(cookie: str | None, default: str) -> str:
    """The language the switch set (a cookie), else the centre's default: Bahasa Indonesia
    unless configured otherwise, whatever the browser's own language."""
    return cookie if cookie in LANGUAGES else default
