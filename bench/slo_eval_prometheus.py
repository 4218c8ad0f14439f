"""The peer of bench.slo_eval's store: Prometheus's TSDB holding the same counts, backfilled with Debian's
`promtool tsdb create-blocks-from openmetrics`, and its bytes on disk beside the store's.

The counts of `bench.slo_eval.day_chunks` become, per slice, the six series a Prometheus-instrumented
service would export for them: `sli_events_total`, `sli_bad_events_total` and the cumulative latency
buckets `sli_latency_seconds_bucket{le=...}` (0.1, 0.5, 1.0, +Inf), each a counter sampled once a minute at
the end of its minute. promtool cuts them into its default two-hour blocks; "TSDB bytes" is every file of
every block (chunks, index, meta.json, tombstones). The store's side is its minute tables and rollup
tables with their indexes (`slo_eval_rollups.store_sizes`): the SLI store a user keeps. "x TSDB" is the
store's bytes over the TSDB's, measured in the same run from the same counts.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from array import array
from datetime import timedelta
from pathlib import Path
from typing import Any

PROMTOOL = shutil.which("promtool")
LATENCY_BOUNDS = ("0.1", "0.5", "1.0", "+Inf")


def _series(days: int, seed: int) -> tuple[dict[tuple[str, str, str], array], array]:
    """Cumulative counts per series, (family, slice, le) -> one value per minute; and the minutes' end
    times (Unix seconds)."""
    from bench.slo_eval import AT, LE_LABELS, day_chunks  # the fill's own generator (and its import cycle)

    assert LE_LABELS == LATENCY_BOUNDS, "the latency buckets of the fill and of the TSDB must be the same"
    series: dict[tuple[str, str, str], array] = {}
    running: dict[tuple[str, str, str], int] = {}
    times = array("q")
    first = AT - timedelta(days=days)

    def add(key: tuple[str, str, str], value: int) -> None:
        running[key] = running.get(key, 0) + value
        series.setdefault(key, array("q")).append(running[key])

    for day, (buckets, latency) in enumerate(day_chunks(days, seed)):
        for m in range(1440):
            times.append(int((first + timedelta(days=day, minutes=m + 1)).timestamp()))
        for row in buckets:
            add(("sli_events_total", row["slice"], ""), row["total"])
            add(("sli_bad_events_total", row["slice"], ""), row["bad"])
        cumulative: dict[tuple[str, object], int] = {}
        for row in latency:  # per-bucket counts, in le order within a slice-minute: made cumulative
            key = (row["slice"], row["minute"])
            cumulative[key] = cumulative.get(key, 0) + row["count"]
            add(("sli_latency_seconds_bucket", row["slice"], row["le"]), cumulative[key])
    return series, times


def write_openmetrics(path: Path, days: int, seed: int) -> dict[str, int]:
    """The counts as OpenMetrics text: each family's series one after another, each in time order."""
    series, times = _series(days, seed)
    families = {
        "sli_events_total": ("sli_events", "counter"),
        "sli_bad_events_total": ("sli_bad_events", "counter"),
        "sli_latency_seconds_bucket": ("sli_latency_seconds", "histogram"),
    }
    samples = 0
    with path.open("w") as out:
        for sample_name, (family, kind) in families.items():
            out.write(f"# TYPE {family} {kind}\n")
            for (name, slice_name, le), values in sorted(series.items()):
                if name != sample_name:
                    continue
                labels = f'slice="{slice_name}"' + (f',le="{le}"' if le else "")
                out.writelines(f"{name}{{{labels}}} {v} {t}\n" for v, t in zip(values, times, strict=True))
                samples += len(values)
        out.write("# EOF\n")
    return {"series": len(series), "samples": samples}


def backfill(days: int, seed: int) -> dict[str, Any]:
    """Prometheus's TSDB of `days` days of the fill's counts: its bytes, blocks, series and samples."""
    if PROMTOOL is None:
        return {"skipped": "promtool not installed (apt-get install prometheus)"}
    with tempfile.TemporaryDirectory(prefix="bench-tsdb-") as tmp:
        text, blocks = Path(tmp) / "counts.om", Path(tmp) / "data"
        started = time.perf_counter()
        written = write_openmetrics(text, days, seed)
        done = subprocess.run(
            [PROMTOOL, "tsdb", "create-blocks-from", "openmetrics", "--quiet", str(text), str(blocks)],
            capture_output=True,
            text=True,
            timeout=1800,
        )
        if done.returncode != 0:
            return {"skipped": f"promtool failed ({done.returncode}): {(done.stderr or done.stdout)[-500:]}"}
        files = [p for p in blocks.rglob("*") if p.is_file()]
        return {
            "promtool": subprocess.run([PROMTOOL, "--version"], capture_output=True, text=True).stdout.split("\n")[0],
            "days": days,
            **written,
            "openmetrics_bytes": text.stat().st_size,
            "blocks": len({p.relative_to(blocks).parts[0] for p in files}),
            "tsdb_bytes": sum(p.stat().st_size for p in files),
            "backfill_s": round(time.perf_counter() - started, 1),
        }


def compare(prometheus: dict[str, Any], sizes: dict[str, Any]) -> dict[str, Any]:
    """The store's bytes beside the TSDB's, per table and in all."""
    if "tsdb_bytes" not in prometheus:
        return {}
    store = sizes["minute_tables_bytes"] + sizes["rollup_tables_bytes"]
    return {
        "store_bytes": store,
        "tsdb_bytes": prometheus["tsdb_bytes"],
        "x_tsdb": round(store / prometheus["tsdb_bytes"], 2),
        "tables_x_tsdb": {t: round(b / prometheus["tsdb_bytes"], 2) for t, b in sizes["tables"].items()},
    }


def render(prometheus: dict[str, Any], db: dict[str, Any]) -> list[str]:
    mib = 1024 * 1024
    if "tsdb_bytes" not in prometheus:
        return [f"  Prometheus TSDB: SKIPPED: {prometheus.get('skipped')}"]
    c = db["vs_prometheus"]
    tables = ", ".join(f"{t} {b / mib:.2f}" for t, b in db["sizes"]["tables"].items() if b)
    return [
        f"  SLI store {c['store_bytes'] / mib:.2f} MiB beside Prometheus's TSDB {c['tsdb_bytes'] / mib:.2f} MiB "
        f"for the same {prometheus['days']} days: {c['x_tsdb']:.2f}x TSDB",
        f"  store tables (MiB): {tables}",
    ]


def render_header(prometheus: dict[str, Any]) -> str:
    if "tsdb_bytes" not in prometheus:
        return f"Prometheus TSDB: SKIPPED: {prometheus.get('skipped')}"
    p = prometheus
    return (
        f"Prometheus TSDB ({p['promtool']}): {p['days']} days, {p['series']} series, {p['samples']:,} samples "
        f"in {p['blocks']} blocks of {p['tsdb_bytes'] / 1024 / 1024:.2f} MiB (backfilled in {p['backfill_s']} s "
        f"from {p['openmetrics_bytes'] / 1024 / 1024:.0f} MiB of OpenMetrics)"
    )
