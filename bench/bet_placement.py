"""Benchmark: bet placement throughput and latency under open-model load, on SQLite and PostgreSQL.

    .venv/bin/python bench/bet_placement.py                       # default ladder, both databases
    .venv/bin/python bench/bet_placement.py --rates 50,100 --duration 3 --databases sqlite
    .venv/bin/python bench/bet_placement.py --format json > result.json
    .venv/bin/python bench/bet_placement.py --skip-ladder --databases sqlite --derby-duration 30   # derby only

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
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.postgres import postgres_reachable  # noqa: E402
from bench.postgres import redact as _redact  # noqa: E402
from sample_platform.client import PlatformClient  # noqa: E402
from sample_platform.loadgen import PEAK_FACTOR  # noqa: E402

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DEFAULT_RATES = "50,100,200,400"
STAKE_MINOR = 100
DEPOSIT_MINOR = 10**10
SERVER_ENV = {
    "PLATFORM_MAX_LIABILITY_MINOR": "10000000000",
    "PLATFORM_MAX_STAKE_MINOR": "1000000",
    # The derby run's few players log in and bet from one address far more often than real ones would.
    "PLATFORM_LOGIN_ATTEMPTS_PER_MINUTE_ADDRESS": "100000",
    "PLATFORM_LOGIN_ATTEMPTS_PER_MINUTE_ACCOUNT": "100000",
    "PLATFORM_MAX_BETS_PER_MINUTE": "100000",
}
GENERATOR_BOUND = 0.9  # client CPU (fraction of a core) above which the load generator is the bottleneck
CLIENT_MAX_CONNECTIONS = [512]  # set from --max-connections, for messages
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------- stats


def percentile(sorted_values: list[float], p: float) -> float | None:
    """Nearest-rank percentile of an already sorted list (None when there are no samples)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def summarise_ms(values: list[float]) -> dict[str, float | None]:
    ordered = sorted(values)
    out: dict[str, float | None] = {"n": len(ordered)}  # type: ignore[dict-item]
    for p in (50, 95, 99):
        v = percentile(ordered, p)
        out[f"p{p}_ms"] = None if v is None else round(v * 1000, 2)
    out["max_ms"] = round(ordered[-1] * 1000, 2) if ordered else None
    return out


@dataclass
class StepResult:
    endpoint: str
    mode: str  # "open" or "closed"
    rate_offered: float | None
    duration_s: float
    sent: int = 0  # requests issued on schedule
    on_wire: int = 0  # of which the client actually transmitted (not still queued for a connection)
    ok: int = 0  # 201 for bets, 200 for health
    window_s: float = 0.0
    statuses: Counter = field(default_factory=Counter)
    ok_latencies: list[float] = field(default_factory=list)
    all_latencies: list[float] = field(default_factory=list)
    send_lags: list[float] = field(default_factory=list)
    samples: dict[str, list[str]] = field(default_factory=dict)
    client_cpu: float | None = None  # fraction of one core
    server_cpu: float | None = None  # fraction of one core
    server_cpu_s: float | None = None  # CPU seconds the server process used during the step
    host_busy: float | None = None  # fraction of all the machine's cores busy (generator+server+database+rest)
    settle_s: float | None = None  # how long the server took afterwards to be idle again
    server_placed: int | None = None  # bets the server committed for this step (from the database)

    @property
    def server_cpu_ms_per_request(self) -> float | None:
        if self.server_cpu_s is None or not self.on_wire:
            return None
        return self.server_cpu_s * 1000 / self.on_wire

    @property
    def ok_per_s(self) -> float:
        return self.ok / self.window_s if self.window_s > 0 else 0.0

    def errors(self) -> dict[str, int]:
        good = "201" if self.endpoint == "bets" else "200"
        return {k: v for k, v in sorted(self.statuses.items()) if k != good}

    def as_dict(self) -> dict[str, Any]:
        lag = summarise_ms(self.send_lags)
        return {
            "endpoint": self.endpoint,
            "mode": self.mode,
            "rate_offered": self.rate_offered,
            "duration_s": self.duration_s,
            "sent": self.sent,
            "on_wire": self.on_wire,
            "ok": self.ok,
            "window_s": round(self.window_s, 3),
            "ok_per_s": round(self.ok_per_s, 2),
            "latency_ok": summarise_ms(self.ok_latencies),
            "latency_all": summarise_ms(self.all_latencies),
            "send_lag_p99_ms": lag["p99_ms"],
            "send_lag_max_ms": lag["max_ms"],
            "statuses": dict(sorted(self.statuses.items())),
            "errors": self.errors(),
            "error_samples": self.samples,
            "client_cpu_pct": None if self.client_cpu is None else round(self.client_cpu * 100, 1),
            "server_cpu_pct": None if self.server_cpu is None else round(self.server_cpu * 100, 1),
            "host_busy_pct": None if self.host_busy is None else round(self.host_busy * 100, 1),
            "server_cpu_ms_per_request": _round(self.server_cpu_ms_per_request, 3),
            "settle_s": _round(self.settle_s, 2),
            "server_placed": self.server_placed,
            "generator_bound": self.client_cpu is not None and self.client_cpu >= GENERATOR_BOUND,
        }


# ---------------------------------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def controlplane_executable() -> str:
    candidates = [Path(sys.executable).parent / "controlplane", REPO / ".venv" / "bin" / "controlplane"]
    for candidate in candidates:
        if candidate.exists():
            return str(candidate)
    found = shutil.which("controlplane")
    if found:
        return found
    raise SystemExit("cannot find the `controlplane` command; install the project (pip install -e .) first")


def host_cpu_ticks() -> tuple[int, int] | None:
    """(total, idle incl. iowait) jiffies of the whole machine, from /proc/stat; None where unavailable."""
    try:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return sum(values[:8]), values[3] + values[4]


def host_busy_over(seconds: float) -> float | None:
    """Share of the machine's cores busy during the next `seconds` (what else is running)."""
    before = host_cpu_ticks()
    time.sleep(seconds)
    after = host_cpu_ticks()
    if before is None or after is None or after[0] <= before[0]:
        return None
    return 1 - (after[1] - before[1]) / (after[0] - before[0])


def process_cpu_seconds(pid: int) -> float | None:
    """User+system CPU seconds of a process (all its threads), from /proc; None where unavailable."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class Server:
    """`controlplane platform serve` in its own process, on a free port."""

    def __init__(
        self, database_url: str, workdir: Path, admin_token: str, extra_env: dict[str, str] | None = None
    ) -> None:
        self.database_url = database_url
        self.workdir = workdir
        self.admin_token = admin_token
        self.extra_env = dict(extra_env or {})
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "server.log"
        self.proc: subprocess.Popen | None = None
        self._log_file = None

    def start(self, timeout: float = 60.0) -> None:
        env = dict(os.environ)
        env.pop("PLATFORM_DATABASE_URL", None)
        env.update(SERVER_ENV)
        env.update(self.extra_env)
        env["PLATFORM_ADMIN_TOKEN"] = self.admin_token
        env["PLATFORM_OUTBOX_SINK_PATH"] = str(self.workdir / "outbox.jsonl")
        cmd = [
            controlplane_executable(),
            "platform",
            "serve",
            "--port",
            str(self.port),
            "--database-url",
            self.database_url,
        ]
        self._log_file = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            cmd, cwd=self.workdir, env=env, stdout=self._log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode} at start:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/v1/health", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not answer /v1/health within {timeout:.0f} s:\n{self.log_tail()}")
            time.sleep(0.1)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def cpu_seconds(self) -> float | None:
        return process_cpu_seconds(self.proc.pid) if self.alive() else None  # type: ignore[union-attr]

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


# ---------------------------------------------------------------------------------------- setup


@dataclass
class Fixture:
    players: list[str]  # bearer tokens
    selections: list[tuple[int, int, str, int]]  # (market_id, selection_id, odds, price_version)


def setup_fixture(url: str, admin_token: str, *, players: int, markets: int, selections: int) -> Fixture:
    tokens: list[str] = []
    picks: list[tuple[int, int, str, int]] = []
    run = secrets.token_hex(3)
    rng = random.Random(7)
    with PlatformClient(url, admin_token=admin_token) as client:
        for i in range(players):
            account = client.create_account(f"bench_{run}_{i}")
            client.deposit(account["id"], DEPOSIT_MINOR)
            tokens.append(account["token"])
        for m in range(markets):
            sels = [(f"runner {s + 1}", f"{rng.uniform(1.2, 12):.2f}") for s in range(selections)]
            created = client.create_market(f"bench market {run} {m + 1}", sels)
            market = client.market(created["id"])  # the current prices, as a player would read them
            for sel in market["selections"]:
                picks.append((market["id"], sel["id"], sel["odds"], market["price_version"]))
    return Fixture(tokens, picks)


# ---------------------------------------------------------------------------------------- load

RequestSpec = tuple[str, str, dict[str, str], Any]  # method, path, headers, json body


def bet_request_factory(fixture: Fixture, seed: int) -> Callable[[int], RequestSpec]:
    rng = random.Random(seed)

    def make(_i: int) -> RequestSpec:
        token = rng.choice(fixture.players)
        market_id, selection_id, odds, price_version = rng.choice(fixture.selections)
        headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": f'"{uuid.uuid4()}"'}
        body = {
            "market_id": market_id,
            "selection_id": selection_id,
            "stake_minor": STAKE_MINOR,
            "odds": odds,
            "price_version": price_version,
            "accept_price_change": "any",
        }
        return "POST", "/v1/bets", headers, body

    return make


def health_request(_i: int) -> RequestSpec:
    return "GET", "/v1/health", {}, None


async def _send(
    client: httpx.AsyncClient, spec: RequestSpec, scheduled: float, timeout: float, result: StepResult
) -> float:
    """Send one request; record latency from `scheduled`; return the completion time."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    result.send_lags.append(max(0.0, started - scheduled))
    method, path, headers, body = spec
    remaining = max(0.001, scheduled + timeout - started)
    on_wire = False

    async def trace(event: str, _info: dict) -> None:
        nonlocal on_wire
        if event.endswith("send_request_headers.started"):
            on_wire = True

    request = client.request(method, path, headers=headers, json=body, extensions={"trace": trace})
    try:
        response = await asyncio.wait_for(request, remaining)
        key = str(response.status_code)
        detail = response.text
    except TimeoutError:
        if on_wire:
            key, detail = "timeout", f"no response within {timeout:g} s of the scheduled send"
        else:
            key = "timeout-unsent"
            detail = (
                f"still waiting for one of the client's {CLIENT_MAX_CONNECTIONS[0]} connections {timeout:g} s "
                "after the scheduled send: never reached the server"
            )
    except httpx.HTTPError as exc:
        key, detail = f"error:{type(exc).__name__}", str(exc)
    done = loop.time()
    latency = done - scheduled
    result.on_wire += on_wire
    result.statuses[key] += 1
    result.all_latencies.append(latency)
    good = "201" if result.endpoint == "bets" else "200"
    if key == good:
        result.ok += 1
        result.ok_latencies.append(latency)
    else:
        samples = result.samples.setdefault(key, [])
        if len(samples) < 3:
            samples.append(detail[:500])
    return done


async def open_step(
    client: httpx.AsyncClient,
    *,
    endpoint: str,
    rate: float,
    duration: float,
    make: Callable[[int], RequestSpec],
    timeout: float,
    server: Server,
) -> StepResult:
    """Send round(rate*duration) requests at t0 + i/rate, regardless of earlier responses."""
    result = StepResult(endpoint=endpoint, mode="open", rate_offered=rate, duration_s=duration)
    loop = asyncio.get_running_loop()
    count = max(1, round(rate * duration))
    specs = [make(i) for i in range(count)]  # built up front so building them costs no send time
    cpu0, srv0, wall0, host0 = time.process_time(), server.cpu_seconds(), loop.time(), host_cpu_ticks()
    t0 = loop.time() + 0.05
    tasks: list[asyncio.Task] = []
    for i, spec in enumerate(specs):
        scheduled = t0 + i / rate
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(_send(client, spec, scheduled, timeout, result)))
        result.sent += 1
    finished = await asyncio.gather(*tasks)
    end = max([t0 + duration, *finished])
    result.window_s = end - t0
    _cpu(result, cpu0, srv0, wall0, loop.time(), server, host0)
    return result


class BetCounter:
    """Counts the bets table directly, to see what the server committed (including for requests the
    generator had already given up on)."""

    def __init__(self, database_url: str) -> None:
        from controlplane.storage import make_engine, reader

        self.engine = make_engine(database_url, pool_size=1)
        self.reader = reader(self.engine)

    def count(self) -> int | None:
        from sqlalchemy import func, select

        from sample_platform.models import Bet

        try:
            with self.reader.connect() as conn:
                return conn.execute(select(func.count()).select_from(Bet.__table__)).scalar_one()
        except Exception as exc:  # a failed count must not stop the benchmark
            log(f"  (could not count bets: {type(exc).__name__}: {exc})")
            return None

    def close(self) -> None:
        self.engine.dispose()


async def settle(
    client: httpx.AsyncClient,
    limit: float,
    server: Server,
    counter: BetCounter | None = None,
    fast: float = 0.05,
    quiet_cpu: float = 0.2,
) -> float:
    """Wait until the server is idle again (at most `limit` s): three checks in a row, 0.2 s apart, in which
    GET /v1/health answers within `fast` s, the server used under `quiet_cpu` of a core and (with a
    counter) no new bet was committed.

    Requests that the generator gave up on may still be running in the server; without this, their
    backlog would be charged to the next step."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    streak = 0
    last_cpu, last_t = server.cpu_seconds(), loop.time()
    last_count = counter.count() if counter else None
    while streak < 3 and loop.time() - start < limit:
        await asyncio.sleep(0.2)
        t = loop.time()
        try:
            response = await client.get("/v1/health", timeout=max(0.1, limit - (t - start)))
            healthy = response.status_code == 200 and loop.time() - t < fast
        except httpx.HTTPError:
            healthy = False
        cpu, now = server.cpu_seconds(), loop.time()
        idle = cpu is None or last_cpu is None or (cpu - last_cpu) / max(now - last_t, 1e-6) < quiet_cpu
        last_cpu, last_t = cpu, now
        count = counter.count() if counter else None
        still = count == last_count
        last_count = count
        streak = streak + 1 if healthy and idle and still else 0
    return loop.time() - start


async def closed_step(
    client: httpx.AsyncClient, *, concurrency: int, duration: float, timeout: float, server: Server
) -> StepResult:
    """`concurrency` workers each sending GET /v1/health back to back: the most the pair can do."""
    result = StepResult(endpoint="health", mode="closed", rate_offered=None, duration_s=duration)
    loop = asyncio.get_running_loop()
    cpu0, srv0, wall0, host0 = time.process_time(), server.cpu_seconds(), loop.time(), host_cpu_ticks()
    t0 = loop.time()
    stop_at = t0 + duration

    async def worker() -> float:
        last = t0
        while loop.time() < stop_at:
            result.sent += 1
            last = await _send(client, health_request(0), loop.time(), timeout, result)
        return last

    finished = await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.window_s = max([stop_at, *finished]) - t0
    _cpu(result, cpu0, srv0, wall0, loop.time(), server, host0)
    return result


def _cpu(
    result: StepResult,
    cpu0: float,
    srv0: float | None,
    wall0: float,
    wall1: float,
    server: Server,
    host0: tuple[int, int] | None,
) -> None:
    host1 = host_cpu_ticks()
    if host0 is not None and host1 is not None and host1[0] > host0[0]:
        result.host_busy = 1 - (host1[1] - host0[1]) / (host1[0] - host0[0])
    wall = max(wall1 - wall0, 1e-9)
    result.client_cpu = (time.process_time() - cpu0) / wall
    srv1 = server.cpu_seconds()
    if srv0 is not None and srv1 is not None:
        result.server_cpu_s = srv1 - srv0
        result.server_cpu = result.server_cpu_s / wall


async def run_load(
    server: Server, fixture: Fixture, args: argparse.Namespace, counter: BetCounter | None = None
) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=args.max_connections, max_keepalive_connections=args.max_connections)
    timeout = httpx.Timeout(args.timeout)

    def new_client() -> httpx.AsyncClient:
        # A fresh client (and connection pool) per step: no connection, stale or busy, leaks from one step
        # into the next.
        return httpx.AsyncClient(base_url=server.url, limits=limits, timeout=timeout)

    out: dict[str, Any] = {"bets": [], "health": [], "health_ceiling": None}
    loop = asyncio.get_running_loop()
    async with new_client() as client:
        # Warm-up (not recorded): touch the code paths and the database.
        warm_bets = StepResult(endpoint="bets", mode="warmup", rate_offered=None, duration_s=0)
        warm_health = StepResult(endpoint="health", mode="warmup", rate_offered=None, duration_s=0)
        make_warm = bet_request_factory(fixture, seed=1)
        await asyncio.gather(*(_send(client, make_warm(i), loop.time(), args.timeout, warm_bets) for i in range(20)))
        await asyncio.gather(
            *(_send(client, health_request(i), loop.time(), args.timeout, warm_health) for i in range(50))
        )
        for warm in (warm_bets, warm_health):
            if warm.errors():
                log(f"  warm-up {warm.endpoint} answers: {dict(warm.statuses)}; samples: {warm.samples}")
    for n, rate in enumerate(args.rates):
        for endpoint in ("bets", "health"):
            if not server.alive():
                log("  the server has exited; stopping this database's run")
                return out
            make = bet_request_factory(fixture, seed=100 + n) if endpoint == "bets" else health_request
            before = counter.count() if counter and endpoint == "bets" else None
            async with new_client() as client:
                step = await open_step(
                    client,
                    endpoint=endpoint,
                    rate=rate,
                    duration=args.duration,
                    make=make,
                    timeout=args.timeout,
                    server=server,
                )
                step.settle_s = await settle(client, args.settle, server, counter)
            if before is not None and counter is not None:
                after = counter.count()
                step.server_placed = None if after is None else after - before
            out[endpoint].append(step)
            lat = summarise_ms(step.ok_latencies)
            log(
                f"  {endpoint:<6} @ {rate:>6g}/s: sent {step.sent}, ok {step.ok_per_s:.1f}/s, "
                f"p50 {_fmt(lat['p50_ms'])} ms, p99 {_fmt(lat['p99_ms'])} ms, errors {step.errors() or '-'}, "
                + (f"committed {step.server_placed}, " if step.server_placed is not None else "")
                + f"cli cpu {_fmt(step.client_cpu and step.client_cpu * 100, '.0f')}%, "
                f"srv cpu {_fmt(step.server_cpu and step.server_cpu * 100, '.0f')}%, drained in {step.settle_s:.1f} s"
            )
    if args.ceiling_duration > 0 and server.alive():
        async with new_client() as client:
            ceiling = await closed_step(
                client,
                concurrency=args.health_concurrency,
                duration=args.ceiling_duration,
                timeout=args.timeout,
                server=server,
            )
        out["health_ceiling"] = ceiling
        log(
            f"  health ceiling ({args.health_concurrency} in flight): {ceiling.ok_per_s:.1f} req/s, "
            f"cli cpu {_fmt(ceiling.client_cpu and ceiling.client_cpu * 100, '.0f')}%, "
            f"srv cpu {_fmt(ceiling.server_cpu and ceiling.server_cpu * 100, '.0f')}%"
        )
    return out


# ---------------------------------------------------------------------------------------- derby night


def _interpolate(samples: list[tuple[float, int]], t: float) -> float:
    """Accepted bets so far at `t` s into the run, from the generator's progress samples."""
    if not samples:
        return 0.0
    if t <= samples[0][0]:
        return float(samples[0][1])
    for (t0, v0), (t1, v1) in pairwise(samples):
        if t0 <= t <= t1:
            return v0 + (v1 - v0) * ((t - t0) / (t1 - t0) if t1 > t0 else 1.0)
    return float(samples[-1][1])


def peak_window(profile: str, duration: float, rate: float) -> tuple[float, float]:
    """Start and end (s into the run) of the stretch where the profile offers its peak rate."""
    from sample_platform.loadgen import PEAK_FACTOR, rate_at

    peak = PEAK_FACTOR * rate
    at_peak = [i / 10 for i in range(int(duration * 10)) if rate_at(profile, i / 10, duration, rate) >= peak * 0.999]
    return (at_peak[0], at_peak[-1] + 0.1) if at_peak else (0.0, duration)


async def run_derby(server: Server, admin_token: str, args: argparse.Namespace) -> dict[str, Any]:
    """The load generator's derby-night profile against `server`, then GET /v1/health's ceiling there."""
    from sample_platform.loadgen import BETS, MIX, PEAK_FACTOR, LoadConfig, render_table, run_load_async

    def new_client() -> httpx.AsyncClient:
        limits = httpx.Limits(max_connections=args.max_connections, max_keepalive_connections=args.max_connections)
        return httpx.AsyncClient(base_url=server.url, limits=limits, timeout=httpx.Timeout(args.timeout))

    async with new_client() as client:
        await settle(client, args.settle, server)  # the ladder's backlog must not land in the derby run
    config = LoadConfig(
        server.url,
        "derby-night",
        args.derby_duration,
        args.derby_rate,
        admin_token,
        players=args.derby_players,
        seed=args.derby_seed,
        request_timeout=args.timeout,
    )
    samples: list[tuple[float, int]] = []
    marks: dict[str, tuple[float, float | None, tuple[int, int] | None]] = {}  # phase -> (wall, srv cpu, host)

    def progress(elapsed: float, snap: dict) -> None:
        phase = snap["phase"]
        if phase not in marks:
            marks[phase] = (time.monotonic(), server.cpu_seconds(), host_cpu_ticks())
        if phase in ("load", "draining"):
            samples.append((elapsed, snap["bets_accepted"]))

    report = await run_load_async(config, progress=progress)
    d = report.to_dict()
    d.pop("accepted_bet_ids", None)
    out: dict[str, Any] = {"report": d, "table": render_table(report)}

    # Server CPU and the machine's load while the load ran (from the start of the load phase to settling).
    if "load" in marks and "settling" in marks:
        (w0, s0, h0), (w1, s1, h1) = marks["load"], marks["settling"]
        if s0 is not None and s1 is not None and w1 > w0:
            out["server_cpu_pct"] = round(100 * (s1 - s0) / (w1 - w0), 1)
        if h0 is not None and h1 is not None and h1[0] > h0[0]:
            out["host_busy_pct"] = round(100 * (1 - (h1[1] - h0[1]) / (h1[0] - h0[0])), 1)

    start, end = peak_window("derby-night", args.derby_duration, args.derby_rate)
    bet_share = dict(MIX)["bet"]
    accepted_peak = (_interpolate(samples, end) - _interpolate(samples, start)) / (end - start)
    best5 = 0.0
    if samples and samples[-1][0] > 5:
        t = samples[0][0]
        while t + 5 <= samples[-1][0]:
            best5 = max(best5, (_interpolate(samples, t + 5) - _interpolate(samples, t)) / 5)
            t += 0.25
    bets = d["routes"].get(BETS, {"errors": {}, "sent": 0})
    errors_503 = {k: v for k, v in bets["errors"].items() if k.startswith("503")}
    mean_rate = report.bets_accepted / report.elapsed if report.elapsed else 0.0

    ceiling = None
    if server.alive():
        async with new_client() as client:
            await settle(client, args.settle, server)
        async with new_client() as client:
            step = await closed_step(
                client,
                concurrency=args.health_concurrency,
                duration=max(args.ceiling_duration, 3.0),
                timeout=args.timeout,
                server=server,
            )
        ceiling = step.as_dict()
    health = ceiling["ok_per_s"] if ceiling else None
    out["summary"] = {
        "peak_window_s": [round(start, 1), round(end, 1)],
        "offered_bets_per_s_at_peak": round(bet_share * PEAK_FACTOR * args.derby_rate, 1),
        "offered_req_per_s_at_peak": round(PEAK_FACTOR * args.derby_rate, 1),
        "accepted_bets_per_s_at_peak": round(accepted_peak, 1),
        "accepted_bets_per_s_best_5s": round(best5, 1),
        "accepted_bets_per_s_mean": round(mean_rate, 1),
        "bets_accepted": report.bets_accepted,
        "bets_unknown": report.bets_unknown,
        "bet_attempts": bets["sent"],
        "bet_latency_ms": d["bet_latency_ms"],
        "bet_503": sum(errors_503.values()),
        "bet_503_by_kind": errors_503,
        "health_ceiling_per_s": health,
        "health_ceiling": ceiling,
        "ratio_peak_to_health": round(accepted_peak / health, 4) if health else None,
        "ratio_mean_to_health": round(mean_rate / health, 4) if health else None,
    }
    return out


def _derby_line(s: dict[str, Any]) -> str:
    lat = s["bet_latency_ms"]
    kinds = ", ".join(f"{k}: {v}" for k, v in sorted(s["bet_503_by_kind"].items())) or "none"
    return (
        f"derby summary: peak ({s['peak_window_s'][0]:g}-{s['peak_window_s'][1]:g} s) accepted "
        f"{s['accepted_bets_per_s_at_peak']:.1f} bets/s of {s['offered_bets_per_s_at_peak']:g} offered "
        f"(best 5 s {s['accepted_bets_per_s_best_5s']:.1f}, run mean {s['accepted_bets_per_s_mean']:.1f}); "
        f"bet p50 {_fmt(lat['p50'])} ms p99 {_fmt(lat['p99'])} ms; 503 on bets {s['bet_503']} ({kinds}); "
        f"health ceiling {_fmt(s['health_ceiling_per_s'])} req/s -> accepted/health "
        f"peak {_fmt(s['ratio_peak_to_health'], '.3f')}, mean {_fmt(s['ratio_mean_to_health'], '.3f')}"
    )


# ---------------------------------------------------------------------------------------- databases


def sqlite_target(workdir: Path) -> str:
    return f"sqlite:///{workdir / 'bench.db'}"


class PostgresSchema:
    """A fresh schema in the target database, dropped on exit."""

    def __init__(self, base_url: str) -> None:
        from sqlalchemy.engine import make_url

        from controlplane.storage import normalise_url

        self.base = make_url(normalise_url(base_url))
        self.schema = f"bench_{secrets.token_hex(4)}"
        self.engine = None

    def __enter__(self) -> str:
        from sqlalchemy import create_engine, text

        admin_url = self.base.update_query_dict({"connect_timeout": "5"})
        self.engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with self.engine.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{self.schema}"'))
        url = self.base.update_query_dict({"options": f"-csearch_path={self.schema}"})
        return url.render_as_string(hide_password=False)

    def __exit__(self, *exc: object) -> None:
        from sqlalchemy import text

        if self.engine is None:
            return
        try:
            with self.engine.connect() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'))
        finally:
            self.engine.dispose()


def bench_database(label: str, database_url: str, workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    admin_token = secrets.token_urlsafe(24)
    server = Server(database_url, workdir, admin_token)
    log(f"[{label}] starting the server on {server.url}")
    started = time.monotonic()
    fixture = Fixture([], [])
    load: dict[str, Any] = {"bets": [], "health": [], "health_ceiling": None}
    derby: dict[str, Any] | None = None
    try:
        server.start()
        log(f"[{label}] server up in {time.monotonic() - started:.1f} s")
        if not args.skip_ladder:
            log(f"[{label}] setting up players and markets")
            fixture = setup_fixture(
                server.url, admin_token, players=args.players, markets=args.markets, selections=args.selections
            )
            log(f"[{label}] {len(fixture.players)} players, {len(fixture.selections)} selections; running the ladder")
            counter = BetCounter(database_url)
            try:
                load = asyncio.run(run_load(server, fixture, args, counter))
            finally:
                counter.close()
        if not args.skip_derby and server.alive():
            log(
                f"[{label}] derby night: {args.derby_duration:g} s at baseline {args.derby_rate:g} req/s "
                f"(peak x15), {args.derby_players} players"
            )
            try:
                derby = asyncio.run(run_derby(server, admin_token, args))
            except Exception as exc:  # report it; the ladder's figures still stand
                derby = {"failed": f"{type(exc).__name__}: {exc}"}
                log(f"[{label}] derby run failed: {derby['failed']}")
            else:
                log(f"[{label}] {_derby_line(derby['summary'])}")
        exit_code = None if server.alive() else server.proc.returncode  # type: ignore[union-attr]
    finally:
        server.stop()
        if args.server_log_dir is not None:
            args.server_log_dir.mkdir(parents=True, exist_ok=True)
            target = args.server_log_dir / f"server-{label.lower()}.log"
            shutil.copyfile(server.log_path, target)
            log(f"[{label}] server log copied to {target}")
    tail = server.log_tail(200)
    return {
        "database": label,
        "database_url": _redact(database_url),
        "players": len(fixture.players),
        "selections": len(fixture.selections),
        "bets": [s.as_dict() for s in load["bets"]],
        "health": [s.as_dict() for s in load["health"]],
        "health_ceiling": load["health_ceiling"].as_dict() if load["health_ceiling"] else None,
        "derby": derby,
        "server_exited_during_run": exit_code,
        "server_log_tail": tail,
    }


# ---------------------------------------------------------------------------------------- report


def _fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def _errors_text(errors: dict[str, int]) -> str:
    return ", ".join(f"{k}:{v}" for k, v in errors.items()) or "-"


def _step_header(ok_label: str) -> str:
    return (
        f"{'rate/s':>7} {'sent':>6} {'wire':>6} {'commit':>6} {ok_label:>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
        f"{'max ms':>8} "
        f"{'lag p99':>8} {'cli cpu%':>8} {'srv cpu%':>8} {'host%':>6} {'srv ms/req':>10} {'drain s':>7}  errors"
    )


def _step_row(s: dict[str, Any]) -> str:
    lat = s["latency_ok"]
    rate = "closed" if s["rate_offered"] is None else format(s["rate_offered"], "g")
    flag = "*" if s["generator_bound"] else " "
    return (
        f"{rate:>7} {s['sent']:>6} {s['on_wire']:>6} {_fmt(s['server_placed'], 'd'):>6} {s['ok_per_s']:>8.1f} "
        f"{_fmt(lat['p50_ms']):>8} {_fmt(lat['p95_ms']):>8} {_fmt(lat['p99_ms']):>8} {_fmt(lat['max_ms']):>8} "
        f"{_fmt(s['send_lag_p99_ms']):>8} {_fmt(s['client_cpu_pct'], '.0f'):>7}{flag} "
        f"{_fmt(s['server_cpu_pct'], '.0f'):>8} {_fmt(s['host_busy_pct'], '.0f'):>6} "
        f"{_fmt(s['server_cpu_ms_per_request'], '.2f'):>10} "
        f"{_fmt(s.get('settle_s')):>7}  "
        f"{_errors_text(s['errors'])}"
    )


def render_text(report: dict[str, Any]) -> str:
    lines: list[str] = []
    cfg = report["config"]
    parts = [] if cfg["skip_ladder"] else [f"rate ladder {', '.join(format(r, 'g') for r in cfg['rates'])} req/s"]
    if not cfg["skip_derby"]:
        parts.append(
            f"derby night {cfg['derby_duration_s']:g} s at baseline {cfg['derby_rate']:g} req/s "
            f"(peak {cfg['derby_peak_rate']:g}), {cfg['derby_players']} players"
        )
    lines.append(
        f"bet placement benchmark: {' + '.join(parts)}; deadline {cfg['timeout_s']:g} s, "
        f"{cfg['cpus']} CPUs, machine {_fmt(cfg.get('host_busy_before_pct'), '.0f')}% busy before the start"
    )
    if not cfg["skip_ladder"]:
        lines.append(
            f"ladder: {cfg['duration_s']:g} s per step, stake {STAKE_MINOR} minor units; "
            "open model: request i is due at t0 + i/rate; latency is from its scheduled send time to completion; "
            "accepted = HTTP 201 only; percentiles over the step's successful responses; "
            "wire = of those sent on schedule, how many the client put on a connection (the rest waited in its pool); "
            "commit = bets the server committed for the step (counted in the database, incl. answers nobody waited for)"
        )
        lines.append(
            "lag = how late the generator started a request; cli/srv cpu% = this process / the server process "
            "(100 = one core; PostgreSQL's own CPU is not in srv); "
            "host% = share of all the machine's cores busy (generator, server and database share them); "
            "srv ms/req = server CPU per request it received; "
            "drain = wait after the step until the server was idle again; * = generator-bound (cli cpu >= 90%)"
        )
    if not cfg["skip_derby"]:
        lines.append(
            "derby: the load generator's derby-night profile (open model, Poisson arrivals; mix 10% logins, 40% odds "
            "reads, 10% wallet reads, 40% bets with retries) on the same server (after the ladder); bet latency is "
            "scheduled -> final answer, retries included; peak = the stretch offering 15x the baseline; "
            "health ceiling = closed-loop GET /v1/health on the same server right after the derby run"
        )
    any_generator_bound = False
    for db in report["databases"]:
        lines.append("")
        if db.get("skipped"):
            lines.append(f"== {db['database']}: SKIPPED ({db['skipped']})")
            continue
        if db.get("failed"):
            lines.append(f"== {db['database']}  ({db['database_url']}): FAILED: {db['failed']}")
            continue
        ladder = "" if cfg["skip_ladder"] else f"; ladder {db['players']} players, {db['selections']} selections"
        lines.append(f"== {db['database']}  ({db['database_url']}{ladder})")
        if not cfg["skip_ladder"]:
            any_generator_bound |= _render_ladder(lines, db, cfg)
        derby = db.get("derby")
        if derby is not None:
            lines.append("")
            lines.append(f"-- {db['database']}: derby night (load generator, same server)")
            if derby.get("failed"):
                lines.append(f"FAILED: {derby['failed']}")
            else:
                lines.append(derby["table"])
                s = derby["summary"]
                srv = f"server cpu {_fmt(derby.get('server_cpu_pct'), '.0f')}% of a core while loaded"
                lines.append(f"{srv}, machine {_fmt(derby.get('host_busy_pct'), '.0f')}% busy")
                if s["health_ceiling"]:
                    c = s["health_ceiling"]
                    lines.append(
                        f"health ceiling right after ({cfg['health_concurrency']} in flight, {c['duration_s']:g} s): "
                        f"{c['ok_per_s']:.1f} req/s, cli cpu {_fmt(c['client_cpu_pct'], '.0f')}%, "
                        f"srv cpu {_fmt(c['server_cpu_pct'], '.0f')}%"
                        + ("  (generator-bound: a lower bound)" if c["generator_bound"] else "")
                    )
                lines.append(_derby_line(s))
        if db.get("server_exited_during_run") is not None:
            lines.append(f"  the server EXITED during the run with code {db['server_exited_during_run']}")
        if db.get("server_log_excerpt"):
            lines.append("  server log (warnings/errors, last lines):")
            lines.extend(f"    {line[:300]}" for line in db["server_log_excerpt"])
    if any_generator_bound:
        lines.append("")
        lines.append(
            "* the load generator used >= 90% of a core in that step: the figure is what this single Python "
            "process could drive, not the server's limit"
        )
    return "\n".join(lines)


def _render_ladder(lines: list[str], db: dict[str, Any], cfg: dict[str, Any]) -> bool:
    """The rate ladder's tables; True when any step was generator-bound."""
    any_generator_bound = False
    lines.append("POST /v1/bets")
    lines.append(_step_header("acc/s"))
    lines.extend(_step_row(s) for s in db["bets"])
    lines.append("GET /v1/health (same rates; then the closed-loop ceiling)")
    lines.append(_step_header("ok/s"))
    lines.extend(_step_row(s) for s in db["health"])
    c = db["health_ceiling"]
    if c:
        lines.append(_step_row(c) + f"   <- ceiling: {cfg['health_concurrency']} in flight, {c['duration_s']:g} s")
    any_generator_bound |= any(s["generator_bound"] for s in [*db["bets"], *db["health"], *([c] if c else [])])
    lines.append("ratio: accepted bets/s / health req/s at the same offered rate")
    lines.append(
        f"{'rate/s':>7} {'bets/s':>8} {'health/s':>9} {'ratio':>7}  {'bets p99':>9} {'health p99':>10} "
        f"{'srv cpu ms/req bets : health':>29}"
    )
    for r in db["ratios"]:
        lines.append(
            f"{r['rate_offered']:>7g} {r['bets_per_s']:>8.1f} {r['health_per_s']:>9.1f} "
            f"{_fmt(r['ratio'], '.3f'):>7}  {_fmt(r['bets_p99_ms']):>9} {_fmt(r['health_p99_ms']):>10} "
            f"{_fmt(r['bets_srv_cpu_ms'], '.2f'):>14} : {_fmt(r['health_srv_cpu_ms'], '.2f'):<12}"
        )
    if db.get("peak"):
        p = db["peak"]
        lines.append(
            f"peak: {p['bets_per_s']:.1f} accepted bets/s (at {p['at_rate']:g}/s offered) / health ceiling "
            f"{_fmt(p['health_ceiling_per_s'])} req/s = {_fmt(p['ratio'], '.3f')}"
            + (" (ceiling is generator-bound: a lower bound)" if c and c["generator_bound"] else "")
        )
        if p.get("cpu_ratio") is not None:
            lines.append(
                f"server CPU per request: bets {p['bets_srv_cpu_ms']:.2f} ms, "
                f"health {p['health_srv_cpu_ms']:.2f} ms "
                f"-> a CPU-bound server would place ~{p['cpu_ratio']:.3f} bets per health request "
                f"(~{p['cpu_bound_bets_per_s']:.0f} bets/s on one core)"
            )
    for kind in ("bets", "health"):
        for s in db[kind]:
            for status, samples in s["error_samples"].items():
                lines.append(f"  {kind} @ {s['rate_offered']:g}/s {status} e.g.: {samples[0][:300]}")
    return any_generator_bound


def _median(values: list[float]) -> float | None:
    ordered = sorted(values)
    return percentile(ordered, 50)


def add_ratios(db: dict[str, Any]) -> None:
    ratios = []
    for b, h in zip(db["bets"], db["health"], strict=False):
        ratios.append(
            {
                "rate_offered": b["rate_offered"],
                "bets_per_s": b["ok_per_s"],
                "health_per_s": h["ok_per_s"],
                "ratio": round(b["ok_per_s"] / h["ok_per_s"], 4) if h["ok_per_s"] else None,
                "bets_p99_ms": b["latency_ok"]["p99_ms"],
                "health_p99_ms": h["latency_ok"]["p99_ms"],
                "bets_srv_cpu_ms": b["server_cpu_ms_per_request"],
                "health_srv_cpu_ms": h["server_cpu_ms_per_request"],
            }
        )
    db["ratios"] = ratios
    if db["bets"]:
        best = max(db["bets"], key=lambda s: s["ok_per_s"])
        ceiling = db["health_ceiling"]["ok_per_s"] if db["health_ceiling"] else None
        peak: dict[str, Any] = {
            "bets_per_s": best["ok_per_s"],
            "at_rate": best["rate_offered"],
            "health_ceiling_per_s": ceiling,
            "ratio": round(best["ok_per_s"] / ceiling, 4) if ceiling else None,
        }
        # Server CPU per request, the median over the steps (the lowest rates are noisy; the figure is stable).
        bets_cpu = _median([s["server_cpu_ms_per_request"] for s in db["bets"] if s["server_cpu_ms_per_request"]])
        health_steps = [*db["health"], *([db["health_ceiling"]] if db["health_ceiling"] else [])]
        health_cpu = _median([s["server_cpu_ms_per_request"] for s in health_steps if s["server_cpu_ms_per_request"]])
        if bets_cpu and health_cpu:
            peak.update(
                bets_srv_cpu_ms=round(bets_cpu, 3),
                health_srv_cpu_ms=round(health_cpu, 3),
                cpu_ratio=round(health_cpu / bets_cpu, 4),
                cpu_bound_bets_per_s=round(1000 / bets_cpu, 1),
            )
        db["peak"] = peak
    excerpt = [
        line
        for line in db.get("server_log_tail", "").splitlines()
        if any(word in line for word in ("ERROR", "WARNING", "Traceback", "Error", "error"))
    ]
    db["server_log_excerpt"] = excerpt[-15:]


# ---------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--rates", default=DEFAULT_RATES, help=f"offered rates, req/s (default {DEFAULT_RATES})")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per step (default 5)")
    parser.add_argument(
        "--databases", default="sqlite,postgres", help="which databases: sqlite, postgres or both (default both)"
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("CONTROLPLANE_TEST_POSTGRES_URL") or DEFAULT_POSTGRES_URL,
        help="PostgreSQL database to create the scratch schema in\n"
        f"(default $CONTROLPLANE_TEST_POSTGRES_URL, else {DEFAULT_POSTGRES_URL})",
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
    parser.add_argument("--format", choices=("text", "json"), default="text")
    args = parser.parse_args(argv)
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
    CLIENT_MAX_CONNECTIONS[0] = args.max_connections
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
    baseline = host_busy_over(1.0)
    report["config"]["host_busy_before_pct"] = None if baseline is None else round(baseline * 100, 1)
    if baseline is not None and baseline > 0.15:
        log(
            f"warning: the machine was already {baseline * 100:.0f}% busy before the benchmark started "
            "(other processes); the figures will be noisy"
        )
    for name in args.databases:
        with tempfile.TemporaryDirectory(prefix="bench-bets-") as tmp:
            workdir = Path(tmp)
            if name == "sqlite":
                label = "SQLite"
                try:
                    db = bench_database(label, sqlite_target(workdir), workdir, args)
                except Exception as exc:  # report it and go on with the other database
                    db = {"database": label, "database_url": sqlite_target(workdir), "failed": repr(exc)}
            else:
                label = "PostgreSQL"
                why = postgres_reachable(args.postgres_url)
                if why is not None:
                    note = f"PostgreSQL at {_redact(args.postgres_url)} is unreachable ({why})"
                    log(f"[{label}] skipped: {note}")
                    report["databases"].append({"database": label, "skipped": note})
                    continue
                try:
                    with PostgresSchema(args.postgres_url) as url:
                        db = bench_database(label, url, workdir, args)
                except Exception as exc:
                    db = {"database": label, "database_url": _redact(args.postgres_url), "failed": repr(exc)}
            if not db.get("failed"):
                add_ratios(db)
            else:
                log(f"[{label}] failed: {db['failed']}")
            report["databases"].append(db)
    report["elapsed_s"] = round(time.monotonic() - started, 1)
    if args.format == "json":
        for db in report["databases"]:
            if isinstance(db.get("derby"), dict):
                db["derby"].pop("table", None)  # the same figures are in derby.report
        print(json.dumps(report, indent=2))
    else:
        print(render_text(report))
        print(f"\n(total run time {report['elapsed_s']:.0f} s)")
    return 1 if any(db.get("failed") for db in report["databases"]) else 0


if __name__ == "__main__":
    sys.exit(main())
