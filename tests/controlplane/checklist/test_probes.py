"""Active probes: a pass against the real platform, a fail (limits off, a long timeout, a platform
that bets twice or never sheds), and unknown (no token, platform down, another instant)."""

from __future__ import annotations

import json
from datetime import timedelta

import httpx
import pytest
from pydantic import SecretStr

from controlplane.checklist.probes import probe_idempotency, probe_latency, probe_login_limit, probe_shedding
from tests.conftest import ADMIN_TOKEN
from tests.controlplane.checklist.conftest import assert_outcome, check

TOKEN = SecretStr(ADMIN_TOKEN)


def _params(kind: str, **params):
    return check({"type": kind, **params}).evaluator


def test_every_probe_passes_against_the_platform_and_leaves_players_alone(start_platform, make_ctx) -> None:
    server, client = start_platform()
    ctx = make_ctx(platform_url=server.url, platform_admin_token=TOKEN)

    idem = probe_idempotency(_params("probe_idempotency", stake_minor=100), ctx)
    assert_outcome(idem, "pass", "one bet")
    assert idem.evidence["statuses"] == [201, 201] and idem.evidence["wallet_balance_minor"] == 900
    assert idem.evidence["replayed_header"] == "true"
    market = client.market(idem.evidence["market_id"])
    assert market["synthetic"] is True and market["result"]["void"] is True, "the probe market is voided"

    login = probe_login_limit(_params("probe_login_limit"), ctx)
    assert_outcome(login, "pass", "429")
    assert login.evidence["statuses"][-1] == 429 and int(login.evidence["retry_after"]) >= 1

    latency = probe_latency(_params("probe_latency", latency_ms=300), ctx)
    assert_outcome(latency, "pass", "answered 200")
    assert latency.evidence["elapsed_ms"] >= 300 and latency.evidence["request_timeout_seconds"] == 10

    shed = probe_shedding(_params("probe_shedding", latency_ms=1500), ctx)
    assert_outcome(shed, "pass", "503")
    assert shed.evidence["bound"] == 2 and shed.evidence["statuses"].count(503) >= 1

    public = httpx.get(f"{server.url}/v1/markets", timeout=30).json()["markets"]
    assert all(not m["synthetic"] for m in public), "players never see a probe's market"
    faults = httpx.get(f"{server.url}/v1/admin/faults", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).json()
    assert faults["faults"] == [], "probe faults are cleared"


def test_login_probe_fails_when_limits_are_off(start_platform, make_ctx) -> None:
    server, _client = start_platform(
        login_max_failures=1000, login_attempts_per_minute_account=1000, login_attempts_per_minute_address=1000
    )
    ctx = make_ctx(platform_url=server.url, platform_admin_token=TOKEN)
    outcome = probe_login_limit(_params("probe_login_limit", max_attempts=6), ctx)
    assert_outcome(outcome, "fail", "never refused with 429")
    assert outcome.evidence["statuses"] == [401] * 6


def test_latency_probe_fails_on_a_timeout_too_long_or_too_short(start_platform, make_ctx) -> None:
    server, _client = start_platform(request_timeout_seconds=60)
    ctx = make_ctx(platform_url=server.url, platform_admin_token=TOKEN)
    assert_outcome(probe_latency(_params("probe_latency", max_timeout_seconds=30), ctx), "fail", "above 30s")
    server, _client = start_platform(request_timeout_seconds=0.2)
    ctx = make_ctx(platform_url=server.url, platform_admin_token=TOKEN)
    outcome = probe_latency(_params("probe_latency", latency_ms=1000), ctx)
    assert_outcome(outcome, "fail", "got 504")


class FakePlatform:
    """A broken platform for what the real one will not do: take a stake twice, or never shed."""

    def __init__(self, *, double_stake: bool = False) -> None:
        self.double_stake = double_stake
        self.bets = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        route = f"{request.method} {request.url.path}"
        if route == "GET /":
            return httpx.Response(200, json={"service": "x", "docs": "/", "request_timeout_seconds": 10,
                                             "synthetic_max_in_flight": 2})  # fmt: skip
        if route == "POST /v1/accounts":
            body = json.loads(request.content)
            return httpx.Response(201, json={"id": 7, "username": body["username"], "token": "t", "synthetic": True})
        if route == "POST /v1/admin/markets":
            selections = [{"id": 1, "name": "home", "odds": "2.00"}, {"id": 2, "name": "away", "odds": "2.00"}]
            return httpx.Response(201, json={"id": 3, "price_version": 1, "selections": selections})
        if route == "POST /v1/bets":
            self.bets += 1
            return httpx.Response(201, json={"id": self.bets})
        if route == "GET /v1/wallet":
            return httpx.Response(200, json={"balance_minor": 1000 - 100 * self.bets})
        if route == "POST /v1/admin/faults":
            return httpx.Response(201, json={"id": "f1"})
        return httpx.Response(200, json={})


def test_idempotency_probe_fails_on_a_platform_that_bets_twice(make_ctx) -> None:
    ctx = make_ctx(platform_url="http://platform.test", platform_admin_token=TOKEN)
    ctx.transport = httpx.MockTransport(FakePlatform())
    outcome = probe_idempotency(_params("probe_idempotency"), ctx)
    assert_outcome(outcome, "fail", "gave bets 1 and 2")
    assert outcome.evidence["wallet_balance_minor"] == 800


def test_shedding_probe_fails_when_nothing_is_shed(make_ctx) -> None:
    ctx = make_ctx(platform_url="http://platform.test", platform_admin_token=TOKEN)
    ctx.transport = httpx.MockTransport(FakePlatform())
    outcome = probe_shedding(_params("probe_shedding"), ctx)
    assert_outcome(outcome, "fail", "none of 4")


@pytest.mark.parametrize("kind", ["probe_idempotency", "probe_login_limit", "probe_latency", "probe_shedding"])
def test_probes_are_unknown_when_they_cannot_probe(make_ctx, kind: str) -> None:
    from controlplane.checklist import probes

    fn = getattr(probes, kind)
    assert_outcome(fn(_params(kind), make_ctx(platform_admin_token=None)), "unknown", "ADMIN_TOKEN")
    down = make_ctx(platform_url="http://127.0.0.1:1", platform_admin_token=TOKEN)
    assert_outcome(fn(_params(kind), down), "unknown", "unreachable")
    earlier = make_ctx(platform_url="http://127.0.0.1:1", platform_admin_token=TOKEN)
    earlier.at = earlier.now - timedelta(hours=1)
    assert_outcome(fn(_params(kind), earlier), "unknown", "another instant")
