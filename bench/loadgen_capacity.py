"""Benchmark: the load generator's highest sustained rate against GET /v1/health, beside wrk on the same server.

    .venv/bin/python -m bench.loadgen_capacity              # 5 s per step
    .venv/bin/python -m bench.loadgen_capacity --quick      # 2 s per step (about 30 s)
    .venv/bin/python -m bench.loadgen_capacity --format json

One platform server (`controlplane platform serve`, its own process, SQLite; /v1/health touches no
database). First `wrk` (Debian's package: the reference load tool, written in C) drives GET /v1/health
with `--wrk-connections` connections for `--seconds`: its requests/s is the server's ceiling on this
machine. Then our generator (`controlplane platform load --mix health`, in this process: open model,
steady profile) is offered a ladder of rates, as fractions of wrk's rate. A step is "sustained" when
at least 95% of what was offered got a 2xx, nothing was dropped at the in-flight limit (the server
kept up), and the generator launched fewer than 1% of its arrivals late (the generator kept up);
"best" is the highest 2xx rate of any step. wrk runs once more at the end, to show how
much the machine's state moved during the run.

How to read it: "generator / wrk" is our highest sustained rate over wrk's rate, both against the
same server in the same run. Both share the machine's cores with the server, so a generator that
costs more CPU per request also leaves the server less: the ratio is what a user of ours gets,
not the server's absolute ceiling. The CPU columns say who was busy: our generator (in % of one
core) and the server.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.support import BenchmarkParser, CpuMark, CpuUse, PlatformServer, emit, fmt, log, setup_logging
from sample_platform.loadgen import LoadConfig, run_load_async

LADDER = (0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.2)
WITHOUT_WRK_RPS = 1000.0  # the ladder's reference when wrk is missing
SUSTAINED_OK_SHARE = 0.95
SUSTAINED_LATE_SHARE = 0.01


def run_wrk(url: str, seconds: float, connections: int) -> dict[str, Any]:
    started = time.monotonic()
    done = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", f"{url}/v1/health"],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    )
    match = re.search(r"Requests/sec:\s+([0-9.]+)", done.stdout)
    if done.returncode != 0 or not match:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout[-500:]} {done.stderr[-500:]}")
    return {"rps": float(match.group(1)), "seconds": round(time.monotonic() - started, 2)}


def run_step(server: PlatformServer, rate: float, args: argparse.Namespace) -> dict[str, Any]:
    config = LoadConfig(
        server.url,
        "steady",
        args.seconds,
        rate,
        None,
        mix="health",
        sse_subscribers=0,
        max_connections=args.connections,
        request_timeout=5.0,
    )
    start = CpuMark.now(server)
    report = asyncio.run(run_load_async(config))
    use = CpuUse.between(start, CpuMark.now(server))
    out = report.to_dict()
    route = out["routes"].get("GET /v1/health", {"ok": 0})
    offered = out["arrivals"] / args.seconds
    ok_rate = route["ok"] / args.seconds
    late_share = out["generator_late_arrivals"] / max(1, out["arrivals"])
    sustained = (
        ok_rate >= SUSTAINED_OK_SHARE * offered
        and out["dropped_by_generator"] == 0
        and late_share < SUSTAINED_LATE_SHARE
    )
    return {
        "target_rate": round(rate, 1),
        "offered_rate": round(offered, 1),
        "ok_rate": round(ok_rate, 1),
        "dropped": out["dropped_by_generator"],
        "late_share": round(late_share, 4),
        "start_lag_p99_ms": out["generator_start_lag_ms"]["p99"],
        "latency_p99_ms": route.get("latency_ms", {}).get("p99"),
        "generator_cpu": round(use.client, 3),
        "server_cpu": None if use.server is None else round(use.server, 3),
        "sustained": sustained,
    }


def bench(args: argparse.Namespace) -> dict[str, Any]:
    have_wrk = shutil.which("wrk") is not None
    if not have_wrk:
        log.warning("wrk is not installed (`apt-get install wrk`): the generator's ladder runs alone, no ratio")
    with tempfile.TemporaryDirectory(prefix="bench-loadgen-") as tmp:
        workdir = Path(tmp)
        with PlatformServer(f"sqlite:///{workdir / 'platform.db'}", workdir) as server:
            wrk_before = wrk_after = None
            if have_wrk:
                log.info("wrk: %s s against %s/v1/health", args.seconds, server.url)
                start = CpuMark.now(server)
                wrk_before = run_wrk(server.url, args.seconds, args.wrk_connections)
                wrk_before["server_cpu"] = CpuUse.between(start, CpuMark.now(server)).server
            reference = wrk_before["rps"] if wrk_before else WITHOUT_WRK_RPS
            steps = []
            for share in LADDER:
                rate = share * reference
                log.info("generator: %.0f req/s offered (%.2f of %s)", rate, share, "wrk" if wrk_before else "1,000/s")
                steps.append(run_step(server, rate, args))
            if have_wrk:
                wrk_after = run_wrk(server.url, args.seconds, args.wrk_connections)
    sustained = max((s["ok_rate"] for s in steps if s["sustained"]), default=0.0)
    best = max((s["ok_rate"] for s in steps), default=0.0)
    base = wrk_before["rps"] if wrk_before else None
    return {
        "benchmark": "loadgen_capacity",
        "python": sys.version.split()[0],
        "seconds_per_step": args.seconds,
        "wrk_before": wrk_before,
        "wrk_after": wrk_after,
        "steps": steps,
        "generator_sustained_rps": sustained,
        "generator_best_rps": best,
        "ratio_sustained_to_wrk": round(sustained / base, 3) if base else None,
        "ratio_best_to_wrk": round(best / base, 3) if base else None,
    }


def render_text(r: dict[str, Any]) -> str:
    wrk = r["wrk_before"]
    lines = [
        f"wrk against GET /v1/health: {wrk['rps']:.0f} req/s (server {_pct(wrk['server_cpu'])}% of a core); "
        f"again at the end: {r['wrk_after']['rps']:.0f} req/s"
        if wrk
        else "wrk is not installed (apt-get install wrk): no reference rate, so no ratio; the ladder used 1,000/s",
        "",
        f"{'offered/s':>10}{'2xx/s':>9}{'dropped':>9}{'late %':>8}{'lag p99 ms':>12}{'p99 ms':>9}"
        f"{'gen cpu':>9}{'srv cpu':>9}  sustained",
    ]
    for s in r["steps"]:
        lines.append(
            f"{s['offered_rate']:>10.0f}{s['ok_rate']:>9.0f}{s['dropped']:>9}{100 * s['late_share']:>8.1f}"
            f"{fmt(s['start_lag_p99_ms']):>12}{fmt(s['latency_p99_ms']):>9}"
            f"{100 * s['generator_cpu']:>8.0f}%{_pct(s['server_cpu']):>8}%"
            f"  {'yes' if s['sustained'] else 'no'}"
        )
    lines += [
        "",
        f"generator sustained {r['generator_sustained_rps']:.0f} req/s = "
        f"{fmt(r['ratio_sustained_to_wrk'], '.2f')}x wrk (best 2xx rate {r['generator_best_rps']:.0f} req/s = "
        f"{fmt(r['ratio_best_to_wrk'], '.2f')}x)",
    ]
    return "\n".join(lines)


def _pct(share: float | None) -> str:
    return fmt(None if share is None else 100 * share, ".0f")


def main(argv: list[str] | None = None) -> int:
    parser = BenchmarkParser("bench.loadgen_capacity", __doc__, {"seconds": 2.0})
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds of each step and of each wrk run (5)")
    parser.add_argument("--connections", type=int, default=256, help="the generator's connections (256)")
    parser.add_argument("--wrk-connections", type=int, default=64, help="wrk's connections (64)")
    args = parser.parse(argv)
    setup_logging()
    started = time.monotonic()
    emit(bench(args), args.format, render_text, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
