"""The console's two catalogs hold the same keys, and every key the templates and scripts use
(literally, or built from a vocabulary such as categories or dispatch statuses) is in them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from siaga112.callers.flag_schemas import FlagKind
from siaga112.console.i18n import LANGUAGES, LOCALE_DIR
from siaga112.console.router import PAUSE_REASONS
from siaga112.dispatch.lifecycle import DispatchStatus
from siaga112.incidents.lifecycle import Category, Classification, Status
from siaga112.operators.live import OPERATOR_STATES

CONSOLE = LOCALE_DIR.parent


def _keys(lang: str) -> set[str]:
    from babel.messages.pofile import read_po

    with (LOCALE_DIR / lang / "LC_MESSAGES" / "console.po").open("rb") as fh:
        return {m.id for m in read_po(fh) if isinstance(m.id, str) and m.id and m.string}


def _used() -> set[str]:
    used: set[str] = set()
    for path in (CONSOLE / "templates").glob("*.html"):
        used |= set(re.findall(r"""_\(\s*["']([a-z0-9_.]+)["']\s*\)""", path.read_text()))
    for path in (CONSOLE / "static" / "js").glob("*.js"):
        used |= set(re.findall(r"""\bt\(\s*"([a-z0-9_.]+)"\s*[,)]""", path.read_text()))
    return used


def test_both_languages_have_the_same_keys() -> None:
    ids, ens = (_keys(lang) for lang in LANGUAGES)
    assert ids - ens == set()
    assert ens - ids == set()


def test_every_literal_key_in_templates_and_scripts_is_translated() -> None:
    used = _used()
    assert len(used) > 50  # the patterns above still find the keys
    assert used - _keys("id") == set()


@pytest.mark.parametrize(
    ("prefix", "values"),
    [
        ("category", [c.value for c in Category]),
        ("classification", [c.value for c in Classification] + ["unclassified"]),
        ("status", [s.value for s in Status]),
        ("dstatus", [s.value for s in DispatchStatus]),
        ("action", [s.value for s in DispatchStatus if s is not DispatchStatus.SENT]),
        ("flag", [k.value for k in FlagKind]),
        ("opstate", [*OPERATOR_STATES, "unknown"]),
        ("pause", list(PAUSE_REASONS)),
        ("source", ["network_cell", "pidf_lo", "aml_sms", "aml_https", "operator"]),
        ("role", ["operator", "supervisor", "agency", "admin"]),
        ("priority", ["1", "2", "3", "4", "5"]),
    ],
)
def test_vocabularies_are_translated(prefix: str, values: list[str]) -> None:
    keys = _keys("id")
    assert {f"{prefix}.{v}" for v in values} - keys == set()


def test_scripts_and_templates_carry_no_inline_script_or_style() -> None:
    for path in (CONSOLE / "templates").glob("*.html"):
        text = path.read_text()
        assert re.search(r"<script(?![^>]*\b(src|type=\"application/json\"))", text) is None, path
        assert " style=" not in text, path
        assert re.search(r"\son[a-z]+=", text) is None, path
    for path in (CONSOLE / "static" / "js").glob("*.js"):
        assert "innerHTML" not in path.read_text(), path


def test_no_operator_text_in_python_code() -> None:
    # Indonesian words that would give away a hard-coded label in the console's Python code.
    for path in Path(CONSOLE).glob("*.py"):
        text = path.read_text().lower()
        for word in ("masuk", "keluar", "antrean", "insiden", "penelepon"):
            assert word not in text, (path, word)
