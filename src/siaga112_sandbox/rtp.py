"""A caller's ear for tests: receives the RTP Asterisk sends to a SIPp caller's SDP address and
keeps it, so a test can check what the caller heard (the prompts, the ringing while queued).

SIPp's own media port only echoes or plays; this socket takes SIPp's place in the SDP
(``sip-conf/caller-112-listen.xml``, keys ``rtp_ip``/``rtp_port``) and records every packet.
The caller sends no media, so Asterisk keeps sending to the SDP address (rtp_symmetric learns
only from what it receives). G.711 u-law (payload type 0) is what the scenario offers: its bytes
are what Asterisk played, untouched, and sox decodes them for measuring.
"""

from __future__ import annotations

import math
import socket
import struct
import subprocess
import threading
import time
from dataclasses import dataclass

__all__ = ["ULAW_SILENCE", "RtpPacket", "RtpRecorder", "decode_ulaw", "tone_share"]

ULAW_SILENCE = 0xFF
_PCMU = 0
_RATE = 8000


@dataclass(frozen=True, slots=True)
class RtpPacket:
    seq: int
    timestamp: int
    ssrc: int
    payload_type: int
    payload: bytes
    arrival: float


class RtpRecorder:
    """Receives RTP on ``ip`` (an ephemeral port) in a thread until stopped."""

    def __init__(self, ip: str = "127.0.0.2") -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind((ip, 0))
        self._sock.settimeout(0.1)
        self.ip = ip
        self.port: int = self._sock.getsockname()[1]
        self.packets: list[RtpPacket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rtp-recorder", daemon=True)

    def __enter__(self) -> RtpRecorder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._sock.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._sock.recv(2048)
            except TimeoutError:
                continue
            except OSError:
                return
            if len(data) < 12 or data[0] >> 6 != 2:
                continue
            csrc = data[0] & 0x0F
            _, marker_pt, seq, ts, ssrc = struct.unpack("!BBHII", data[:12])
            start = 12 + 4 * csrc
            if data[0] & 0x10 and len(data) >= start + 4:  # header extension
                start += 4 + 4 * struct.unpack("!H", data[start + 2 : start + 4])[0]
            self.packets.append(
                RtpPacket(seq, ts, ssrc, marker_pt & 0x7F, data[start:], time.monotonic())
            )

    def stream(self) -> bytes:
        """The u-law payloads in the order they came (what was played, without gaps)."""
        return b"".join(p.payload for p in self.packets if p.payload_type == _PCMU)

    def timeline(self, start: int = 0) -> bytes:
        """The u-law audio placed by arrival time (8000 samples/s), gaps as silence: what the
        caller's ear heard over time, pauses included. From the packet holding byte ``start``
        of :meth:`stream` on."""
        voice = [p for p in self.packets if p.payload_type == _PCMU]
        offset = 0
        while voice and offset + len(voice[0].payload) <= start:
            offset += len(voice.pop(0).payload)
        if not voice:
            return b""
        t0 = voice[0].arrival
        out = bytearray()
        for p in voice:
            at = round((p.arrival - t0) * _RATE)
            # A packet that came early (jitter) goes right after the previous one.
            if at > len(out) + 160:
                out.extend(bytes([ULAW_SILENCE]) * (at - len(out)))
            out.extend(p.payload)
        return bytes(out)

    def first_arrival(self) -> float | None:
        """When the first packet came (time.monotonic()), or None."""
        return self.packets[0].arrival if self.packets else None


def decode_ulaw(data: bytes) -> list[int]:
    """16-bit linear samples of G.711 u-law audio, decoded by sox."""
    proc = subprocess.run(
        ["sox", "-t", "ul", "-r", str(_RATE), "-c", "1", "-", "-t", "s16", "-L", "-"],
        input=data,
        capture_output=True,
        check=True,
        timeout=30,
    )
    count = len(proc.stdout) // 2
    return list(struct.unpack(f"<{count}h", proc.stdout[: 2 * count]))


def _power(samples: list[int], freq: float) -> float:
    # Goertzel: the energy of one frequency in the block.
    coeff = 2 * math.cos(2 * math.pi * freq / _RATE)
    s1 = s2 = 0.0
    for x in samples:
        s1, s2 = x + coeff * s1 - s2, s1
    return s1 * s1 + s2 * s2 - coeff * s1 * s2


def tone_share(samples: list[int], freq: float) -> float:
    """How much of the block's energy is at ``freq`` (0..1; a pure tone there is near 1)."""
    total = sum(x * x for x in samples)
    if total == 0:
        return 0.0
    return min(1.0, 2 * _power(samples, freq) / (len(samples) * total))
