"""The audit log benchmark's report as text: appends beside plain inserts, verification beside SHA-256,
inclusion proofs as the log grows, the profile, and the reference figure.
"""

from __future__ import annotations

import math
from typing import Any

from bench.support import fmt


def render_text(report: dict[str, Any]) -> str:
    cfg = report["config"]
    lines = [
        f"Audit log benchmark (python {cfg['python']}, SQLAlchemy {cfg['sqlalchemy']}, SQLite {cfg['sqlite']}; "
        f"{cfg['cpus']} CPUs, not pinned; audit/log.py at {cfg['git']})",
        f"entries: money entries with outbox event ids, mean {cfg['mean_entry_bytes'] or '-'} B of canonical JSON",
    ]
    for r in report["backends"]:
        if r.get("skipped"):
            lines.append(f"{r['backend']}: SKIPPED: {r['skipped']}")
            continue
        lines.append(f"{r['backend']}: {r['description']}")
    lines += ["", *_append_lines(report["backends"])]
    lines += ["", *_verify_lines(report["backends"])]
    lines += ["", *_proof_lines(report["backends"], cfg)]
    lines += _profile_lines(report["backends"])
    lines += ["", *_reference_lines(report["backends"], cfg["tessera_writes_per_s"])]
    return "\n".join(lines)


def _append_lines(backends: list[dict[str, Any]]) -> list[str]:
    out = [
        "durable appends: audit log vs plain inserts of the same rows (same engine, same columns and indexes)",
        f"{'backend':<18} {'mode':<15} {'log size':>9} {'entries':>8} {'audit/s':>8} {'plain/s':>9} "
        f"{'audit/plain':>11} {'stmts a/p':>10} {'cpu us/entry a/p':>17}",
    ]
    for r in backends:
        for row in r.get("appends", []):
            a, p = row["audit"], row["plain"]
            out.append(
                f"{r['backend']:<18} {row['mode']:<15} {row['log_size_before']:>9,} {a['entries']:>8,} "
                f"{fmt(a['per_s'], ',.0f'):>8} {fmt(p['per_s'], ',.0f'):>9} {row['audit_over_plain']:>10.3f}x "
                f"{a['statements_per_entry']:>4.2f}/{p['statements_per_entry']:<5.3f} "
                f"{fmt(a['cpu_us_per_entry'], ',.0f'):>8}/{fmt(p['cpu_us_per_entry'], ',.0f'):<8}"
            )
            if "plain_rowwise" in row:
                w = row["plain_rowwise"]
                out.append(
                    f"{'':<18} {'  plain, 1 INSERT per row in the same transactions':<52} {fmt(w['per_s'], ',.0f'):>9} "
                    f"{row['audit_over_plain_rowwise']:>10.3f}x {'':>4} {w['statements_per_entry']:<5.3f} "
                    f"{'':>8} {fmt(w['cpu_us_per_entry'], ',.0f'):<8}"
                )
    out.append(
        "(rates are wall-clock entries/s; audit/plain < 1 means the log is slower; stmts = statements per entry"
        " through SQLAlchemy; a PostgreSQL append adds 1 round trip of 3 pipelined statements per call)"
    )
    return out


def _verify_lines(backends: list[dict[str, Any]]) -> list[str]:
    out = [
        "full verification: log.verify(verifier) vs the Merkle hashing of the same leaves (leaf and node hashes,"
        " from bytes in memory: the floor) and vs hashlib.sha256 over every stored entry text"
    ]
    for r in backends:
        v = r.get("verification")
        if not v:
            continue
        out.append(
            f"{r['backend']:<12} {v['entries']:>9,} entries, {v['checkpoints']} checkpoints: "
            f"verify {v['entries_per_s']:>9,}/s ({v['wall_s']:.1f} s, cpu {v['cpu_s']:.1f} s); "
            f"sha256 {v['sha256_entries_per_s']:>11,}/s ({v['sha256_mib_per_s']:,.0f} MiB/s); "
            f"verify = {v['x_sha256']:.4f}x sha256 ({1 / v['x_sha256']:,.0f} times slower)"
        )
        out.append(f"{'':<12} merkle floor {v['merkle_entries_per_s']:>9,}/s: verify = {v['x_merkle']:.3f}x the floor")
    return out


def _proof_lines(backends: list[dict[str, Any]], cfg: dict[str, Any]) -> list[str]:
    out = [
        f"inclusion proofs: log.inclusion_proof(seq, size), {cfg['proofs']} random leaves per rung "
        "(every proof checked against the root)",
        f"{'backend':<12} {'entries':>10} {'median us':>10} {'p95 us':>8} {'hashes':>7} {'stmts':>6} "
        f"{'time x':>7} {'log2 n x':>9} {'n x':>7} {'checkpoint ms':>14} {'fill/s':>8}",
    ]
    for r in backends:
        proofs = r.get("proofs") or []
        fills = {f["to"]: f for f in r.get("fills", [])}
        for p in proofs:
            base = proofs[0]
            fill = fills.get(p["entries"])
            out.append(
                f"{r['backend']:<12} {p['entries']:>10,} {p['median_us']:>10,.0f} {p['p95_us']:>8,.0f} "
                f"{p['mean_hashes']:>7.1f} {p['mean_statements']:>6.1f} {p['median_us'] / base['median_us']:>6.2f}x "
                f"{math.log2(p['entries']) / math.log2(base['entries']):>8.2f}x "
                f"{p['entries'] / base['entries']:>6,.0f}x {p['checkpoint_ms']:>14,.1f} "
                f"{fmt(fill['per_s'] if fill else None, ',.0f'):>8}"
            )
        if len(proofs) > 1:
            first, last = proofs[0], proofs[-1]
            grew = last["median_us"] / first["median_us"]
            logs = math.log2(last["entries"]) / math.log2(first["entries"])
            verdict = "like log n, not like n" if grew < 3 * logs else "FASTER than log n: look into it"
            out.append(
                f"  {r['backend']}: n grew {last['entries'] / first['entries']:,.0f}x, log2 n {logs:.2f}x, "
                f"statements per proof {last['mean_statements'] / first['mean_statements']:.2f}x, "
                f"median time {grew:.2f}x: grows {verdict}"
            )
        if r.get("rungs_passed"):
            out.append(f"  {r['backend']}: rungs {r['rungs_passed']} skipped: the append modes went past them")
        if r.get("database_mib"):
            out.append(f"  {r['backend']}: database file {r['database_mib']:,.0f} MiB at {r['final_size']:,} entries")
    if cfg["max_entries"] < 10**6:
        out.append(
            f"  (ladder stops at --max-entries {cfg['max_entries']:,}; --max-entries 1000000 adds the 10^6 rung on "
            "SQLite, a few more minutes of filling)"
        )
    out.append("  (fill/s: append_many in batches of --fill-batch, to reach the rung; not a headline rate)")
    return out


def _profile_lines(backends: list[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    for r in backends:
        prof = r.get("profile")
        if not prof:
            continue
        out += [
            "",
            f"where an append's time goes, {r['backend']} (cProfile, {prof['entries']:,} entries in batches of "
            f"{prof['batch']}, {prof['statements_per_entry']:.2f} statements per entry; shares of own time):",
        ]
        out += [f"  {share:>6.1%}  {name}" for name, share in prof["shares"].items() if share >= 0.001]
        out.append("  top functions by own time:")
        out += [
            f"  {t['share']:>6.1%} {t['us_per_entry']:>7.2f} us/entry {t['calls']:>9,} calls  {t['function']}"
            for t in prof["top_own_time"]
        ]
    return out


def _reference_lines(backends: list[dict[str, Any]], ref: int) -> list[str]:
    out = [f"reference: Tessera (Trillian's successor) publishes about {ref:,} writes/s on local disk"]
    for r in backends:
        for row in r.get("appends", []):
            rate = row["audit"]["per_s"]
            out.append(f"  {r['backend']:<18} {row['mode']:<15} {rate:>8,}/s = {rate / ref:.2f}x that")
    out.append("  (another system measured another way: for scale only)")
    return out
