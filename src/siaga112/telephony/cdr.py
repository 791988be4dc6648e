"""Asterisk's own record of every call: the cdr_custom CSV written by the dialplan.

Asterisk writes it whether siaga112 is up or not; reconciliation reads it to give every call
that siaga112 missed its row, with caller ID, network headers and timestamps. Pure parsing.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from siaga112.telephony.ami_events import OVERFLOW_MEMBER_PREFIX, overflow_target
from siaga112.telephony.contract import CDR_CSV_FIELDS


@dataclass(frozen=True, slots=True)
class CdrRecord:
    uniqueid: str
    linkedid: str
    start: datetime | None
    answer: datetime | None
    end: datetime | None
    disposition: str
    clid: str
    src: str
    dst: str
    dcontext: str
    channel: str
    dialled: str
    presentation: str
    pai: str
    pani: str
    geolocation: str
    agi_status: str
    incident: str
    queue: str
    queue_status: str
    operator: str

    @property
    def is_emergency_leg(self) -> bool:
        """The caller's leg of a call to the centre (not an operator's or a transfer leg), also
        one cut inside Answer(), before the dialplan set any siaga112 column (an Asterisk
        restart): Asterisk's own ``dst`` still names the number dialled."""
        return self.dcontext == "from-carrier" and bool(self.dialled_number)

    @property
    def dialled_number(self) -> str:
        """The number the caller dialled: the dialplan's column, else Asterisk's ``dst``."""
        if self.dialled:
            return self.dialled
        return self.dst if self.dst.isdigit() else ""

    @property
    def cut_before_the_centre(self) -> bool:
        """Ended inside Answer(), before the dialplan's first step after it: the caller never
        reached the AGI step or the queue (cut by the caller or by an Asterisk restart)."""
        return not self.dialled and not self.queue and not self.operator

    dstchannel: str = ""
    location: str = ""
    """``${GEOLOC_PROFILE(effective_location)}``: the location Asterisk resolved from the call's
    Geolocation (PIDF-LO by value, or a reference), empty without one."""
    enqueued: datetime | None = None
    """When the caller entered the queue (None in lines written before the column existed)."""
    answered: datetime | None = None
    """When an operator was connected (the caller leg's ``answer`` is Asterisk's own answer)."""

    @property
    def answered_by(self) -> str | None:
        """The operator extension that took the call: the queue member the hangup handler saw,
        or the other end of a bridged segment (``PJSIP/6001-0000000a``); 'overflow:<target>'
        when an overflow destination took it."""
        for value in (self.operator, self.dstchannel):
            if value and (target := overflow_target(value)) is not None:
                return f"{OVERFLOW_MEMBER_PREFIX}{target}"
            if value:
                interface = value.rsplit("-", 1)[0] if value.count("-") else value
                ext = interface.rpartition("/")[2]
                if ext:
                    return ext
        return None

    def merged(self, later: CdrRecord) -> CdrRecord:
        """One call's records (Asterisk writes one per bridged segment) folded into one."""
        starts = [t for t in (self.start, later.start) if t is not None]
        ends = [t for t in (self.end, later.end) if t is not None]
        return replace(
            self,
            start=min(starts) if starts else None,
            end=max(ends) if ends else None,
            operator=self.operator or later.operator,
            dstchannel=self.dstchannel or later.dstchannel,
            location=self.location or later.location,
            enqueued=self.enqueued or later.enqueued,
            answered=self.answered or later.answered,
            queue=self.queue or later.queue,
            queue_status=later.queue_status or self.queue_status,
            agi_status=self.agi_status or later.agi_status,
            incident=self.incident or later.incident,
        )

    @property
    def caller_name(self) -> str:
        name, _, _ = self.clid.partition("<")
        return name.strip().strip('"')


# Lines of every layout this code has written: the current one, and the one before
# siaga112_enqueued and siaga112_answered were appended (a CDR file outlives an upgrade).
_LAYOUT_LENGTHS = frozenset({len(CDR_CSV_FIELDS), len(CDR_CSV_FIELDS) - 2})


def _time(value: str) -> datetime | None:
    try:
        seconds = float(value)
    except ValueError:
        return None
    if seconds <= 0:
        return None
    return datetime.fromtimestamp(seconds, UTC)


def parse_cdr_line(line: str) -> CdrRecord | None:
    """One CSV line to a record; None when it is not a complete line of this layout."""
    try:
        rows = list(csv.reader(io.StringIO(line)))
    except csv.Error:
        return None
    if len(rows) != 1 or len(rows[0]) not in _LAYOUT_LENGTHS:
        return None
    row = rows[0]
    # An older line lacks the columns appended since: they read as empty.
    v = dict(zip(CDR_CSV_FIELDS, row + [""] * (len(CDR_CSV_FIELDS) - len(row)), strict=True))
    if not v["uniqueid"]:
        return None
    return CdrRecord(
        uniqueid=v["uniqueid"],
        linkedid=v["linkedid"] or v["uniqueid"],
        start=_time(v["start"]),
        answer=_time(v["answer"]),
        end=_time(v["end"]),
        disposition=v["disposition"],
        clid=v["clid"],
        src=v["src"],
        dst=v["dst"],
        dcontext=v["dcontext"],
        channel=v["channel"],
        dialled=v["siaga112_dialled"],
        presentation=v["siaga112_pres"],
        pai=v["siaga112_pai"],
        pani=v["siaga112_pani"],
        geolocation=v["siaga112_geolocation"],
        agi_status=v["siaga112_agistatus"],
        incident=v["siaga112_incident"],
        queue=v["siaga112_queue"],
        queue_status=v["siaga112_queuestatus"],
        operator=v["siaga112_operator"],
        dstchannel=v["dstchannel"],
        location=v["siaga112_location"],
        enqueued=_time(v["siaga112_enqueued"]),
        answered=_time(v["siaga112_answered"]),
    )


def read_new_records(data: bytes) -> tuple[list[CdrRecord], int, int]:
    """Parses the complete lines of `data` (bytes appended since the last read).

    Returns the records, how many bytes were consumed (up to the last newline; a line still
    being written is left for next time) and how many complete lines were rejected.
    """
    end = data.rfind(b"\n")
    if end < 0:
        return [], 0, 0
    records: list[CdrRecord] = []
    rejected = 0
    for raw in data[: end + 1].decode("utf-8", errors="replace").splitlines():
        if not raw.strip():
            continue
        record = parse_cdr_line(raw)
        if record is None:
            rejected += 1
        else:
            records.append(record)
    return merge_by_call(records), end + 1, rejected


def merge_by_call(records: list[CdrRecord]) -> list[CdrRecord]:
    merged: dict[str, CdrRecord] = {}
    for record in records:
        seen = merged.get(record.uniqueid)
        merged[record.uniqueid] = record if seen is None else seen.merged(record)
    return list(merged.values())
