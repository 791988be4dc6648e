"""Surge benchmark: how many 112 calls per second the real stack sustains, with and without the
siaga112 step, on this machine (``python -m bench.surge``, ``make bench-surge``).

One run, about six minutes with the defaults (see bench/README.md for what it does and how the
figures are defined):

1. a database of its own (``siaga112_bench``, dropped and re-created), the Asterisk sandbox with
   the benchmark numbers (``PbxSettings.bench_numbers``), one SIPp operator phone (6001) that
   answers every call at once, and ``siaga112 serve`` as a subprocess;
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
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.realstack import (
    CdrTail,
    Step,
    add_stack_arguments,
    agi_quantiles,
    bench_main,
    bench_stack,
    check_rates,
    log,
    ms,
    q,
    run_step,
    step_caller,
    wait_for_incidents,
)
from siaga112.config import Settings
from siaga112_sandbox import pbx

DEFAULT_RATES = (25, 50, 100, 150, 200, 250, 300)
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
    seconds: float,
    hold_ms: int,
    patience: int,
    deadline: float,
) -> list[Step]:
    steps: list[Step] = []
    misses = 0
    for index, rate in enumerate(rates):
        if time.monotonic() + seconds + hold_ms / 1000 + 15 > deadline:
            log(f"{variant}: time budget spent; ramp stops before {rate:g}/s")
            break
        caller = step_caller(digit, index)
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
        )
        log(step.line().strip())
        steps.append(step)
        misses = 0 if step.sustained else misses + 1
        if misses >= patience:
            break
    return steps


def highest_sustained(steps: Sequence[Step]) -> float | None:
    """The highest offered rate sustained, with every lower step sustained too."""
    best: float | None = None
    for step in steps:
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
        )
        log(latency.line().strip())
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
        agi_steps = ramp(
            settings,
            cdr,
            workdir,
            scenario=scenario,
            variant="siaga112",
            number=pbx.BENCH_AGI_NUMBER,
            digit=9,
            rates=args.rates,
            seconds=args.step_seconds,
            hold_ms=hold_ms,
            patience=args.patience,
            # leave the plain ramp its time
            deadline=deadline - len(args.rates) * (args.step_seconds + args.hold + 8),
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
        plain_steps = ramp(
            settings,
            cdr,
            workdir,
            scenario=scenario,
            variant="plain",
            number=pbx.BENCH_PLAIN_NUMBER,
            digit=8,
            rates=args.rates,
            seconds=args.step_seconds,
            hold_ms=hold_ms,
            patience=args.patience,
            deadline=deadline,
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
        *(st.line() for st in steps),
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
        "",
        f"at {lat['rate']:g} calls/s for {lat['seconds']:g} s ({lat['planned']} calls,"
        f" {lat['sipp_successful']} ok, {lat['sipp_failed']} failed,"
        f" {lat['with_incident']} with incident id in the dialplan):",
        f"  AGI handling (service /metrics, {int(agi['samples'] or 0)} requests):"
        f" p50 {s(agi['p50_s'])}, p90 {s(agi['p90_s'])}, p99 {s(agi['p99_s'])}"
        " (goal p99 <= 20 ms)",
        f"  INVITE -> committed incident ({inc['samples']} calls): p50 {s(inc['p50_s'])},"
        f" p99 {s(inc['p99_s'])}, max {s(inc['max_s'])} (goal p99 <= 100 ms)",
        f"    measured as {inc['method']}",
        f"  INVITE -> 200 OK at SIPp: p50 {s(lat['answer_p50_s'])}, p99 {s(lat['answer_p99_s'])}",
        f"AGI handling over the ramp (last {int(ramp_agi['samples'] or 0)} requests):"
        f" p50 {s(ramp_agi['p50_s'])}, p99 {s(ramp_agi['p99_s'])};"
        f" over budget {int(ramp_agi['over_budget'] or 0)},"
        f" write failures {int(ramp_agi['write_failed'] or 0)}",
        f"calls through the siaga112 path: {calls['calls_in_cdr']} in Asterisk's CDR,"
        f" with incident by source {calls['with_incident_by_source']},"
        f" WITHOUT incident: {calls['without_incident']} (must be 0)",
        f"service log: {result.get('service_log_lines', '?')} lines; CDR: {result['cdr']}",
        f"elapsed {result['elapsed_s']} s",
    ]
    return "\n".join(lines)


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
    p.add_argument("--max-minutes", type=float, default=9.0, help="hard time budget")
    args = p.parse_args(argv)
    check_rates(p, args)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    return bench_main(parse_args(argv), run, report)


if __name__ == "__main__":
    sys.exit(main())
