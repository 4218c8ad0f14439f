"""The bet placement benchmark's rate ladder: players and markets set up through the API, open-model
steps of `POST /v1/bets` and `GET /v1/health`, the closed-loop health ceiling, and waiting for the
server to drain between steps.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import secrets
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import func, select

from bench.support import CpuMark, CpuUse, PlatformServer, fmt, log, percentile
from sample_platform.client import PlatformClient
from sample_platform.db import make_engine, reader
from sample_platform.models import Bet, table

STAKE_MINOR = 100
DEPOSIT_MINOR = 10**10
GENERATOR_BOUND = 0.9  # client CPU (fraction of a core) above which the load generator is the bottleneck


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


# ---------------------------------------------------------------------------------------- stats


def summarise_ms(values: list[float]) -> dict[str, float | None]:
    ordered = sorted(values)
    out: dict[str, float | None] = {"n": len(ordered)}
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

    def record_cpu(self, use: CpuUse) -> None:
        self.client_cpu = use.client
        self.server_cpu = use.server
        self.server_cpu_s = use.server_s
        self.host_busy = use.host

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
                f"still waiting for one of the client's connections (--max-connections) {timeout:g} s "
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
    server: PlatformServer,
) -> StepResult:
    """Send round(rate*duration) requests at t0 + i/rate, regardless of earlier responses."""
    result = StepResult(endpoint=endpoint, mode="open", rate_offered=rate, duration_s=duration)
    loop = asyncio.get_running_loop()
    count = max(1, round(rate * duration))
    specs = [make(i) for i in range(count)]  # built up front so building them costs no send time
    start = CpuMark.now(server)
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
    result.record_cpu(CpuUse.between(start, CpuMark.now(server)))
    return result


class BetCounter:
    """Counts the bets table directly, to see what the server committed (including for requests the
    generator had already given up on)."""

    def __init__(self, database_url: str) -> None:
        self.engine = make_engine(database_url, pool_size=1)
        self.reader = reader(self.engine)

    def count(self) -> int | None:
        try:
            with self.reader.connect() as conn:
                return conn.execute(select(func.count()).select_from(table(Bet))).scalar_one()
        except Exception as exc:  # a failed count must not stop the benchmark
            log.info(f"  (could not count bets: {type(exc).__name__}: {exc})")
            return None

    def close(self) -> None:
        self.engine.dispose()


async def settle(
    client: httpx.AsyncClient,
    limit: float,
    server: PlatformServer,
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
    client: httpx.AsyncClient, *, concurrency: int, duration: float, timeout: float, server: PlatformServer
) -> StepResult:
    """`concurrency` workers each sending GET /v1/health back to back: the most the pair can do."""
    result = StepResult(endpoint="health", mode="closed", rate_offered=None, duration_s=duration)
    loop = asyncio.get_running_loop()
    start = CpuMark.now(server)
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
    result.record_cpu(CpuUse.between(start, CpuMark.now(server)))
    return result


async def run_load(
    server: PlatformServer, fixture: Fixture, args: argparse.Namespace, counter: BetCounter | None = None
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
                log.info(f"  warm-up {warm.endpoint} answers: {dict(warm.statuses)}; samples: {warm.samples}")
    for n, rate in enumerate(args.rates):
        for endpoint in ("bets", "health"):
            if not server.alive():
                log.info("  the server has exited; stopping this database's run")
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
            log.info(
                f"  {endpoint:<6} @ {rate:>6g}/s: sent {step.sent}, ok {step.ok_per_s:.1f}/s, "
                f"p50 {fmt(lat['p50_ms'])} ms, p99 {fmt(lat['p99_ms'])} ms, errors {step.errors() or '-'}, "
                + (f"committed {step.server_placed}, " if step.server_placed is not None else "")
                + f"cli cpu {fmt(step.client_cpu and step.client_cpu * 100, '.0f')}%, "
                f"srv cpu {fmt(step.server_cpu and step.server_cpu * 100, '.0f')}%, drained in {step.settle_s:.1f} s"
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
        log.info(
            f"  health ceiling ({args.health_concurrency} in flight): {ceiling.ok_per_s:.1f} req/s, "
            f"cli cpu {fmt(ceiling.client_cpu and ceiling.client_cpu * 100, '.0f')}%, "
            f"srv cpu {fmt(ceiling.server_cpu and ceiling.server_cpu * 100, '.0f')}%"
        )
    return out
