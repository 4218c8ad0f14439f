"""Benchmark: the audit log (audit/log.py) beside plain inserts of the same rows, plain SHA-256 of the
same bytes, and itself at growing sizes.

    .venv/bin/python bench/audit_log.py                          # SQLite + PostgreSQL, proofs up to 10^5
    .venv/bin/python bench/audit_log.py --max-entries 1000000    # adds the 10^6 rung on SQLite (~4.5 min in all)
    .venv/bin/python bench/audit_log.py --skip-postgres --format json > result.json

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
     (re-canonicalise and hash every entry, check the chain, every stored leaf node, every inner node
     and every checkpoint signature), in entries/s, beside hashing every stored entry text once with
     hashlib.sha256 from a list of bytes already in memory. "x sha256" = verify rate / hash rate.
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
     (PostgreSQL's own backend CPU is not in it). "stmts" counts statements executed per entry (an
     executemany counts once).
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
import cProfile
import hashlib
import json
import math
import os
import platform
import pstats
import random
import secrets
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import sqlalchemy  # noqa: E402
from sqlalchemy import (  # noqa: E402
    BigInteger,
    Column,
    DateTime,
    Engine,
    Index,
    MetaData,
    String,
    Table,
    Text,
    event,
    func,
    insert,
    select,
    text,
)

from audit.log import AuditLog  # noqa: E402
from audit.merkle import leaf_hash, verify_inclusion  # noqa: E402
from audit.note import NoteSigner  # noqa: E402
from audit.schema import entries, migrate_audit  # noqa: E402
from bench.postgres import postgres_reachable  # noqa: E402
from bench.postgres import redact as _redact  # noqa: E402
from controlplane.storage import make_engine, normalise_url  # noqa: E402

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
ORIGIN = "bench.example/betting-audit"
TESSERA_WRITES_PER_S = 2_900  # Tessera (Trillian's successor), published figure on local disk
BATCHES = (64, 512)
VERIFY_AT = 100_000  # full verification runs at this rung, or the last rung below it
WARMUP_PROOFS = 10
ROUNDS = 3  # each append mode: this many blocks of audit appends, each followed by its plain inserts


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------- data

MARKETS = ("football.epl.ars-che", "football.laliga.rma-bar", "tennis.wimbledon.r16-3", "basketball.nba.bos-lal")
SELECTIONS = ("home", "draw", "away", "over_2.5", "under_2.5", "player_a", "player_b")
ODDS = tuple(f"{Decimal(n) / 1000:.3f}" for n in range(1_050, 15_000, 25))


class MoneyEntries:
    """Endless money entries (bet placed / settled) with unique outbox event ids, from one seed."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.made = 0
        self.run = secrets.token_hex(3)  # event ids unique across runs too

    def one(self, event_id: bool = True) -> dict[str, Any]:
        rng = self.rng
        self.made += 1
        bet_id = f"bet_{rng.getrandbits(80):020x}"
        stake = rng.choice((100, 200, 500, 1_000, 2_000, 2_500, 5_000, 10_000, rng.randrange(100, 250_000)))
        odds = rng.choice(ODDS)
        potential = int((Decimal(stake) * Decimal(odds)).to_integral_value(ROUND_DOWN))
        payload: dict[str, Any] = {
            "bet_id": bet_id,
            "account": hashlib.sha256(f"acct-{rng.randrange(2_000_000)}".encode()).hexdigest(),
            "stake_minor": stake,
            "currency": "EUR",
            "odds": odds,
            "market_id": rng.choice(MARKETS),
            "selection": rng.choice(SELECTIONS),
        }
        if rng.random() < 0.6:
            payload["event"] = "bet.placed"
            payload["potential_payout_minor"] = potential
        else:
            payload["event"] = "bet.settled"
            payload["result"] = rng.choice(("won", "lost", "lost", "void"))
            payload["payout_minor"] = {"won": potential, "lost": 0, "void": stake}[payload["result"]]
        item = {"kind": "money", "actor": "wallet-relay", "subject": f"bet:{bet_id}", "payload": payload}
        if event_id:
            item["event_id"] = f"outbox:{self.run}:{self.made:010d}"
        return item

    def batch(self, n: int, event_ids: bool = True) -> list[dict[str, Any]]:
        return [self.one(event_ids) for _ in range(n)]


# ------------------------------------------------------------------------------------ plain table

plain_metadata = MetaData()


def _plain_table(name: str) -> Table:
    """A table with the same columns and indexes as audit_entries, and no log behind it."""
    return Table(
        name,
        plain_metadata,
        Column("seq", BigInteger, primary_key=True, autoincrement=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("kind", String(32), nullable=False),
        Column("actor", String(200), nullable=False),
        Column("subject", String(200), nullable=False),
        Column("event_id", String(64), nullable=True, unique=True),
        Column("entry", Text, nullable=False),
        Column("leaf_hash", String(64), nullable=False),
        Index(f"ix_{name}_subject", "subject"),
    )


plain = _plain_table("plain_entries")  # executemany per transaction (or one row per transaction)
plain_rowwise = _plain_table("plain_entries_rowwise")  # one INSERT statement per row, same transactions
COLUMNS = [c.name for c in plain.columns]


def audit_rows(engine: Engine, first: int, last: int) -> list[dict[str, Any]]:
    """The rows the log stored for seqs [first, last], as plain-table rows."""
    with engine.connect() as conn:
        result = conn.execute(select(*entries.c).where(entries.c.seq.between(first, last)).order_by(entries.c.seq))
        return [dict(r._mapping) for r in result]


# --------------------------------------------------------------------------------------- counting


class Statements:
    """Counts statements the engine executes (an executemany counts once)."""

    def __init__(self, engine: Engine) -> None:
        self.count = 0

        @event.listens_for(engine, "before_cursor_execute")
        def _count(*_args: Any) -> None:
            self.count += 1


@dataclass
class Timing:
    entries: int = 0
    calls: int = 0
    wall: float = 0.0
    cpu: float = 0.0
    statements: int = 0

    @contextmanager
    def timed(self, counter: Statements, n: int) -> Iterator[None]:
        s0, w0, c0 = counter.count, time.perf_counter(), time.process_time()
        yield
        self.cpu += time.process_time() - c0
        self.wall += time.perf_counter() - w0
        self.statements += counter.count - s0
        self.entries += n
        self.calls += 1

    def summary(self) -> dict[str, Any]:
        return {
            "entries": self.entries,
            "calls": self.calls,
            "wall_s": round(self.wall, 4),
            "cpu_s": round(self.cpu, 4),
            "per_s": round(self.entries / self.wall) if self.wall else None,
            "cpu_us_per_entry": round(self.cpu / self.entries * 1e6, 1) if self.entries else None,
            "statements_per_entry": round(self.statements / self.entries, 3) if self.entries else None,
        }


# ------------------------------------------------------------------------------------- backends


@dataclass
class Backend:
    name: str
    engine: Engine
    counter: Statements
    log: AuditLog
    description: str


def prepare(name: str, engine: Engine, signer: NoteSigner, description: str) -> Backend:
    migrate_audit(engine)
    plain_metadata.create_all(engine)
    return Backend(name, engine, Statements(engine), AuditLog(engine, origin=ORIGIN, signer=signer), description)


def sqlite_engine(path: Path, synchronous: str | None = None) -> Engine:
    engine = make_engine(f"sqlite:///{path}")
    if synchronous is not None:

        @event.listens_for(engine, "connect")
        def _sync(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            dbapi_connection.execute(f"PRAGMA synchronous={synchronous}")  # after make_engine's NORMAL

    return engine


def sqlite_pragma(engine: Engine, name: str) -> str:
    with engine.connect() as conn:
        return str(conn.exec_driver_sql(f"PRAGMA {name}").scalar())


class PostgresSchema:
    """A fresh schema in the target database (the engine's search_path), dropped on exit."""

    def __init__(self, base_url: str) -> None:
        from sqlalchemy.engine import make_url

        self.base = make_url(normalise_url(base_url))
        self.schema = f"bench_audit_{secrets.token_hex(4)}"
        self.admin: Engine | None = None
        self.engine: Engine | None = None

    def __enter__(self) -> Engine:
        from sqlalchemy import create_engine

        self.admin = create_engine(self.base.update_query_dict({"connect_timeout": "5"}), isolation_level="AUTOCOMMIT")
        with self.admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{self.schema}"'))
        url = self.base.update_query_dict({"options": f"-csearch_path={self.schema}"})
        self.engine = make_engine(url.render_as_string(hide_password=False))
        return self.engine

    def __exit__(self, *exc: object) -> None:
        if self.engine is not None:
            self.engine.dispose()
        if self.admin is None:
            return
        try:
            with self.admin.connect() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'))
        finally:
            self.admin.dispose()

    def settings(self) -> dict[str, str]:
        assert self.admin is not None
        with self.admin.connect() as conn:
            return {
                name: str(conn.exec_driver_sql(f"SHOW {name}").scalar())
                for name in ("server_version", "fsync", "synchronous_commit", "wal_sync_method")
            }


# ----------------------------------------------------------------------------------------- fill


def fill_to(b: Backend, items: MoneyEntries, target: int, batch: int) -> dict[str, Any] | None:
    size = b.log.size()
    if size >= target:
        return None
    log(f"[{b.name}] filling {size:,} -> {target:,} entries (append_many, batches of {batch:,}) ...")
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
    return {
        "entries": size,
        "samples": samples,
        "median_us": round(statistics.median(times) * 1e6, 1),
        "p95_us": round(times[min(len(times) - 1, math.ceil(0.95 * len(times)) - 1)] * 1e6, 1),
        "mean_hashes": round(statistics.fmean(len(p) for p in proofs), 2),
        "mean_statements": round(statistics.fmean(stmts), 2),
        "max_statements": max(stmts),
        "checkpoint_ms": round(checkpoint_ms, 1),
        "proofs_checked": len(proofs),
    }


# ---------------------------------------------------------------------------------- verification


def verification(b: Backend, signer: NoteSigner) -> dict[str, Any]:
    log(f"[{b.name}] full verification ...")
    c0, t0 = time.process_time(), time.perf_counter()
    result = b.log.verify(signer.verifier)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    if not result.ok:
        raise RuntimeError(f"verification failed on a log nobody tampered with: {result}")
    with b.engine.connect() as conn:
        data = [t.encode("utf-8") for t in conn.execute(select(entries.c.entry).order_by(entries.c.seq)).scalars()]
    sha256 = hashlib.sha256
    h0 = time.perf_counter()
    for blob in data:
        sha256(blob).digest()
    hash_s = time.perf_counter() - h0
    verify_rate, hash_rate = result.entries / wall, len(data) / hash_s
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
    }


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
    log(f"[{b.name}] appends, {label} ...")
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
    log(f"[{b.name}] profiling {entries_n:,} appends in batches of {batch} ...")
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
            log(f"[{b.name}] inclusion proofs at {rung:,} entries ...")
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
    if args.skip_postgres:
        results.append({"backend": "PostgreSQL", "skipped": "--skip-postgres"})
        return results
    why = postgres_reachable(args.postgres_url)
    if why is not None:
        results.append({"backend": "PostgreSQL", "skipped": f"{_redact(args.postgres_url)} unreachable ({why})"})
        return results
    schema = PostgresSchema(args.postgres_url)
    with schema as engine:
        s = schema.settings()
        b = prepare(
            "PostgreSQL",
            engine,
            signer,
            f"PostgreSQL {s['server_version']}, fresh schema {schema.schema}, fsync={s['fsync']}, "
            f"synchronous_commit={s['synchronous_commit']}, wal_sync_method={s['wal_sync_method']}",
        )
        pg_max = min(args.max_entries, args.postgres_max_entries)
        results.append(run_backend(b, signer, args, rungs_for(pg_max)))
    return results


# ------------------------------------------------------------------------------------------ text


def _fmt(value: float | None, spec: str = ",.0f") -> str:
    return "-" if value is None else format(value, spec)


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
    lines += ["", *_reference_lines(report["backends"])]
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
                f"{_fmt(a['per_s']):>8} {_fmt(p['per_s']):>9} {row['audit_over_plain']:>10.3f}x "
                f"{a['statements_per_entry']:>4.2f}/{p['statements_per_entry']:<5.3f} "
                f"{_fmt(a['cpu_us_per_entry'], ',.0f'):>8}/{_fmt(p['cpu_us_per_entry'], ',.0f'):<8}"
            )
            if "plain_rowwise" in row:
                w = row["plain_rowwise"]
                out.append(
                    f"{'':<18} {'  plain, 1 INSERT per row in the same transactions':<52} {_fmt(w['per_s']):>9} "
                    f"{row['audit_over_plain_rowwise']:>10.3f}x {'':>4} {w['statements_per_entry']:<5.3f} "
                    f"{'':>8} {_fmt(w['cpu_us_per_entry'], ',.0f'):<8}"
                )
    out.append(
        "(rates are wall-clock entries/s; audit/plain < 1 means the log is slower; stmts = statements per entry)"
    )
    return out


def _verify_lines(backends: list[dict[str, Any]]) -> list[str]:
    out = ["full verification: log.verify(verifier) vs hashlib.sha256 over every stored entry text (in memory)"]
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
                f"{_fmt(fill['per_s'] if fill else None):>8}"
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


def _reference_lines(backends: list[dict[str, Any]]) -> list[str]:
    ref = TESSERA_WRITES_PER_S
    out = [f"reference: Tessera (Trillian's successor) publishes about {ref:,} writes/s on local disk"]
    for r in backends:
        for row in r.get("appends", []):
            rate = row["audit"]["per_s"]
            out.append(f"  {r['backend']:<18} {row['mode']:<15} {rate:>8,}/s = {rate / ref:.2f}x that")
    out.append("  (another system measured another way: for scale only)")
    return out


# ------------------------------------------------------------------------------------------ main


def _git_state() -> str:
    try:
        import subprocess

        head = subprocess.run(
            ["git", "-C", str(REPO), "log", "-1", "--format=%h", "--", "audit/log.py"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--", "audit/log.py", "audit/schema.py"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return head + (" + local changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
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
    parser.add_argument("--skip-postgres", action="store_true", help="do not try PostgreSQL")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("CONTROLPLANE_TEST_POSTGRES_URL") or DEFAULT_POSTGRES_URL,
        help=f"PostgreSQL database for the scratch schema\n(default $CONTROLPLANE_TEST_POSTGRES_URL, else "
        f"{DEFAULT_POSTGRES_URL})",
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    args = parser.parse_args(argv)
    if args.max_entries < 100 or args.postgres_max_entries < 100:
        parser.error("--max-entries and --postgres-max-entries must be at least 100")
    if args.proofs < 1 or args.seconds <= 0 or args.fill_batch < 1 or args.profile_entries < 512:
        parser.error("--proofs, --seconds and --fill-batch must be positive, --profile-entries at least 512")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
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
    report["elapsed_s"] = round(time.monotonic() - started, 1)
    if args.format == "json":
        print(json.dumps(report, indent=2))
    else:
        print(render_text(report))
        print(f"\n(total run time {report['elapsed_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
