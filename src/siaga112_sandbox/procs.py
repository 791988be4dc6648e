"""Process helpers shared by the tests and the benches: free loopback ports, waiting for a
condition, a process's state and children read from /proc, and a `siaga112 serve` started on free
ports and stopped with everything it started."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import httpx


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the kernel's choice)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_until(check: Callable[[], object], within: float, what: str) -> None:
    """Polls ``check`` every 0.1 s until it is true; AssertionError naming ``what`` after
    ``within`` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} not within {within} s")


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


def start_time(pid: int) -> int | None:
    """When the process started (clock ticks after boot, /proc/<pid>/stat field 22): with the
    pid, what names one process, as pids are reused; None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    return int(fields[19])


def dead(pid: int) -> bool:
    """The process is gone (or a zombie)."""
    return not alive(pid)


def children(pid: int) -> list[int]:
    """The pids whose parent is ``pid``."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if int(fields[1]) == pid:
            out.append(int(entry.name))
    return out


def answers(port: int, path: str) -> bool:
    """``GET http://127.0.0.1:<port><path>`` answers 200."""
    try:
        return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass
class Serve:
    proc: subprocess.Popen[bytes]
    port: int
    worker_port: int


@contextlib.contextmanager
def serve(
    database_url: str,
    state_dir: Path,
    *,
    args: Sequence[str] = ("--api-only",),
    env: dict[str, str] | None = None,
    log: Path | None = None,
    ready: Sequence[str] = ("/healthz",),
    worker_ready: bool = False,
    within: float = 60,
) -> Iterator[Serve]:
    """`siaga112 serve <args>` on free ports (API and worker) against ``database_url``, with
    recordings off; waits until the API answers every path of ``ready`` (and the worker its
    /healthz with ``worker_ready``); at the end SIGTERM, then SIGKILL to serve and whatever it
    left running."""
    port, worker_port = free_port(), free_port()
    environ = dict(os.environ) | {
        "SIAGA112_DATABASE_URL": database_url,
        "SIAGA112_API__PORT": str(port),
        "SIAGA112_WORKER__PORT": str(worker_port),
        "SIAGA112_STATE_DIR": str(state_dir),
        "SIAGA112_RECORDINGS__ENABLED": "false",
    }
    out = log.open("wb") if log is not None else None
    proc = subprocess.Popen(
        [sys.executable, "-m", "siaga112", "serve", *args],
        env=environ | (env or {}),
        stdout=subprocess.DEVNULL,
        stderr=out if out is not None else subprocess.DEVNULL,
    )
    if out is not None:
        out.close()  # the child has its own descriptor
    started: list[tuple[int, int | None]] = []
    try:
        for path in ready:
            wait_until(partial(answers, port, path), within, f"serve answering {path}")
        if worker_ready:
            wait_until(lambda: answers(worker_port, "/healthz"), within, "serve's worker ready")
        # Still known if a test kills serve itself; with their start times, so that a pid the
        # system has given to another process since is never killed.
        started = [(pid, start_time(pid)) for pid in children(proc.pid)]
        yield Serve(proc=proc, port=port, worker_port=worker_port)
    finally:
        left = set(started) | {(pid, start_time(pid)) for pid in children(proc.pid)}
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        for child, since in left:
            if since is not None and start_time(child) == since:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child, signal.SIGKILL)
