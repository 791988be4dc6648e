"""Recording files on disk, without a database: what a file's name says (which call, when the
operator answered), what its WAV header says (format, duration), whether it is finished, and
where it may be read or deleted.

Asterisk writes ``<recordings root>/YYYY/MM/DD/<Uniqueid>-<answer epoch>.wav`` (``.WAV`` for
GSM-in-WAV, ``wav49``): the directory is the call's arrival date (UTC), the Uniqueid the caller
channel's (the ``calls.uniqueid`` key), the epoch the moment app_queue started MixMonitor.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path, PurePosixPath

__all__ = [
    "FORMAT_EXTENSIONS",
    "FileFacts",
    "RecordingName",
    "WavInfo",
    "day_dirs",
    "file_facts",
    "hash_and_header",
    "parse_recording_name",
    "parse_wav_header",
    "ready_to_link",
    "resolve_inside",
    "scan_day",
]

# RecordingSettings.format -> the extension Asterisk gives the file (wav49 is written .WAV).
FORMAT_EXTENSIONS: dict[str, str] = {"wav": "wav", "wav49": "WAV"}
_FORMAT_BY_EXTENSION = {ext: fmt for fmt, ext in FORMAT_EXTENSIONS.items()}

# Uniqueid: Asterisk's "[systemname-]epoch.sequence"; the last "-" before the answer epoch
# separates the two (the epoch has no "-").
_NAME = re.compile(
    r"^(?P<y>\d{4})/(?P<m>\d{2})/(?P<d>\d{2})/"
    r"(?P<uniqueid>[A-Za-z0-9_.\-]{1,64})-(?P<epoch>\d{9,11})\.(?P<ext>wav|WAV)$"
)
# The first bytes hold every header Asterisk writes (RIFF, fmt with GSM extras, fact, data).
HEADER_BYTES = 512


@dataclass(frozen=True, slots=True)
class RecordingName:
    """What a recording's path (relative to the root) says."""

    path: str
    uniqueid: str
    answered_at: datetime
    arrival_day: date
    format: str


def parse_recording_name(path: str) -> RecordingName | None:
    """``2026/12/01/1796095410.0-1796095410.wav`` -> its call and answer time; None for any
    other file (other applications' recordings, temporary files, traversal attempts)."""
    m = _NAME.match(path)
    if m is None:
        return None
    try:
        day = date(int(m["y"]), int(m["m"]), int(m["d"]))
        answered = datetime.fromtimestamp(int(m["epoch"]), UTC)
    except (ValueError, OverflowError, OSError):
        return None
    uniqueid = m["uniqueid"]
    if uniqueid.startswith(("-", ".")) or ".." in uniqueid:
        return None
    return RecordingName(
        path=path,
        uniqueid=uniqueid,
        answered_at=answered,
        arrival_day=day,
        format=_FORMAT_BY_EXTENSION[m["ext"]],
    )


@dataclass(frozen=True, slots=True)
class WavInfo:
    """A RIFF/WAVE header as far as a recording needs it."""

    audio_format: int  # 1 = PCM, 0x31 = GSM 6.10
    channels: int
    sample_rate: int
    byte_rate: int
    data_offset: int
    data_bytes: int
    # The header's sizes agree with the file: Asterisk closed it (or keeps them current).
    sizes_consistent: bool

    @property
    def duration_s(self) -> float:
        return self.data_bytes / self.byte_rate if self.byte_rate > 0 else 0.0


def parse_wav_header(header: bytes, file_size: int) -> WavInfo | None:
    """The fmt and data chunks of a WAV file from its first bytes; None when it is not one.

    A header whose data size is missing (0) or beyond the file, as in a file still being
    written or cut off by a crash, counts the audio up to the end of the file instead.
    """
    if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
        return None
    riff_size = struct.unpack_from("<I", header, 4)[0]
    offset = 12
    fmt: tuple[int, int, int, int] | None = None
    while offset + 8 <= len(header):
        chunk_id = header[offset : offset + 4]
        size = struct.unpack_from("<I", header, offset + 4)[0]
        body = offset + 8
        if chunk_id == b"fmt ":
            if size < 16 or body + 16 > len(header):
                return None
            audio_format, channels, rate, byte_rate = struct.unpack_from("<HHII", header, body)
            fmt = (audio_format, channels, rate, byte_rate)
        elif chunk_id == b"data":
            if fmt is None:
                return None
            available = max(0, file_size - body)
            consistent = 0 < size <= available and riff_size == file_size - 8
            data_bytes = size if 0 < size <= available else available
            return WavInfo(
                audio_format=fmt[0],
                channels=fmt[1],
                sample_rate=fmt[2],
                byte_rate=fmt[3],
                data_offset=body,
                data_bytes=data_bytes,
                sizes_consistent=consistent,
            )
        offset = body + size + (size & 1)  # chunks are padded to even sizes
    return None


def resolve_inside(root: Path, relative: str) -> Path | None:
    """``root/relative`` when it stays inside ``root`` after resolving links; else None."""
    if not relative or PurePosixPath(relative).is_absolute():
        return None
    base = root.resolve()
    target = (base / relative).resolve()
    return target if target.is_relative_to(base) and target != base else None


@dataclass(frozen=True, slots=True)
class FileFacts:
    name: RecordingName
    size: int
    modified_at: datetime


def day_dirs(root: Path, *, today: date, days: int) -> Iterator[tuple[date, Path]]:
    """The arrival-date directories of ``today`` and the ``days - 1`` days before it."""
    for back in range(days):
        day = today - timedelta(days=back)
        yield day, root / f"{day:%Y}" / f"{day:%m}" / f"{day:%d}"


def scan_day(root: Path, day: date) -> list[FileFacts]:
    """The recordings in one date directory (blocking: run it in a thread)."""
    directory = root / f"{day:%Y}" / f"{day:%m}" / f"{day:%d}"
    found: list[FileFacts] = []
    try:
        entries = list(os.scandir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return found
    for entry in entries:
        name = parse_recording_name(f"{day:%Y/%m/%d}/{entry.name}")
        if name is None:
            continue
        facts = file_facts(entry, name)
        if facts is not None:
            found.append(facts)
    return found


def file_facts(entry: os.DirEntry[str], name: RecordingName) -> FileFacts | None:
    try:
        if not entry.is_file(follow_symlinks=False):
            return None
        st = entry.stat(follow_symlinks=False)
    except FileNotFoundError:
        return None
    return FileFacts(
        name=name, size=st.st_size, modified_at=datetime.fromtimestamp(st.st_mtime, UTC)
    )


def ready_to_link(
    *,
    modified_at: datetime,
    call_ended_at: datetime | None,
    now: datetime,
    settle_s: float,
    stale_s: float,
) -> bool:
    """A file is finished when its call has ended and nothing wrote to it for ``settle_s``
    (Asterisk closes it as the caller's channel goes), or when it has not changed for
    ``stale_s`` whatever the call row says (Asterisk stopped mid-call, or the row is late)."""
    quiet = (now - modified_at).total_seconds()
    if call_ended_at is not None and quiet >= settle_s:
        return True
    return quiet >= stale_s


def hash_and_header(path: Path) -> tuple[str, bytes, int]:
    """SHA-256, the first ``HEADER_BYTES`` and the size of one file, read once (blocking).

    About a megabyte a minute of PCM audio: cheap next to a call, and it lets a supervisor
    show that a downloaded recording is the one Asterisk wrote."""
    digest = hashlib.sha256()
    header = b""
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            if not header:
                header = chunk[:HEADER_BYTES]
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), header, size
