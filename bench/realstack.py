"""The real stack the benchmarks run calls through (``bench.surge``, ``bench.events``): a database
of their own, the Asterisk sandbox with the benchmark numbers (``PbxSettings.bench_numbers``),
the bench queue answered inside Asterisk (Local members), ``siaga112 serve`` as a subprocess,
SIPp callers in steps of a given rate, and Asterisk's CDR file as the count of what arrived.

``bench_stack`` sets it all up and leaves the sandbox as it was found (normal configuration, or
stopped when the bench started it), taking the benchmark's lines out of the CDR file again.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import resource
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from bench.cpu import CpuMeter, per_call, profile_processes, top_frames, wait_quiet
from siaga112.config import Settings
from siaga112.db.manage import drop_database, upgrade
from siaga112.db.session import asyncpg_dsn, make_engine, make_sessionmaker
from siaga112.metrics import Metrics, quantile
from siaga112.runtime.reconcile import CdrReconciler
from siaga112.telephony.cdr import CdrRecord, merge_by_call, parse_cdr_line
from siaga112_sandbox import pbx
from siaga112_sandbox.sipp import SIP_CONF, SippOperator, pbx_unavailable_reason, run_caller

OPERATOR = "6001"
SCENARIO = "caller-112.xml"
MEDIA_PACKETS = 5  # 20 ms of PCMU each: what a handset sends first, before Answer() returns

# What "sustained" means for one step (bench/README.md).
MIN_RATE_SHARE = 0.95  # calls arriving at Asterisk per second / offered
MAX_LOSS_SHARE = 0.005  # SIPp calls not successful / planned
MIN_SERVED_SHARE = 0.995  # calls answered by the operator through the queue / arrived
BENCH_CDR_FILE = "siaga112-cdr-bench.csv"
MIN_INCIDENT_SHARE = 0.995  # 1129 calls that got SIAGA112_INCIDENT_ID in the dialplan / arrived

READY_TIMEOUT_S = 60.0
DRAIN_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 20.0

# ---------------------------------------------------------------------------------------------
# small helpers


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def q(values: Iterable[float], p: float) -> float | None:
    return quantile(sorted(values), p)


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.1f} ms"


def _without_pbx(cmd: str) -> bool:
    """A test run of the unit or integration tiers only: it never touches the sandbox."""
    paths = [a for a in cmd.split() if a.startswith("tests")]
    return bool(paths) and all(a.startswith(("tests/unit", "tests/integration")) for a in paths)


def _ancestors() -> set[int]:
    """This process and those that started it (``flock ... timeout ... python -m bench...``)."""
    pids = {os.getpid()}
    pid = os.getppid()
    while pid > 1 and pid not in pids:
        pids.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat.rpartition(")")[2].split()[1])
    return pids


def _lock_waiters() -> set[int]:
    """Processes blocked waiting for a file lock (``/proc/locks`` lines with ``->``): a bench
    run with ``--lock`` waiting for its turn is not using the sandbox."""
    waiters = set()
    try:
        for line in Path("/proc/locks").read_text().splitlines():
            parts = line.split()
            if len(parts) > 5 and parts[1] == "->" and parts[5].isdigit():
                waiters.add(int(parts[5]))
    except OSError:
        pass
    return waiters


def busy_processes() -> list[str]:
    """Other users of the sandbox's ports: a running service, SIPp, a test run, a bench.

    A command still waiting for the sandbox's lock (``flock /tmp/siaga112-pbx.lock ...``) does
    not count: once it has the lock, what it runs shows as a process of its own."""
    own = _ancestors() | _lock_waiters()
    found: list[str] = []
    for args in (["pgrep", "-af", "siaga112 serve"], ["pgrep", "-ax", "sipp"],
                 ["pgrep", "-af", "pytest"], ["pgrep", "-af", "bench.surge"],
                 ["pgrep", "-af", "bench.events"], ["pgrep", "-af", "bench.drill"]):  # fmt: skip
        proc = subprocess.run(args, capture_output=True, text=True, check=False, timeout=10)
        for line in proc.stdout.splitlines():
            pid, _, cmd = line.partition(" ")
            if not pid.isdigit() or int(pid) in own or "pgrep" in cmd:
                continue
            if "flock" in cmd.split():
                continue
            if "pytest" in cmd and _without_pbx(cmd):
                continue
            found.append(line)
    return found


def wait_until_idle(max_wait_s: float) -> None:
    deadline = time.monotonic() + max_wait_s
    while True:
        busy = busy_processes()
        if not busy:
            return
        if time.monotonic() >= deadline:
            raise SystemExit(
                f"the sandbox is in use (waited {max_wait_s:.0f} s):\n  " + "\n  ".join(busy)
            )
        log(f"waiting: sandbox in use by {len(busy)} process(es): {busy[0][:100]}")
        time.sleep(5)


class CdrTail:
    """The lines Asterisk appends to its CDR CSV from a given offset on."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.start = path.stat().st_size if path.exists() else 0
        self.offset = self.start
        self.records: list[CdrRecord] = []

    def read(self) -> None:
        if not self.path.exists():
            return
        with self.path.open("rb") as fh:
            fh.seek(self.offset)
            data = fh.read()
        end = data.rfind(b"\n")
        if end < 0:
            return
        for line in data[: end + 1].decode("utf-8", errors="replace").splitlines():
            record = parse_cdr_line(line) if line.strip() else None
            if record is not None:
                self.records.append(record)
        self.offset += end + 1

    def legs(self, caller: str) -> list[CdrRecord]:
        """The caller legs of one step's calls (one record per call): numbers ``caller`` plus
        the call's index (every step prefix has the same length, see ``step_caller``)."""
        return merge_by_call(
            [
                r
                for r in self.records
                if r.is_emergency_leg
                and r.src.startswith(caller)
                and r.src[len(caller) :].isdigit()
            ]
        )


def step_caller(kind: int, index: int) -> str:
    """The number prefix of one step's callers: ``+62812``, the kind of step (one digit) and its
    index (two). Each call appends its SIPp call number, so every caller of a surge is a
    different person (as after an earthquake), not one repeat caller, and stays a valid
    Indonesian mobile number (at most 13 digits for 99,999 calls)."""
    if not (0 <= kind <= 9 and 0 <= index <= 99):
        raise ValueError(f"step kind {kind} / index {index} out of range")
    return f"+62812{kind}{index:02d}"


def active_channels(settings: Settings) -> int | None:
    try:
        out = pbx.cli(settings, "core show channels count", timeout=5)
    except pbx.PbxError:
        return None
    for line in out.splitlines():
        if "active channel" in line:
            return int(line.split()[0])
    return None


def drain(settings: Settings, timeout: float = DRAIN_TIMEOUT_S) -> None:
    """Wait until Asterisk has no channel left (the step's calls are all over)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if active_channels(settings) == 0:
            return
        time.sleep(0.5)
    log(f"warning: channels still up after {timeout:.0f} s")


def write_media_scenario(directory: Path) -> Path:
    """caller-112.xml plus a first burst of caller media right after the ACK.

    Answer() waits for the caller's first media frame, or 500 ms without one (``__ast_answer``
    in main/channel.c), before the dialplan goes on: a caller that sends no RTP, as SIPp's
    scenarios do, delays every AGI step by 500 ms. A handset starts sending at once; the bench
    caller sends MEDIA_PACKETS packets (SIPp ``play_pcap_audio``, a pcap written here).
    """
    pcap = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]  # Ethernet link type
    for i in range(MEDIA_PACKETS):
        rtp = struct.pack("!BBHII", 0x80, 0, 1000 + i, 160 * i, 0x5EED1129) + b"\xff" * 160
        udp = struct.pack("!HHHH", 6000, 6000, 8 + len(rtp), 0) + rtp
        ip = struct.pack(
            "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
            bytes([127, 0, 0, 2]), bytes([127, 0, 0, 1]),
        )  # fmt: skip
        frame = b"\x00" * 12 + b"\x08\x00" + ip + udp
        usec = i * 20_000
        pcap.append(struct.pack("<IIII", usec // 1_000_000, usec % 1_000_000, len(frame),
                                len(frame)) + frame)  # fmt: skip
    media = directory / "caller-media.pcap"
    media.write_bytes(b"".join(pcap))
    text = (SIP_CONF / SCENARIO).read_text()
    anchor = "  <!-- On the line"
    if anchor not in text:
        raise SystemExit(f"{SCENARIO} changed: no '{anchor.strip()}' to put the media before")
    action = (
        f'  <nop>\n    <action>\n      <exec play_pcap_audio="{media}"/>\n'
        "    </action>\n  </nop>\n\n"
    )
    scenario = directory / "caller-112-media.xml"
    # One caller number per call: the step's prefix and SIPp's call number.
    text = text.replace("[caller]", "[caller][call_number]")
    scenario.write_text(text.replace(anchor, action + anchor, 1))
    return scenario


def read_rtt(directory: Path) -> list[float]:
    """SIPp's INVITE -> 200 OK times (seconds) from its -trace_rtt file(s) in ``directory``."""
    values: list[float] = []
    for path in directory.glob("*_rtt.csv"):
        for line in path.read_text().splitlines()[1:]:
            parts = line.split(";")
            if len(parts) >= 2:
                try:
                    values.append(float(parts[1]) / 1000)
                except ValueError:
                    continue
    return values


# ---------------------------------------------------------------------------------------------
# one step of calls


@dataclass
class Step:
    variant: str  # "siaga112" (1129) or "plain" (1128)
    rate: float
    seconds: float
    caller: str
    planned: int
    sipp_returncode: int = 0
    sipp_successful: int = 0
    sipp_failed: int = 0
    wall_s: float = 0.0
    arrived: int = 0
    achieved_cps: float = 0.0
    served_by_operator: int = 0
    with_incident: int | None = None
    agi_status: dict[str, int] = field(default_factory=dict)
    answer_p50_s: float | None = None
    answer_p99_s: float | None = None
    answer_max_s: float | None = None
    sustained: bool = False
    why_not: list[str] = field(default_factory=list)
    cpu: dict[str, Any] = field(default_factory=dict)
    """CPU ms per call of each process over the step, machine busy % and load (bench.cpu)."""
    profile: dict[str, list[tuple[str, float, float]]] = field(default_factory=dict)
    """py-spy over the step (``--profile``): per process, the functions most on the stack."""
    uniqueids: list[str] = field(default_factory=list, repr=False)
    starts: dict[str, float] = field(default_factory=dict, repr=False)

    def judge(self) -> None:
        why: list[str] = []
        if self.planned - self.sipp_successful > MAX_LOSS_SHARE * self.planned:
            why.append(
                f"{self.planned - self.sipp_successful} of {self.planned} calls not successful"
                f" ({self.sipp_failed} failed)"
            )
        if self.achieved_cps < MIN_RATE_SHARE * self.rate:
            why.append(f"achieved {self.achieved_cps:.1f}/s < 95% of {self.rate:g}/s")
        if self.served_by_operator < MIN_SERVED_SHARE * max(1, self.arrived):
            why.append(f"operator answered {self.served_by_operator} of {self.arrived}")
        if self.with_incident is not None and self.with_incident < MIN_INCIDENT_SHARE * max(
            1, self.arrived
        ):
            why.append(f"incident id in the dialplan for {self.with_incident} of {self.arrived}")
        self.why_not = why
        self.sustained = not why

    def line(self) -> str:
        incident = "" if self.with_incident is None else f" incident {self.with_incident:>5}"
        verdict = "sustained" if self.sustained else "NOT sustained: " + "; ".join(self.why_not)
        return (
            f"  {self.variant:8} {self.rate:5g}/s x {self.seconds:g}s: {self.planned:>5} placed,"
            f" {self.sipp_successful:>5} ok, {self.sipp_failed:>4} failed, arrived"
            f" {self.achieved_cps:6.1f}/s, operator {self.served_by_operator:>5}{incident},"
            f" 200 OK p99 {ms(self.answer_p99_s)}{self.load_text()} -> {verdict}"
        )

    def load_text(self) -> str:
        if not self.cpu:
            return ""
        return (
            f", load {self.cpu['load_start']:.2f}->{self.cpu['load_end']:.2f},"
            f" busy {self.cpu['machine_busy_pct']}%"
        )

    def cpu_line(self) -> str:
        """CPU ms per call of each process, siaga112's total beside Asterisk's."""
        if not self.cpu:
            return ""
        parts = ", ".join(f"{k} {v:.2f}" for k, v in sorted(self.cpu["ms_per_call"].items()))
        total = self.cpu.get("siaga112_total_ms")
        ast = self.cpu.get("asterisk_ms")
        verdict = ""
        if total is not None and ast:
            verdict = f" | siaga112 {total:.2f} vs Asterisk {ast:.2f} ({total / ast:.2f}x)"
        return f"      CPU ms/call: {parts}{verdict}"


def run_step(
    settings: Settings,
    cdr: CdrTail,
    workdir: Path,
    *,
    scenario: Path,
    variant: str,
    number: str,
    caller: str,
    rate: float,
    seconds: float,
    hold_ms: int,
    meter: CpuMeter | None = None,
    profile: bool = False,
) -> Step:
    planned = max(1, round(rate * seconds))
    step = Step(variant=variant, rate=rate, seconds=seconds, caller=caller, planned=planned)
    directory = workdir / f"{variant}-{caller[1:]}"
    directory.mkdir(parents=True, exist_ok=True)
    # Calls still unanswered 10 s after a message was due fail (-recv_timeout); SIPp ends when
    # the last call is over, or at the absolute timeout.
    limit = int(rate * (hold_ms / 1000 + 12)) + 100
    spies = _start_profilers(meter, directory, seconds) if profile else {}
    before = meter.snapshot() if meter is not None else None
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    result = run_caller(
        settings,
        str(scenario),
        number=number,
        caller=caller,
        hold_ms=hold_ms,
        calls=planned,
        rate=rate,
        timeout=seconds + hold_ms / 1000 + 40,
        extra_args=(
            "-l",
            str(limit),
            "-recv_timeout",
            "10000",
            "-trace_rtt",
            "-rtt_freq",
            "1",
            "-max_socket",
            "2000",
        ),
        cwd=directory,
    )
    step.wall_s = time.monotonic() - started
    # SIPp is the only child this process reaps while it runs (serve, the operator phone and
    # py-spy live on): the children's CPU over the run is the caller side's.
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    for label, (spy, out) in spies.items():
        try:
            spy.wait(timeout=30)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait(5)
        if out.exists():
            step.profile[label] = top_frames(out)
    sipp_cpu_s = (children_after.ru_utime - children_before.ru_utime) + (
        children_after.ru_stime - children_before.ru_stime
    )
    (directory / "sipp.out").write_text(result.output)
    step.sipp_returncode = result.returncode
    step.sipp_successful = result.successful
    step.sipp_failed = result.failed
    drain(settings)
    time.sleep(0.3)  # the hang-up handler's CDR line comes last
    cdr.read()
    legs = cdr.legs(caller)
    step.arrived = len(legs)
    starts = sorted(r.start.timestamp() for r in legs if r.start is not None)
    if len(starts) > 1 and starts[-1] > starts[0]:
        step.achieved_cps = (len(starts) - 1) / (starts[-1] - starts[0])
    step.served_by_operator = sum(1 for r in legs if r.answered_by)
    if variant == "siaga112":
        step.with_incident = sum(1 for r in legs if r.incident)
        for r in legs:
            status = r.agi_status or "none"
            step.agi_status[status] = step.agi_status.get(status, 0) + 1
    step.uniqueids = [r.uniqueid for r in legs]
    step.starts = {r.uniqueid: r.start.timestamp() for r in legs if r.start is not None}
    rtt = read_rtt(directory)
    step.answer_p50_s = q(rtt, 0.5)
    step.answer_p99_s = q(rtt, 0.99)
    step.answer_max_s = max(rtt) if rtt else None
    if meter is not None and before is not None:
        settled = meter.settle()
        step.cpu = per_call(before, meter.snapshot(), step.arrived, sipp_cpu_s)
        step.cpu["settle_s"] = round(settled, 1)
    step.judge()
    return step


def _start_profilers(
    meter: CpuMeter | None, directory: Path, seconds: float
) -> dict[str, tuple[subprocess.Popen[bytes], Path]]:
    """py-spy (non-blocking, raw collapsed stacks) on serve and each worker for the step."""
    serve = meter.serve_pid() if meter is not None else None
    spy = Path(sys.executable).parent / "py-spy"
    if serve is None or not spy.exists():
        return {}
    out: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
    for label, pid in profile_processes(serve).items():
        path = directory / f"py-spy-{label.replace(' ', '-').replace(',', '+')}.txt"
        cmd = [str(spy), "record", "-p", str(pid), "-d", str(max(1, int(seconds))), "-r", "100",
               "--nonblocking", "-f", "raw", "-o", str(path)]  # fmt: skip
        out[label] = (
            subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
            path,
        )
    return out


def profile_lines(step: Step) -> list[str]:
    lines = []
    for label, frames in step.profile.items():
        lines.append(f"      py-spy {label} (share of samples on the stack / as the leaf):")
        lines += [f"        {inc * 100:5.1f}% {own * 100:5.1f}%  {f}" for f, inc, own in frames]
    return lines


# ---------------------------------------------------------------------------------------------
# siaga112 serve as a subprocess


class Service:
    def __init__(self, settings: Settings, database_url: str, log_path: Path) -> None:
        self.settings = settings
        self.database_url = database_url
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.base = f"http://{settings.api.host}:{settings.api.port}"

    def command(self) -> list[str]:
        script = Path(sys.executable).parent / "siaga112"
        if script.exists():
            return [str(script), "serve"]
        found = shutil.which("siaga112")
        return [found, "serve"] if found else [sys.executable, "-m", "siaga112", "serve"]

    def start(self) -> None:
        self.launch()
        self.wait_ready()

    def launch(self) -> None:
        """Start ``siaga112 serve`` and return at once (``wait_ready`` waits for /readyz)."""
        env = {
            **os.environ,
            "SIAGA112_DATABASE_URL": self.database_url,
            "SIAGA112_PBX__CDR_FILE_NAME": BENCH_CDR_FILE,
        }
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                self.command(),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def ready(self) -> bool:
        try:
            return bool(json.loads(self.get("/readyz")).get("ready"))
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def wait_ready(self) -> None:
        if self.proc is None:
            raise RuntimeError("siaga112 serve was not started")
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"siaga112 serve exited at start; see {self.log_path}")
            try:
                body = json.loads(self.get("/readyz"))
                if body.get("ready"):
                    return
            except (urllib.error.URLError, OSError, ValueError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"siaga112 serve not ready within {READY_TIMEOUT_S:.0f} s")

    def get(self, path: str) -> str:
        with urllib.request.urlopen(self.base + path, timeout=5) as resp:  # noqa: S310
            body: bytes = resp.read()
            return body.decode()

    def metrics(self) -> dict[str, float]:
        values: dict[str, float] = {}
        for line in self.get("/metrics").splitlines():
            if line.startswith("#") or " " not in line:
                continue
            name, _, value = line.rpartition(" ")
            try:
                values[name] = float(value)
            except ValueError:
                continue
        return values

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGINT, STOP_TIMEOUT_S), (signal.SIGTERM, 5.0)):
            proc.send_signal(sig)
            try:
                proc.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue
        proc.kill()
        proc.wait(5)


def agi_quantiles(metrics: dict[str, float]) -> dict[str, float | None]:
    def get(key: str) -> float | None:
        return metrics.get(key)

    return {
        "p50_s": get('siaga112_agi_handling_seconds{quantile="0.5"}'),
        "p90_s": get('siaga112_agi_handling_seconds{quantile="0.9"}'),
        "p99_s": get('siaga112_agi_handling_seconds{quantile="0.99"}'),
        "samples": get("siaga112_agi_handling_seconds_count"),
        # From the dialplan's AGI start (its t) to the accept, and to the answer.
        "wait_p50_s": get('siaga112_agi_wait_seconds{quantile="0.5"}'),
        "wait_p99_s": get('siaga112_agi_wait_seconds{quantile="0.99"}'),
        "total_p50_s": get('siaga112_agi_total_seconds{quantile="0.5"}'),
        "total_p99_s": get('siaga112_agi_total_seconds{quantile="0.99"}'),
        "requests": get("siaga112_agi_requests_total"),
        "over_budget": get("siaga112_agi_over_budget_total"),
        "write_failed": get("siaga112_agi_write_failed_total"),
    }


# ---------------------------------------------------------------------------------------------
# database side


async def _skip_history(settings: Settings) -> None:
    """The bench database starts reading Asterisk's CDR file at its current end."""
    engine = make_engine(settings)
    try:
        reconciler = CdrReconciler(
            path=settings.pbx.cdr_path or settings.cdr_file,
            sessionmaker=make_sessionmaker(engine),
            metrics=Metrics(),
        )
        await reconciler.skip_to_end()
    finally:
        await engine.dispose()


async def _calls(database_url: str, uniqueids: list[str]) -> dict[str, tuple[float, bool, str]]:
    """uniqueid -> (created_at epoch, has incident, source) of the rows the service wrote."""
    import asyncpg

    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        rows = await conn.fetch(
            "SELECT uniqueid, extract(epoch FROM created_at)::float8 AS created,"
            " incident_id IS NOT NULL AS has_incident, source"
            " FROM calls WHERE uniqueid = ANY($1::text[])",
            uniqueids,
        )
    finally:
        await conn.close()
    return {
        r["uniqueid"]: (float(r["created"]), bool(r["has_incident"]), r["source"]) for r in rows
    }


async def _server_version(database_url: str) -> str:
    import asyncpg

    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        version: str = await conn.fetchval("SHOW server_version")
        return version
    finally:
        await conn.close()


def calls_in_db(database_url: str, uniqueids: list[str]) -> dict[str, tuple[float, bool, str]]:
    return asyncio.run(_calls(database_url, uniqueids))


def wait_for_incidents(
    database_url: str, uniqueids: list[str], settle_s: float
) -> dict[str, tuple[float, bool, str]]:
    """Poll until every call has its row and incident (or ``settle_s`` is over)."""
    deadline = time.monotonic() + settle_s
    while True:
        rows = calls_in_db(database_url, uniqueids)
        missing = sum(1 for u in uniqueids if not rows.get(u, (0.0, False, ""))[1])
        if missing == 0 or time.monotonic() >= deadline:
            return rows
        log(f"waiting for the service: {missing} call(s) without an incident yet")
        time.sleep(2)


# ---------------------------------------------------------------------------------------------
# the run


def machine_facts(settings: Settings) -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    sipp_version = subprocess.run(
        ["sipp", "-v"], capture_output=True, text=True, check=False, timeout=10
    ).stdout.strip()
    status = pbx.status(settings)
    try:
        from importlib.metadata import version

        import uvloop  # noqa: F401  (what `siaga112 serve` runs on when importable)

        loop = f"uvloop {version('uvloop')}"
    except ImportError:
        loop = "asyncio (uvloop not installed)"
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "service_event_loop": loop,
        "asterisk": (status.version or "?").split(" built by")[0],
        "sipp": sipp_version.splitlines()[0] if sipp_version else "?",
    }


def trim_cdr(cdr: CdrTail, keep_in: Path) -> str:
    """Take the benchmark's lines out of Asterisk's CDR file again (a copy stays in the run
    directory), so that no other database reconciles thousands of synthetic calls later.
    Only when everything after the offset is the benchmark's own."""
    path = cdr.path
    if not path.exists():
        return "no CDR file"
    with path.open("rb") as fh:
        fh.seek(cdr.start)
        data = fh.read()
    (keep_in / "bench-cdr.csv").write_bytes(data)
    foreign = 0
    for line in data.decode("utf-8", errors="replace").splitlines():
        record = parse_cdr_line(line) if line.strip() else None
        bench = (pbx.BENCH_AGI_NUMBER, pbx.BENCH_PLAIN_NUMBER)
        # dst is "T" for a call whose AGI step ran out of time; siaga112_dialled stays.
        if record is None or (record.dst not in bench and record.dialled not in bench):
            foreign += 1
    if foreign:
        return f"left in place: {foreign} line(s) after the bench's start are not the bench's"
    os.truncate(path, cdr.start)
    return f"{len(data)} bytes of bench CDR lines moved to {keep_in / 'bench-cdr.csv'}"


# ---------------------------------------------------------------------------------------------
# set-up and clean-up


@dataclass
class BenchStack:
    base: Settings
    """The settings as found (the sandbox goes back to them)."""
    settings: Settings
    """With the bench database and the benchmark numbers."""
    database_url: str
    workdir: Path
    scenario: Path
    """The caller scenario with a first burst of media (``write_media_scenario``)."""
    cdr: CdrTail
    operator: SippOperator
    service: Service
    result: dict[str, Any]
    """Filled with the command, run directory, database, machine and (at the end) CDR."""
    meter: CpuMeter
    """CPU time of Asterisk, serve, its workers and their PostgreSQL backends (bench.cpu)."""


@contextlib.contextmanager
def bench_stack(
    *,
    module: str,
    database_url: str | None,
    default_database: str,
    wait_busy_s: float,
    keep_cdr: bool,
) -> Iterator[BenchStack]:
    """The stack, ready: operator phone registered, ``siaga112 serve`` answering /readyz."""
    base = Settings()
    database_url = database_url or make_url(base.database_url_str).set(
        database=default_database
    ).render_as_string(hide_password=False)
    settings = base.model_copy(
        update={
            "database_url": database_url,
            # Bench calls go to a CDR file of their own, never into a development database.
            "pbx": base.pbx.model_copy(
                update={"bench_numbers": True, "cdr_file_name": BENCH_CDR_FILE}
            ),
        }
    )
    reason = pbx_unavailable_reason()
    if reason:
        raise SystemExit(f"cannot run: {reason}")
    if not settings.pbx.demo_operators or settings.pbx.demo_operators[0] != OPERATOR:
        raise SystemExit(f"the bench queue's member must be demo operator {OPERATOR}")
    wait_until_idle(wait_busy_s)

    workdir = Path(tempfile.mkdtemp(prefix=f"siaga112-{module.rpartition('.')[2]}-"))
    log(f"run directory {workdir}")
    result: dict[str, Any] = {
        "command": " ".join(shlex.quote(a) for a in [sys.executable, "-m", module, *sys.argv[1:]]),
        "run_directory": str(workdir),
        "database": make_url(database_url).database,
    }
    scenario = write_media_scenario(workdir)
    was_running = pbx.status(base).running
    log("database: drop, create, migrate")
    asyncio.run(drop_database(database_url))
    upgrade(database_url)
    log("Asterisk: configuration with the benchmark numbers")
    pbx.up(settings)
    result["machine"] = machine_facts(settings)
    result["machine"]["postgresql"] = asyncio.run(_server_version(database_url))
    asterisk_pid = pbx.status(settings).pid
    cdr = CdrTail(settings.pbx.cdr_path or settings.cdr_file)
    asyncio.run(_skip_history(settings))
    service = Service(settings, database_url, workdir / "siaga112-serve.log")
    stack = BenchStack(
        base=base,
        settings=settings,
        database_url=database_url,
        workdir=workdir,
        scenario=scenario,
        cdr=cdr,
        operator=SippOperator(settings, OPERATOR, ring_ms=0, log_dir=workdir),
        service=service,
        result=result,
        meter=CpuMeter(
            asterisk_pid=lambda: asterisk_pid,
            serve_pid=lambda: service.pid,
            database_url=database_url,
            database=make_url(database_url).database or default_database,
        ),
    )
    try:
        stack.operator.start()
        log("siaga112 serve: starting")
        stack.service.start()
        result["service_pid"] = stack.service.pid
        if stack.service.pid is not None:
            waited = wait_quiet(stack.service.pid, children=2, connected=stack.meter.connected)
            log(f"siaga112 serve: ready, workers started and quiet after {waited:.0f} s")
        yield stack
    finally:
        stack.service.stop()
        stack.operator.stop()
        if was_running:
            log("Asterisk: back to the normal configuration")
            pbx.up(base)
        else:
            log("Asterisk: stopping (the bench started it)")
            pbx.down(base)
        if keep_cdr:
            result["cdr"] = "bench lines left in Asterisk's CDR file (--keep-cdr)"
        else:
            result["cdr"] = trim_cdr(cdr, workdir)


# ---------------------------------------------------------------------------------------------
# the command line every real-stack bench shares


def add_stack_arguments(
    p: argparse.ArgumentParser,
    *,
    default_rates: Sequence[float],
    rates_help: str,
    bench_database: str,
    settle_help: str,
) -> None:
    """--rates, --hold, --settle, --wait-busy, --database-url, --keep-cdr and --json."""
    p.add_argument(
        "--rates",
        type=lambda v: [float(x) for x in v.split(",") if x.strip()],
        default=list(default_rates),
        help=f"{rates_help}, comma-separated (default %(default)s)",
    )
    p.add_argument("--hold", type=float, default=2.0, help="seconds a caller stays on the line")
    p.add_argument("--settle", type=float, default=40.0, help=settle_help)
    p.add_argument(
        "--wait-busy", type=float, default=180.0, help="wait this long for a busy sandbox"
    )
    p.add_argument("--database-url", default=None, help=f"default: .../{bench_database}")
    p.add_argument("--keep-cdr", action="store_true", help="leave the bench's CDR lines")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")


def check_rates(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if not args.rates or any(r <= 0 or not math.isfinite(r) for r in args.rates):
        p.error("--rates needs positive numbers")


def bench_main(
    args: argparse.Namespace,
    run: Callable[[argparse.Namespace], dict[str, Any]],
    report: Callable[[dict[str, Any]], str],
) -> int:
    """Runs the bench, prints its report, and writes the figures to --json when asked."""
    result = run(args)
    print(report(result), flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")
        log(f"JSON written to {args.json}")
    return 0
