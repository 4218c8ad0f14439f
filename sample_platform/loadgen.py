"""Derby-night load generator: open-model arrivals of logins, odds reads, wallet reads and bets (with
client retries), long-lived SSE odds subscribers, and settlement of every market at full time.

    report = run_load(LoadConfig("http://127.0.0.1:8080", "derby-night", 120, 20, admin_token="changethis"))
    print(render_table(report))

Open model: arrival i is due at a time drawn from a Poisson process whose rate follows `rate_at`, and
is launched as its own task at that time whatever happened to the earlier ones; its latency runs
from that *scheduled* time, so a server (or generator) that falls behind shows up in the latency
instead of quietly lowering the offered load (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

PROFILES = ("derby-night", "steady", "spike")
PEAK_FACTOR = 15.0  # peak arrival rate as a multiple of the baseline
DERBY_RAMP_SECONDS = 10.0
MIX = (("login", 0.10), ("odds", 0.40), ("wallet", 0.10), ("bet", 0.40))
ACCEPT_PRICE_CHANGE = (("better", 0.45), ("any", 0.35), ("none", 0.20))
STAKES_MINOR = (100, 200, 500, 1000, 2000, 5000)
DEPOSIT_MINOR = 10**9
BET_RETRIES = 3
ODDS_MOVE_INTERVAL = 1.0  # seconds between the house's price moves (gives re-quotes and SSE events)
SETUP_CONCURRENCY = 8

BETS = "POST /v1/bets"
ODDS = "GET /v1/markets/{id}"
MARKETS = "GET /v1/markets"
LOGIN = "POST /v1/login"
WALLET = "GET /v1/wallet"
ODDS_CHANGE = "POST /v1/admin/markets/{id}/odds"
RESULT = "POST /v1/admin/markets/{id}/result"
SSE = "SSE /v1/odds/stream"


class LoadSetupError(RuntimeError):
    """The run could not start: target unreachable, admin token refused, setup calls failing."""


@dataclass
class LoadConfig:
    target: str  # base URL, e.g. http://127.0.0.1:8080
    profile: str  # "derby-night" | "steady" | "spike"
    duration: float  # seconds
    rate: float  # baseline requests/s (all routes together)
    admin_token: str | None  # when given, create own accounts and markets via the admin API
    players: int = 20
    markets: int = 4
    sse_subscribers: int = 5
    seed: int = 1
    request_timeout: float = 10.0
    max_outstanding: int = 2000  # arrivals beyond this many in flight are dropped, not queued
    max_connections: int = 256

    def __post_init__(self) -> None:
        _check_curve(self.profile, self.duration, self.rate)
        if not self.target.startswith(("http://", "https://")):
            raise ValueError(f"target must be an http(s) URL such as http://127.0.0.1:8080, not {self.target!r}")
        for name in ("players", "markets", "max_outstanding", "max_connections"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
        if self.sse_subscribers < 0:
            raise ValueError(f"sse_subscribers must be 0 or more, not {self.sse_subscribers}")
        if not self.request_timeout > 0:
            raise ValueError(f"request_timeout must be positive seconds, not {self.request_timeout}")


def _check_curve(profile: str, duration: float, baseline: float) -> None:
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    if not (math.isfinite(duration) and duration > 0):
        raise ValueError(f"duration must be a positive number of seconds, not {duration}")
    if not (math.isfinite(baseline) and baseline > 0):
        raise ValueError(f"rate must be a positive number of requests/s, not {baseline}")


def rate_at(profile: str, t: float, duration: float, baseline: float) -> float:
    """Offered arrival rate (req/s) at `t` seconds into a run of `duration` seconds."""
    _check_curve(profile, duration, baseline)
    peak = PEAK_FACTOR * baseline
    if profile == "steady":
        return baseline
    if profile == "spike":
        return peak if 0.4 * duration <= t < 0.6 * duration else baseline
    # derby-night: quiet build-up, the off (a linear ramp), the race (hold), then the crowd drifts away.
    ramp_start = 0.25 * duration
    ramp = min(DERBY_RAMP_SECONDS, 0.1 * duration)
    hold_end = ramp_start + ramp + 0.2 * duration
    if t < ramp_start:
        return baseline
    if t < ramp_start + ramp:
        return baseline + (peak - baseline) * (t - ramp_start) / ramp
    if t < hold_end:
        return peak
    tau = (duration - hold_end) / 4  # ~98% of the way back to the baseline by the end
    return baseline + (peak - baseline) * math.exp(-(t - hold_end) / tau)


def arrival_offsets(
    profile: str, duration: float, baseline: float, rng: random.Random, step: float = 0.01
) -> Iterator[float]:
    """Arrival times (seconds from the start) of a Poisson process following `rate_at`.

    Each gap is an Exp(1) amount of *integrated* rate (time rescaling), so the arrivals track the
    curve even where it jumps, instead of lagging a whole baseline gap behind a spike."""
    t = 0.0
    while True:
        need = rng.expovariate(1.0)
        while need > 0:
            if t >= duration:
                return
            dt = min(step, duration - t)
            r = rate_at(profile, t, duration, baseline)
            if r * dt >= need:
                t, need = t + need / r, 0.0
            else:
                t, need = t + dt, need - r * dt
        if t >= duration:
            return
        yield t


class Histogram:
    """Log-linear latency histogram (HDR-style), values in integer microseconds, ~2 significant digits.

    Values below 256 are exact; above, each power of two is cut into 128 buckets, so a reported value
    is at most 1/128 (<1%) above the true one. Sparse and mergeable."""

    SUB = 128

    def __init__(self) -> None:
        self.counts: Counter[int] = Counter()
        self.count = 0
        self.max = 0

    @classmethod
    def _index(cls, v: int) -> int:
        if v < 2 * cls.SUB:
            return v
        shift = v.bit_length() - 8  # v >> shift lands in [128, 256)
        return 2 * cls.SUB + (shift - 1) * cls.SUB + (v >> shift) - cls.SUB

    @classmethod
    def _highest(cls, index: int) -> int:
        """The largest value that lands in bucket `index`."""
        if index < 2 * cls.SUB:
            return index
        shift, top = divmod(index - 2 * cls.SUB, cls.SUB)
        shift, top = shift + 1, top + cls.SUB
        return ((top + 1) << shift) - 1

    def record(self, micros: int) -> None:
        v = max(0, int(micros))
        self.counts[self._index(v)] += 1
        self.count += 1
        self.max = max(self.max, v)

    def record_seconds(self, seconds: float) -> None:
        self.record(round(seconds * 1_000_000))

    def merge(self, other: Histogram) -> None:
        self.counts.update(other.counts)
        self.count += other.count
        self.max = max(self.max, other.max)

    def percentile(self, p: float) -> int | None:
        """Nearest-rank percentile in microseconds (None when empty)."""
        if not self.count:
            return None
        rank = max(1, math.ceil(p / 100 * self.count))
        seen = 0
        for index in sorted(self.counts):
            seen += self.counts[index]
            if seen >= rank:
                return min(self._highest(index), self.max)
        return self.max

    def summary_ms(self, points: tuple[float, ...] = (50, 95, 99)) -> dict[str, float | int | None]:
        out: dict[str, float | int | None] = {"n": self.count}
        for p in points:
            v = self.percentile(p)
            out[f"p{p:g}"] = None if v is None else round(v / 1000, 2)
        out["max"] = round(self.max / 1000, 2) if self.count else None
        return out


@dataclass
class RouteStats:
    sent: int = 0
    ok: int = 0
    replays: int = 0
    errors: Counter[str] = field(default_factory=Counter)  # "409 price-changed", "503", "ReadTimeout"
    latency: Histogram = field(default_factory=Histogram)

    def to_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "ok": self.ok,
            "replays": self.replays,
            "errors": dict(sorted(self.errors.items())),
            "latency_ms": self.latency.summary_ms((50, 95, 99)),
        }


@dataclass
class LoadReport:
    config: LoadConfig
    routes: dict[str, RouteStats] = field(default_factory=dict)
    arrivals: int = 0
    dropped_by_generator: int = 0
    cancelled_at_end: int = 0
    elapsed: float = 0.0  # from the first scheduled arrival until in-flight work drained
    completed: int = 0  # arrivals whose work finished (any outcome)
    accepted_keys: set[str] = field(default_factory=set)
    accepted_bet_ids: set[int] = field(default_factory=set)
    uncertain_keys: set[str] = field(default_factory=set)  # a transport error left the outcome open
    bet_retries: int = 0
    price_change_requotes: int = 0
    bet_latency: Histogram = field(default_factory=Histogram)  # scheduled -> final outcome, retries included
    sse_events: Counter[str] = field(default_factory=Counter)  # by SSE event name (odds, overflow ...)
    sse_lag: Histogram = field(default_factory=Histogram)
    start_lag: Histogram = field(default_factory=Histogram)  # how late the generator launched arrivals
    cpu_seconds: float = 0.0  # this process's CPU during load and drain (100% of elapsed = one core)
    settlements: list[dict] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    generator_errors: Counter[str] = field(default_factory=Counter)

    def route(self, name: str) -> RouteStats:
        return self.routes.setdefault(name, RouteStats())

    @property
    def bets_accepted(self) -> int:
        return len(self.accepted_keys)

    @property
    def bets_unknown(self) -> int:
        return len(self.uncertain_keys - self.accepted_keys)

    def errors_total(self) -> int:
        return sum(sum(r.errors.values()) for r in self.routes.values())

    def to_dict(self) -> dict[str, Any]:
        cfg = asdict(self.config)
        cfg["admin_token"] = "***" if cfg["admin_token"] else None
        ok = sum(r.ok for name, r in self.routes.items() if name not in (SSE, ODDS_CHANGE, RESULT))
        settled = {
            k: sum(s.get(k, 0) for s in self.settlements) for k in ("settled", "resettled", "won", "lost", "void")
        }
        return {
            "config": cfg,
            "elapsed_s": round(self.elapsed, 3),
            "arrivals": self.arrivals,
            "offered_rate": round(self.arrivals / self.config.duration, 2),
            "achieved_rate": round(self.completed / self.elapsed, 2) if self.elapsed else 0.0,
            "ok_rate": round(ok / self.elapsed, 2) if self.elapsed else 0.0,
            "dropped_by_generator": self.dropped_by_generator,
            "generator_start_lag_ms": self.start_lag.summary_ms((50, 99)),
            "generator_cpu_pct": round(100 * self.cpu_seconds / self.elapsed, 1) if self.elapsed else None,
            "cancelled_at_end": self.cancelled_at_end,
            "routes": {name: stats.to_dict() for name, stats in sorted(self.routes.items())},
            "bets_accepted": self.bets_accepted,
            "accepted_bet_ids": sorted(self.accepted_bet_ids),
            "bets_unknown": self.bets_unknown,
            "bet_retries": self.bet_retries,
            "price_change_requotes": self.price_change_requotes,
            "bet_latency_ms": self.bet_latency.summary_ms(),
            "sse": {
                "events": sum(self.sse_events.values()),
                "by_type": dict(self.sse_events),
                "lag_ms": self.sse_lag.summary_ms((50, 99)),
            },
            "settlement": {
                "markets": self.settlements,
                **settled,
                "all_settled": bool(self.settlements) and all(s.get("status") == "settled" for s in self.settlements),
            },
            "unavailable_routes": dict(self.unavailable),
            "notes": list(self.notes),
            "generator_errors": dict(self.generator_errors),
        }


@dataclass
class _Player:
    id: int
    username: str
    password: str | None
    token: str  # the account token from POST /v1/accounts
    session: str | None = None  # short-lived token from POST /v1/login, preferred while it works

    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.session or self.token}"}


@dataclass
class _Market:
    id: int
    price_version: int
    odds: dict[int, str]  # selection id -> decimal odds string
    status: str = "open"


def _pick(rng: random.Random, weighted: tuple[tuple[str, float], ...]) -> str:
    return rng.choices([k for k, _ in weighted], weights=[w for _, w in weighted])[0]


def _problem_slug(response: httpx.Response) -> str | None:
    if not response.headers.get("content-type", "").startswith("application/problem+json"):
        return None
    try:
        kind = response.json().get("type", "")
    except (ValueError, AttributeError):
        return None
    return kind.rsplit("/", 1)[-1] if kind.startswith("/problems/") else None


def _retry_after(response: httpx.Response | None) -> float | None:
    try:
        return float(response.headers["retry-after"]) if response is not None else None
    except (KeyError, ValueError):
        return None  # absent, or an HTTP date: fall back to our own backoff


def _epoch(value: Any) -> float | None:
    """`published_at` as epoch seconds: a number (s or ms) or an ISO 8601 string."""
    if isinstance(value, int | float):
        return value / 1000 if value > 1e12 else float(value)
    if isinstance(value, str):
        try:
            stamp = datetime.fromisoformat(value)
        except ValueError:
            return None
        return (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).timestamp()
    return None


class _Run:
    """One load run's state; everything it starts, it also ends."""

    def __init__(self, config: LoadConfig, client: httpx.AsyncClient, progress: Callable | None) -> None:
        self.config = config
        self.client = client
        self.progress = progress
        self.report = LoadReport(config)
        self.rng = random.Random(f"mix-{config.seed}")  # which request each arrival is
        self.house_rng = random.Random(f"house-{config.seed}")  # price moves and results
        self.jitter_rng = random.Random(f"jitter-{config.seed}")  # retry backoff
        self.loop = asyncio.get_running_loop()
        self.players: list[_Player] = []
        self.markets: dict[int, _Market] = {}  # the players' view of prices (odds reads and SSE)
        self.house: dict[int, _Market] = {}  # the trader's own view (admin responses)
        self.outstanding: set[asyncio.Task] = set()
        self.phase = "setup"
        self.t0 = self.loop.time()

    # ------------------------------------------------------------------ requests

    async def request(
        self, route: str, method: str, path: str, *, start: float, **kwargs: Any
    ) -> httpx.Response | None:
        """One HTTP attempt, recorded under `route`; latency from `start` (the scheduled time).
        The deadline counts from `start` too, so time spent queued in the generator is not free."""
        stats = self.report.route(route)
        stats.sent += 1
        timeout = kwargs.pop("timeout", self.config.request_timeout)
        try:
            async with asyncio.timeout_at(start + timeout):
                response = await self.client.request(method, path, **kwargs)
        except (httpx.HTTPError, TimeoutError) as exc:
            stats.errors[type(exc).__name__] += 1
            stats.latency.record_seconds(self.loop.time() - start)
            return None
        stats.latency.record_seconds(self.loop.time() - start)
        if response.headers.get("idempotent-replayed", "").lower() == "true":
            stats.replays += 1
        if response.is_success:
            stats.ok += 1
        else:
            slug = _problem_slug(response)
            stats.errors[f"{response.status_code} {slug}" if slug else str(response.status_code)] += 1
            if response.status_code in (404, 405) and route in (LOGIN, SSE):
                self.mark_unavailable(route, f"{response.status_code} from the server")
        return response

    def mark_unavailable(self, route: str, why: str) -> None:
        self.report.unavailable.setdefault(route, why)

    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.config.admin_token}"}

    async def setup_call(self, method: str, path: str, body: dict | None = None) -> httpx.Response:
        response = await self.client.request(method, path, json=body, headers=self.admin())
        if not response.is_success:
            raise LoadSetupError(f"load setup failed: {method} {path} -> {response.status_code}: {response.text[:300]}")
        return response

    # ------------------------------------------------------------------ setup

    async def setup(self) -> None:
        try:
            await self.create_fixture()
        except httpx.HTTPError as exc:
            raise LoadSetupError(
                f"load setup against {self.config.target} failed: {type(exc).__name__}: {exc}"
            ) from exc

    async def create_fixture(self) -> None:
        if self.config.admin_token is None:
            await self.use_existing_markets()
            return
        run_id = secrets.token_hex(4)
        gate = asyncio.Semaphore(SETUP_CONCURRENCY)

        async def make_player(i: int) -> _Player:
            async with gate:
                return await self.create_player(f"load-{run_id}-{i}")

        # return_exceptions: on a failure, wait for the rest to end too, so no setup task outlives the client.
        made = await asyncio.gather(*(make_player(i) for i in range(self.config.players)), return_exceptions=True)
        for outcome in made:
            if isinstance(outcome, BaseException):
                raise outcome
        self.players = list(made)
        for m in range(self.config.markets):
            runners = [{"name": f"runner {s + 1}", "odds": f"{self.house_rng.uniform(1.5, 12):.2f}"} for s in range(6)]
            body = {"name": f"load {run_id} race {m + 1}", "selections": runners}
            self.remember_market((await self.setup_call("POST", "/v1/admin/markets", body)).json(), house=True)

    async def create_player(self, username: str) -> _Player:
        password = secrets.token_urlsafe(12)
        response = await self.client.post(
            "/v1/accounts", json={"username": username, "password": password}, headers=self.admin()
        )
        if response.status_code == 422 and "password" in response.text:
            # This server's accounts take no password yet, so nobody can log in.
            self.mark_unavailable(LOGIN, "POST /v1/accounts takes no password on this server")
            password = None
            response = await self.setup_call("POST", "/v1/accounts", {"username": username})
        elif not response.is_success:
            raise LoadSetupError(
                f"load setup failed: POST /v1/accounts -> {response.status_code}: {response.text[:300]}"
            )
        account = response.json()
        await self.setup_call("POST", "/v1/admin/deposit", {"account_id": account["id"], "amount_minor": DEPOSIT_MINOR})
        return _Player(account["id"], username, password, account["token"])

    async def use_existing_markets(self) -> None:
        self.report.notes.append("no admin token: only odds reads and SSE ran (no accounts, bets, logins or wallet)")
        response = await self.client.get("/v1/markets")
        response.raise_for_status()
        for market in response.json().get("markets", []):
            if market.get("status") == "open":
                self.remember_market(market)
        if not self.markets:
            self.report.notes.append("the server has no open markets: the odds reads went to GET /v1/markets")

    def remember_market(self, view: dict, *, house: bool = False) -> None:
        odds = {s["id"]: s["odds"] for s in view["selections"]}
        self.markets[view["id"]] = _Market(view["id"], view["price_version"], dict(odds), view.get("status", "open"))
        if house:
            self.house[view["id"]] = _Market(view["id"], view["price_version"], dict(odds))

    def update_price(self, market_id: int, selection_id: int, odds: str, version: int) -> None:
        market = self.markets.get(market_id)
        if market is not None and version >= market.price_version and selection_id in market.odds:
            market.odds[selection_id], market.price_version = odds, version

    # ------------------------------------------------------------------ the mix

    def pick_kind(self, rng: random.Random) -> str:
        if self.config.admin_token is None:
            return "odds"
        kind = _pick(rng, MIX)
        # A missing login route must not lower the offered load: its share goes to odds reads.
        return "odds" if kind == "login" and LOGIN in self.report.unavailable else kind

    async def arrival(self, rng: random.Random, scheduled: float) -> None:
        """One arrival; `rng` is its own, so what it does depends on the seed, not on task timing."""
        kind = self.pick_kind(rng)
        self.report.start_lag.record_seconds(self.loop.time() - scheduled)
        try:
            if kind == "bet":
                await self.bet(rng, scheduled)
            elif kind == "login":
                await self.login(rng.choice(self.players), scheduled)
            elif kind == "wallet":
                await self.wallet(rng.choice(self.players), scheduled)
            else:
                await self.read_odds(rng.choice(list(self.markets)) if self.markets else None, scheduled)
        except Exception as exc:  # a generator bug must show up in the report, not end the run
            self.report.generator_errors[f"{kind}: {type(exc).__name__}: {exc}"[:200]] += 1
        self.report.completed += 1

    async def read_odds(self, market_id: int | None, start: float) -> None:
        if market_id is None:
            await self.request(MARKETS, "GET", "/v1/markets", start=start)
            return
        response = await self.request(ODDS, "GET", f"/v1/markets/{market_id}", start=start)
        if response is not None and response.status_code == 200:
            view = response.json()
            market = self.markets[market_id]
            if view["price_version"] >= market.price_version:
                market.price_version, market.status = view["price_version"], view["status"]
                market.odds = {s["id"]: s["odds"] for s in view["selections"]}

    async def login(self, player: _Player, start: float) -> None:
        body = {"username": player.username, "password": player.password}
        response = await self.request(LOGIN, "POST", "/v1/login", start=start, json=body)
        if response is not None and response.is_success:
            data = response.json()
            player.session = data.get("token") or data.get("access_token") or player.session

    async def wallet(self, player: _Player, start: float) -> None:
        response = await self.request(WALLET, "GET", "/v1/wallet", start=start, headers=player.bearer())
        if response is not None and response.status_code == 401:
            player.session = None  # the short-lived token expired: use the account token again

    # ------------------------------------------------------------------ bets

    def bet_body(self, market: _Market, selection_id: int, stake: int, accept: str) -> dict:
        return {
            "market_id": market.id,
            "selection_id": selection_id,
            "stake_minor": stake,
            "odds": market.odds[selection_id],
            "price_version": market.price_version,
            "accept_price_change": accept,
        }

    async def bet(self, rng: random.Random, scheduled: float) -> None:
        player = rng.choice(self.players)
        market = self.markets[rng.choice(list(self.markets))]
        selection_id = rng.choice(list(market.odds))
        stake, accept = rng.choice(STAKES_MINOR), _pick(rng, ACCEPT_PRICE_CHANGE)
        outcome = await self.place(player, self.bet_body(market, selection_id, stake, accept), scheduled)
        if outcome == "price-changed":
            # What a punter does: look at the new price and place a new bet (a new key) once.
            self.report.price_change_requotes += 1
            await self.read_odds(market.id, self.loop.time())
            await self.place(player, self.bet_body(market, selection_id, stake, accept), self.loop.time())
        self.report.bet_latency.record_seconds(self.loop.time() - scheduled)

    async def place(self, player: _Player, body: dict, start: float) -> str:
        """POST /v1/bets with one key, retried with the same key and body; returns the outcome."""
        key = str(uuid.uuid4())
        self.report.uncertain_keys.add(key)  # until an answer says otherwise (covers cancellation at the end)
        ambiguous = False  # a transport error: the server may still commit that attempt
        response: httpx.Response | None = None
        for attempt in range(BET_RETRIES + 1):
            if attempt:
                self.report.bet_retries += 1
                await asyncio.sleep(self.backoff(attempt, response))
                start = self.loop.time()
            headers = player.bearer() | {"Idempotency-Key": f'"{key}"'}
            response = await self.request(BETS, "POST", "/v1/bets", start=start, headers=headers, json=body)
            if response is None:
                ambiguous = True
                continue
            outcome = self.bet_outcome(player, key, body, response)
            if outcome != "retry":
                if not ambiguous:
                    self.report.uncertain_keys.discard(key)
                return outcome
        return "unknown"

    def bet_outcome(self, player: _Player, key: str, body: dict, response: httpx.Response) -> str:
        status, slug = response.status_code, _problem_slug(response)
        if status == 201:
            self.report.accepted_keys.add(key)
            self.report.accepted_bet_ids.add(int(response.json()["id"]))
            return "accepted"
        if status in (429, 503) or (status == 409 and slug == "idempotency-key-in-flight"):
            return "retry"
        if status == 409 and slug == "price-changed":
            problem = response.json()
            if "current_odds" in problem and "current_price_version" in problem:
                self.update_price(
                    body["market_id"], body["selection_id"], problem["current_odds"], problem["current_price_version"]
                )
            return "price-changed"
        if status == 401:
            player.session = None
        return "refused"

    def backoff(self, attempt: int, response: httpx.Response | None) -> float:
        """Jittered exponential backoff (0.1 s, 0.2 s, 0.4 s ...), at least the server's Retry-After."""
        base = min(2.0, 0.1 * 2 ** (attempt - 1))
        delay = base / 2 + self.jitter_rng.uniform(0, base / 2)  # jitter: retries of a burst do not realign
        hint = _retry_after(response)
        return max(delay, hint + self.jitter_rng.uniform(0, 0.1)) if hint is not None else delay

    # ------------------------------------------------------------------ background: house, SSE, progress

    async def move_prices(self) -> None:
        """The trading desk moves one price a second, as it would during a race."""
        while True:
            await asyncio.sleep(ODDS_MOVE_INTERVAL)
            market = self.house[self.house_rng.choice(list(self.house))]
            selection_id = self.house_rng.choice(list(market.odds))
            odds = max(1.05, float(market.odds[selection_id]) * self.house_rng.uniform(0.85, 1.15))
            body = {"selection_id": selection_id, "odds": f"{min(odds, 999.0):.2f}"}
            path = f"/v1/admin/markets/{market.id}/odds"
            response = await self.request(
                ODDS_CHANGE, "POST", path, start=self.loop.time(), json=body, headers=self.admin()
            )
            if response is not None and response.status_code == 200:
                view = response.json()
                market.price_version, market.odds = (
                    view["price_version"],
                    {s["id"]: s["odds"] for s in view["selections"]},
                )

    async def subscribe(self) -> None:
        """One long-lived SSE connection, reconnecting after a second if it drops."""
        stats = self.report.route(SSE)
        while SSE not in self.report.unavailable:
            start = self.loop.time()
            stats.sent += 1
            try:
                timeout = httpx.Timeout(self.config.request_timeout, read=None)  # events may be minutes apart
                async with self.client.stream(
                    "GET", "/v1/odds/stream", headers={"Accept": "text/event-stream"}, timeout=timeout
                ) as response:
                    stats.latency.record_seconds(self.loop.time() - start)
                    if response.status_code in (404, 405):
                        stats.errors[str(response.status_code)] += 1
                        self.mark_unavailable(SSE, f"{response.status_code} from the server")
                        return
                    if not response.is_success:
                        stats.errors[str(response.status_code)] += 1
                    else:
                        stats.ok += 1
                        await self.read_events(response)
            except httpx.HTTPError as exc:
                stats.errors[type(exc).__name__] += 1
            await asyncio.sleep(1.0)

    async def read_events(self, response: httpx.Response) -> None:
        name, data = "message", []
        async for line in response.aiter_lines():
            if line.startswith("data:"):
                data.append(line[5:].removeprefix(" "))
            elif line.startswith("event:"):
                name = line[6:].strip()
            elif not line:  # a blank line ends an event; comments (": keepalive") carry none
                if data:
                    self.on_event(name, "\n".join(data))
                name, data = "message", []

    def on_event(self, name: str, data: str) -> None:
        self.report.sse_events[name] += 1
        try:
            event = json.loads(data)
        except ValueError:
            return
        if not isinstance(event, dict):
            return
        published = _epoch(event.get("published_at"))
        if published is not None:
            self.report.sse_lag.record_seconds(time.time() - published)
        for part in (event, event.get("payload"), event.get("data")):
            if isinstance(part, dict) and {"market_id", "selection_id", "odds", "price_version"} <= part.keys():
                self.update_price(part["market_id"], part["selection_id"], part["odds"], part["price_version"])

    async def tick(self) -> None:
        while True:
            self.report_progress()
            await asyncio.sleep(0.25)

    def report_progress(self) -> None:
        if self.progress is None:
            return
        elapsed = max(0.0, self.loop.time() - self.t0)
        snapshot = {
            "phase": self.phase,
            "offered_rate": rate_at(
                self.config.profile, min(elapsed, self.config.duration), self.config.duration, self.config.rate
            ),
            "arrivals": self.report.arrivals,
            "sent": sum(r.sent for r in self.report.routes.values()),
            "errors": self.report.errors_total(),
            "outstanding": len(self.outstanding),
            "bets_accepted": self.report.bets_accepted,
        }
        self.progress(elapsed, snapshot)

    # ------------------------------------------------------------------ the run

    async def schedule(self) -> None:
        """Launch every arrival at its scheduled time, whatever happened to the earlier ones."""
        arrivals_rng = random.Random(f"arrivals-{self.config.seed}")
        self.t0 = self.loop.time() + 0.05
        for offset in arrival_offsets(self.config.profile, self.config.duration, self.config.rate, arrivals_rng):
            scheduled = self.t0 + offset
            delay = scheduled - self.loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            self.report.arrivals += 1
            rng = random.Random(self.rng.getrandbits(64))  # drawn even when dropped: arrival i is always the same
            if len(self.outstanding) >= self.config.max_outstanding:
                self.report.dropped_by_generator += 1  # bounded: never an unbounded queue in the generator
                continue
            task = asyncio.create_task(self.arrival(rng, scheduled))
            self.outstanding.add(task)
            task.add_done_callback(self.outstanding.discard)

    async def drain(self) -> None:
        """Let in-flight work finish (bets may still be retrying), for a bounded time."""
        if not self.outstanding:
            return
        limit = (BET_RETRIES + 1) * self.config.request_timeout + 10
        _, pending = await asyncio.wait(set(self.outstanding), timeout=limit)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        self.report.cancelled_at_end += len(pending)

    async def settle(self) -> None:
        """Full time: result every market of ours (same result again on failure: settlement is idempotent)."""
        for market in self.house.values():
            winner = self.house_rng.choice(list(market.odds))
            response = None
            for attempt in range(BET_RETRIES + 1):
                if attempt:
                    await asyncio.sleep(self.backoff(attempt, response))
                path = f"/v1/admin/markets/{market.id}/result"
                response = await self.request(
                    RESULT,
                    "POST",
                    path,
                    start=self.loop.time(),
                    json={"winner_selection_id": winner},
                    headers=self.admin(),
                    timeout=max(60.0, 6 * self.config.request_timeout),
                )
                if response is not None and response.status_code != 429 and response.status_code < 500:
                    break
            entry: dict[str, Any] = {"market_id": market.id, "winner_selection_id": winner, "status": "unsettled"}
            if response is not None and response.is_success:
                data = response.json()
                entry.update(data.get("settlement", {}), status=data.get("market", {}).get("status"))
            self.report.settlements.append(entry)

    async def run(self) -> LoadReport:
        background: list[asyncio.Task] = [asyncio.create_task(self.tick())]
        try:
            await self.setup()
            mover = asyncio.create_task(self.move_prices()) if self.house else None
            background += [mover] if mover else []
            background += [asyncio.create_task(self.subscribe()) for _ in range(self.config.sse_subscribers)]
            self.phase = "load"
            cpu = time.process_time()
            await self.schedule()
            self.phase = "draining"
            if mover:
                mover.cancel()  # prices are final once the race is run; bets still in flight drain
            await self.drain()
            self.report.elapsed = self.loop.time() - self.t0
            self.report.cpu_seconds = time.process_time() - cpu
            self.phase = "settling"
            await self.settle()
        finally:
            for task in [*background, *self.outstanding]:
                task.cancel()
            await asyncio.gather(*background, *self.outstanding, return_exceptions=True)
        self.phase = "done"
        self.report_progress()
        for route, why in self.report.unavailable.items():
            self.report.notes.append(
                f"{route} unavailable ({why})" + ("; its share went to odds reads" if route == LOGIN else "")
            )
        return self.report


async def run_load_async(
    config: LoadConfig,
    *,
    progress: Callable[[float, dict], None] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> LoadReport:
    """Run one load profile against `config.target`; `progress(elapsed_s, snapshot)` is called ~4x/s."""
    limits = httpx.Limits(max_connections=config.max_connections, max_keepalive_connections=config.max_connections)
    async with httpx.AsyncClient(
        base_url=config.target, timeout=config.request_timeout, limits=limits, transport=transport
    ) as client:
        return await _Run(config, client, progress).run()


def run_load(config: LoadConfig, *, show_progress: bool = True) -> LoadReport:
    """`run_load_async` in its own event loop, with a progress bar on stderr."""
    if not show_progress:
        return asyncio.run(run_load_async(config))
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (
        TextColumn("{task.description:<9}"),
        BarColumn(),
        TextColumn("{task.completed:>5.0f}/{task.total:.0f} s"),
        TimeElapsedColumn(),
        TextColumn("offered {task.fields[rate]:>7.1f}/s  sent {task.fields[sent]:>7}  errors {task.fields[errors]:>5}"),
    )
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task(config.profile, total=config.duration, rate=0.0, sent=0, errors=0)

        def progress(elapsed: float, snap: dict) -> None:
            done = elapsed if snap["phase"] == "load" else (config.duration if snap["phase"] != "setup" else 0)
            bar.update(
                task,
                completed=min(done, config.duration),
                description=snap["phase"],
                rate=snap["offered_rate"],
                sent=snap["sent"],
                errors=snap["errors"],
            )

        return asyncio.run(run_load_async(config, progress=progress))


def _fmt(value: float | int | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def render_table(report: LoadReport) -> str:
    """A fixed-width summary for a terminal."""
    d = report.to_dict()
    cfg = report.config
    lag = d["generator_start_lag_ms"]
    peak = cfg.rate if cfg.profile == "steady" else PEAK_FACTOR * cfg.rate
    behind = (lag["p99"] or 0) > 100 or (d["generator_cpu_pct"] or 0) > 90
    lines = [
        f"{cfg.profile} load against {cfg.target}: {cfg.duration:g} s at baseline {cfg.rate:g} req/s "
        f"(peak {peak:g}), seed {cfg.seed}",
        f"arrivals {d['arrivals']}  offered {d['offered_rate']:.1f}/s  achieved {d['achieved_rate']:.1f}/s  "
        f"2xx {d['ok_rate']:.1f}/s  over {d['elapsed_s']:.1f} s  dropped-by-generator {d['dropped_by_generator']}  "
        f"cancelled-at-end {d['cancelled_at_end']}",
        f"generator: start lag p50 {_fmt(lag['p50'])} ms p99 {_fmt(lag['p99'])} ms, "
        f"cpu {_fmt(d['generator_cpu_pct'])}% of a core"
        + ("  (the generator fell behind: latencies include its own lag)" if behind else ""),
        "",
        f"{'route':<34}{'sent':>7}{'ok':>7}{'replay':>7}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'max ms':>9}  errors",
    ]
    for name, r in d["routes"].items():
        lat = r["latency_ms"]
        errors = ", ".join(f"{k}: {v}" for k, v in r["errors"].items()) or "-"
        if name in report.unavailable:
            errors += "  (unavailable)"
        lines.append(
            f"{name:<34}{r['sent']:>7}{r['ok']:>7}{r['replays']:>7}"
            f"{_fmt(lat['p50']):>9}{_fmt(lat['p95']):>9}{_fmt(lat['p99']):>9}{_fmt(lat['max']):>9}  {errors}"
        )
    bl, sse, st = d["bet_latency_ms"], d["sse"], d["settlement"]
    by_type = ", ".join(f"{name} {n}" for name, n in sorted(sse["by_type"].items()))
    lines += [
        "",
        f"bets accepted {d['bets_accepted']} (unique keys)  unknown outcome {d['bets_unknown']}  "
        f"retries {d['bet_retries']}  price-change re-quotes {d['price_change_requotes']}",
        f"bet end-to-end (scheduled -> final answer, retries included) p50 {_fmt(bl['p50'])} ms "
        f"p99 {_fmt(bl['p99'])} ms max {_fmt(bl['max'])} ms",
        f"SSE events {sse['events']}" + (f" ({by_type})" if by_type else "") + "  publish-to-receive lag "
        f"p50 {_fmt(sse['lag_ms']['p50'])} ms p99 {_fmt(sse['lag_ms']['p99'])} ms",
        f"settlement: {len(st['markets'])} markets, all settled: {'yes' if st['all_settled'] else 'no'}; "
        f"settled {st['settled']} (won {st['won']}, lost {st['lost']}, void {st['void']})",
    ]
    lines += [f"note: {note}" for note in d["notes"]]
    lines += [f"generator error: {k} x{v}" for k, v in d["generator_errors"].items()]
    return "\n".join(lines)
