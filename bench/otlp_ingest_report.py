"""The OTLP ingest benchmark's report as text: rates beside parse-only, where the CPU goes, memory."""

from __future__ import annotations

from typing import Any

from bench.otlp_ingest_requests import SPANS_PER_BATCH
from bench.support import fmt


def render_text(report: dict[str, Any]) -> str:
    cfg, pool = report["config"], report["pool"]
    pinned = f"pinned to CPU {cfg['cpu']}" if cfg["cpu"] is not None else "NOT pinned (no sched_setaffinity)"
    lines = [
        f"OTLP trace ingest, one core ({pinned}; {cfg['cpus']} CPUs; python {cfg['python']}, "
        f"protobuf {cfg['protobuf']} [{cfg['protobuf_backend']}])",
        f"pool: {pool['requests']} distinct requests x {pool['spans_per_request']} spans, "
        f"{pool['mean_body_bytes'] / 1024:.0f} KiB each ({pool['bytes_per_span']:.0f} B/span; gzip "
        f"{pool['mean_gzip_bytes'] / 1024:.0f} KiB), {pool['in_slices_share_first_request']:.0%} of spans in a slice, "
        f"built in {pool['generation_s']:.1f} s",
        "",
        f"rates: {cfg['rate_spans']:,} spans per mode "
        f"(whole requests; {cfg['warmup_requests']} warm-up requests first)",
        f"{'mode':<30} {'spans/s cpu':>12} {'spans/s wall':>13} {'x parse-only':>13} {'us cpu/req':>11}",
    ]
    for row in report["rates"]:
        if row.get("skipped"):
            lines.append(f"{row['mode']:<30} SKIPPED: {row['skipped']}")
            continue
        lines.append(
            f"{row['mode']:<30} {fmt(row['spans_per_s_cpu'], ',.0f'):>12} {fmt(row['spans_per_s_wall'], ',.0f'):>13} "
            f"{fmt(row['x_parse_only'], '.3f') + 'x':>13} {fmt(row['us_cpu_per_request'], ',.0f'):>11}"
        )
    lines.append("")
    lines.extend(_ratio_lines(report["rates"], cfg["otel_collector_spans_per_core"]))
    lines.extend(_memory_lines(report.get("memory")))
    return "\n".join(lines)


def _ratio_lines(rows: list[dict[str, Any]], reference: int) -> list[str]:
    out = []
    by_mode = {r["mode"]: r for r in rows if not r.get("skipped")}
    gz, plain = by_mode.get("decode_request (gzip)"), by_mode.get("decode_request")
    if gz and plain:
        extra = gz["us_cpu_per_request"] - plain["us_cpu_per_request"]
        out.append(f"gzip inflate: +{extra:,.0f} us cpu per request ({extra / SPANS_PER_BATCH:.2f} us/span)")
    for row in rows:
        if row.get("skipped") or "stage_cpu_share" not in row:
            continue
        share = "  ".join(f"{k} {v:.0%}" for k, v in row["stage_cpu_share"].items() if row["stage_us_per_request"][k])
        out.append(f"{row['mode']}: {row['x_parse_only']:.3f}x of parse-only; cpu per request: {share}")
        if row.get("server_cpu_us_per_request") is not None:
            server = row["server_cpu_us_per_request"]
            both = row["spans"] / (row["cpu_s"] + server * row["requests"] / 1e6)
            out.append(
                f"  + PostgreSQL backend {server:,.0f} us cpu per request -> {both:,.0f} spans/s per core, both counted"
            )
    full = by_mode.get("full path, SQLite")
    ref = reference
    line = f"reference: OpenTelemetry Collector sizing ~{ref:,} spans/s per core"
    if full and full["spans_per_s_cpu"]:
        line += f"; full path, SQLite = {full['spans_per_s_cpu'] / ref:.2f}x that"
    out.append(line)
    return out


def _mib(kib: int | None) -> float | None:
    return None if kib is None else kib / 1024


def _memory_lines(memory: dict[str, Any] | None) -> list[str]:
    if memory is None:
        return []
    out = [
        "",
        f"memory: {memory['spans']:,} spans through the full path into SQLite (tracemalloc on: slower, not a rate)",
        f"{'at':>7} {'spans':>10} {'rss MiB':>8} {'max rss MiB':>12} {'traced MiB':>11} {'traced peak':>12} "
        f"{'buckets':>8} {'s':>6}",
    ]
    for p in memory["points"]:
        out.append(
            f"{p['at']:>7} {p['spans']:>10,} {fmt(_mib(p['rss_kib']), '.1f'):>8} "
            f"{fmt(_mib(p['max_rss_kib']), '.1f'):>12} "
            f"{fmt(_mib(p['traced_current_kib']), '.2f'):>11} {fmt(_mib(p['traced_peak_kib']), '.2f'):>12} "
            f"{fmt(p['store_buckets'], 'd'):>8} {p['elapsed_s']:>6.1f}"
        )
    growth = memory["rss_growth_kib"]
    out.append(
        f"rss grew {fmt(None if growth is None else growth / 1024, '.1f')} MiB, peak rss "
        f"{memory['max_rss_growth_kib'] / 1024:.1f} MiB, tracemalloc peak of the ingest loop "
        f"{memory['traced_peak_kib'] / 1024:.2f} MiB ({memory['events_in_slices']:,} spans counted into slices)"
    )
    return out
