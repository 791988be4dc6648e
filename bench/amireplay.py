"""The events worker's CPU per call without Asterisk: a recorded AMI transcript of one answered
112 call (tests/fixtures/ami/answered-call.txt, Asterisk 22.10, a SIPp operator phone) replayed
many times with fresh Uniqueids through what the events worker does with each event
(panoramisk's parsing, the manager's event filter as rendered, the pre-parse skip, parse_event,
the call tracker or operator states). Prints the events per call at each stage and the CPU ms
per call (``python -m bench.amireplay``); run it on two checkouts to compare them.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from panoramisk.message import Message

from siaga112.calls.recorder import CallFacts, CallProgress
from siaga112.config import Settings
from siaga112.metrics import Metrics
from siaga112.pbxconf.render import render_config
from siaga112.telephony.ami_events import QueueMemberChanged, parse_event
from siaga112.telephony.operator_states import OperatorStates
from siaga112.telephony.tracking import CallTracker

TRANSCRIPT = Path(__file__).parent.parent / "tests/fixtures/ami/answered-call.txt"
CALLER, OPERATOR_LEG = "1795422356.8", "1795422357.9"


def _filters(settings: Settings) -> list[tuple[str, str | None, str | None, str | None]]:
    """(name, header, method, value) of each include filter in the rendered manager.conf."""
    conf = render_config(
        settings,
        operator_passwords={e: "x" for e in settings.pbx.demo_operators},
        hostname="h",
    )
    out: list[tuple[str, str | None, str | None, str | None]] = []
    for line in conf["manager.conf"].splitlines():
        m = re.match(
            r"^eventfilter\(action\(include\),name\((\w+)\)"
            r"(?:,header\((\w+)\),method\((\w+)\))?\) =\s*(\S*)$",
            line,
        )
        if m:
            out.append((m.group(1), m.group(2), m.group(3), m.group(4) or None))
    return out


def _passes(message: Mapping[str, Any], filters: Sequence[tuple[str, ...] | Any]) -> bool:
    name = str(message.get("Event", "")).lower()
    for fname, header, method, value in filters:
        if fname.lower() != name:
            continue
        if header is None:
            return True
        got = str(message.get(header, ""))
        if (method == "exact" and got == value) or (
            method == "starts_with" and got.startswith(value or "")
        ):
            return True
    return False


async def _write(_updates: list[CallProgress]) -> set[str]:
    return set()


async def _create(_facts: CallFacts, _at: datetime) -> None:
    return None


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.amireplay", description=__doc__)
    p.add_argument("--calls", type=int, default=5000)
    args = p.parse_args(argv)
    settings = Settings()
    filters = _filters(settings)
    blocks = [
        b for b in TRANSCRIPT.read_text().replace("\r\n", "\n").split("\n\n") if "Event:" in b
    ]
    blocks = [b for b in blocks if "Event: FullyBooted" not in b]
    tracker = CallTracker(write_progress=_write, create_call=_create, metrics=Metrics())
    states = OperatorStates(queue=settings.pbx.queue_name)
    ignores = getattr(tracker, "ignores", None)
    recorded = len(blocks)
    # What Asterisk sends at all (disabledevents, the rendered eventfilter): decided once.
    sent = []
    for block in blocks:
        message = Message.from_line(block.replace("\n", "\r\n"))
        if message is not None and _passes(message, filters):
            sent.append(block.replace("\n", "\r\n"))
    counts = {"recorded": recorded * args.calls, "sent": 0, "parsed": 0}
    started = time.process_time()
    for i in range(args.calls):
        caller, leg = f"1800000000.{2 * i}", f"1800000000.{2 * i + 1}"
        for block in sent:
            message = Message.from_line(block.replace(CALLER, caller).replace(OPERATOR_LEG, leg))
            counts["sent"] += 1
            if ignores is not None and ignores(message):
                continue
            counts["parsed"] += 1
            event = parse_event(message, received_at=datetime.now(UTC))
            if isinstance(event, QueueMemberChanged):
                states.apply(event)
            elif event is not None:
                tracker.feed(event)
    used = time.process_time() - started
    n = args.calls
    print(
        f"{TRANSCRIPT.name}: per call {counts['recorded'] / n:g} events recorded,"
        f" {counts['sent'] / n:g} sent by Asterisk, {counts['parsed'] / n:g} parsed;"
        f" events path CPU {used * 1000 / n:.3f} ms per call ({n} calls)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
