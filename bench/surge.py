"""Surge benchmark: how many 112 calls per second the real stack sustains, with and without the
siaga112 step, on this machine (``python -m bench.surge``, ``make bench-surge``).

One run, about six minutes with the defaults (see bench/README.md for what it does and how the
figures are defined):

1. a database of its own (``siaga112_bench``, dropped and re-created), the Asterisk sandbox with
   the benchmark numbers (``PbxSettings.bench_numbers``), the bench queue's members
   answered inside Asterisk (Local channels, the same on both paths), and ``siaga112 serve``
   as a subprocess;
2. 50 calls/s for 30 s through the siaga112 path (1129: Answer, AGI, Queue) for the latency
   figures, then rising rates through the same path, then -- siaga112 stopped -- the same rates
   through the same dialplan without the AGI step (1128), each ramp ending at its first step
   that is not sustained;
3. the figures (printed, and with ``--json FILE`` as JSON); the sandbox is left as it was found
   (normal configuration, or stopped when the benchmark started it) and the benchmark's lines
   are taken out of Asterisk's CDR file again (kept in the run directory).

Only loopback traffic: SIPp calls from 127.0.0.2 (the simulated carrier), the operator phone
registers from 127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.cpu import CpuMeter
from bench.realstack import (
    CdrTail,
    Step,
    add_stack_arguments,
    agi_quantiles,
    bench_stack,
    check_rates,
    log,
    ms,
    profile_lines,
    q,
    run_step,
    step_caller,
    wait_for_incidents,
)
from siaga112.config import Settings
from siaga112_sandbox import pbx

DEFAULT_RATES = (50, 100, 150, 200, 250, 300)
BENCH_DATABASE = "siaga112_bench"


# ---------------------------------------------------------------------------------------------
# the ramps


def ramp(
    settings: Settings,
    cdr: CdrTail,
    workdir: Path,
    *,
    scenario: Path,
    variant: str,
    number: str,
    digit: int,
    rates: Sequence[float],
    fine: float,
    seconds: float,
    hold_ms: int,
    patience: int,
    deadline: float,
    meter: CpuMeter,
    profile: bool = False,
) -> list[Step]:
    """The coarse ramp (``rates``) up to its first step not sustained, then steps of ``fine``
    calls/s from the last sustained rate up to that one: the knee to ``fine`` calls/s."""
    steps: list[Step] = []
    index = 0

    def one(rate: float) -> Step | None:
        nonlocal index
        if time.monotonic() + seconds + hold_ms / 1000 + 15 > deadline:
            log(f"{variant}: time budget spent; ramp stops before {rate:g}/s")
            return None
        caller = step_caller(digit, index)
        index += 1
        log(f"{variant}: {rate:g} calls/s for {seconds:g} s ({number})")
        step = run_step(
            settings,
            cdr,
            workdir,
            scenario=scenario,
            variant=variant,
            number=number,
            caller=caller,
            rate=rate,
            seconds=seconds,
            hold_ms=hold_ms,
            meter=meter,
            profile=profile,
        )
        log(step.line().strip())
        if step.cpu:
            log(step.cpu_line().strip())
        for line in profile_lines(step):
            log(line)
        steps.append(step)
        return step

    misses = 0
    failed_at: float | None = None
    for rate in rates:
        step = one(rate)
        if step is None:
            return steps
        if not step.sustained and failed_at is None:
            failed_at = rate
        misses = 0 if step.sustained else misses + 1
        if misses >= patience:
            break
    if failed_at is None or fine <= 0:
        return steps
    below = [s.rate for s in steps if s.sustained and s.rate < failed_at]
    rate = (max(below) if below else 0.0) + fine
    while rate < failed_at - 1e-9:
        step = one(rate)
        if step is None or not step.sustained:
            break
        rate += fine
    return steps


def highest_sustained(steps: Sequence[Step]) -> float | None:
    """The highest offered rate sustained, with every lower step sustained too."""
    best: float | None = None
    for step in sorted(steps, key=lambda s: s.rate):
        if not step.sustained:
            break
        best = step.rate
    return best


# ---------------------------------------------------------------------------------------------
# the run


def run(args: argparse.Namespace) -> dict[str, Any]:
    t0 = time.monotonic()
    deadline = t0 + args.max_minutes * 60
    hold_ms = int(args.hold * 1000)
    agi_steps: list[Step] = []
    plain_steps: list[Step] = []
    with bench_stack(
        module="bench.surge",
        database_url=args.database_url,
        default_database=BENCH_DATABASE,
        wait_busy_s=args.wait_busy,
        keep_cdr=args.keep_cdr,
    ) as stack:
        settings, cdr, workdir, scenario = stack.settings, stack.cdr, stack.workdir, stack.scenario
        service, database_url, result = stack.service, stack.database_url, stack.result
        result["hold_s"] = args.hold

        # -- latency at 50 calls/s, on a fresh service ------------------------------------
        log(f"siaga112: {args.latency_rate:g} calls/s for {args.latency_seconds:g} s (latency)")
        latency = run_step(
            settings,
            cdr,
            workdir,
            scenario=scenario,
            variant="siaga112",
            number=pbx.BENCH_AGI_NUMBER,
            caller=step_caller(5, 0),
            rate=args.latency_rate,
            seconds=args.latency_seconds,
            hold_ms=hold_ms,
            meter=stack.meter,
            profile=args.profile,
        )
        log(latency.line().strip())
        log(latency.cpu_line().strip())
        for line in profile_lines(latency):
            log(line)
        agi_at_rate = agi_quantiles(service.metrics())
        rows = wait_for_incidents(database_url, latency.uniqueids, 10)
        delays = [
            rows[u][0] - start for u, start in latency.starts.items() if u in rows and rows[u][1]
        ]
        result["latency_step"] = {
            **_step_json(latency),
            "agi_handling": agi_at_rate,
            "invite_to_incident": {
                "method": "calls.created_at (clock_timestamp() at insert, same transaction as"
                " the incident) minus the CDR start of the caller leg (channel creation,"
                " when Asterisk took the INVITE)",
                "samples": len(delays),
                "p50_s": q(delays, 0.5),
                "p99_s": q(delays, 0.99),
                "max_s": max(delays) if delays else None,
            },
        }

        # -- the siaga112 path at rising rates --------------------------------------------
        share = 2 if "plain" in args.paths else 1
        agi_steps = (
            []
            if "siaga112" not in args.paths
            else ramp(
                settings,
                cdr,
                workdir,
                scenario=scenario,
                variant="siaga112",
                number=pbx.BENCH_AGI_NUMBER,
                digit=9,
                rates=args.rates,
                fine=args.fine,
                seconds=args.step_seconds,
                hold_ms=hold_ms,
                patience=args.patience,
                # leave the plain ramp the time this one takes (settle and stop: about a minute)
                deadline=time.monotonic() + (deadline - time.monotonic() - 30) / share,
                meter=stack.meter,
            )
        )
        agi_ramp = agi_quantiles(service.metrics())
        all_legs = latency.uniqueids + [u for s in agi_steps for u in s.uniqueids]
        log(f"counting: {len(all_legs)} calls through the siaga112 path")
        rows = wait_for_incidents(database_url, all_legs, args.settle)
        sources: dict[str, int] = {}
        for u in all_legs:
            if u in rows and rows[u][1]:
                sources[rows[u][2]] = sources.get(rows[u][2], 0) + 1
        without = sum(1 for u in all_legs if not (u in rows and rows[u][1]))
        result["siaga112_path_calls"] = {
            "calls_in_cdr": len(all_legs),
            "with_incident_by_source": sources,
            "without_incident": without,
        }
        result["agi_handling_ramp"] = agi_ramp
        final_metrics = service.metrics()
        result["service_counters"] = {
            k: v for k, v in final_metrics.items() if k.endswith("_total")
        }
        service.stop()
        log_lines = (workdir / "siaga112-serve.log").read_text(errors="replace").splitlines()
        result["service_log_lines"] = len(log_lines)

        # -- the same dialplan without the AGI step, siaga112 stopped ---------------------
        plain_steps = (
            []
            if "plain" not in args.paths
            else ramp(
                settings,
                cdr,
                workdir,
                scenario=scenario,
                variant="plain",
                number=pbx.BENCH_PLAIN_NUMBER,
                digit=8,
                rates=args.rates,
                fine=args.fine,
                seconds=args.step_seconds,
                hold_ms=hold_ms,
                patience=args.patience,
                deadline=deadline,
                meter=stack.meter,
            )
        )

    best_agi = highest_sustained(agi_steps)
    best_plain = highest_sustained(plain_steps)
    result["steps"] = [_step_json(s) for s in agi_steps + plain_steps]
    result["highest_sustained_cps"] = {
        "siaga112": best_agi,
        "plain": best_plain,
        "ratio": (best_agi / best_plain) if best_agi and best_plain else None,
        "plain_ceiling_not_reached": bool(plain_steps) and all(s.sustained for s in plain_steps),
    }
    result["elapsed_s"] = round(time.monotonic() - t0, 1)
    return result


def _step_json(step: Step) -> dict[str, Any]:
    data = asdict(step)
    data.pop("uniqueids")
    data.pop("starts")
    return data


def report(result: dict[str, Any]) -> str:
    m = result["machine"]
    best = result["highest_sustained_cps"]
    lat = result["latency_step"]
    agi = lat["agi_handling"]
    inc = lat["invite_to_incident"]
    ramp_agi = result["agi_handling_ramp"]
    calls = result["siaga112_path_calls"]

    def s(v: float | None) -> str:
        return ms(v)

    def cps(v: float | None) -> str:
        return "none" if v is None else f"{v:g} calls/s"

    steps = [Step(**{k: v for k, v in d.items() if k in Step.__dataclass_fields__})
             for d in result["steps"]]  # fmt: skip
    ratio = best["ratio"]
    lat_step = Step(**{k: v for k, v in lat.items() if k in Step.__dataclass_fields__})
    lines = [
        "siaga112 surge benchmark",
        f"command:   {result['command']}",
        f"machine:   {m['nproc']} CPUs ({m['cpu']}), Linux {m['kernel']}, Python {m['python']}"
        f" ({m['service_event_loop']}), {m['asterisk']}, {m['sipp']},"
        f" PostgreSQL {m['postgresql']}",
        f"run dir:   {result['run_directory']} (SIPp output, service log, bench CDR lines)",
        "",
        f"steps (callers hang up {result['hold_s']:g} s after the answer). Sustained ="
        " SIPp >= 99.5% successful, arrival rate at Asterisk >= 95% of offered, >= 99.5%"
        " answered by the operator through the queue, and on the siaga112 path >= 99.5% with"
        " the incident id set by the AGI step within its budget:",
        *(x for st in steps for x in (st.line(), st.cpu_line()) if x),
        "",
        f"highest sustained, siaga112 path (1129: Answer, AGI, Queue): {cps(best['siaga112'])}",
        f"highest sustained, same dialplan without AGI (1128), siaga112 stopped:"
        f" {cps(best['plain'])}"
        + (
            " (every step sustained: the ceiling is higher)"
            if best["plain_ceiling_not_reached"]
            else ""
        ),
        "ratio siaga112 / plain: " + ("-" if ratio is None else f"{ratio:.2f}") + " (goal >= 0.90)",
        *_where_it_stops(steps),
        "",
        f"at {lat['rate']:g} calls/s for {lat['seconds']:g} s ({lat['planned']} calls,"
        f" {lat['sipp_successful']} ok, {lat['sipp_failed']} failed,"
        f" {lat['with_incident']} with incident id in the dialplan):",
        f"  AGI handling (service /metrics, {int(agi['samples'] or 0)} requests):"
        f" p50 {s(agi['p50_s'])}, p90 {s(agi['p90_s'])}, p99 {s(agi['p99_s'])}"
        " (goal p99 <= 20 ms)",
        f"  AGI as the dialplan waits for it (from its AGI start): wait to the accept p50"
        f" {s(agi.get('wait_p50_s'))}, p99 {s(agi.get('wait_p99_s'))}; in all p50"
        f" {s(agi.get('total_p50_s'))}, p99 {s(agi.get('total_p99_s'))}",
        f"  INVITE -> committed incident ({inc['samples']} calls): p50 {s(inc['p50_s'])},"
        f" p99 {s(inc['p99_s'])}, max {s(inc['max_s'])} (goal p99 <= 50 ms)",
        f"    measured as {inc['method']}",
        f"  INVITE -> 200 OK at SIPp: p50 {s(lat['answer_p50_s'])}, p99 {s(lat['answer_p99_s'])}",
        f"  {lat_step.load_text().lstrip(', ')}",
        lat_step.cpu_line(),
        f"AGI handling over the ramp (last {int(ramp_agi['samples'] or 0)} requests):"
        f" p50 {s(ramp_agi['p50_s'])}, p99 {s(ramp_agi['p99_s'])}; from the dialplan's AGI"
        f" start p50 {s(ramp_agi.get('total_p50_s'))}, p99 {s(ramp_agi.get('total_p99_s'))};"
        f" over budget {int(ramp_agi['over_budget'] or 0)},"
        f" write failures {int(ramp_agi['write_failed'] or 0)}",
        f"calls through the siaga112 path: {calls['calls_in_cdr']} in Asterisk's CDR,"
        f" with incident by source {calls['with_incident_by_source']},"
        f" WITHOUT incident: {calls['without_incident']} (must be 0)",
        f"service log: {result.get('service_log_lines', '?')} lines; CDR: {result['cdr']}",
        f"elapsed {result['elapsed_s']} s",
    ]
    return "\n".join(lines)


def _where_it_stops(steps: Sequence[Step]) -> list[str]:
    """For each path's first step not sustained: how many CPUs Asterisk, siaga112 and the SIPp
    caller used at it, and how busy the machine was (the resource that ran out)."""
    lines = []
    for variant in ("plain", "siaga112"):
        failed = [st for st in steps if st.variant == variant and not st.sustained and st.cpu]
        if not failed:
            continue
        st = min(failed, key=lambda x: x.rate)
        per = st.cpu["ms_per_call"]

        def cpus(ms_per_call: float | None, cps: float = st.achieved_cps) -> str:
            return "-" if ms_per_call is None else f"{ms_per_call * cps / 1000:.2f}"

        lines.append(
            f"{variant} stops at {st.rate:g}/s: CPUs used by Asterisk {cpus(per.get('asterisk'))},"
            f" siaga112 {cpus(st.cpu.get('siaga112_total_ms'))}, SIPp caller"
            f" {cpus(per.get('sipp caller'))}; machine busy {st.cpu['machine_busy_pct']}% of"
            f" {os.cpu_count()} CPUs, load {st.cpu['load_start']:.2f}->{st.cpu['load_end']:.2f}"
            " (the rest: others' work on the machine)"
        )
    return lines


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.surge", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    add_stack_arguments(
        p,
        default_rates=DEFAULT_RATES,
        rates_help="offered calls/s of the ramp steps",
        bench_database=BENCH_DATABASE,
        settle_help="seconds to wait for the service's writes (one reconciliation pass is 30 s)",
    )
    p.add_argument("--step-seconds", type=float, default=15.0, help="length of a ramp step")
    p.add_argument("--latency-rate", type=float, default=50.0, help="rate of the latency run")
    p.add_argument("--latency-seconds", type=float, default=30.0, help="length of it")
    p.add_argument(
        "--patience", type=int, default=1, help="a ramp stops after this many unsustained steps"
    )
    p.add_argument(
        "--fine",
        type=float,
        default=10.0,
        help="after the first step not sustained, steps of this many calls/s from the last"
        " sustained rate up to it (0: none)",
    )
    p.add_argument(
        "--paths",
        type=lambda v: [x.strip() for x in v.split(",") if x.strip()],
        default=["siaga112", "plain"],
        help="ramps to run: siaga112, plain or both (default %(default)s)",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="py-spy (non-blocking) on serve and each worker during the siaga112 steps; the"
        " busiest functions are printed (the profiler's own CPU skews that run's figures)",
    )
    p.add_argument("--runs", type=int, default=1, help="whole runs, medians reported")
    p.add_argument(
        "--lock",
        type=Path,
        default=None,
        help="take this lock (flock) for each run and let it go between runs; with --runs > 1"
        " use this, not a flock around the command, so others' tests run between runs",
    )
    p.add_argument("--pause", type=float, default=20.0, help="seconds between runs")
    p.add_argument("--max-minutes", type=float, default=8.0, help="hard time budget of a run")
    args = p.parse_args(argv)
    if not set(args.paths) <= {"siaga112", "plain"} or not args.paths:
        p.error("--paths takes siaga112 and/or plain")
    check_rates(p, args)
    return args


@contextlib.contextmanager
def _locked(path: Path | None) -> Iterator[None]:
    if path is None:
        yield
        return
    with path.open("a") as fh:
        log(f"waiting for the lock {path}")
        fcntl.flock(fh, fcntl.LOCK_EX)
        log("lock taken")
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summary(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Medians over runs: the ceilings, their ratio, the latencies at the latency rate, and per
    path and rate (steps every run has) the CPU per call and the machine's load."""
    best = [r["highest_sustained_cps"] for r in results]
    lat = [r["latency_step"] for r in results if "latency_step" in r]
    out: dict[str, Any] = {
        "runs": len(results),
        "highest_sustained": {k: [b[k] for b in best] for k in ("siaga112", "plain", "ratio")},
        "median_siaga112": _median([b["siaga112"] for b in best]),
        "median_plain": _median([b["plain"] for b in best]),
        "median_ratio": _median([b["ratio"] for b in best]),
        "latency": {
            "agi_p50_s": _median([x["agi_handling"]["p50_s"] for x in lat]),
            "agi_p99_s": _median([x["agi_handling"]["p99_s"] for x in lat]),
            "invite_to_incident_p50_s": _median([x["invite_to_incident"]["p50_s"] for x in lat]),
            "invite_to_incident_p99_s": _median([x["invite_to_incident"]["p99_s"] for x in lat]),
            "cpu_ms_per_call": _median_cpu([x.get("cpu") or {} for x in lat]),
        },
        "steps": [],
    }
    keys = sorted({(st["variant"], st["rate"]) for r in results for st in r["steps"]})
    for variant, rate in keys:
        same = [st for r in results for st in r["steps"]
                if st["variant"] == variant and st["rate"] == rate]  # fmt: skip
        out["steps"].append(
            {
                "variant": variant,
                "rate": rate,
                "runs": len(same),
                "sustained": sum(1 for st in same if st["sustained"]),
                "achieved_cps": _median([st["achieved_cps"] for st in same]),
                "answer_p99_s": _median([st["answer_p99_s"] for st in same]),
                "cpu_ms_per_call": _median_cpu([st.get("cpu") or {} for st in same]),
            }
        )
    return out


def _median_cpu(cpus: Sequence[dict[str, Any]]) -> dict[str, Any]:
    labels = sorted({k for c in cpus for k in c.get("ms_per_call", {})})
    return {
        "ms_per_call": {k: _median([c["ms_per_call"].get(k) for c in cpus if c]) for k in labels},
        "siaga112_total_ms": _median([c.get("siaga112_total_ms") for c in cpus if c]),
        "asterisk_ms": _median([c.get("asterisk_ms") for c in cpus if c]),
        "machine_busy_pct": _median([c.get("machine_busy_pct") for c in cpus if c]),
        "load_start": _median([c.get("load_start") for c in cpus if c]),
    }


def summary_report(summ: dict[str, Any]) -> str:
    def cps(v: float | None) -> str:
        return "-" if v is None else f"{v:g}"

    def cpu(c: dict[str, Any]) -> str:
        total, ast = c.get("siaga112_total_ms"), c.get("asterisk_ms")
        parts = ", ".join(
            f"{k} {v:.2f}" for k, v in c.get("ms_per_call", {}).items() if v is not None
        )
        both = ""
        if total is not None and ast:
            both = f" | siaga112 {total:.2f} vs Asterisk {ast:.2f}"
        busy, load = c.get("machine_busy_pct"), c.get("load_start")
        busy_text = "-" if busy is None else f"{busy:.1f}"
        load_text = "-" if load is None else f"{load:.2f}"
        return f"{parts}{both}; busy {busy_text}%, load {load_text}"

    hs = summ["highest_sustained"]
    lat = summ["latency"]
    lines = [
        f"MEDIAN OF {summ['runs']} RUNS",
        f"highest sustained siaga112 {hs['siaga112']} -> {cps(summ['median_siaga112'])},"
        f" plain {hs['plain']} -> {cps(summ['median_plain'])}, ratio"
        f" {[None if r is None else round(r, 2) for r in hs['ratio']]} ->"
        f" {'-' if summ['median_ratio'] is None else round(summ['median_ratio'], 2)}",
        f"latency run: AGI p50 {ms(lat['agi_p50_s'])} p99 {ms(lat['agi_p99_s'])};"
        f" INVITE -> incident p50 {ms(lat['invite_to_incident_p50_s'])}"
        f" p99 {ms(lat['invite_to_incident_p99_s'])}",
        f"latency run CPU ms/call: {cpu(lat['cpu_ms_per_call'])}",
        "steps (median over the runs that had them):",
    ]
    for st in summ["steps"]:
        lines.append(
            f"  {st['variant']:8} {st['rate']:5g}/s: sustained in {st['sustained']} of"
            f" {st['runs']}, arrived {st['achieved_cps']:.1f}/s, 200 OK p99"
            f" {ms(st['answer_p99_s'])}"
        )
        lines.append(f"      CPU ms/call: {cpu(st['cpu_ms_per_call'])}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    results: list[dict[str, Any]] = []
    for i in range(args.runs):
        if i:
            log(f"run {i + 1} of {args.runs} in {args.pause:g} s (the lock is free meanwhile)")
            time.sleep(args.pause)
        with _locked(args.lock):
            try:
                results.append(run(args))
            except SystemExit as exc:  # the sandbox stayed busy: the other runs still count
                if args.runs == 1:
                    raise
                log(f"run {i + 1} not done: {exc}")
                continue
        print(report(results[-1]), flush=True)
    if not results:
        raise SystemExit("no run done")
    out: dict[str, Any] = results[0]
    if len(results) > 1:
        summ = summary(results)
        print("\n" + summary_report(summ), flush=True)
        out = {"runs": results, "median": summ}
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=2, default=str) + "\n")
        log(f"JSON written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
