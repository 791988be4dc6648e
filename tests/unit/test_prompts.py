"""What callers hear from the PBX is in the catalog, in Bahasa Indonesia with its English, and
is what the rendered dialplan plays; a centre's recording is found by the prompt's id."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import SecretStr

from siaga112.config import AmiSettings, PbxSettings, Settings
from siaga112.pbxconf import prompts
from siaga112.pbxconf.prompts import (
    FLAGGED_NOTICE,
    PromptError,
    load_prompts,
    prompt,
    recording_for,
)
from siaga112.pbxconf.render import prompt_sounds_dir, render_config


def _rendered(tmp_path: Path) -> dict[str, str]:
    settings = Settings(
        state_dir=tmp_path, ami=AmiSettings(secret=SecretStr("x")), pbx=PbxSettings()
    )
    return render_config(settings, operator_passwords={"6001": "a", "6002": "b"}, hostname="h")


def test_every_prompt_has_indonesian_text_and_its_english() -> None:
    catalog = load_prompts()
    assert FLAGGED_NOTICE in catalog
    for p in catalog.values():
        assert re.fullmatch(r"[a-z0-9-]+", p.id)
        assert p.text
        assert p.english
        assert p.text != p.english
        # Spoken as words: espeak-ng reads "112" as a number ("seratus dua belas").
        assert not re.search(r"[0-9]", p.text), p.text


def test_the_dialplan_plays_every_prompt_named_in_the_module(tmp_path: Path) -> None:
    dialplan = _rendered(tmp_path)["extensions.conf"]
    constants = [v for k, v in vars(prompts).items() if k.isupper() and isinstance(v, str)]
    played = set(re.findall(r"Playback\(([^)]*)\)", dialplan))
    assert played == {prompt(FLAGGED_NOTICE).sound}
    for sound in played:
        assert sound.startswith(f"{prompts.SOUNDS_SUBDIR}/")
        assert sound.removeprefix(f"{prompts.SOUNDS_SUBDIR}/") in constants
    assert "queue-thankyou" not in dialplan


def test_carrier_callers_get_indonesian_prompts_and_tones(tmp_path: Path) -> None:
    rendered = _rendered(tmp_path)
    carrier = rendered["pjsip.conf"].split("[carrier]", 1)[1].split("\n[", 1)[0]
    assert re.search(r"^language = id$", carrier, re.M)
    assert re.search(r"^tone_zone = id$", carrier, re.M)
    # The language's sounds directory is under the astdatadir Asterisk is given.
    datadir = re.search(r"^astdatadir => (\S+)$", rendered["asterisk.conf"], re.M)
    assert datadir is not None
    assert str(prompt_sounds_dir()).startswith(datadir.group(1) + "/sounds/id/")


def test_queued_callers_hear_ringing_not_music(tmp_path: Path) -> None:
    dialplan = _rendered(tmp_path)["extensions.conf"]
    queues = re.findall(r",Queue\(([^)]*)\)", dialplan)
    assert queues
    for args in queues:
        assert "r" in args.split(",")[1], args


def test_a_centres_recording_is_found_by_the_prompt_id(tmp_path: Path) -> None:
    assert recording_for(None, FLAGGED_NOTICE) is None
    assert recording_for(tmp_path, FLAGGED_NOTICE) is None
    (tmp_path / f"{FLAGGED_NOTICE}.old.wav").write_bytes(b"")
    (tmp_path / f"{FLAGGED_NOTICE}-2.wav").write_bytes(b"")
    assert recording_for(tmp_path, FLAGGED_NOTICE) is None
    (tmp_path / f"{FLAGGED_NOTICE}.wav").write_bytes(b"")
    assert recording_for(tmp_path, FLAGGED_NOTICE) == tmp_path / f"{FLAGGED_NOTICE}.wav"
    (tmp_path / f"{FLAGGED_NOTICE}.mp3").write_bytes(b"")
    with pytest.raises(PromptError, match="several recordings"):
        recording_for(tmp_path, FLAGGED_NOTICE)
    with pytest.raises(PromptError, match="not a directory"):
        recording_for(tmp_path / "missing", FLAGGED_NOTICE)


def test_a_prompt_without_translation_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "prompts.toml"
    path.write_text('[x]\nid = "Halo"\n')
    with pytest.raises(PromptError, match="English"):
        load_prompts(path)
