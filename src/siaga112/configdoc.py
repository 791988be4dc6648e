"""docs/configuration.md, written from the settings' own descriptions (`make docs`).

The page is derived from :class:`siaga112.config.Settings` so that it cannot drift from the
code: every field carries a ``Field(description=...)``, and tests/unit/test_config_docs.py fails
when one has none or when the page on disk differs from what :func:`render` gives.

    python -m siaga112.configdoc [OUTPUT]      # write (default docs/configuration.md)
    python -m siaga112.configdoc --check [OUTPUT]
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import AwareDatetime, BaseModel, PostgresDsn, SecretStr
from pydantic.fields import FieldInfo

from siaga112.config import Settings

ENV_PREFIX = "SIAGA112_"
NESTED_DELIMITER = "__"
DEFAULT_OUTPUT = Path("docs/configuration.md")

# Defaults that depend on the machine or are secrets: described, never printed (a printed home
# directory would make the page differ per machine). render() refuses a Path, None or secret
# default missing here, and an entry here that names no such field.
DESCRIBED_DEFAULTS: dict[str, str] = {
    "SIAGA112_STATE_DIR": "`$XDG_STATE_HOME/siaga112`, else `~/.local/state/siaga112`",
    "SIAGA112_CACHE_DIR": "`$XDG_CACHE_HOME/siaga112`, else `~/.cache/siaga112`",
    "SIAGA112_AMI__SECRET": "generated once in the state directory",
    "SIAGA112_AGI__SECRET": "generated once in the state directory",
    "SIAGA112_CONSOLE__TILE_URL": "none: the offline basemap shipped with the project",
    "SIAGA112_CONSOLE__BOUNDARY_FILE": "the project's approximate demo outlines of Kota Bekasi",
    "SIAGA112_PBX__ROOT": "`<cache dir>/asterisk-root`",
    "SIAGA112_PBX__MIRROR": "the host's apt mirror (`/etc/apt/sources.list.d/*.sources`)",
    "SIAGA112_PBX__TEMPLATES_DIR": "the package's `siaga112/pbxconf/templates/`",
    "SIAGA112_PBX__PROMPTS_DIR": "none: every prompt spoken from its text",
    "SIAGA112_PBX__RECONCILE_FROM": "when the database was created",
    "SIAGA112_PBX__NODES__CDR_PATH": "the sandbox node's "
    "`<root>/var/lib/siaga112-nodes/<name>/log/cdr-custom/<cdr file name>`",
    "SIAGA112_PBX__CDR_PATH": "the sandbox's `<root>/var/log/asterisk/cdr-custom/siaga112-cdr.csv`",
    "SIAGA112_PBX__RECORDINGS_PATH": "the sandbox's `<root>/var/spool/asterisk/monitor/siaga112`",
    "SIAGA112_DATABASE_OWNER_URL": "none: `SIAGA112_DATABASE_URL`",
    "SIAGA112_DATABASE_ADMIN_URL": "none (needed by `siaga112 db roles` only)",
    "SIAGA112_PBX__DB_USER": "none: the user of `SIAGA112_DATABASE_URL`",
    "SIAGA112_PBX__DB_PASSWORD": "none",
}

HEADER = """\
# Configuration

<!-- Generated from src/siaga112/config.py by `make docs`; edit the Field descriptions there. -->

siaga112 reads its settings from environment variables only: prefix `SIAGA112_`, nested
sections joined with `__` (`SIAGA112_PBX__SIP_PORT=5070`). Lists and objects are JSON
(`SIAGA112_PBX__ALIAS_NUMBERS='["110","113"]'`). Values are checked at start: a bad one stops
the process with a validation error naming the setting (`pbx.sip_port`). A variable with the
prefix that names no setting is ignored, so check its spelling against this page. Secrets are
never logged.
"""


@dataclass(frozen=True, slots=True)
class Setting:
    """One field of the settings tree, with where it sits."""

    path: tuple[str, ...]
    info: FieldInfo

    @property
    def variable(self) -> str:
        return ENV_PREFIX + NESTED_DELIMITER.join(part.upper() for part in self.path)


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """Models reachable through an annotation: the model itself, or inside list/dict/Optional."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for arg in get_args(annotation):
        found.extend(_models_in(arg))
    return found


def _section_model(info: FieldInfo) -> type[BaseModel] | None:
    """The model of a nested section (a field whose type is a model itself)."""
    annotation = info.annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def iter_settings(
    model: type[BaseModel] = Settings, path: tuple[str, ...] = ()
) -> Iterator[Setting]:
    """Every field of ``model``, depth first, including those of models inside lists and
    dicts (such as one AML sender)."""
    for name, info in model.model_fields.items():
        setting = Setting(path=(*path, name), info=info)
        yield setting
        for inner in _models_in(info.annotation):
            yield from iter_settings(inner, setting.path)


def undocumented(model: type[BaseModel] = Settings) -> list[str]:
    """Dotted paths of the fields that have no description."""
    return [
        ".".join(s.path)
        for s in iter_settings(model)
        if not (s.info.description and s.info.description.strip())
    ]


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, int | str | PostgresDsn):
        return str(value)
    if isinstance(value, tuple):
        value = list(value)
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"))
    raise TypeError(f"no rendering for a default of type {type(value).__name__}")


def _contains(annotation: Any, kind: type) -> bool:
    if annotation is kind:
        return True
    return any(_contains(arg, kind) for arg in get_args(annotation))


def default_text(setting: Setting) -> str:
    info = setting.info
    described = DESCRIBED_DEFAULTS.get(setting.variable)
    if described is not None:
        return described
    if info.is_required():
        return "required"
    value = info.get_default(call_default_factory=True)
    if value is None or isinstance(value, Path) or _contains(info.annotation, SecretStr):
        raise ValueError(
            f"{setting.variable}: its default depends on the machine or is a secret; describe it "
            "in siaga112.configdoc.DESCRIBED_DEFAULTS"
        )
    return f"`{_value(value)}`"


def _kind(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin is Literal:
        return " or ".join(f"`{a}`" for a in get_args(annotation))
    if origin in (Union, types.UnionType):
        return " or ".join(_kind(a) for a in get_args(annotation) if a is not type(None))
    if origin is list:
        (item,) = get_args(annotation)
        if _models_in(item):
            return "JSON list of objects (entries below)"
        return f"JSON list of {_kind(item)}"
    if origin is tuple:
        items = get_args(annotation)
        return f"JSON list of {len(items)}: " + ", ".join(_kind(i) for i in items)
    if origin is dict:
        _, item = get_args(annotation)
        if _models_in(item):
            return "JSON object (entries below)"
        return f"JSON object of {_kind(item)}"
    names: dict[Any, str] = {
        bool: "`true` or `false`",
        int: "integer",
        float: "number",
        str: "text",
        Path: "path",
        SecretStr: "secret",
        AwareDatetime: "ISO 8601 time with its UTC offset",
    }
    if annotation in names:
        return names[annotation]
    if annotation is PostgresDsn:
        return "PostgreSQL URL"
    raise TypeError(f"no rendering for a setting of type {annotation!r}")


def _accepts(info: FieldInfo) -> str:
    parts = [_kind(info.annotation)]
    low: str | None = None
    high: str | None = None
    for item in info.metadata:
        if isinstance(item, annotated_types.Ge):
            low = f"{_value(item.ge)}"
        elif isinstance(item, annotated_types.Gt):
            parts.append(f"> {_value(item.gt)}")
        elif isinstance(item, annotated_types.Le):
            high = f"{_value(item.le)}"
        elif isinstance(item, annotated_types.Lt):
            parts.append(f"< {_value(item.lt)}")
        elif isinstance(item, annotated_types.MinLen):
            parts.append(f"at least {item.min_length}")
        elif isinstance(item, annotated_types.MaxLen):
            parts.append(f"at most {item.max_length}")
        elif getattr(item, "pattern", None):
            parts.append(f"matching `{item.pattern}`")
        else:
            # A constraint left off the page would mislead; teach this function instead.
            raise TypeError(f"no rendering for the constraint {item!r} of {info!r}")
    if low is not None and high is not None:
        parts.append(f"{low}..{high}")
    elif low is not None:
        parts.append(f">= {low}")
    elif high is not None:
        parts.append(f"<= {high}")
    return ", ".join(parts)


def _table(rows: list[Setting], *, key: str) -> list[str]:
    lines = [f"| {key} | default | accepts | meaning |", "| --- | --- | --- | --- |"]
    for setting in rows:
        name = setting.variable if key == "variable" else setting.path[-1]
        lines.append(
            f"| `{name}` | {_cell(default_text(setting))} | {_cell(_accepts(setting.info))} "
            f"| {_cell(setting.info.description or '')} |"
        )
    return lines


def _section(model: type[BaseModel], path: tuple[str, ...], title: str, lead: str) -> list[str]:
    """One section's table, then the tables of models held in its lists and dicts."""
    settings = [Setting(path=(*path, n), info=i) for n, i in model.model_fields.items()]
    own = [s for s in settings if _section_model(s.info) is None]
    lead_lines = textwrap.wrap(" ".join(lead.split()), 100, break_on_hyphens=False)
    lines = [f"## {title}", "", *lead_lines, "", *_table(own, key="variable"), ""]
    for setting in own:
        for inner in _models_in(setting.info.annotation):
            entries = [
                Setting(path=(*setting.path, n), info=i) for n, i in inner.model_fields.items()
            ]
            lines += [
                f"Each entry of `{setting.variable}`:",
                "",
                *_table(entries, key="key"),
                "",
            ]
    for setting in settings:
        section = _section_model(setting.info)
        if section is not None:
            lines += _section(
                section,
                setting.path,
                f"`{setting.variable}{NESTED_DELIMITER}*`",
                setting.info.description or "",
            )
    return lines


def render() -> str:
    """The whole page, from the Settings class alone (never from the environment)."""
    missing = undocumented()
    if missing:
        raise ValueError(f"settings without a description: {', '.join(missing)}")
    known = {s.variable for s in iter_settings()}
    stray = sorted(set(DESCRIBED_DEFAULTS) - known)
    if stray:
        raise ValueError(f"DESCRIBED_DEFAULTS names no setting: {', '.join(stray)}")
    body = _section(Settings, (), "General", "Top-level settings.")
    return HEADER + "\n" + "\n".join(body).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m siaga112.configdoc", description="write docs/configuration.md"
    )
    parser.add_argument("output", nargs="?", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument(
        "--check", action="store_true", help="only compare; exit 1 when the page is stale"
    )
    args = parser.parse_args(argv)
    text = render()
    output: Path = args.output
    if args.check:
        current = output.read_text(encoding="utf-8") if output.exists() else ""
        if current != text:
            print(f"{output} is stale: run `make docs`", file=sys.stderr)
            return 1
        return 0
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    print(f"wrote {output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
