"""The bet placement benchmark's report: ratios of accepted bets to health requests, and the text tables."""

from __future__ import annotations

from typing import Any

from bench.bet_placement_derby import derby_line
from bench.support import fmt, percentile


def _errors_text(errors: dict[str, int]) -> str:
    return ", ".join(f"{k}:{v}" for k, v in errors.items()) or "-"


def _step_header(ok_label: str) -> str:
    return (
        f"{'rate/s':>7} {'sent':>6} {'wire':>6} {'commit':>6} {ok_label:>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
        f"{'max ms':>8} "
        f"{'lag p99':>8} {'cli cpu%':>8} {'srv cpu%':>8} {'host%':>6} {'srv ms/req':>10} {'drain s':>7}  errors"
    )


def _step_row(s: dict[str, Any]) -> str:
    lat = s["latency_ok"]
    rate = "closed" if s["rate_offered"] is None else format(s["rate_offered"], "g")
    flag = "*" if s["generator_bound"] else " "
    return (
        f"{rate:>7} {s['sent']:>6} {s['on_wire']:>6} {fmt(s['server_placed'], 'd'):>6} {s['ok_per_s']:>8.1f} "
        f"{fmt(lat['p50_ms']):>8} {fmt(lat['p95_ms']):>8} {fmt(lat['p99_ms']):>8} {fmt(lat['max_ms']):>8} "
        f"{fmt(s['send_lag_p99_ms']):>8} {fmt(s['client_cpu_pct'], '.0f'):>7}{flag} "
        f"{fmt(s['server_cpu_pct'], '.0f'):>8} {fmt(s['host_busy_pct'], '.0f'):>6} "
        f"{fmt(s['server_cpu_ms_per_request'], '.2f'):>10} "
        f"{fmt(s.get('settle_s')):>7}  "
        f"{_errors_text(s['errors'])}"
    )


def render_text(report: dict[str, Any]) -> str:
    lines: list[str] = []
    cfg = report["config"]
    parts = [] if cfg["skip_ladder"] else [f"rate ladder {', '.join(format(r, 'g') for r in cfg['rates'])} req/s"]
    if not cfg["skip_derby"]:
        parts.append(
            f"derby night {cfg['derby_duration_s']:g} s at baseline {cfg['derby_rate']:g} req/s "
            f"(peak {cfg['derby_peak_rate']:g}), {cfg['derby_players']} players"
        )
    lines.append(
        f"bet placement benchmark: {' + '.join(parts)}; deadline {cfg['timeout_s']:g} s, "
        f"{cfg['cpus']} CPUs, machine {fmt(cfg.get('host_busy_before_pct'), '.0f')}% busy before the start"
    )
    if not cfg["skip_ladder"]:
        lines.append(
            f"ladder: {cfg['duration_s']:g} s per step, stake {cfg['stake_minor']} minor units; "
            "open model: request i is due at t0 + i/rate; latency is from its scheduled send time to completion; "
            "accepted = HTTP 201 only; percentiles over the step's successful responses; "
            "wire = of those sent on schedule, how many the client put on a connection (the rest waited in its pool); "
            "commit = bets the server committed for the step (counted in the database, incl. answers nobody waited for)"
        )
        lines.append(
            "lag = how late the generator started a request; cli/srv cpu% = this process / the server process "
            "(100 = one core; PostgreSQL's own CPU is not in srv); "
            "host% = share of all the machine's cores busy (generator, server and database share them); "
            "srv ms/req = server CPU per request it received; "
            "drain = wait after the step until the server was idle again; * = generator-bound (cli cpu >= 90%)"
        )
    if not cfg["skip_derby"]:
        lines.append(
            "derby: the load generator's derby-night profile (open model, Poisson arrivals; mix 10% logins, 40% odds "
            "reads, 10% wallet reads, 40% bets with retries) on the same server (after the ladder); bet latency is "
            "scheduled -> final answer, retries included; peak = the stretch offering 15x the baseline; "
            "health ceiling = closed-loop GET /v1/health on the same server right after the derby run"
        )
    any_generator_bound = False
    for db in report["databases"]:
        lines.append("")
        if db.get("skipped"):
            lines.append(f"== {db['database']}: SKIPPED ({db['skipped']})")
            continue
        if db.get("failed"):
            lines.append(f"== {db['database']}  ({db['database_url']}): FAILED: {db['failed']}")
            continue
        ladder = "" if cfg["skip_ladder"] else f"; ladder {db['players']} players, {db['selections']} selections"
        lines.append(f"== {db['database']}  ({db['database_url']}{ladder})")
        if not cfg["skip_ladder"]:
            any_generator_bound |= _render_ladder(lines, db, cfg)
        derby = db.get("derby")
        if derby is not None:
            lines.append("")
            lines.append(f"-- {db['database']}: derby night (load generator, same server)")
            if derby.get("failed"):
                lines.append(f"FAILED: {derby['failed']}")
            else:
                lines.append(derby["table"])
                s = derby["summary"]
                srv = f"server cpu {fmt(derby.get('server_cpu_pct'), '.0f')}% of a core while loaded"
                lines.append(f"{srv}, machine {fmt(derby.get('host_busy_pct'), '.0f')}% busy")
                if s["health_ceiling"]:
                    c = s["health_ceiling"]
                    lines.append(
                        f"health ceiling right after ({cfg['health_concurrency']} in flight, {c['duration_s']:g} s): "
                        f"{c['ok_per_s']:.1f} req/s, cli cpu {fmt(c['client_cpu_pct'], '.0f')}%, "
                        f"srv cpu {fmt(c['server_cpu_pct'], '.0f')}%"
                        + ("  (generator-bound: a lower bound)" if c["generator_bound"] else "")
                    )
                lines.append(derby_line(s))
        if db.get("server_exited_during_run") is not None:
            lines.append(f"  the server EXITED during the run with code {db['server_exited_during_run']}")
        if db.get("server_log_excerpt"):
            lines.append("  server log (warnings/errors, last lines):")
            lines.extend(f"    {line[:300]}" for line in db["server_log_excerpt"])
    if any_generator_bound:
        lines.append("")
        lines.append(
            "* the load generator used >= 90% of a core in that step: the figure is what this single Python "
            "process could drive, not the server's limit"
        )
    return "\n".join(lines)


def _render_ladder(lines: list[str], db: dict[str, Any], cfg: dict[str, Any]) -> bool:
    """The rate ladder's tables; True when any step was generator-bound."""
    any_generator_bound = False
    lines.append("POST /v1/bets")
    lines.append(_step_header("acc/s"))
    lines.extend(_step_row(s) for s in db["bets"])
    lines.append("GET /v1/health (same rates; then the closed-loop ceiling)")
    lines.append(_step_header("ok/s"))
    lines.extend(_step_row(s) for s in db["health"])
    c = db["health_ceiling"]
    if c:
        lines.append(_step_row(c) + f"   <- ceiling: {cfg['health_concurrency']} in flight, {c['duration_s']:g} s")
    any_generator_bound |= any(s["generator_bound"] for s in [*db["bets"], *db["health"], *([c] if c else [])])
    lines.append("ratio: accepted bets/s / health req/s at the same offered rate")
    lines.append(
        f"{'rate/s':>7} {'bets/s':>8} {'health/s':>9} {'ratio':>7}  {'bets p99':>9} {'health p99':>10} "
        f"{'srv cpu ms/req bets : health':>29}"
    )
    for r in db["ratios"]:
        lines.append(
            f"{r['rate_offered']:>7g} {r['bets_per_s']:>8.1f} {r['health_per_s']:>9.1f} "
            f"{fmt(r['ratio'], '.3f'):>7}  {fmt(r['bets_p99_ms']):>9} {fmt(r['health_p99_ms']):>10} "
            f"{fmt(r['bets_srv_cpu_ms'], '.2f'):>14} : {fmt(r['health_srv_cpu_ms'], '.2f'):<12}"
        )
    if db.get("peak"):
        p = db["peak"]
        lines.append(
            f"peak: {p['bets_per_s']:.1f} accepted bets/s (at {p['at_rate']:g}/s offered) / health ceiling "
            f"{fmt(p['health_ceiling_per_s'])} req/s = {fmt(p['ratio'], '.3f')}"
            + (" (ceiling is generator-bound: a lower bound)" if c and c["generator_bound"] else "")
        )
        if p.get("cpu_ratio") is not None:
            lines.append(
                f"server CPU per request: bets {p['bets_srv_cpu_ms']:.2f} ms, "
                f"health {p['health_srv_cpu_ms']:.2f} ms "
                f"-> a CPU-bound server would place ~{p['cpu_ratio']:.3f} bets per health request "
                f"(~{p['cpu_bound_bets_per_s']:.0f} bets/s on one core)"
            )
    for kind in ("bets", "health"):
        for s in db[kind]:
            for status, samples in s["error_samples"].items():
                lines.append(f"  {kind} @ {s['rate_offered']:g}/s {status} e.g.: {samples[0][:300]}")
    return any_generator_bound


def _median(values: list[float]) -> float | None:
    ordered = sorted(values)
    return percentile(ordered, 50)


def add_ratios(db: dict[str, Any]) -> None:
    ratios = []
    for b, h in zip(db["bets"], db["health"], strict=False):
        ratios.append(
            {
                "rate_offered": b["rate_offered"],
                "bets_per_s": b["ok_per_s"],
                "health_per_s": h["ok_per_s"],
                "ratio": round(b["ok_per_s"] / h["ok_per_s"], 4) if h["ok_per_s"] else None,
                "bets_p99_ms": b["latency_ok"]["p99_ms"],
                "health_p99_ms": h["latency_ok"]["p99_ms"],
                "bets_srv_cpu_ms": b["server_cpu_ms_per_request"],
                "health_srv_cpu_ms": h["server_cpu_ms_per_request"],
            }
        )
    db["ratios"] = ratios
    if db["bets"]:
        best = max(db["bets"], key=lambda s: s["ok_per_s"])
        ceiling = db["health_ceiling"]["ok_per_s"] if db["health_ceiling"] else None
        peak: dict[str, Any] = {
            "bets_per_s": best["ok_per_s"],
            "at_rate": best["rate_offered"],
            "health_ceiling_per_s": ceiling,
            "ratio": round(best["ok_per_s"] / ceiling, 4) if ceiling else None,
        }
        # Server CPU per request, the median over the steps (the lowest rates are noisy; the figure is stable).
        bets_cpu = _median([s["server_cpu_ms_per_request"] for s in db["bets"] if s["server_cpu_ms_per_request"]])
        health_steps = [*db["health"], *([db["health_ceiling"]] if db["health_ceiling"] else [])]
        health_cpu = _median([s["server_cpu_ms_per_request"] for s in health_steps if s["server_cpu_ms_per_request"]])
        if bets_cpu and health_cpu:
            peak.update(
                bets_srv_cpu_ms=round(bets_cpu, 3),
                health_srv_cpu_ms=round(health_cpu, 3),
                cpu_ratio=round(health_cpu / bets_cpu, 4),
                cpu_bound_bets_per_s=round(1000 / bets_cpu, 1),
            )
        db["peak"] = peak
