"""The odds fan-out benchmark's report: p99 lag against the smallest subscriber count, and the text tables."""

from __future__ import annotations

from typing import Any

from bench.support import fmt


def add_ratios(steps: list[dict[str, Any]]) -> None:
    listened = [s for s in steps if s["subscribers"] > 0]
    base = listened[0]["lag_ms"]["p99"] if listened else None
    idle = next((s["publish_round_trip_ms"] for s in steps if s["subscribers"] == 0), None)
    for s in steps:
        p99 = s["lag_ms"]["p99"]
        s["p99_ratio_to_baseline"] = round(p99 / base, 2) if base and p99 is not None and s["subscribers"] else None
        rtt = s["publish_round_trip_ms"]
        for q in ("p50", "p99"):
            ratio = rtt[q] / idle[q] if idle and idle[q] and rtt[q] is not None else None
            s[f"odds_change_{q}_ratio_to_idle"] = None if ratio is None else round(ratio, 2)


def render_text(report: dict[str, Any]) -> str:
    cfg = report["config"]
    lines = [
        f"odds fan-out benchmark: {cfg['rate']:g} price changes/s for {cfg['duration']:g} s per step, "
        f"subscriber queue {cfg['queue']}, drain timeout {cfg['drain_timeout']:g} s, {cfg['cpus']} CPUs, "
        f"machine {fmt(cfg.get('host_busy_before_pct'), '.0f')}% busy before the start",
        "lag = time this process read the event - its published_at (stamped by the server after the commit): "
        "server fan-out + socket + this process's reading/parsing; every event of every subscriber counted",
        "drops = subscribers that got `event: overflow` or were disconnected (srv drop = the server's count); "
        "srv queue = server's mean publish -> dequeue time; cli/srv cpu% = this process / the server "
        "(100 = one core) from the first publish to the last delivery; * = this process used >= 90% of a core",
    ]
    for db in report["databases"]:
        lines.append("")
        if db.get("skipped"):
            lines.append(f"== {db['database']}: SKIPPED ({db['skipped']})")
            continue
        lines.append(f"== {db['database']}  ({db['database_url']})")
        lines.extend(_database_lines(db))
    if cfg["updates_per_step"] < cfg["queue"]:
        lines.append(
            f"note: {cfg['updates_per_step']} updates per step < queue {cfg['queue']}: no subscriber can overflow "
            "in this run however slow it is (raise --rate x --duration or lower --queue to test overflow)"
        )
    for note in report.get("notes", []):
        lines.append(f"note: {note}")
    return "\n".join(lines)


def _database_lines(db: dict[str, Any]) -> list[str]:
    steps = db["steps"]
    lines = [
        f"{'subs':>5} {'conn s':>6} {'pub':>5} {'delivered':>10} {'expected':>10} {'drops':>5} {'srv drop':>8} "
        f"{'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8} {'srv queue':>9} {'cli cpu%':>8} "
        f"{'srv cpu%':>8} {'host%':>6} {'p99 x':>7}",
    ]
    for s in steps:
        lag = s["lag_ms"]
        flag = "*" if s["generator_bound"] else " "
        lines.append(
            f"{s['subscribers']:>5} {s['connect_s']:>6.1f} {s['published']:>5} {s['delivered']:>10} "
            f"{s['expected']:>10} {s['drops']:>5} {s['server_dropped']:>8} "
            f"{fmt(lag['p50']):>8} {fmt(lag['p95']):>8} {fmt(lag['p99']):>8} {fmt(lag['max']):>8} "
            f"{fmt(s['server_queue_mean_ms']):>9} {s['client_cpu_pct']:>7.0f}{flag} "
            f"{fmt(s['server_cpu_pct'], '.0f'):>8} {fmt(s['host_busy_pct'], '.0f'):>6} "
            f"{fmt(s['p99_ratio_to_baseline'], '.2f'):>7}"
        )
    listened = [s for s in steps if s["subscribers"] > 0]
    if listened:
        base = listened[0]
        lines.append("")
        lines.append(
            f"baseline: p99 lag {fmt(base['lag_ms']['p99'])} ms at {base['subscribers']} subscriber(s)"
            + "".join(
                f"; {s['subscribers']} subscribers {fmt(s['p99_ratio_to_baseline'], '.2f')}x" for s in listened[1:]
            )
        )
    if any(s["subscribers"] == 0 for s in steps):
        lines.append(
            "admin odds change (POST round trip) against 0 subscribers: "
            + "; ".join(
                f"{s['subscribers']} subs p50 {fmt(s['publish_round_trip_ms']['p50'])} ms "
                f"({fmt(s['odds_change_p50_ratio_to_idle'], '.2f')}x) p99 {fmt(s['publish_round_trip_ms']['p99'])} ms "
                f"({fmt(s['odds_change_p99_ratio_to_idle'], '.2f')}x)"
                for s in steps
            )
        )
    for s in steps:
        notes = []
        if s["failed_to_connect"]:
            notes.append(f"{s['failed_to_connect']} failed to connect")
        if s["missing"]:
            notes.append(f"{s['missing']} events missing")
        if s["delivered"] > s["expected"]:
            notes.append(f"{s['delivered'] - s['expected']} events more than expected")
        if s["overflows"] or s["disconnects"]:
            notes.append(f"{s['overflows']} overflow(s), {s['disconnects']} disconnect(s)")
        if s["out_of_order"]:
            notes.append(f"{s['out_of_order']} events out of order")
        if s["drain_timed_out"]:
            notes.append("the drain timed out before every subscriber had every update")
        if s["publish_errors"]:
            notes.append(f"publish errors {s['publish_errors']}")
        if s["leftover_subscribers_before"]:
            notes.append(f"{s['leftover_subscribers_before']:g} subscribers of the previous step still on the server")
        if s["generator_bound"]:
            notes.append("this process was CPU-bound: the lag includes its own backlog, not only the server's")
        if s["subscriber_error_samples"]:
            notes.append(f"errors e.g. {s['subscriber_error_samples'][0]}")
        pub, rtt, late = s["publish_latency_ms"], s["publish_round_trip_ms"], s["publisher_send_lag_ms"]
        achieved = s["published"] / s["publish_window_s"] if s["publish_window_s"] else 0.0
        lines.append(
            f"  {s['subscribers']:>4} subs: publish POST round trip p50 {fmt(rtt['p50'])} ms p99 {fmt(rtt['p99'])} "
            f"ms, from schedule p99 {fmt(pub['p99'])} ms (publisher late p99 {fmt(late['p99'])} ms), "
            f"{achieved:.1f} updates/s achieved, "
            f"{s['subscribers_complete']}/{s['connected']} subscribers got every update"
            + (f"; {'; '.join(notes)}" if notes else "")
        )
    for note in db.get("notes", []):
        lines.append(f"note: {note}")
    if db.get("failed"):
        lines.append(f"FAILED: {db['failed']}")
    if db.get("server_log_excerpt"):
        lines.append("server log (warnings/errors, last lines):")
        lines.extend(f"  {line[:300]}" for line in db["server_log_excerpt"])
    return lines
