"""Derby night for the bet placement benchmark: the load generator's derby-night profile against the
server the ladder ran on, then GET /v1/health's closed-loop ceiling on it, and their ratio.
"""

from __future__ import annotations

import argparse
from itertools import pairwise
from typing import Any

import httpx

from bench.bet_placement_load import closed_step, settle
from bench.support import CpuMark, CpuUse, PlatformServer, fmt
from sample_platform.loadgen import BETS, MIX, PEAK_FACTOR, LoadConfig, rate_at, render_table, run_load_async


def _interpolate(samples: list[tuple[float, int]], t: float) -> float:
    """Accepted bets so far at `t` s into the run, from the generator's progress samples."""
    if not samples:
        return 0.0
    if t <= samples[0][0]:
        return float(samples[0][1])
    for (t0, v0), (t1, v1) in pairwise(samples):
        if t0 <= t <= t1:
            return v0 + (v1 - v0) * ((t - t0) / (t1 - t0) if t1 > t0 else 1.0)
    return float(samples[-1][1])


def peak_window(profile: str, duration: float, rate: float) -> tuple[float, float]:
    """Start and end (s into the run) of the stretch where the profile offers its peak rate."""
    peak = PEAK_FACTOR * rate
    at_peak = [i / 10 for i in range(int(duration * 10)) if rate_at(profile, i / 10, duration, rate) >= peak * 0.999]
    return (at_peak[0], at_peak[-1] + 0.1) if at_peak else (0.0, duration)


async def run_derby(server: PlatformServer, args: argparse.Namespace) -> dict[str, Any]:
    """The load generator's derby-night profile against `server`, then GET /v1/health's ceiling there."""

    def new_client() -> httpx.AsyncClient:
        limits = httpx.Limits(max_connections=args.max_connections, max_keepalive_connections=args.max_connections)
        return httpx.AsyncClient(base_url=server.url, limits=limits, timeout=httpx.Timeout(args.timeout))

    async with new_client() as client:
        await settle(client, args.settle, server)  # the ladder's backlog must not land in the derby run
    config = LoadConfig(
        server.url,
        "derby-night",
        args.derby_duration,
        args.derby_rate,
        server.admin_token,
        players=args.derby_players,
        seed=args.derby_seed,
        request_timeout=args.timeout,
    )
    samples: list[tuple[float, int]] = []
    marks: dict[str, CpuMark] = {}  # the clocks when each phase of the run began

    def progress(elapsed: float, snap: dict) -> None:
        phase = snap["phase"]
        if phase not in marks:
            marks[phase] = CpuMark.now(server)
        if phase in ("load", "draining"):
            samples.append((elapsed, snap["bets_accepted"]))

    report = await run_load_async(config, progress=progress)
    d = report.to_dict()
    d.pop("accepted_bet_ids", None)
    out: dict[str, Any] = {"report": d, "table": render_table(report)}

    # Server CPU and the machine's load while the load ran (from the start of the load phase to settling).
    if "load" in marks and "settling" in marks:
        use = CpuUse.between(marks["load"], marks["settling"])
        if use.server is not None:
            out["server_cpu_pct"] = round(100 * use.server, 1)
        if use.host is not None:
            out["host_busy_pct"] = round(100 * use.host, 1)

    start, end = peak_window("derby-night", args.derby_duration, args.derby_rate)
    bet_share = dict(MIX)["bet"]
    accepted_peak = (_interpolate(samples, end) - _interpolate(samples, start)) / (end - start)
    best5 = 0.0
    if samples and samples[-1][0] > 5:
        t = samples[0][0]
        while t + 5 <= samples[-1][0]:
            best5 = max(best5, (_interpolate(samples, t + 5) - _interpolate(samples, t)) / 5)
            t += 0.25
    bets = d["routes"].get(BETS, {"errors": {}, "sent": 0})
    errors_503 = {k: v for k, v in bets["errors"].items() if k.startswith("503")}
    mean_rate = report.bets_accepted / report.elapsed if report.elapsed else 0.0

    ceiling = None
    if server.alive():
        async with new_client() as client:
            await settle(client, args.settle, server)
        async with new_client() as client:
            step = await closed_step(
                client,
                concurrency=args.health_concurrency,
                duration=max(args.ceiling_duration, 3.0),
                timeout=args.timeout,
                server=server,
            )
        ceiling = step.as_dict()
    health = ceiling["ok_per_s"] if ceiling else None
    out["summary"] = {
        "peak_window_s": [round(start, 1), round(end, 1)],
        "offered_bets_per_s_at_peak": round(bet_share * PEAK_FACTOR * args.derby_rate, 1),
        "offered_req_per_s_at_peak": round(PEAK_FACTOR * args.derby_rate, 1),
        "accepted_bets_per_s_at_peak": round(accepted_peak, 1),
        "accepted_bets_per_s_best_5s": round(best5, 1),
        "accepted_bets_per_s_mean": round(mean_rate, 1),
        "bets_accepted": report.bets_accepted,
        "bets_unknown": report.bets_unknown,
        "bet_attempts": bets["sent"],
        "bet_latency_ms": d["bet_latency_ms"],
        "bet_503": sum(errors_503.values()),
        "bet_503_by_kind": errors_503,
        "health_ceiling_per_s": health,
        "health_ceiling": ceiling,
        "ratio_peak_to_health": round(accepted_peak / health, 4) if health else None,
        "ratio_mean_to_health": round(mean_rate / health, 4) if health else None,
    }
    return out


def derby_line(s: dict[str, Any]) -> str:
    lat = s["bet_latency_ms"]
    kinds = ", ".join(f"{k}: {v}" for k, v in sorted(s["bet_503_by_kind"].items())) or "none"
    return (
        f"derby summary: peak ({s['peak_window_s'][0]:g}-{s['peak_window_s'][1]:g} s) accepted "
        f"{s['accepted_bets_per_s_at_peak']:.1f} bets/s of {s['offered_bets_per_s_at_peak']:g} offered "
        f"(best 5 s {s['accepted_bets_per_s_best_5s']:.1f}, run mean {s['accepted_bets_per_s_mean']:.1f}); "
        f"bet p50 {fmt(lat['p50'])} ms p99 {fmt(lat['p99'])} ms; 503 on bets {s['bet_503']} ({kinds}); "
        f"health ceiling {fmt(s['health_ceiling_per_s'])} req/s -> accepted/health "
        f"peak {fmt(s['ratio_peak_to_health'], '.3f')}, mean {fmt(s['ratio_mean_to_health'], '.3f')}"
    )
