"""Benchmark: the platform's events from outbox commit to audit append, in-process and through NATS JetStream.

    .venv/bin/python -m bench.event_pipeline                    # 20,000 events per mode, SQLite and PostgreSQL
    .venv/bin/python -m bench.event_pipeline --quick            # 3,000 events, a shorter steady phase
    .venv/bin/python -m bench.event_pipeline --skip-postgres --format json > result.json

Modes, each on a fresh outbox database and audit log (SQLite files, or scratch schemas of PostgreSQL):

  in-process     the relay hands each batch to the audit log in its own process (`OutboxAuditSink`):
                 `make demo`'s embedded way, the baseline of the run.
  jetstream x1   the relay publishes to a nats-server of the benchmark's own (file storage; acked
                 publishes, `Nats-Msg-Id` per event), one `controlplane audit ingest` process appends.
  jetstream x2   the same with two ingester processes in one consumer group.

Phases of each mode:

  drain    N deposit events are committed to the outbox before anything runs; then the relay (and the
           ingesters) start, and events/s = N / the time until the audit log holds all N. Its ratio is
           against in-process in the same run and database.
  steady   events are committed at --rate per second for --seconds while the pipeline runs; the lag of
           each is its audit entry's time minus its commit time (p50, p99, max).

The relay runs in this process (as in the platform, one thread); ingesters are processes of their own.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select

from audit.log import AuditLog
from audit.schema import entries, migrate_audit
from audit.sink import OutboxAuditSink, SubjectKeys
from bench.postgres import ScratchSchema, postgres_skip_reason, redact
from bench.support import BenchmarkParser, controlplane_executable, emit, fmt, log, percentile, setup_logging
from controlplane.clock import utcnow
from controlplane.demo.cluster import commit_to_audit_lags
from controlplane.demo.stack import free_port
from controlplane.storage import make_engine
from sample_platform import db as platform_db
from sample_platform.outbox import OutboxRelay, PendingEvent, write_events

QUICK = {"events": 3000, "seconds": 5}
MODES = ("in-process", "jetstream x1", "jetstream x2")
DEADLINE_SECONDS = 600.0
COMMIT_BATCH = 500
ORIGIN = "bench.event-pipeline"


def _deposits(count: int) -> list[PendingEvent]:
    return [
        PendingEvent("account", n % 100, "money.deposit",
                     {"account_id": n % 100, "amount_minor": 100, "reference": f"b{n}"})
        for n in range(count)
    ]  # fmt: skip


def _commit(engine: Engine, count: int) -> None:
    for start in range(0, count, COMMIT_BATCH):
        with engine.begin() as conn:
            write_events(conn, _deposits(min(COMMIT_BATCH, count - start)))


def _appended(audit: Engine) -> int:
    with audit.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(entries)).scalar_one())


class NatsServer:
    def __init__(self, workdir: Path) -> None:
        server = shutil.which("nats-server")
        if server is None:
            raise RuntimeError("nats-server is not installed (apt-get install nats-server)")
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        store = workdir / f"jetstream-{self.port}"
        self.out = (workdir / f"nats-{self.port}.log").open("wb")
        self.proc = subprocess.Popen(
            [server, "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(store)],
            stdout=self.out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        _wait(lambda: _listening(self.port), "nats-server to listen", 30)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.out.close()


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _wait(condition: Any, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"gave up waiting for {what} after {timeout:.0f} s")
        time.sleep(0.02)


@contextmanager
def pipeline(mode: str, outbox: Engine, audit_url: str, workdir: Path) -> Iterator[None]:
    """The relay (a thread here) and, through JetStream, the broker and the ingester processes."""
    stack = ExitStack()
    with stack:
        if mode == "in-process":
            audit = make_engine(audit_url)
            stack.callback(audit.dispose)
            sink: Any = OutboxAuditSink(AuditLog(audit, origin=ORIGIN), SubjectKeys(audit))
        else:
            from sample_platform.nats_sink import NatsSink

            broker = NatsServer(workdir)
            stack.callback(broker.stop)
            sink = NatsSink(broker.url)
            stack.callback(sink.close)
            env = os.environ | {
                "CONTROLPLANE_AUDIT_URL": audit_url,
                "CONTROLPLANE_AUDIT_ORIGIN": "bench.event-pipeline",
            }
            for n in range(int(mode[-1])):
                out = (workdir / f"ingest-{broker.port}-{n}.log").open("wb")
                stack.callback(out.close)
                proc = subprocess.Popen(
                    [controlplane_executable(), "audit", "ingest", "--nats-url", broker.url, "--batch", "200",
                     "--log-format", "text"],
                    env=env, stdout=out, stderr=subprocess.STDOUT, cwd=workdir,
                )  # fmt: skip
                stack.callback(_stop, proc)
        relay = OutboxRelay(outbox, sink, batch_size=500)
        stop = threading.Event()
        thread = threading.Thread(target=relay.run, args=(stop, 0.005), daemon=True)
        stack.callback(thread.join, 30)
        stack.callback(stop.set)
        thread.start()
        yield


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def run_mode(mode: str, database: str, urls: tuple[str, str], args: argparse.Namespace, workdir: Path) -> dict:
    outbox_url, audit_url = urls
    outbox = platform_db.make_engine(outbox_url)
    platform_db.migrate(outbox)
    audit = make_engine(audit_url)
    migrate_audit(audit)
    try:
        _commit(outbox, args.events)
        log.info("%s, %s: %d events committed; draining", database, mode, args.events)
        with pipeline(mode, outbox, audit_url, workdir):
            started = time.monotonic()
            _wait(lambda: _appended(audit) >= args.events, f"{mode} to append {args.events} events", DEADLINE_SECONDS)
            drain_s = time.monotonic() - started
            log.info(
                "%s, %s: drained in %.2f s; steady %d/s for %d s", database, mode, drain_s, args.rate, args.seconds
            )
            before = _appended(audit)
            steady_since = utcnow()
            steady_started = time.monotonic()
            sent = 0
            while (elapsed := time.monotonic() - steady_started) < args.seconds:
                due = int(elapsed * args.rate) - sent
                if due > 0:
                    _commit(outbox, due)
                    sent += due
                time.sleep(0.01)
            _wait(lambda: _appended(audit) >= before + sent, f"{mode} to append the steady events", DEADLINE_SECONDS)
        lags, _ = commit_to_audit_lags(outbox, audit, steady_since)
        return {
            "database": database, "mode": mode, "events": args.events, "drain_s": round(drain_s, 3),
            "events_per_s": round(args.events / drain_s, 1), "steady_events": sent,
            "lag_p50_ms": _ms(percentile(lags, 50)), "lag_p99_ms": _ms(percentile(lags, 99)),
            "lag_max_ms": _ms(lags[-1] if lags else None),
        }  # fmt: skip
    finally:
        outbox.dispose()
        audit.dispose()


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def add_ratios(rows: list[dict]) -> None:
    for row in rows:
        base = next(r for r in rows if r["database"] == row["database"] and r["mode"] == "in-process")
        row["x_in_process"] = round(row["events_per_s"] / base["events_per_s"], 2)


def render_text(report: dict) -> str:
    lines = [
        f"events from outbox commit to audit append: drain {report['events']:,} events, then steady "
        f"{report['rate']}/s for {report['seconds']} s",
        f"{'database':<11} {'mode':<13} {'events/s':>9} {'x in-proc':>9} {'drain s':>8} {'lag p50':>8} "
        f"{'lag p99':>8} {'lag max':>8}  (lag in ms, steady phase)",
    ]
    for r in report["rows"]:
        lines.append(
            f"{r['database']:<11} {r['mode']:<13} {fmt(r['events_per_s'], ',.0f'):>9} "
            f"{fmt(r['x_in_process'], '.2f'):>9} {fmt(r['drain_s'], '.2f'):>8} {fmt(r['lag_p50_ms']):>8} "
            f"{fmt(r['lag_p99_ms']):>8} {fmt(r['lag_max_ms']):>8}"
        )
    lines += [f"note: {note}" for note in report["notes"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    parser = BenchmarkParser("bench.event_pipeline", __doc__, QUICK)
    parser.add_argument("--events", type=int, default=20000, help="events committed before the drain (default 20000)")
    parser.add_argument("--rate", type=int, default=200, help="events/s committed in the steady phase (default 200)")
    parser.add_argument("--seconds", type=int, default=20, help="length of the steady phase (default 20)")
    parser.add_argument("--modes", default=",".join(MODES), help=f"which modes (default {','.join(MODES)})")
    args = parser.parse(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if unknown := sorted(set(modes) - set(MODES)):
        parser.error(f"unknown modes {unknown}; choose from {', '.join(MODES)}")
    if "in-process" not in modes:
        modes.insert(0, "in-process")  # the ratios' baseline
    started = time.monotonic()
    notes: list[str] = []
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench-events-") as tmp:
        workdir = Path(tmp)
        for mode in modes:
            tag = secrets.token_hex(3)
            urls = (f"sqlite:///{workdir / f'outbox-{tag}.db'}", f"sqlite:///{workdir / f'audit-{tag}.db'}")
            rows.append(run_mode(mode, "SQLite", urls, args, workdir))
        skip = postgres_skip_reason(args)
        if skip:
            notes.append(f"PostgreSQL left out: {skip}")
        else:
            for mode in modes:
                with (
                    ScratchSchema(args.postgres_url, "bench_outbox") as outbox,
                    ScratchSchema(args.postgres_url, "bench_audit") as audit,
                ):
                    rows.append(run_mode(mode, "PostgreSQL", (outbox.url, audit.url), args, workdir))
            notes.append(f"PostgreSQL at {redact(args.postgres_url)}")
    add_ratios(rows)
    notes.append(f"{os.cpu_count()} CPUs; the relay is a thread of this process, each ingester a process")
    report = {"events": args.events, "rate": args.rate, "seconds": args.seconds, "rows": rows, "notes": notes}
    emit(report, args.format, render_text, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
