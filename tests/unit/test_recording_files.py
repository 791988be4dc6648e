"""Recording files without a database: names that link a file to its call, WAV headers as
Asterisk writes them (finished, still being written, cut off), when a file is finished, and
paths that must never leave the recordings directory."""

from __future__ import annotations

import hashlib
import io
import struct
import wave
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from siaga112.recordings.files import (
    hash_and_header,
    parse_recording_name,
    parse_wav_header,
    ready_to_link,
    resolve_inside,
    scan_day,
)


def pcm_wav(seconds: float, *, rate: int = 8000) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\x01\x00" * int(rate * seconds))
    return buf.getvalue()


def gsm_wav(frames: int) -> bytes:
    """GSM 6.10 in WAV as Asterisk's format_wav_gsm writes it: 65-byte blocks of 320 samples,
    a 20-byte fmt chunk with the extra field, a fact chunk, then data."""
    data = b"\x00" * 65 * frames
    fmt = struct.pack("<HHIIHHHH", 0x31, 1, 8000, 1625, 65, 0, 2, 320)
    fact = struct.pack("<I", 320 * frames)
    body = (
        b"WAVE"
        + b"fmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + b"fact"
        + struct.pack("<I", 4)
        + fact
        + b"data"
        + struct.pack("<I", len(data))
        + data
    )
    return b"RIFF" + struct.pack("<I", len(body)) + body


def test_name_gives_call_uniqueid_answer_time_and_format() -> None:
    name = parse_recording_name("2026/12/01/1796095410.0-1796095415.wav")
    assert name is not None
    assert name.uniqueid == "1796095410.0"
    assert name.answered_at == datetime.fromtimestamp(1796095415, UTC)
    assert name.arrival_day == date(2026, 12, 1)
    assert name.format == "wav"


def test_uniqueid_with_system_name_keeps_its_dashes() -> None:
    name = parse_recording_name("2026/12/01/pbx-bekasi-1-1796095410.42-1796095499.WAV")
    assert name is not None
    assert name.uniqueid == "pbx-bekasi-1-1796095410.42"
    assert name.format == "wav49"


@pytest.mark.parametrize(
    "path",
    [
        "2026/12/01/1796095410.0.wav",  # no answer epoch
        "2026/12/01/1796095410.0-1796095415.wav.tmp",
        "2026/12/01/1796095410.0-1796095415.gsm",
        "2026/13/01/1796095410.0-1796095415.wav",  # no such month
        "1796095410.0-1796095415.wav",  # not in a date directory
        "2026/12/01/../../../../etc/1796095410.0-1796095415.wav",
        "2026/12/01/..-1796095415.wav",
        "/2026/12/01/1796095410.0-1796095415.wav",
        "2026/12/01/other-app recording.wav",
    ],
)
def test_other_files_are_not_recordings(path: str) -> None:
    assert parse_recording_name(path) is None


@given(st.text(max_size=80))
def test_any_name_either_parses_into_its_own_parts_or_is_refused(path: str) -> None:
    name = parse_recording_name(path)
    if name is not None:
        assert name.uniqueid in path
        assert ".." not in name.uniqueid
        assert "/" not in name.uniqueid


def test_finished_pcm_header_gives_duration_and_consistent_sizes() -> None:
    data = pcm_wav(2.5)
    info = parse_wav_header(data[:512], len(data))
    assert info is not None
    assert (info.audio_format, info.channels, info.sample_rate) == (1, 1, 8000)
    assert info.duration_s == pytest.approx(2.5)
    assert info.sizes_consistent


def test_header_not_yet_updated_counts_audio_to_end_of_file() -> None:
    data = bytearray(pcm_wav(1.0))
    # As while Asterisk still writes: RIFF and data sizes from the start of the recording.
    struct.pack_into("<I", data, 4, 36)
    struct.pack_into("<I", data, 40, 0)
    info = parse_wav_header(bytes(data[:512]), len(data))
    assert info is not None
    assert info.duration_s == pytest.approx(1.0)
    assert not info.sizes_consistent


def test_file_cut_short_counts_only_what_is_there() -> None:
    data = pcm_wav(3.0)[: 44 + 16000]  # header says 3 s, 1 s on disk
    info = parse_wav_header(data[:512], len(data))
    assert info is not None
    assert info.duration_s == pytest.approx(1.0)
    assert not info.sizes_consistent


def test_gsm_in_wav_duration_from_its_byte_rate() -> None:
    data = gsm_wav(frames=125)  # 125 * 320 samples = 5 s
    info = parse_wav_header(data[:512], len(data))
    assert info is not None
    assert info.audio_format == 0x31
    assert info.duration_s == pytest.approx(5.0)
    assert info.sizes_consistent


@pytest.mark.parametrize(
    "blob", [b"", b"RIFF", b"RIFF\x00\x00\x00\x00WAVE", b"OggS" + b"\x00" * 60, b"x" * 44]
)
def test_not_a_wav_file(blob: bytes) -> None:
    assert parse_wav_header(blob, len(blob)) is None


def test_data_before_fmt_is_refused() -> None:
    blob = b"RIFF" + struct.pack("<I", 12) + b"WAVE" + b"data" + struct.pack("<I", 0)
    assert parse_wav_header(blob, len(blob)) is None


NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("quiet_s", "ended", "ready"),
    [
        (5, True, True),  # call over, file quiet: Asterisk closed it
        (0.5, True, False),  # call over a moment ago: the last frames may still come
        (30, False, False),  # call still on: the file grows (or the row is late)
        (700, False, True),  # untouched for long: Asterisk stopped, link what there is
    ],
)
def test_a_file_is_linked_once_finished(quiet_s: float, ended: bool, ready: bool) -> None:
    assert (
        ready_to_link(
            modified_at=NOW - timedelta(seconds=quiet_s),
            call_ended_at=NOW - timedelta(seconds=1) if ended else None,
            now=NOW,
            settle_s=2,
            stale_s=600,
        )
        is ready
    )


def test_paths_stay_inside_the_recordings_directory(tmp_path: Path) -> None:
    root = tmp_path / "rec"
    (root / "2026/12/01").mkdir(parents=True)
    outside = tmp_path / "secret.wav"
    outside.write_bytes(b"x")
    (root / "2026/12/01/link-1796095415.wav").symlink_to(outside)
    assert resolve_inside(root, "2026/12/01/a-1796095415.wav") == (
        root.resolve() / "2026/12/01/a-1796095415.wav"
    )
    assert resolve_inside(root, "../secret.wav") is None
    assert resolve_inside(root, str(outside)) is None
    assert resolve_inside(root, "2026/12/01/link-1796095415.wav") is None
    assert resolve_inside(root, "") is None


def test_scan_lists_recordings_of_a_day_and_skips_the_rest(tmp_path: Path) -> None:
    day = tmp_path / "2026/12/01"
    day.mkdir(parents=True)
    (day / "1796095410.0-1796095415.wav").write_bytes(pcm_wav(0.1))
    (day / "notes.txt").write_text("x")
    (day / "1796095411.0-1796095416.wav").mkdir()  # a directory with a recording's name
    found = scan_day(tmp_path, date(2026, 12, 1))
    assert [f.name.uniqueid for f in found] == ["1796095410.0"]
    assert found[0].size == len(pcm_wav(0.1))
    assert scan_day(tmp_path, date(2026, 11, 30)) == []


def test_hash_and_header_read_the_file_once(tmp_path: Path) -> None:
    data = pcm_wav(70.0)  # more than one read chunk
    path = tmp_path / "r.wav"
    path.write_bytes(data)
    digest, header, size = hash_and_header(path)
    assert digest == hashlib.sha256(data).hexdigest()
    assert header == data[:512]
    assert size == len(data)
