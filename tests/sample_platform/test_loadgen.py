"""The derby-night load generator: arrival curves, the histogram, the client logic against a fake
platform, and an end-to-end run reconciled with the database (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import random
import time

import httpx
import pytest
from sqlalchemy import select

from sample_platform.db import reader
from sample_platform.loadgen import (
    BETS,
    LOGIN,
    ODDS,
    PROFILES,
    SSE,
    Histogram,
    LoadConfig,
    LoadSetupError,
    arrival_offsets,
    rate_at,
    render_table,
    run_load_async,
)
from sample_platform.models import Bet, Market
from tests.conftest import ADMIN_TOKEN

# ---------------------------------------------------------------------------------------- rate_at


def test_steady_is_the_baseline_throughout() -> None:
    assert {rate_at("steady", t, 60, 7.5) for t in (0, 1, 30, 59.9)} == {7.5}


def test_spike_is_fifteen_times_the_baseline_for_the_middle_fifth() -> None:
    d, b = 100.0, 2.0
    assert rate_at("spike", 39.9, d, b) == b
    assert rate_at("spike", 40.0, d, b) == 15 * b
    assert rate_at("spike", 59.9, d, b) == 15 * b
    assert rate_at("spike", 60.0, d, b) == b
    assert rate_at("spike", 99, d, b) == b


def test_derby_night_builds_up_ramps_within_ten_seconds_holds_and_decays() -> None:
    d, b = 600.0, 2.0
    ramp_start = 0.25 * d
    assert rate_at("derby-night", 0, d, b) == b
    assert rate_at("derby-night", ramp_start - 0.01, d, b) == b
    mid_ramp = rate_at("derby-night", ramp_start + 5, d, b)
    assert b < mid_ramp < 15 * b
    assert rate_at("derby-night", ramp_start + 10, d, b) == pytest.approx(15 * b)
    hold_end = ramp_start + 10 + 0.2 * d
    assert rate_at("derby-night", hold_end - 0.01, d, b) == pytest.approx(15 * b)
    tail = [rate_at("derby-night", t, d, b) for t in range(int(hold_end), int(d) + 1, 10)]
    assert all(later < earlier for earlier, later in itertools.pairwise(tail)), "decays monotonically"
    assert b < tail[-1] < 1.5 * b, "back near the baseline by the end"


def test_derby_night_on_a_short_run_ramps_faster() -> None:
    d, b = 12.0, 4.0
    assert rate_at("derby-night", 2.9, d, b) == b
    assert rate_at("derby-night", 3 + 1.2, d, b) == pytest.approx(60.0)  # ramp of 10% of the run, < 10 s
    assert rate_at("derby-night", 11.9, d, b) < 2 * b


def test_past_the_profile_derby_night_keeps_decaying_and_steady_and_spike_stay_at_the_baseline() -> None:
    d, b = 120.0, 3.0
    after = [rate_at("derby-night", t, d, b) for t in (d, d + 10, d + 60, d + 600)]
    assert all(later < earlier for earlier, later in itertools.pairwise(after)), "still decaying"
    assert all(r > b for r in after[:-1]) and after[-1] == pytest.approx(b)  # approaches, never undershoots
    assert rate_at("derby-night", d, d, b) == pytest.approx(rate_at("derby-night", d - 1e-9, d, b))  # no jump
    for profile in ("steady", "spike"):
        assert {rate_at(profile, t, d, b) for t in (d, d + 0.5, 10 * d)} == {b}


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_arrivals_follow_the_curve(profile: str, seed: int) -> None:
    d, b = 40.0, 50.0
    expected = sum(rate_at(profile, (i + 0.5) * 0.01, d, b) * 0.01 for i in range(int(d / 0.01)))
    times = list(arrival_offsets(profile, d, b, random.Random(seed)))
    assert times == sorted(times) and 0 < times[0] and times[-1] < d
    assert len(times) == pytest.approx(expected, rel=0.05)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"profile": "cup-final"}, "choose one of derby-night, steady, spike"),
        ({"duration": 0}, "duration must be a positive"),
        ({"duration": -5}, "duration must be a positive"),
        ({"rate": 0}, "rate must be a positive"),
        ({"rate": float("nan")}, "rate must be a positive"),
        ({"target": "127.0.0.1:8080"}, "target must be an http"),
        ({"replicas": ("http://127.0.0.1:8081", "127.0.0.1:8082")}, "target must be an http.*not '127.0.0.1:8082'"),
        ({"replicas": ("http://127.0.0.1:8080",)}, "each target may be given once"),
        ({"players": 0}, "players must be at least 1"),
        ({"sse_subscribers": -1}, "sse_subscribers must be 0 or more"),
        ({"request_timeout": 0}, "request_timeout must be positive"),
        ({"extend_seconds": -1}, "extend_seconds must be 0 or a positive number of seconds, not -1"),
        ({"extend_seconds": float("nan")}, "extend_seconds must be 0 or a positive"),
        ({"extend_seconds": float("inf")}, "give a generous extension and set the stop signal"),
    ],
)
def test_invalid_config_is_refused_clearly(kwargs: dict, message: str) -> None:
    base = {"target": "http://127.0.0.1:8080", "profile": "steady", "duration": 10, "rate": 5, "admin_token": None}
    with pytest.raises(ValueError, match=message):
        LoadConfig(**(base | kwargs))


def test_rate_at_refuses_unknown_profiles_and_bad_numbers() -> None:
    with pytest.raises(ValueError, match="unknown profile 'flat'; choose one of derby-night, steady, spike"):
        rate_at("flat", 1, 10, 1)
    with pytest.raises(ValueError, match="duration"):
        rate_at("steady", 1, 0, 1)
    with pytest.raises(ValueError, match="rate"):
        rate_at("steady", 1, 10, -1)
    with pytest.raises(ValueError, match="extend_seconds must be 0 or a positive"):
        next(arrival_offsets("steady", 10, 1, random.Random(1), extend=-2))


# ---------------------------------------------------------------------------------------- histogram


def nearest_rank(ordered: list[int], p: float) -> int:
    return ordered[max(1, math.ceil(p / 100 * len(ordered))) - 1]


DISTRIBUTIONS = {
    "small-exact": lambda rng: rng.randint(0, 300),
    "uniform-ms": lambda rng: rng.randint(0, 50_000),
    "lognormal": lambda rng: int(rng.lognormvariate(9, 2)),  # a few us to minutes, long tail
    "bimodal": lambda rng: rng.choice([rng.randint(800, 1200), rng.randint(2_000_000, 3_000_000)]),
}


@pytest.mark.parametrize("distribution", sorted(DISTRIBUTIONS))
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_histogram_percentiles_match_a_sorted_list_to_two_digits(distribution: str, seed: int) -> None:
    rng = random.Random(seed)
    values = [DISTRIBUTIONS[distribution](rng) for _ in range(rng.randint(1, 5000))]
    hist = Histogram()
    for v in values:
        hist.record(v)
    ordered = sorted(values)
    assert hist.count == len(values) and hist.max == ordered[-1]
    for p in (0.1, 1, 50, 90, 95, 99, 99.9, 100):
        exact, got = nearest_rank(ordered, p), hist.percentile(p)
        assert exact <= got <= exact + exact / 128, (p, exact, got)


def test_histogram_merge_equals_recording_everything_in_one() -> None:
    rng = random.Random(9)
    a, b, both = Histogram(), Histogram(), Histogram()
    for i in range(3000):
        v = int(rng.expovariate(1 / 20_000))
        (a if i % 3 else b).record(v)
        both.record(v)
    a.merge(b)
    assert a.counts == both.counts and a.count == both.count and a.max == both.max
    assert [a.percentile(p) for p in (50, 99)] == [both.percentile(p) for p in (50, 99)]


def test_histogram_empty_and_seconds() -> None:
    hist = Histogram()
    assert hist.percentile(50) is None and hist.summary_ms() == {
        "n": 0,
        "p50": None,
        "p95": None,
        "p99": None,
        "max": None,
    }
    hist.record_seconds(0.0123)
    hist.record_seconds(-1)  # clock skew: counted as zero, never negative
    assert hist.summary_ms()["max"] == 12.3 and hist.percentile(1) == 0


# ---------------------------------------------------------------------------------------- fake platform


class FakePlatform:
    """Just enough of the platform's API, with the misbehaviour a client must survive: the first try of
    every 4th bet is shed (503), the answer to every 5th bet's first try is lost after the bet commits,
    the house moves the price every 6th bet, and POST /v1/login does not exist."""

    def __init__(self, *, takes_passwords: bool = True) -> None:
        self.takes_passwords = takes_passwords
        self.next_id = 100
        self.market: dict = {}
        self.bets: dict[str, tuple[int, str]] = {}  # key -> (bet id, body)
        self.attempts: dict[str, list[str]] = {}  # key -> bodies sent under it
        self.bet_requests = 0

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path, method = request.url.path, request.method
        body = json.loads(request.content) if request.content else None
        if (method, path) == ("POST", "/v1/accounts"):
            if not self.takes_passwords and "password" in body:
                problem = {"type": "/problems/validation", "detail": "password: Extra inputs are not permitted"}
                return httpx.Response(422, json=problem, headers={"content-type": "application/problem+json"})
            assert body.get("password") or not self.takes_passwords, "players are created with a password"
            return httpx.Response(201, json={"id": self.new_id(), "username": body["username"], "token": "tok"})
        if (method, path) == ("POST", "/v1/admin/deposit"):
            return httpx.Response(200, json={"ok": True})
        if (method, path) == ("POST", "/v1/admin/markets"):
            sels = [{"id": self.new_id(), "name": s["name"], "odds": s["odds"]} for s in body["selections"]]
            self.market = {
                "id": self.new_id(),
                "name": body["name"],
                "status": "open",
                "price_version": 1,
                "selections": sels,
            }
            return httpx.Response(201, json=self.market)
        if method == "GET" and path.startswith("/v1/markets/"):
            return httpx.Response(200, json=self.market)
        if method == "POST" and path.endswith("/odds"):
            self.market["price_version"] += 1
            return httpx.Response(200, json=self.market)
        if method == "POST" and path.endswith("/result"):
            self.market["status"] = "settled"
            report = {"settled": len(self.bets), "resettled": 0, "won": 1, "lost": len(self.bets) - 1, "void": 0}
            return httpx.Response(200, json={"market": self.market, "settlement": report})
        if (method, path) == ("GET", "/v1/wallet"):
            return httpx.Response(200, json={"balance_minor": 1, "held_minor": 0, "owed_minor": 0})
        if (method, path) == ("GET", "/v1/odds/stream"):
            event = {"market_id": self.market["id"], "selection_id": 1, "odds": "2.00", "price_version": 0}
            event["published_at"] = time.time() - 0.005
            text = f": connected\n\nid: 1\nevent: odds\ndata: {json.dumps(event)}\n\n"
            return httpx.Response(200, text=text, headers={"content-type": "text/event-stream"})
        if (method, path) == ("POST", "/v1/bets"):
            return self.bet(request, body)
        return httpx.Response(404, json={"detail": "Not Found"})

    def bet(self, request: httpx.Request, body: dict) -> httpx.Response:
        key = request.headers["idempotency-key"]
        assert key.startswith('"') and key.endswith('"')
        sent = self.attempts.setdefault(key, [])
        sent.append(request.content.decode())
        if key in self.bets:
            bet_id, _ = self.bets[key]
            return httpx.Response(201, json={"id": bet_id}, headers={"Idempotent-Replayed": "true"})
        self.bet_requests += 1
        n = self.bet_requests
        if len(sent) == 1 and n % 4 == 0:
            return httpx.Response(
                503,
                headers={"Retry-After": "0", "content-type": "application/problem+json"},
                content=b'{"type": "/problems/overloaded", "status": 503}',
            )
        if n % 6 == 0:
            self.market["price_version"] += 1
        if body["price_version"] != self.market["price_version"] and body["accept_price_change"] != "any":
            problem = {
                "type": "/problems/price-changed",
                "status": 409,
                "current_price_version": self.market["price_version"],
            }
            return httpx.Response(409, json=problem, headers={"content-type": "application/problem+json"})
        self.bets[key] = (self.new_id(), request.content.decode())
        if len(sent) == 1 and n % 5 == 0:
            raise httpx.ReadTimeout("the answer was lost", request=request)
        return httpx.Response(201, json={"id": self.bets[key][0], "status": "open"})


def test_client_logic_against_a_fake_platform() -> None:
    fake = FakePlatform()
    config = LoadConfig("http://fake", "steady", 3.0, 40.0, "admin", players=3, markets=1, sse_subscribers=2)
    ticks: list[tuple[float, dict]] = []
    report = asyncio.run(
        run_load_async(config, progress=lambda t, s: ticks.append((t, s)), transport=httpx.MockTransport(fake))
    )
    out = report.to_dict()
    json.dumps(out)  # JSON types only

    # Every committed bet is accepted exactly once, including those whose first answer was lost.
    assert out["bets_accepted"] == len(fake.bets) > 10
    assert set(out["accepted_bet_ids"]) == {bet_id for bet_id, _ in fake.bets.values()}
    assert out["bets_unknown"] == 0
    # Retries reuse the key with the very same body; lost answers come back as replays.
    assert all(len(set(bodies)) == 1 for bodies in fake.attempts.values())
    assert out["bet_retries"] > 0 and out["routes"][BETS]["replays"] > 0
    assert out["routes"][BETS]["errors"].get("503 overloaded", 0) > 0
    assert out["routes"][BETS]["errors"].get("ReadTimeout", 0) > 0
    assert out["price_change_requotes"] > 0
    # The login route is missing: reported, its share given to odds reads, nothing crashed.
    assert LOGIN in out["unavailable_routes"] and any("POST /v1/login unavailable" in n for n in out["notes"])
    assert out["routes"][LOGIN]["sent"] <= 10 and out["routes"][ODDS]["sent"] > 0
    assert out["sse"]["events"] >= 2 and out["sse"]["by_type"]["odds"] >= 2 and out["sse"]["lag_ms"]["p50"] >= 4
    assert out["settlement"]["all_settled"] and out["settlement"]["settled"] == len(fake.bets)
    assert out["generator_errors"] == {} and out["dropped_by_generator"] == 0
    assert ticks and ticks[-1][1]["phase"] == "done" and ticks[-1][1]["sent"] > 0
    table = render_table(report)
    assert BETS in table and "bets accepted" in table and "(unavailable)" in table


def test_the_load_is_spread_over_replicas_and_counted_per_replica() -> None:
    fake = FakePlatform()
    hosts: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        hosts.append(request.url.host)
        return fake(request)

    config = LoadConfig(
        "http://r1", "steady", 3.0, 40.0, "admin", players=3, markets=1, sse_subscribers=2, replicas=("http://r2",)
    )
    report = asyncio.run(run_load_async(config, transport=httpx.MockTransport(handler)))
    out = report.to_dict()
    replicas = out["replicas"]
    assert set(replicas) == {"http://r1", "http://r2"} and set(hosts) == {"r1", "r2"}
    # Round-robin over requests and stream subscriptions together: each replica got half of them, to one.
    turns = {url: r["requests"] + r["streams"] for url, r in replicas.items()}
    assert abs(turns["http://r1"] - turns["http://r2"]) <= 1
    assert sum(r["requests"] for r in replicas.values()) == len(hosts) - sum(r["streams"] for r in replicas.values())
    assert all(r["streams"] >= 1 for r in replicas.values())  # 2 subscribers, reconnecting when cut off
    # New bets answered per replica: all of them but those whose answer was lost (accepted later as replays).
    answered = sum(r["bets_accepted"] for r in replicas.values())
    assert out["bets_accepted"] - out["routes"][BETS]["replays"] <= answered <= out["bets_accepted"]
    assert all(r["bets_accepted"] > 0 and r["errors"] > 0 for r in replicas.values())
    assert sum(r["failures"] for r in replicas.values()) == out["routes"][BETS]["errors"]["ReadTimeout"]
    table = render_table(report)
    assert "http://r1, http://r2" in table and "replica" in table


def test_one_target_reports_no_replicas() -> None:
    config = LoadConfig("http://fake", "steady", 1.0, 20.0, "admin", players=2, markets=1, sse_subscribers=0)
    assert (
        asyncio.run(run_load_async(config, transport=httpx.MockTransport(FakePlatform()))).to_dict()["replicas"] == {}
    )


def test_a_server_whose_accounts_take_no_password_runs_without_logins() -> None:
    fake = FakePlatform(takes_passwords=False)
    config = LoadConfig("http://fake", "steady", 1.5, 30.0, "admin", players=2, markets=1, sse_subscribers=0)
    out = asyncio.run(run_load_async(config, transport=httpx.MockTransport(fake))).to_dict()
    assert out["unavailable_routes"] == {LOGIN: "POST /v1/accounts takes no password on this server"}
    assert LOGIN not in out["routes"]
    assert out["bets_accepted"] == len(fake.bets) > 0


def test_without_an_admin_token_only_odds_reads_and_sse_run() -> None:
    market = {
        "id": 7,
        "name": "m",
        "status": "open",
        "price_version": 3,
        "selections": [{"id": 1, "name": "a", "odds": "2.00"}],
    }
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.path}")
        if request.url.path == "/v1/markets":
            return httpx.Response(200, json={"markets": [market]})
        if request.url.path == "/v1/markets/7":
            return httpx.Response(200, json=market)
        return httpx.Response(405)

    config = LoadConfig("http://fake", "spike", 1.0, 20.0, None, sse_subscribers=1)
    report = asyncio.run(run_load_async(config, transport=httpx.MockTransport(handler)))
    out = report.to_dict()
    assert set(out["routes"]) == {ODDS, SSE}
    assert out["routes"][ODDS]["ok"] == out["arrivals"] > 0
    assert set(seen) == {"GET /v1/markets", "GET /v1/markets/7", "GET /v1/odds/stream"}
    assert SSE in out["unavailable_routes"]
    assert any("only odds reads and SSE ran" in n for n in out["notes"])
    assert out["bets_accepted"] == 0 and out["settlement"]["markets"] == []


def test_an_unreachable_target_is_reported_not_raised_during_the_run() -> None:
    market = {
        "id": 7,
        "name": "m",
        "status": "open",
        "price_version": 1,
        "selections": [{"id": 1, "name": "a", "odds": "2.00"}],
    }
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if request.url.path == "/v1/markets":
            return httpx.Response(200, json={"markets": [market]})
        raise httpx.ConnectError("connection refused", request=request)

    config = LoadConfig("http://fake", "steady", 0.5, 20.0, None, sse_subscribers=1)
    out = asyncio.run(run_load_async(config, transport=httpx.MockTransport(handler))).to_dict()
    assert out["routes"][ODDS]["errors"] == {"ConnectError": out["routes"][ODDS]["sent"]}
    assert out["routes"][SSE]["errors"]["ConnectError"] >= 1


# ---------------------------------------------------------------------------------------- end to end


@pytest.mark.slow
@pytest.mark.timing
def test_derby_night_end_to_end_reconciles_with_the_database(server, engine) -> None:  # type: ignore[no-untyped-def]
    config = LoadConfig(server.url, "derby-night", 12.0, 4.0, ADMIN_TOKEN, players=10, markets=3, sse_subscribers=3)
    report = asyncio.run(run_load_async(config))
    out = report.to_dict()
    print(render_table(report))

    with reader(engine).connect() as conn:
        bet_ids = set(conn.execute(select(Bet.__table__.c.id)).scalars())
        open_bets = conn.execute(select(Bet.__table__.c.id).where(Bet.__table__.c.status == "open")).all()
        statuses = set(conn.execute(select(Market.__table__.c.status)).scalars())
    assert out["bets_accepted"] == len(bet_ids) > 20
    assert set(out["accepted_bet_ids"]) == bet_ids
    assert out["bets_unknown"] == 0 and out["cancelled_at_end"] == 0 and out["dropped_by_generator"] == 0
    # A busy server may shed (503 overloaded) or time a lock out (503 database-busy), both retryable with
    # Retry-After; any other 5xx is a server error.
    five_xx = {
        f"{route} {err}": n
        for route, r in out["routes"].items()
        for err, n in r["errors"].items()
        if err.startswith("5") and err not in ("503 overloaded", "503 database-busy")
    }
    assert five_xx == {}
    assert out["generator_errors"] == {}
    assert out["settlement"]["all_settled"] and len(out["settlement"]["markets"]) == 3
    assert out["settlement"]["settled"] == len(bet_ids) and not open_bets
    assert statuses == {"settled"}
    assert out["routes"][BETS]["sent"] > 0 and out["routes"][ODDS]["ok"] > 0
    assert out["arrivals"] > 150  # the curve's integral is ~290 arrivals


def refuse_admin(request: httpx.Request) -> httpx.Response:
    return httpx.Response(403, json={"detail": "this call needs the admin token"})


def unreachable(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


@pytest.mark.parametrize(
    ("handler", "message"),
    [(refuse_admin, "POST /v1/accounts -> 403"), (unreachable, "http://fake failed: ConnectError")],
)
def test_setup_failures_raise_a_clear_error_and_leave_nothing_running(handler, message: str) -> None:  # type: ignore[no-untyped-def]
    config = LoadConfig("http://fake", "steady", 1.0, 5.0, "wrong-token", sse_subscribers=2)
    with pytest.raises(LoadSetupError, match=message):
        asyncio.run(run_load_async(config, transport=httpx.MockTransport(handler)))
