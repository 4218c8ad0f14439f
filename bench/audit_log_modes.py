"""The audit log benchmark's measurements: filling the log, inclusion proofs, full verification, durable
appends beside plain inserts of the same rows, and where an append's time goes.
"""

from __future__ import annotations

import cProfile
import hashlib
import os
import pstats
import random
import statistics
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Table, func, insert, select

from audit.merkle import leaf_hash, verify_inclusion
from audit.note import NoteSigner
from audit.schema import entries
from bench.audit_log_workload import COLUMNS, Backend, MoneyEntries, Timing, audit_rows, plain, plain_rowwise
from bench.support import Clock, log, percentile

WARMUP_PROOFS = 10
ROUNDS = 3  # each append mode: this many blocks of audit appends, each followed by its plain inserts
VERIFY_ROUNDS = 5  # verification and its floor, in turns


# ----------------------------------------------------------------------------------------- fill


def fill_to(b: Backend, items: MoneyEntries, target: int, batch: int) -> dict[str, Any] | None:
    size = b.log.size()
    if size >= target:
        return None
    log.info(f"[{b.name}] filling {size:,} -> {target:,} entries (append_many, batches of {batch:,}) ...")
    timing = Timing()
    while size < target:
        chunk = items.batch(min(batch, target - size), event_ids=False)  # no dedup lookup: faster
        with timing.timed(b.counter, len(chunk)):
            b.log.append_many(chunk)
        size += len(chunk)
    return {"from": size - timing.entries, "to": size, "batch": batch, **timing.summary()}


# --------------------------------------------------------------------------------------- proofs


def proof_rung(b: Backend, size: int, samples: int, rng: random.Random) -> dict[str, Any]:
    t0 = time.perf_counter()
    b.log.checkpoint()
    checkpoint_ms = (time.perf_counter() - t0) * 1e3
    assert b.log.size() == size, "the log is not at the rung's size"
    for seq in rng.sample(range(size), min(WARMUP_PROOFS, size)):
        b.log.inclusion_proof(seq, size)
    seqs = [rng.randrange(size) for _ in range(samples)]
    times: list[float] = []
    stmts: list[int] = []
    proofs: list[list[bytes]] = []
    for seq in seqs:
        s0 = b.counter.count
        t0 = time.perf_counter()
        proof = b.log.inclusion_proof(seq, size)
        times.append(time.perf_counter() - t0)
        stmts.append(b.counter.count - s0)
        proofs.append(proof)
    # Not timed: every proof must lead from its stored entry to the root of the tree.
    root = b.log.root(size)
    with b.engine.connect() as conn:
        texts = dict(conn.execute(select(entries.c.seq, entries.c.entry).where(entries.c.seq.in_(set(seqs)))).all())
    for seq, proof in zip(seqs, proofs, strict=True):
        verify_inclusion(leaf_hash(texts[seq].encode()), seq, size, proof, root)
    times.sort()
    p95 = percentile(times, 95)
    assert p95 is not None
    return {
        "entries": size,
        "samples": samples,
        "median_us": round(statistics.median(times) * 1e6, 1),
        "p95_us": round(p95 * 1e6, 1),
        "mean_hashes": round(statistics.fmean(len(p) for p in proofs), 2),
        "mean_statements": round(statistics.fmean(stmts), 2),
        "max_statements": max(stmts),
        "checkpoint_ms": round(checkpoint_ms, 1),
        "proofs_checked": len(proofs),
    }


# ---------------------------------------------------------------------------------- verification


def verification(b: Backend, signer: NoteSigner) -> dict[str, Any]:
    log.info(f"[{b.name}] full verification ...")
    if b.engine.dialect.name == "postgresql":
        # As autovacuum would after the bulk load, and so that it does not start during the timed runs:
        # the new rows' visibility settled and the tables' statistics taken; then the pages written.
        with b.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE audit_entries, audit_nodes")
            conn.exec_driver_sql("CHECKPOINT")
    # The bulk load's writes reach the disk now, not while verification is timed (the kernel's writeback
    # of them would otherwise take CPU from the timed runs).
    os.sync()
    with b.engine.connect() as conn:
        data = [t.encode("utf-8") for t in conn.execute(select(entries.c.entry).order_by(entries.c.seq)).scalars()]
    sha256 = hashlib.sha256
    h0 = time.perf_counter()
    for blob in data:
        sha256(blob).digest()
    hash_s = time.perf_counter() - h0
    # Verification and its floor take turns, the best of each kept: a spell in which this machine runs
    # slower (other tenants, clock frequency) falls on both alike, not on one of them.
    wall = cpu = merkle_s = float("inf")
    for _ in range(VERIFY_ROUNDS):
        clock = Clock()
        with clock.measure():
            result = b.log.verify(signer.verifier)
        if not result.ok:
            raise RuntimeError(f"verification failed on a log nobody tampered with: {result}")
        wall, cpu = min(wall, clock.wall), min(cpu, clock.cpu)
        merkle_s = min(merkle_s, _merkle_floor(data))
    verify_rate, hash_rate, merkle_rate = result.entries / wall, len(data) / hash_s, len(data) / merkle_s
    return {
        "entries": result.entries,
        "checkpoints": result.checkpoints,
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "entries_per_s": round(verify_rate),
        "sha256_entries_per_s": round(hash_rate),
        "sha256_mib_per_s": round(sum(map(len, data)) / hash_s / 2**20, 1),
        "mean_entry_bytes": round(sum(map(len, data)) / len(data)),
        "x_sha256": round(verify_rate / hash_rate, 5),
        "merkle_entries_per_s": round(merkle_rate),
        "x_merkle": round(verify_rate / merkle_rate, 4),
    }


def _merkle_floor(data: list[bytes]) -> float:
    """Seconds to hash the same leaves into their Merkle tree (RFC 9162 leaf and node hashes, every
    complete subtree once) from bytes in memory: what verification cannot go below. The faster of two
    ways, each run once: leaf by leaf onto a stack of subtrees, and level by level over
    aligned runs of 4,096 leaves (list comprehensions, fewer interpreter steps per hash; the few hashes
    above the runs left out)."""
    sha256 = hashlib.sha256

    def by_leaf() -> None:
        stack: list[tuple[int, bytes]] = []
        for blob in data:
            level, current = 0, sha256(b"\x00" + blob).digest()
            while stack and stack[-1][0] == level:
                current = sha256(b"\x01" + stack.pop()[1] + current).digest()
                level += 1
            stack.append((level, current))

    def by_level() -> None:
        for start in range(0, len(data), 4096):
            level = [sha256(b"\x00" + blob).digest() for blob in data[start : start + 4096]]
            while len(level) > 1:
                level = [sha256(b"\x01" + a + b).digest() for a, b in zip(level[::2], level[1::2], strict=False)]

    best = float("inf")
    for way in (by_leaf, by_level):
        h0 = time.perf_counter()
        way()
        best = min(best, time.perf_counter() - h0)
    return best


# --------------------------------------------------------------------------------------- appends


def _plain_single(engine: Engine, rows: list[dict[str, Any]]) -> None:
    with engine.begin() as conn:
        conn.execute(insert(plain), rows[0])


def _plain_many(engine: Engine, rows: list[dict[str, Any]]) -> None:
    with engine.begin() as conn:
        conn.execute(insert(plain), rows)


def _plain_rowwise(engine: Engine, rows: list[dict[str, Any]]) -> None:
    with engine.begin() as conn:
        for row in rows:
            conn.execute(insert(plain_rowwise), row)


def _next_seq(engine: Engine, table: Table) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.coalesce(func.max(table.c.seq), -1))).scalar_one() + 1


def _align_plain(b: Backend) -> None:
    """Give the plain tables the rows of audit_entries they lack: all three tables the same size."""
    for table in (plain, plain_rowwise):
        start = _next_seq(b.engine, table)
        source = select(*[entries.c[c] for c in COLUMNS]).where(entries.c.seq >= start)
        with b.engine.begin() as conn:
            conn.execute(insert(table).from_select(COLUMNS, source))


def _checkpoint_wal(engine: Engine) -> None:
    """SQLite: move the WAL into the database file now (not timed), so a block pays for its own writes."""
    if engine.dialect.name != "sqlite":
        return
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        cursor.close()
    finally:
        raw.close()


def append_mode(b: Backend, items: MoneyEntries, batch: int | None, seconds: float) -> dict[str, Any]:
    """About `seconds` of audit appends (one at a time when batch is None) in ROUNDS blocks, each block
    followed by the very same rows as plain inserts, in calls (and transactions) of the same size."""
    label = "one at a time" if batch is None else f"batches of {batch}"
    log.info(f"[{b.name}] appends, {label} ...")
    n = batch or 1

    def audit_call(chunk: list[dict[str, Any]]) -> list[Any]:
        if batch is None:
            return [b.log.append(**chunk[0])]
        return b.log.append_many(chunk)

    audit, plain_t, rowwise_t = Timing(), Timing(), Timing()
    steps = [(plain_t, _plain_single if batch is None else _plain_many)]
    if batch is not None:
        steps.append((rowwise_t, _plain_rowwise))
    for block in range(ROUNDS + 1):  # block 0 warms up (one call each), not timed
        _checkpoint_wal(b.engine)
        first: int | None = None
        last = -1
        timing = audit if block else Timing()
        target = audit.wall + seconds / ROUNDS
        while (audit.wall < target) if block else first is None:
            chunk = items.batch(n)
            with timing.timed(b.counter, n):
                done = audit_call(chunk)
            if any(d.duplicate for d in done):
                raise RuntimeError("an entry was skipped as a duplicate event: the event ids are not unique")
            first = done[0].seq if first is None else first
            last = done[-1].seq
        assert first is not None
        rows = audit_rows(b.engine, first, last)  # the very rows the log stored
        if len(rows) != last - first + 1:
            raise RuntimeError(f"expected {last - first + 1} audit rows from seq {first}, read {len(rows)}")
        for t, step in steps:
            _checkpoint_wal(b.engine)
            t = t if block else Timing()
            for i in range(0, len(rows), n):
                with t.timed(b.counter, n):
                    step(b.engine, rows[i : i + n])

    out: dict[str, Any] = {"mode": label, "batch": n, "audit": audit.summary(), "plain": plain_t.summary()}
    out["audit_over_plain"] = round(out["audit"]["per_s"] / out["plain"]["per_s"], 4)
    if batch is not None:
        out["plain_rowwise"] = rowwise_t.summary()
        out["audit_over_plain_rowwise"] = round(out["audit"]["per_s"] / out["plain_rowwise"]["per_s"], 4)
    return out


def append_modes(b: Backend, items: MoneyEntries, seconds: float, modes: tuple[int | None, ...]) -> list[dict]:
    _align_plain(b)
    start_size = b.log.size()
    rows = []
    for batch in modes:
        row = append_mode(b, items, batch, seconds)
        row["log_size_before"] = start_size
        rows.append(row)
        _align_plain(b)
    return rows


# --------------------------------------------------------------------------------------- profile

BUCKETS = (
    "SQLAlchemy (statement build, cache key, execute)",
    "driver + database (sqlite3 / psycopg, incl. waits)",
    "JSON (canonical_json, json)",
    "SHA-256 (hashlib)",
    "audit log code",
    "engine hooks (controlplane/storage.py)",
    "other (stdlib, datetime, ...)",
)


def _bucket(key: tuple[str, int, str]) -> str | None:
    """The bucket of a profiled function; None for a builtin whose time goes to its callers."""
    filename, _, name = key
    where = f"{filename}:{name}"
    if "sqlalchemy" in filename:
        return BUCKETS[0]
    if "psycopg" in where or "sqlite3" in where:
        return BUCKETS[1]
    if "sha256" in name or "hashlib" in where:
        return BUCKETS[3]
    if "audit/canonical.py" in filename or "/json/" in filename or "_json" in name:
        return BUCKETS[2]
    if "audit/" in filename:
        return BUCKETS[4]
    if "controlplane/storage.py" in filename:
        return BUCKETS[5]
    if filename == "~":
        return None
    return BUCKETS[6]


def _shares(stats: pstats.Stats) -> dict[str, float]:
    raw: dict = stats.stats  # type: ignore[attr-defined]
    seconds = dict.fromkeys(BUCKETS, 0.0)

    def charge(key: tuple[str, int, str], amount: float, depth: int = 0) -> None:
        bucket = _bucket(key)
        if bucket is not None or depth > 5:
            seconds[bucket or BUCKETS[6]] += amount
            return
        callers = raw[key][4]
        total = sum(c[2] for c in callers.values()) if callers else 0.0
        if not total:
            seconds[BUCKETS[6]] += amount
            return
        for caller, c in callers.items():  # a builtin's own time, split as its callers spent it
            charge(caller, amount * c[2] / total, depth + 1)

    for key, (_cc, _nc, tt, _ct, _callers) in raw.items():
        charge(key, tt)
    whole = sum(seconds.values()) or 1.0
    return {k: round(v / whole, 3) for k, v in seconds.items()}


def profile_appends(b: Backend, items: MoneyEntries, entries_n: int, batch: int = 512) -> dict[str, Any]:
    log.info(f"[{b.name}] profiling {entries_n:,} appends in batches of {batch} ...")
    chunks = [items.batch(batch) for _ in range(max(1, entries_n // batch))]
    s0 = b.counter.count
    profiler = cProfile.Profile()
    t0 = time.perf_counter()
    profiler.enable()
    for chunk in chunks:
        b.log.append_many(chunk)
    profiler.disable()
    wall = time.perf_counter() - t0
    n = len(chunks) * batch
    stats = pstats.Stats(profiler)
    raw: dict = stats.stats  # type: ignore[attr-defined]
    total_tt = sum(v[2] for v in raw.values()) or 1.0
    top = sorted(raw.items(), key=lambda kv: kv[1][2], reverse=True)[:10]
    return {
        "entries": n,
        "batch": batch,
        "wall_s_profiled": round(wall, 3),
        "statements_per_entry": round((b.counter.count - s0) / n, 3),
        "shares": _shares(stats),
        "top_own_time": [
            {
                "function": f"{Path(k[0]).name if k[0] != '~' else ''}:{k[1]}({k[2]})".lstrip(":0"),
                "calls": v[1],
                "share": round(v[2] / total_tt, 3),
                "us_per_entry": round(v[2] / n * 1e6, 2),
            }
            for k, v in top
        ],
    }
