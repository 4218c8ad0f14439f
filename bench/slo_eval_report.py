"""The text report of bench.slo_eval."""

from __future__ import annotations

from typing import Any

from bench import slo_eval_prometheus as prometheus
from bench import slo_eval_rollups as rollups


def render_text(report: dict[str, Any]) -> str:
    cfg = report["config"]
    lines = [
        f"SLO evaluation over per-minute buckets: {cfg['slos']} SLOs on {cfg['slices']} slices, at {cfg['at']} "
        f"(python {cfg['python']}, SQLAlchemy {cfg['sqlalchemy']}; median of {cfg['repeats']} after 1 warm-up)",
        "read = the SELECTs of load_counts, execute + fetch only; evaluate = evaluate_all; "
        "rollups = evaluate_all_from_rollups; wall seconds",
    ]
    lines.append(prometheus.render_header(report["prometheus"]))
    for db in report["databases"]:
        lines.append("")
        if db.get("skipped"):
            lines.append(f"{db['database']}: SKIPPED: {db['skipped']}")
            continue
        f = db["fill"]
        lines.append(
            f"{db['database']}: filled {f['days']} days = {f['sli_buckets_rows']:,} sli_buckets + "
            f"{f['sli_latency_buckets_rows']:,} sli_latency_buckets rows in {f['fill_s']:.1f} s"
        )
        lines.append(f"  plan (latency SLO's query): {db['plan']}")
        base_days = db["runs"][0]["days"]
        grow = f"x {base_days}d"
        lines.extend(rollups.render(db))
        lines.extend(prometheus.render(report["prometheus"], db))
        lines.append(
            f"{'days':>6} {'rows read':>11} {'read s':>8} {'evaluate s':>11} {'eval/read':>10} "
            f"{'rows ' + grow:>10} {'read ' + grow:>10} {'eval ' + grow:>10} {'us/row':>7} "
            f"{'rollups s':>10} {'min/rollup':>10} {'rollup ' + grow:>12}  alerts"
        )
        for r in db["runs"]:
            alerts = f"{len(r['alerts']['page'])} page, {len(r['alerts']['ticket'])} ticket"
            lines.append(
                f"{r['days']:>6} {r['rows_read']:>11,} {r['read_s']:>8.3f} {r['evaluate_s']:>11.3f} "
                f"{r['eval_over_read']:>9.2f}x {r['rows_growth']:>9.2f}x {r['read_growth']:>9.2f}x "
                f"{r['evaluate_growth']:>9.2f}x {r['evaluate_us_per_row']:>7.2f} {r['rollups_s']:>10.4f} "
                f"{r['minutes_over_rollups']:>9.1f}x {r['rollups_growth']:>11.2f}x  {alerts}"
            )
        if db.get("profile"):
            p = db["profile"]
            lines.append(
                f"  cProfile of one evaluate_all at {p['days']} days ({p['profiled_total_s']:.2f} s under the "
                "profiler), top functions by own time:"
            )
            lines.append(f"  {'own s':>7} {'share':>6} {'cum s':>7} {'calls':>10}  function")
            for e in p["top"]:
                lines.append(
                    f"  {e['tottime_s']:>7.3f} {e['share']:>6.1%} {e['cumtime_s']:>7.3f} {e['ncalls']:>10,}  "
                    f"{e['function']}"
                )
    return "\n".join(lines)
