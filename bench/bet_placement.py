"""Benchmark: bet placement throughput and latency under open-model load, on SQLite and PostgreSQL.

    .venv/bin/python -m bench.bet_placement                       # default ladder, both databases
    .venv/bin/python -m bench.bet_placement --quick               # one rate, a short derby (about a minute)
    .venv/bin/python -m bench.bet_placement --rates 50,100 --duration 3 --databases sqlite
    .venv/bin/python -m bench.bet_placement --format json > result.json
    .venv/bin/python -m bench.bet_placement --skip-ladder --databases sqlite --derby-duration 30   # derby only

For each database the platform server is started in its own process (`controlplane platform serve`),
players, deposits and markets are set up through the API, and then `POST /v1/bets` is offered at
each rate of the ladder, followed by `GET /v1/health` (which never touches the database: the
framework's own ceiling) at the same rate, and a closed-loop health run to find that ceiling.

Open model: request i is due at t0 + i/rate whatever happened to the earlier ones, and its latency
is measured from that *scheduled* time to its completion. A server (or load generator) that falls
behind therefore shows up in the latency instead of silently lowering the offered load
(no coordinated omission). Only 201 responses count as accepted bets; everything else is reported
by status code (timeouts and transport errors by name). Latency percentiles are nearest-rank over
every recorded sample of the step.

The "lag" column is how late the load generator itself started a request after its scheduled time,
and "cli cpu%"/"srv cpu%" are the CPU used by this process and by the server during the step
(100% = one core): a lag or cli cpu% near its limit means the generator, not the server, was the
bottleneck.

Derby night (after the ladder, on the same server process; `--skip-ladder` / `--skip-derby`): the
load generator's `derby-night` profile (`sample_platform.loadgen`, run in this process: logins, odds
reads, wallet reads and bets with client retries, SSE subscribers, a price move a second, then
settlement) at `--derby-rate` req/s baseline, 15x at the peak, for `--derby-duration` s. It prints
the generator's per-route table and a summary: accepted bets/s in the peak hold vs the bets offered
there, bet p50/p99 (scheduled -> final answer, retries included), 503s on POST /v1/bets (shed
`overloaded` and `database-busy`), and accepted bets/s over GET /v1/health's closed-loop rate
measured on the same server right after the derby run. The generator's 20 players do all the logins
from one address, far more often each than real players would, so the server is started with the
per-address and per-account login limits and the per-account bets-per-minute limit raised (they are
not what is measured; the ladder's 50 players are not affected by them either way).

PostgreSQL: a fresh schema is created in the database of --postgres-url (default
$CONTROLPLANE_TEST_POSTGRES_URL, else postgresql+psycopg://postgres@127.0.0.1:5432/test), the
server migrates it at start, and it is dropped at the end. If PostgreSQL is unreachable, that part
is skipped with a note.

The server gets the platform's defaults plus the benchmark's own `PLATFORM_*` settings: those of the
shell are not passed on, and its outbox relay writes to a file in the scratch folder (never to an
audit log named by CONTROLPLANE_OUTBOX_SINK).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.bet_placement_derby import derby_line, run_derby
from bench.bet_placement_load import STAKE_MINOR, BetCounter, Fixture, run_load, setup_fixture
from bench.bet_placement_report import add_ratios, render_text
from bench.postgres import ScratchSchema, postgres_skip_reason, redact
from bench.support import BenchmarkParser, PlatformServer, emit, host_busy_before_start, log, setup_logging
from sample_platform.loadgen import PEAK_FACTOR

DEFAULT_RATES = "50,100,200,400"
SERVER_SETTINGS = {
    "PLATFORM_MAX_LIABILITY_MINOR": "10000000000",
    "PLATFORM_MAX_STAKE_MINOR": "1000000",
    # The derby run's few players log in and bet from one address far more often than real ones would.
    "PLATFORM_LOGIN_ATTEMPTS_PER_MINUTE_ADDRESS": "100000",
    "PLATFORM_LOGIN_ATTEMPTS_PER_MINUTE_ACCOUNT": "100000",
    "PLATFORM_MAX_BETS_PER_MINUTE": "100000",
    # All the load comes from one address and few players: the per-client limits would measure themselves.
    "PLATFORM_CLIENT_BETS_PER_SECOND": "100000",
    "PLATFORM_CLIENT_READS_PER_SECOND": "100000",
    "PLATFORM_CLIENT_MAX_IN_FLIGHT": "100000",
    "PLATFORM_ANONYMOUS_MAX_IN_FLIGHT_PER_ADDRESS": "100000",
}
QUICK = {
    "rates": "40",
    "duration": 2.0,
    "players": 10,
    "markets": 2,
    "settle": 5.0,
    "derby_duration": 8.0,
    "derby_players": 10,
}


# ---------------------------------------------------------------------------------------- databases


def bench_database(label: str, database_url: str, workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    server = PlatformServer(database_url, workdir, SERVER_SETTINGS)
    log.info(f"[{label}] starting the server on {server.url}")
    started = time.monotonic()
    fixture = Fixture([], [])
    load: dict[str, Any] = {"bets": [], "health": [], "health_ceiling": None}
    derby: dict[str, Any] | None = None
    try:
        server.start()
        log.info(f"[{label}] server up in {time.monotonic() - started:.1f} s")
        if not args.skip_ladder:
            log.info(f"[{label}] setting up players and markets")
            fixture = setup_fixture(
                server.url, server.admin_token, players=args.players, markets=args.markets, selections=args.selections
            )
            picks = len(fixture.selections)
            log.info(f"[{label}] {len(fixture.players)} players, {picks} selections; running the ladder")
            counter = BetCounter(database_url)
            try:
                load = asyncio.run(run_load(server, fixture, args, counter))
            finally:
                counter.close()
        if not args.skip_derby and server.alive():
            log.info(
                f"[{label}] derby night: {args.derby_duration:g} s at baseline {args.derby_rate:g} req/s "
                f"(peak x15), {args.derby_players} players"
            )
            try:
                derby = asyncio.run(run_derby(server, args))
            except Exception as exc:  # report it; the ladder's figures still stand
                derby = {"failed": f"{type(exc).__name__}: {exc}"}
                log.info(f"[{label}] derby run failed: {derby['failed']}")
            else:
                log.info(f"[{label}] {derby_line(derby['summary'])}")
        exit_code = server.exit_code()
    finally:
        server.stop()
        if args.server_log_dir is not None:
            args.server_log_dir.mkdir(parents=True, exist_ok=True)
            target = args.server_log_dir / f"server-{label.lower()}.log"
            shutil.copyfile(server.log_path, target)
            log.info(f"[{label}] server log copied to {target}")
    return {
        "database": label,
        "database_url": redact(database_url),
        "players": len(fixture.players),
        "selections": len(fixture.selections),
        "bets": [s.as_dict() for s in load["bets"]],
        "health": [s.as_dict() for s in load["health"]],
        "health_ceiling": load["health_ceiling"].as_dict() if load["health_ceiling"] else None,
        "derby": derby,
        "server_exited_during_run": exit_code,
        "server_log_tail": server.log_tail(200),
        "server_log_excerpt": server.log_problems(),
    }


# ---------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = BenchmarkParser("bench.bet_placement", __doc__, QUICK)
    parser.add_argument("--rates", default=DEFAULT_RATES, help=f"offered rates, req/s (default {DEFAULT_RATES})")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per step (default 5)")
    parser.add_argument(
        "--databases", default="sqlite,postgres", help="which databases: sqlite, postgres or both (default both)"
    )
    parser.add_argument("--players", type=int, default=50, help="player accounts (default 50)")
    parser.add_argument("--markets", type=int, default=5, help="markets (default 5)")
    parser.add_argument("--selections", type=int, default=10, help="selections per market (default 10)")
    parser.add_argument("--timeout", type=float, default=10.0, help="per-request deadline from its scheduled time, s")
    parser.add_argument("--max-connections", type=int, default=512, help="client connection pool (default 512)")
    parser.add_argument(
        "--health-concurrency", type=int, default=32, help="in-flight requests of the health ceiling run (default 32)"
    )
    parser.add_argument(
        "--ceiling-duration",
        type=float,
        default=None,
        help="seconds of the health ceiling run (default --duration; 0 = skip)",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=30.0,
        help="most seconds to wait between steps for the server to drain (default 30)",
    )
    parser.add_argument("--skip-ladder", action="store_true", help="skip the rate ladder (derby night only)")
    parser.add_argument("--skip-derby", action="store_true", help="skip the derby-night run (ladder only)")
    parser.add_argument(
        "--derby-duration", type=float, default=40.0, help="seconds of the derby-night run (default 40)"
    )
    parser.add_argument(
        "--derby-rate", type=float, default=8.0, help="derby-night baseline, req/s of all routes; peak 15x (default 8)"
    )
    parser.add_argument("--derby-players", type=int, default=20, help="players of the derby-night run (default 20)")
    parser.add_argument("--derby-seed", type=int, default=1, help="seed of the derby-night run (default 1)")
    parser.add_argument("--server-log-dir", type=Path, default=None, help="copy each server's log into this folder")
    args = parser.parse(argv)
    try:
        args.rates = [float(r) for r in args.rates.split(",") if r.strip()]
    except ValueError:
        parser.error("--rates must be a comma-separated list of numbers, e.g. 50,100,200")
    if not args.rates or any(r <= 0 for r in args.rates):
        parser.error("--rates must be positive numbers")
    if args.duration <= 0:
        parser.error("--duration must be positive")
    if args.ceiling_duration is None:
        args.ceiling_duration = args.duration
    args.databases = [d.strip().lower() for d in args.databases.split(",") if d.strip()]
    unknown = set(args.databases) - {"sqlite", "postgres", "postgresql"}
    if unknown:
        parser.error(f"unknown database(s) {sorted(unknown)}; use sqlite and/or postgres")
    if args.skip_ladder and args.skip_derby:
        parser.error("--skip-ladder and --skip-derby together leave nothing to run")
    if args.derby_duration <= 0 or args.derby_rate <= 0 or args.derby_players < 1:
        parser.error("--derby-duration, --derby-rate and --derby-players must be positive")
    if min(args.players, args.markets) < 1 or args.selections < 2:
        parser.error("--players and --markets must be at least 1, --selections at least 2")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()
    started = time.monotonic()
    report: dict[str, Any] = {
        "config": {
            "rates": args.rates,
            "duration_s": args.duration,
            "timeout_s": args.timeout,
            "players": args.players,
            "markets": args.markets,
            "selections_per_market": args.selections,
            "max_connections": args.max_connections,
            "health_concurrency": args.health_concurrency,
            "stake_minor": STAKE_MINOR,
            "skip_ladder": args.skip_ladder,
            "skip_derby": args.skip_derby,
            "derby_duration_s": args.derby_duration,
            "derby_rate": args.derby_rate,
            "derby_peak_rate": PEAK_FACTOR * args.derby_rate,
            "derby_players": args.derby_players,
            "derby_seed": args.derby_seed,
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "httpx": httpx.__version__,
        },
        "databases": [],
    }
    baseline = host_busy_before_start()
    report["config"]["host_busy_before_pct"] = None if baseline is None else round(baseline * 100, 1)
    for name in args.databases:
        with tempfile.TemporaryDirectory(prefix="bench-bets-") as tmp:
            workdir = Path(tmp)
            if name == "sqlite":
                label = "SQLite"
                sqlite_url = f"sqlite:///{workdir / 'bench.db'}"
                try:
                    db = bench_database(label, sqlite_url, workdir, args)
                except Exception as exc:  # report it and go on with the other database
                    db = {"database": label, "database_url": sqlite_url, "failed": repr(exc)}
            else:
                label = "PostgreSQL"
                why = postgres_skip_reason(args)
                if why is not None:
                    log.info(f"[{label}] skipped: {why}")
                    report["databases"].append({"database": label, "skipped": why})
                    continue
                try:
                    with ScratchSchema(args.postgres_url, "bench_bets") as schema:
                        db = bench_database(label, schema.url, workdir, args)
                except Exception as exc:
                    db = {"database": label, "database_url": redact(args.postgres_url), "failed": repr(exc)}
            if not db.get("failed"):
                add_ratios(db)
            else:
                log.info(f"[{label}] failed: {db['failed']}")
            report["databases"].append(db)
    if args.format == "json":
        for db in report["databases"]:
            if isinstance(db.get("derby"), dict):
                db["derby"].pop("table", None)  # the same figures are in derby.report
    emit(report, args.format, render_text, started)
    return 1 if any(db.get("failed") for db in report["databases"]) else 0


if __name__ == "__main__":
    sys.exit(main())
