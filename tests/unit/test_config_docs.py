"""docs/configuration.md is generated from the settings' descriptions and must stay current."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel, Field

from siaga112.config import Settings
from siaga112.configdoc import (
    DEFAULT_OUTPUT,
    Setting,
    default_text,
    iter_settings,
    render,
    undocumented,
)

REPO = Path(__file__).resolve().parents[2]


def test_every_setting_has_a_description() -> None:
    missing = undocumented(Settings)
    assert missing == [], (
        f"settings without Field(description=...) in src/siaga112/config.py: {missing}; "
        "describe them, then run `make docs`"
    )


class _Entry(BaseModel):
    key: str = Field(default="k")


class _Section(BaseModel):
    documented: int = Field(default=1, description="Has one.")
    bare: int = 2


class _Root(BaseModel):
    section: _Section = Field(default_factory=_Section, description="A section.")
    entries: dict[str, _Entry] = Field(default_factory=dict, description="Entries.")
    top: str = ""


def test_a_field_without_description_is_found_at_any_depth() -> None:
    assert undocumented(_Root) == ["section.bare", "entries.key", "top"]


def test_configuration_page_is_current() -> None:
    page = REPO / DEFAULT_OUTPUT
    assert page.exists(), f"{DEFAULT_OUTPUT} is missing: run `make docs`"
    assert page.read_text(encoding="utf-8") == render(), (
        f"{DEFAULT_OUTPUT} differs from the settings in src/siaga112/config.py: run `make docs`"
    )


def test_machine_dependent_defaults_are_described_not_printed() -> None:
    page = render()
    assert str(Path.home()) not in page
    state_dir = next(s for s in iter_settings() if s.path == ("state_dir",))
    assert "~/.local/state/siaga112" in default_text(state_dir)


def test_an_undescribed_path_default_is_refused() -> None:
    class _Paths(BaseModel):
        where: Path = Field(default_factory=Path.cwd, description="Somewhere.")

    setting = Setting(path=("where",), info=_Paths.model_fields["where"])
    with pytest.raises(ValueError, match="DESCRIBED_DEFAULTS"):
        default_text(setting)


_NESTED_VARIABLE = re.compile(r"SIAGA112_[A-Z0-9_]+__[A-Z0-9_]+")


@pytest.mark.parametrize(
    "doc",
    [
        "README.md",
        "bench/README.md",
        *sorted(str(p.relative_to(REPO)) for p in (REPO / "docs").glob("*.md")),
    ],
)
def test_settings_named_in_the_docs_exist(doc: str) -> None:
    known = {s.variable for s in iter_settings()}
    named = set(_NESTED_VARIABLE.findall((REPO / doc).read_text(encoding="utf-8")))
    unknown = sorted(named - known)
    assert unknown == [], f"{doc} names settings that do not exist: {unknown}"
