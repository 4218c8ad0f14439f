"""Benchmark: the audit log (audit/log.py) beside plain inserts of the same rows, plain SHA-256 of the
same bytes, and itself at growing sizes.

    .venv/bin/python -m bench.audit_log                          # SQLite + PostgreSQL, proofs up to 10^5
    .venv/bin/python -m bench.audit_log --quick                  # proofs up to 10^4, 1 s per append mode
    .venv/bin/python -m bench.audit_log --max-entries 1000000    # adds the 10^6 rung on SQLite (~4.5 min in all)
    .venv/bin/python -m bench.audit_log --skip-postgres --format json > result.json

Entries: realistic money entries, generated outside the timed calls: kind "money", actor
"wallet-relay", subject "bet:<id>", an outbox event id (so every append also pays the log's event-id
dedup lookup), and a payload of a bet placement or settlement: bet id, account hash (SHA-256 hex),
stake in minor units, currency, odds as a decimal string, potential payout or payout in minor units,
market and selection. About 480 bytes of canonical JSON each once the log adds seq, time and prev_hash.

What is measured, per backend (SQLite: a fresh file through `make_engine("sqlite:///...")`, WAL with
the product's synchronous=NORMAL; PostgreSQL: a fresh schema of $CONTROLPLANE_TEST_POSTGRES_URL,
reached with `?options=-csearch_path=<schema>` and dropped at the end, skipped with a note if it does
not answer):

  1. Inclusion proofs. The log is filled with `append_many` in large batches of the same entries
     without event ids ("fill": no dedup lookup; its rate is printed, not a headline figure) to
     10^4, 10^5 and 10^6 (up to --max-entries; PostgreSQL stops at --postgres-max-entries, 10^5 by
     default, so 10^6 is SQLite only); at each rung a checkpoint is signed, then the median
     and p95 over --proofs random leaves of `log.inclusion_proof(seq, size)` (one call = one pooled
     connection + the stored-subtree lookups), the proof length and the SQL statements per proof.
     Every timed proof is then checked against the tree root (not timed). With stored subtree hashes
     a proof costs O(log n) lookups; the table prints the time growth beside the growth of log2 n
     and of n.
  2. Full verification at the 10^5 rung (or the last rung below it): `log.verify(signer.verifier)`
     (hash every stored entry, check its place, every stored leaf and inner node and every checkpoint
     signature) in entries/s, beside the Merkle floor: the leaf and node hashes of the same entries'
     bytes, already in memory, the faster of two ways ("x merkle" = verify rate / floor rate), and
     beside hashing every stored entry text once with hashlib.sha256 ("x sha256"). Verification and
     the floor take turns, 5 rounds, the best of each kept, so that a slow spell of the machine falls
     on both. Before them, PostgreSQL's two tables are vacuumed and analysed, as autovacuum would
     after the bulk load (so that it does not start during the timed runs), and checkpointed, and the
     bulk load's writes are synced to disk (their writeback would otherwise take CPU from the runs).
  3. Durable appends, on the log as it stands (10^5 entries by default), each mode for about
     --seconds of audit appends (whole calls) in 3 blocks. After each block, the very same rows (read
     back from audit_entries, not timed) go in as plain inserts through the same engine, in calls
     of the same size, into tables with the same columns and indexes as audit_entries that hold the
     same rows before each mode. On SQLite the WAL is checkpointed (not timed) before every block, so
     each block pays for checkpointing its own writes and none of another's:
       one at a time      `log.append(...)`, one transaction and commit each;
                          plain: one `INSERT` per transaction (`plain_entries`).
       batches of 64/512  `log.append_many(batch)`, one transaction per batch (group commit);
                          plain: one executemany `INSERT` per transaction of the same rows
                          (`plain_entries`), and, shown beside it, one `INSERT` statement per row
                          in the same transactions (`plain_entries_rowwise`).
     "audit/plain" is the audit rate over the plain rate, measured in the same run. SQLite also gets a
     synchronous=FULL file (an fsync per commit, i.e. durable against power loss, which NORMAL is not)
     for the one-at-a-time mode. Rates are wall-clock; "cpu us" is this process's CPU time per entry
     (PostgreSQL's own backend CPU is not in it). "stmts" counts statements executed through SQLAlchemy
     per entry (an executemany counts once); on PostgreSQL an append also sends its lock and its two
     reads as one pipeline on the driver's connection (3 statements, 1 round trip), not counted there.
  4. Where an append's time goes: cProfile over --profile-entries more appends in batches of 512,
     own time grouped into SQLAlchemy, the driver and database, JSON, SHA-256, the log's own code and
     the rest (builtins are charged to whoever called them), plus the top functions. The profiler's
     overhead inflates Python-heavy parts; the shares, not the times, are the figure.

A reference line gives Tessera's (Trillian's successor) published ~2,900 writes/s on local disk; it is
another system measured another way, printed for scale only. The process is not pinned: PostgreSQL
runs on the same (2-core) machine and needs a core of its own.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy

from audit.note import NoteSigner
from bench.audit_log_modes import append_modes, fill_to, profile_appends, proof_rung, verification
from bench.audit_log_report import render_text
from bench.audit_log_workload import ORIGIN, Backend, MoneyEntries, prepare, sqlite_engine, sqlite_pragma
from bench.postgres import ScratchSchema, postgres_skip_reason
from bench.support import REPO, BenchmarkParser, emit, log, setup_logging
from controlplane.storage import make_engine

TESSERA_WRITES_PER_S = 2_900  # Tessera (Trillian's successor), published figure on local disk
BATCHES = (64, 512)
VERIFY_AT = 100_000  # full verification runs at this rung, or the last rung below it
QUICK = {
    "max_entries": 10_000,
    "postgres_max_entries": 10_000,
    "seconds": 1.0,
    "proofs": 50,
    "profile_entries": 2048,
}


# ------------------------------------------------------------------------------------------ runs


def rungs_for(max_entries: int) -> list[int]:
    rungs = [10**k for k in range(4, 13) if 10**k <= max_entries]
    if not rungs or rungs[-1] != max_entries:
        rungs.append(max_entries)
    return rungs


def run_backend(b: Backend, signer: NoteSigner, args: argparse.Namespace, rungs: list[int]) -> dict[str, Any]:
    items = MoneyEntries(args.seed)
    rng = random.Random(args.seed + 1)
    verify_at = max([r for r in rungs if r <= VERIFY_AT] or [rungs[0]])
    out: dict[str, Any] = {"backend": b.name, "description": b.description, "fills": [], "proofs": []}

    def climb(upto: int) -> None:
        for rung in rungs:
            if rung > upto or any(p["entries"] == rung for p in out["proofs"]):
                continue
            if b.log.size() > rung:
                out.setdefault("rungs_passed", []).append(rung)  # the append modes went past it
                continue
            fill = fill_to(b, items, rung, args.fill_batch)
            if fill is not None:
                out["fills"].append(fill)
            log.info(f"[{b.name}] inclusion proofs at {rung:,} entries ...")
            out["proofs"].append(proof_rung(b, rung, args.proofs, rng))
            if rung == verify_at:
                out["verification"] = verification(b, signer)

    climb(verify_at)
    modes: tuple[int | None, ...] = (None, *BATCHES)
    out["appends"] = append_modes(b, items, args.seconds, modes)
    if not args.skip_profile:
        out["profile"] = profile_appends(b, items, args.profile_entries)
    climb(rungs[-1])  # the larger rungs, on top of what the appends added
    out["final_size"] = b.log.size()
    return out


def run_sqlite_full(workdir: Path, signer: NoteSigner, args: argparse.Namespace) -> dict[str, Any]:
    engine = sqlite_engine(workdir / "full-sync.db", synchronous="FULL")
    try:
        b = prepare("SQLite sync=FULL", engine, signer, "")
        b.description = (
            f"SQLite {sqlite3.sqlite_version}, fresh file, journal_mode={sqlite_pragma(engine, 'journal_mode')}, "
            f"synchronous={sqlite_pragma(engine, 'synchronous')} (2 = FULL: fsync per commit)"
        )
        return {
            "backend": b.name,
            "description": b.description,
            "appends": append_modes(b, MoneyEntries(args.seed + 7), args.seconds, (None,)),
        }
    finally:
        engine.dispose()


def run_all(args: argparse.Namespace, workdir: Path) -> list[dict[str, Any]]:
    signer = NoteSigner.generate(ORIGIN)
    results = []
    engine = sqlite_engine(workdir / "audit.db")
    try:
        b = prepare("SQLite", engine, signer, "")
        b.description = (
            f"SQLite {sqlite3.sqlite_version}, file in {workdir.parent}, "
            f"journal_mode={sqlite_pragma(engine, 'journal_mode')}, "
            f"synchronous={sqlite_pragma(engine, 'synchronous')} (1 = NORMAL, the product's: a commit "
            "survives a process crash, not necessarily a power cut)"
        )
        results.append(run_backend(b, signer, args, rungs_for(args.max_entries)))
        results[-1]["database_mib"] = round(sum(p.stat().st_size for p in workdir.glob("audit.db*")) / 2**20, 1)
    finally:
        engine.dispose()
    if not args.skip_full_sync:
        results.append(run_sqlite_full(workdir, signer, args))
    why = postgres_skip_reason(args)
    if why is not None:
        results.append({"backend": "PostgreSQL", "skipped": why})
        return results
    with ScratchSchema(args.postgres_url, "bench_audit") as schema:
        s = schema.show("server_version", "fsync", "synchronous_commit", "wal_sync_method")
        engine = make_engine(schema.url)
        try:
            b = prepare(
                "PostgreSQL",
                engine,
                signer,
                f"PostgreSQL {s['server_version']}, fresh schema {schema.name}, fsync={s['fsync']}, "
                f"synchronous_commit={s['synchronous_commit']}, wal_sync_method={s['wal_sync_method']}",
            )
            pg_max = min(args.max_entries, args.postgres_max_entries)
            results.append(run_backend(b, signer, args, rungs_for(pg_max)))
        finally:
            engine.dispose()
    return results


# ------------------------------------------------------------------------------------------ main


def _git_state() -> str:
    """The last commit of audit/log.py, and whether the log's code has changes not yet committed."""

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, check=True).stdout

    try:
        head = git("log", "-1", "--format=%h", "--", "audit/log.py").strip()
        dirty = git("status", "--porcelain", "--", "audit/log.py", "audit/schema.py").strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" + local changes" if dirty else "")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = BenchmarkParser("bench.audit_log", __doc__, QUICK)
    parser.add_argument(
        "--max-entries",
        type=int,
        default=100_000,
        help="largest rung of the proof ladder: 10^4, 10^5, ... up to this (default 100,000;\n"
        "1000000 adds 10^6 on SQLite: ~3-4 more minutes of filling on a 2-core machine)",
    )
    parser.add_argument(
        "--postgres-max-entries", type=int, default=100_000, help="PostgreSQL's ladder stops here (default 100,000)"
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="audit appends per append mode, s (default 3)")
    parser.add_argument("--proofs", type=int, default=200, help="random leaves per rung (default 200)")
    parser.add_argument("--fill-batch", type=int, default=2048, help="append_many batch size of the fill (2048)")
    parser.add_argument("--profile-entries", type=int, default=10_240, help="appends profiled (default 10,240)")
    parser.add_argument("--skip-profile", action="store_true", help="no cProfile breakdown")
    parser.add_argument("--skip-full-sync", action="store_true", help="no SQLite synchronous=FULL row")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    args = parser.parse(argv)
    if args.max_entries < 100 or args.postgres_max_entries < 100:
        parser.error("--max-entries and --postgres-max-entries must be at least 100")
    if args.proofs < 1 or args.seconds <= 0 or args.fill_batch < 1 or args.profile_entries < 512:
        parser.error("--proofs, --seconds and --fill-batch must be positive, --profile-entries at least 512")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-audit-") as tmp:
        backends = run_all(args, Path(tmp))
    sizes = [b["verification"]["mean_entry_bytes"] for b in backends if b.get("verification")]
    report: dict[str, Any] = {
        "config": {
            "python": platform.python_version(),
            "sqlalchemy": sqlalchemy.__version__,
            "sqlite": sqlite3.sqlite_version,
            "cpus": os.cpu_count(),
            "git": _git_state(),
            "max_entries": args.max_entries,
            "postgres_max_entries": args.postgres_max_entries,
            "seconds_per_mode": args.seconds,
            "proofs": args.proofs,
            "fill_batch": args.fill_batch,
            "mean_entry_bytes": sizes[0] if sizes else None,
            "tessera_writes_per_s": TESSERA_WRITES_PER_S,
        },
        "backends": backends,
    }
    emit(report, args.format, render_text, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
