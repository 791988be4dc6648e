"""CPU time per call of every process on a bench call's path (``bench.surge``): Asterisk,
``siaga112 serve``, each of its workers, the PostgreSQL backends serving them, the SIPp caller,
and the machine's load beside them.

A snapshot reads utime+stime from ``/proc/PID/stat`` (with cutime+cstime: children a process
has reaped, a worker serve restarted, count for it); the difference of two snapshots over a step,
divided by the step's calls, is the CPU per call. PostgreSQL backends are found through
``pg_stat_activity`` by their ``application_name`` (``siaga112 serve [pid]``, set by
``siaga112.db.session``), so each is counted with the process it serves; a backend that ends
within the step takes its CPU with it (its parent, the postmaster, reaps it), and the count is
then low, never high. The SIPp caller is the bench's own child: its CPU is the bench's
``RUSAGE_CHILDREN`` over the SIPp run (see ``run_step``).
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from siaga112.db.session import asyncpg_dsn

TICK = os.sysconf("SC_CLK_TCK")
_APP = re.compile(r"^(siaga112 [a-z_]+) \[([0-9]+)\]$")


def proc_cpu_s(pid: int, *, children: bool = True) -> float | None:
    """utime+stime (and cutime+cstime) of a process in seconds, None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    # fields[0] is the state (field 3 of proc(5)): utime is field 14, so index 11.
    used = int(fields[11]) + int(fields[12])
    if children:
        used += int(fields[13]) + int(fields[14])
    return used / TICK


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rpartition(")")[2].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def process_label(pid: int) -> str:
    """'serve', 'worker events', 'worker locations,recordings' from a siaga112 command line."""
    args = [a for a in _cmdline(pid) if a]
    if "worker" in args:
        duties = args[args.index("--duties") + 1] if "--duties" in args[:-1] else "?"
        return f"worker {duties}"
    if "serve" in args:
        return "serve"
    return Path(args[0]).name if args else str(pid)


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) over all CPUs since boot; busy leaves out idle and iowait."""
    parts = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in parts[:8]]
    total = sum(values)
    return total - values[3] - values[4], total


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


async def _backends(database_url: str, database: str) -> list[tuple[int, str]]:
    import asyncpg

    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        rows = await conn.fetch(
            "SELECT pid, application_name FROM pg_stat_activity"
            " WHERE datname = $1 AND application_name LIKE 'siaga112 %'",
            database,
        )
    finally:
        await conn.close()
    return [(int(r["pid"]), str(r["application_name"])) for r in rows]


@dataclass
class Snapshot:
    at: float
    seconds: dict[tuple[str, int], float] = field(default_factory=dict)
    """(label, pid) -> CPU seconds of each process or backend."""
    busy: int = 0
    total: int = 0
    load: float = 0.0


class CpuMeter:
    """Snapshots of the bench's processes; ``asterisk_pid`` and ``serve_pid`` are asked anew
    each time (serve is stopped before the plain ramp)."""

    def __init__(
        self,
        *,
        asterisk_pid: Callable[[], int | None],
        serve_pid: Callable[[], int | None],
        database_url: str,
        database: str,
    ) -> None:
        self.asterisk_pid = asterisk_pid
        self.serve_pid = serve_pid
        self.database_url = database_url
        self.database = database

    def connected(self) -> int:
        """How many distinct siaga112 processes have a backend in the bench database."""
        try:
            backends = asyncio.run(_backends(self.database_url, self.database))
        except OSError:
            return 0
        return len({app for _pid, app in backends})

    def settle(self, timeout_s: float = 30.0) -> float:
        """Before a step's closing snapshot: until siaga112's processes have done the step's
        work (see ``wait_quiet``); at once when serve is not running."""
        serve = self.serve_pid()
        if serve is None:
            return 0.0
        return wait_quiet(serve, children=0, timeout_s=timeout_s)

    def snapshot(self) -> Snapshot:
        snap = Snapshot(at=time.monotonic(), load=loadavg())
        parts: dict[tuple[str, int], float] = {}
        labels: dict[int, str] = {}

        def add(label: str, pid: int, value: float | None) -> None:
            if value is not None:
                parts[(label, pid)] = value

        apid = self.asterisk_pid()
        if apid is not None:
            add("asterisk", apid, proc_cpu_s(apid))
        spid = self.serve_pid()
        if spid is not None:
            labels[spid] = "serve"
            add("serve", spid, proc_cpu_s(spid))
            for child in children_of(spid):
                labels[child] = process_label(child)
                add(labels[child], child, proc_cpu_s(child))
            try:
                backends = asyncio.run(_backends(self.database_url, self.database))
            except OSError:
                backends = []
            for pid, app in backends:
                m = _APP.match(app)
                owner = labels.get(int(m.group(2)), m.group(1)) if m else app
                add(f"postgres for {owner}", pid, proc_cpu_s(pid, children=False))
        snap.seconds = parts
        snap.busy, snap.total = machine_jiffies()
        return snap


def _siaga112_cpu(serve_pid: int) -> tuple[int, float]:
    pids = [serve_pid, *children_of(serve_pid)]
    return len(pids), sum(proc_cpu_s(p) or 0.0 for p in pids)


def wait_quiet(
    serve_pid: int,
    *,
    children: int,
    timeout_s: float = 90.0,
    connected: Callable[[], int] | None = None,
) -> float:
    """Wait until serve has its ``children`` workers, each of them has connected to the
    database (``connected``: how many siaga112 processes have a backend) and serve and its
    workers used less than a tenth of a CPU in each of two seconds: their start (or a step's
    last work: the workers run at nice 5 and 10 and lag behind on a busy machine) is over.
    A process waiting for a CPU also looks quiet, hence the database check. Returns the
    seconds waited."""
    started = time.monotonic()
    last: float | None = None
    calm = 0
    while time.monotonic() - started < timeout_s:
        count, used = _siaga112_cpu(serve_pid)
        up = count > children and (connected is None or connected() > children)
        calm = calm + 1 if up and last is not None and used - last < 0.1 else 0
        if calm >= 2:
            break
        last = used
        time.sleep(1.0)
    return time.monotonic() - started


def profile_processes(serve_pid: int) -> dict[str, int]:
    """label -> pid of serve and each worker (for py-spy)."""
    out = {"serve": serve_pid}
    for child in children_of(serve_pid):
        out[process_label(child)] = child
    return out


def top_frames(raw: Path, n: int = 12) -> list[tuple[str, float, float]]:
    """From a py-spy ``--format raw`` file (collapsed stacks): the ``n`` functions with most
    samples on the stack, as (function, share of samples on the stack, share as the leaf)."""
    total = 0
    inclusive: dict[str, int] = {}
    leaf: dict[str, int] = {}
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [f.split(" (", 1)[0] + " " + f.rpartition("/")[2].split(":")[0].rstrip(")")
                  for f in stack.split(";") if f]  # fmt: skip
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + count
        if frames:
            leaf[frames[-1]] = leaf.get(frames[-1], 0) + count
    if not total:
        return []
    ranked = sorted(inclusive.items(), key=lambda kv: -kv[1])[:n]
    return [(f, c / total, leaf.get(f, 0) / total) for f, c in ranked]


SIAGA112_PREFIXES = ("serve", "worker", "postgres for")


def per_call(
    before: Snapshot, after: Snapshot, calls: int, sipp_caller_s: float | None
) -> dict[str, object]:
    """CPU ms per call for each process between two snapshots, siaga112's total beside
    Asterisk's, and the machine's busy share over the interval."""
    n = max(1, calls)
    used: dict[str, float] = {}
    for (label, pid), value in after.seconds.items():
        # A process or backend that came up within the interval: all of its time. One that
        # ended within it is not in ``after``: its time is lost (low, never high).
        used[label] = used.get(label, 0.0) + value - before.seconds.get((label, pid), 0.0)
    ms = {label: round(value * 1000 / n, 3) for label, value in used.items()}
    if sipp_caller_s is not None:
        ms["sipp caller"] = round(sipp_caller_s * 1000 / n, 3)
    siaga = sum(v for k, v in ms.items() if k.startswith(SIAGA112_PREFIXES))
    span = after.total - before.total
    return {
        "calls": calls,
        "interval_s": round(after.at - before.at, 2),
        "ms_per_call": ms,
        "siaga112_total_ms": round(siaga, 3)
        if any(k.startswith(SIAGA112_PREFIXES) for k in ms)
        else None,
        "asterisk_ms": ms.get("asterisk"),
        "machine_busy_pct": round(100 * (after.busy - before.busy) / span, 1) if span else None,
        "load_start": before.load,
        "load_end": after.load,
    }
