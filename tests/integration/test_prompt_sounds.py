"""The prompts' sound files are built at setup with the Debian tools (espeak-ng's Indonesian
voice, sox) in the formats Asterisk plays on a carrier call, and a centre's own recording takes
a prompt's place."""

from __future__ import annotations

import subprocess
from pathlib import Path

from siaga112.pbxconf.prompts import FLAGGED_NOTICE, SOUND_FORMATS, prompt, write_sounds


def test_each_prompt_is_spoken_into_8khz_g711_and_linear_files(tmp_path: Path) -> None:
    written = write_sounds(tmp_path / "out")
    assert sorted(p.name for p in written) == sorted(
        f"{FLAGGED_NOTICE}.{ext}" for ext in SOUND_FORMATS
    )
    ulaw = (tmp_path / "out" / f"{FLAGGED_NOTICE}.ulaw").read_bytes()
    sln = (tmp_path / "out" / f"{FLAGGED_NOTICE}.sln").read_bytes()
    # 8000 samples/s: one byte each in G.711, two in signed linear; a spoken sentence of a few
    # seconds, not an empty or silent file.
    assert (
        len(sln)
        == 2 * len(ulaw)
        == 2 * len((tmp_path / "out" / f"{FLAGGED_NOTICE}.alaw").read_bytes())
    )
    assert 2.0 < len(ulaw) / 8000 < 10.0
    stats = subprocess.run(
        [
            "sox",
            "-t",
            "ul",
            "-r",
            "8000",
            "-c",
            "1",
            str(tmp_path / "out" / f"{FLAGGED_NOTICE}.ulaw"),
            "-n",
            "stats",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    rms_db = float(
        next(line.split()[-1] for line in stats.splitlines() if line.startswith("RMS lev dB"))
    )
    assert rms_db > -35.0, stats


def test_a_centres_recording_replaces_the_spoken_text(tmp_path: Path) -> None:
    spoken = write_sounds(tmp_path / "spoken")
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    # A recording as a phone makes it: 44.1 kHz stereo WAV, 1.5 s.
    subprocess.run(
        [
            "sox",
            "-n",
            "-r",
            "44100",
            "-c",
            "2",
            str(recordings / f"{FLAGGED_NOTICE}.wav"),
            "synth",
            "1.5",
            "sine",
            "600",
        ],
        check=True,
    )
    recorded = write_sounds(tmp_path / "recorded", prompts_dir=recordings)
    ulaw = next(p for p in recorded if p.suffix == ".ulaw").read_bytes()
    assert len(ulaw) == 12000  # 1.5 s at 8 kHz mono
    assert ulaw != next(p for p in spoken if p.suffix == ".ulaw").read_bytes()[:12000]
    assert prompt(FLAGGED_NOTICE).text.startswith("Panggilan")
