"""The prompts a caller hears from the PBX itself: their texts (Bahasa Indonesia, with the
English beside them, in ``prompts.toml``) and the sound files Asterisk plays.

A prompt is spoken from its text by espeak-ng's Indonesian voice, unless the centre recorded its
own (``pbx.prompts_dir``: a file named ``<id>.<ext>``, any format sox reads). Either way sox
writes it in the formats Asterisk plays without transcoding on a carrier call (G.711 u-law and
A-law, 8 kHz), plus 8 kHz signed linear for any other codec. The files are built at setup (the
sandbox's ``pbx up``, ``siaga112 pbx render --sounds-to DIR`` for a real PBX host), never kept
in the repository.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

__all__ = [
    "FLAGGED_NOTICE",
    "LANGUAGE",
    "PROMPTS_FILE",
    "SOUNDS_SUBDIR",
    "SOUND_FORMATS",
    "Prompt",
    "PromptError",
    "load_prompts",
    "prompt",
    "recording_for",
    "write_sounds",
]

PROMPTS_FILE = Path(__file__).resolve().with_name("prompts.toml")

# The callers' language: the carrier endpoint's channel language (pjsip.conf), so Asterisk
# looks for a prompt under <astdatadir>/sounds/<LANGUAGE>/<SOUNDS_SUBDIR>/.
LANGUAGE = "id"
SOUNDS_SUBDIR = "siaga112"
# espeak-ng's Indonesian voice (Debian package espeak-ng).
ESPEAK_VOICE = "id"

# Asterisk file extension -> sox output options. ulaw/alaw are what a carrier call carries
# (pjsip.conf allows ulaw,alaw), so Asterisk sends the file's bytes as they are; sln (8 kHz
# signed 16-bit) is the one every other codec is translated from.
SOUND_FORMATS: dict[str, tuple[str, ...]] = {
    "ulaw": ("-t", "ul"),
    "alaw": ("-t", "al"),
    "sln": ("-t", "raw", "-e", "signed-integer", "-b", "16"),
}

# The prompts the dialplan plays (each one is in prompts.toml; a unit test checks).
FLAGGED_NOTICE = "flagged-notice"

_TOOL_TIMEOUT_S = 60.0


class PromptError(Exception):
    """A prompt could not be read or its sound file not built; the message says why."""


@dataclass(frozen=True, slots=True)
class Prompt:
    id: str
    text: str
    """What the caller hears, in Bahasa Indonesia (spoken by espeak-ng when not recorded)."""
    english: str
    """Its English translation, for readers; never played."""

    @property
    def sound(self) -> str:
        """The name the dialplan plays (``Playback(<sound>)``), relative to the language's
        sounds directory."""
        return f"{SOUNDS_SUBDIR}/{self.id}"


def load_prompts(path: Path = PROMPTS_FILE) -> dict[str, Prompt]:
    """The prompts of ``path`` (default: the catalog shipped here), by id."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise PromptError(f"cannot read the prompts in {path}: {exc}") from exc
    prompts: dict[str, Prompt] = {}
    for key, entry in data.items():
        if not isinstance(entry, dict):
            raise PromptError(f"{path}: {key!r} is not a table")
        text, english = entry.get("id"), entry.get("en")
        if not isinstance(text, str) or not text.strip():
            raise PromptError(f"{path}: [{key}] has no Indonesian text (id = ...)")
        if not isinstance(english, str) or not english.strip():
            raise PromptError(f"{path}: [{key}] has no English translation (en = ...)")
        prompts[key] = Prompt(id=key, text=text.strip(), english=english.strip())
    return prompts


@cache
def _catalog() -> dict[str, Prompt]:
    return load_prompts()


def prompt(prompt_id: str) -> Prompt:
    """One prompt of the shipped catalog."""
    try:
        return _catalog()[prompt_id]
    except KeyError:
        raise PromptError(f"no prompt {prompt_id!r} in {PROMPTS_FILE}") from None


def recording_for(prompts_dir: Path | None, prompt_id: str) -> Path | None:
    """The centre's own recording of a prompt: ``<prompts_dir>/<id>.<ext>``, or None."""
    if prompts_dir is None:
        return None
    if not prompts_dir.is_dir():
        raise PromptError(f"pbx.prompts_dir {prompts_dir} is not a directory")
    found = sorted(
        p for p in prompts_dir.iterdir() if p.is_file() and p.name.startswith(f"{prompt_id}.")
    )
    # "<id>.<ext>" only: flagged-notice.wav, not flagged-notice.old.wav.
    found = [p for p in found if p.suffix and p.stem == prompt_id]
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise PromptError(f"several recordings of {prompt_id!r} in {prompts_dir}: {names}")
    return found[0] if found else None


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise PromptError(
            f"{name} is missing: `apt-get install {name}` (scripts/bootstrap.sh installs it)"
        )
    return found


def _run(cmd: list[str]) -> None:
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=_TOOL_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise PromptError(f"{cmd[0]} did not finish within {exc.timeout} s") from exc
    if proc.returncode != 0:
        raise PromptError(f"{' '.join(cmd)} failed (exit {proc.returncode}): {proc.stderr}")


def write_sounds(
    directory: Path, *, prompts_dir: Path | None = None, prompts: list[Prompt] | None = None
) -> list[Path]:
    """Build every prompt's sound files into ``directory`` (``<astdatadir>/sounds/id/siaga112``
    to be): the centre's recording from ``prompts_dir`` where there is one, else espeak-ng's
    Indonesian voice reading the text. Returns the files written (nothing else in
    ``directory`` is touched)."""
    chosen = prompts if prompts is not None else list(_catalog().values())
    sox = _tool("sox")
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="siaga112-prompts-") as tmp:
        for p in chosen:
            source = recording_for(prompts_dir, p.id)
            if source is None:
                source = Path(tmp) / f"{p.id}.wav"
                _run([_tool("espeak-ng"), "-v", ESPEAK_VOICE, "-w", str(source), p.text])
            for ext, options in SOUND_FORMATS.items():
                target = directory / f"{p.id}.{ext}"
                partial = directory / f".{p.id}.{ext}.{os.getpid()}"
                try:
                    _run([sox, str(source), "-r", "8000", "-c", "1", *options, str(partial)])
                    os.chmod(partial, 0o644)
                    os.replace(partial, target)
                finally:
                    partial.unlink(missing_ok=True)
                written.append(target)
    return written
