"""What a caller hears, checked on the audio of real calls: the caller's side records the RTP
Asterisk sends it (siaga112_sandbox.rtp), sox decodes it, and the test measures it.

A flagged number hears the Indonesian notice (the generated prompt's own bytes) and then the
ringing; a caller waiting with no operator to answer hears Indonesia's ringback (425 Hz, 1 s
on, 4 s off), never silence or music."""

from __future__ import annotations

import asyncio
import math
import random
import time
from dataclasses import dataclass

from siaga112.auth.service import system_actor
from siaga112.callers.flag_schemas import FlagCreate, FlagKind
from siaga112.callers.flags import create_flag
from siaga112.pbxconf.prompts import FLAGGED_NOTICE
from siaga112.pbxconf.render import prompt_sounds_dir
from siaga112_sandbox.rtp import RtpRecorder, decode_ulaw, tone_share
from siaga112_sandbox.sipp import SippResult, run_caller
from tests.e2e.conftest import Stack

_RATE = 8000
_WINDOW = 400  # 50 ms
# A window with tone in it: ringback reaches about -13 dBm0 (RMS in the thousands); the
# silence between rings decodes to 0.
_ON_RMS = 300.0
_RINGBACK_HZ = 425.0
# The default zone's (us) ringback: 440 + 480 Hz.
_US_RINGBACK_HZ = (440.0, 480.0)


@dataclass(frozen=True, slots=True)
class Run:
    on: bool
    seconds: float
    samples: list[int]


def runs(audio: bytes) -> list[Run]:
    """The audio as alternating stretches of tone and silence (50 ms resolution)."""
    samples = decode_ulaw(audio)
    out: list[Run] = []
    for i in range(0, len(samples) - _WINDOW + 1, _WINDOW):
        window = samples[i : i + _WINDOW]
        on = math.sqrt(sum(x * x for x in window) / _WINDOW) > _ON_RMS
        if out and out[-1].on == on:
            out[-1] = Run(on, out[-1].seconds + _WINDOW / _RATE, out[-1].samples + window)
        else:
            out.append(Run(on, _WINDOW / _RATE, window))
    return out


def assert_ringback(run: Run) -> None:
    # Leave the edges out: a run starts and ends mid-window.
    middle = run.samples[_WINDOW:-_WINDOW] or run.samples
    share = tone_share(middle[:1600], _RINGBACK_HZ)
    others = [tone_share(middle[:1600], f) for f in _US_RINGBACK_HZ]
    assert share > 0.8, f"tone at {_RINGBACK_HZ} Hz is {share:.2f} of the energy"
    assert max(others) < 0.3, f"US ringback frequencies: {others}"


async def listen(
    stack: Stack, *, caller: str, hold_ms: int
) -> tuple[SippResult, RtpRecorder, float]:
    with RtpRecorder() as ear:
        started = time.monotonic()
        result = await asyncio.to_thread(
            run_caller,
            stack.settings,
            "caller-112-listen.xml",
            caller=caller,
            hold_ms=hold_ms,
            timeout=30,
            keys={"rtp_ip": ear.ip, "rtp_port": str(ear.port)},
        )
    return result, ear, started


def new_number() -> str:
    return f"+62812{random.randrange(10**6, 10**7)}"


async def test_a_flagged_caller_hears_the_indonesian_notice_then_ringing(stack: Stack) -> None:
    number = new_number()
    async with stack.sessionmaker() as session:
        await create_flag(
            session=session,
            data=FlagCreate(number=number, kind=FlagKind.PRANK, reason="panggilan iseng"),
            actor=system_actor("tests"),
            request_id=None,
        )
        await session.commit()
    notice = (prompt_sounds_dir(stack.settings.pbx_root) / f"{FLAGGED_NOTICE}.ulaw").read_bytes()
    # No operator answers: notice (about 5.5 s), then the queue's ringing.
    result, ear, _ = await listen(stack, caller=number, hold_ms=9000)
    assert result.ok, result.output[-1500:]

    heard = ear.stream()
    # Whole 20 ms frames of the prompt file, byte for byte: the generated Indonesian notice,
    # played without transcoding (u-law file, u-law call).
    frames = notice[: len(notice) - len(notice) % 160]
    at = heard.find(frames)
    assert at >= 0, f"the notice's {len(frames)} bytes are not in the {len(heard)} bytes heard"

    after = runs(ear.timeline(start=at + len(notice)))
    tones = [r for r in after if r.on]
    assert tones, "silence after the notice"
    assert tones[0].seconds >= 0.8, [(r.on, r.seconds) for r in after]
    assert_ringback(tones[0])


async def test_a_waiting_caller_hears_indonesian_ringback_not_silence(stack: Stack) -> None:
    # Nobody answers (no operator phone registered): the caller waits in the queue.
    result, ear, started = await listen(stack, caller=new_number(), hold_ms=8000)
    assert result.ok, result.output[-1500:]
    first = ear.first_arrival()
    assert first is not None, "the caller heard nothing at all"
    # Answer, the AGI step (budget 1.5 s), then the queue: ringing at once.
    assert first - started < 3.0

    notice = (prompt_sounds_dir(stack.settings.pbx_root) / f"{FLAGGED_NOTICE}.ulaw").read_bytes()
    assert notice[:1600] not in ear.stream(), "an unflagged caller heard the flagged notice"

    heard = runs(ear.timeline())
    shape = [(r.on, round(r.seconds, 2)) for r in heard]
    # 8 s on the line: ring 1 s, pause 4 s, ring 1 s, pause... (indications.conf [id]).
    assert heard[0].on, shape
    assert 0.85 <= heard[0].seconds <= 1.15, shape
    assert not heard[1].on, shape
    assert 3.85 <= heard[1].seconds <= 4.15, shape
    assert heard[2].on, shape
    assert 0.85 <= heard[2].seconds <= 1.15 or heard[2] is heard[-1], shape
    for run in heard:
        assert run.on or run.seconds <= 4.15, f"silence of {run.seconds} s: {shape}"
    for run in heard:
        if run.on and run.seconds >= 0.5:
            assert_ringback(run)
