"""Active probes of the platform, over its public and admin HTTP API, as synthetic traffic.

Every probe request carries `X-Synthetic: checklist`, so the platform leaves it out of its SLI
metrics and spans are marked `user_agent.synthetic.type=test` (the collector drops them); probe
accounts and markets are created with `synthetic: true`, so their bets never count as settled bets
or cost. Faults a probe injects are synthetic-only (they slow probe requests, never players'), are
cleared when the probe ends, and carry a short TTL in case it cannot clear them.

Probes observe the platform as it is now, so they are `unknown` for a run `--at` another time.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import httpx

from controlplane.checklist.context import CheckContext
from controlplane.checklist.results import Outcome
from controlplane.checklist.spec import ProbeIdempotency, ProbeLatency, ProbeLoginLimit, ProbeShedding

SYNTHETIC = {"X-Synthetic": "checklist", "User-Agent": "controlplane-checklist-probe/1"}
PROBE_HEADER = "X-Probe-Token"  # the platform's sample_platform.synthetic.PROBE_HEADER (it stands alone)
FAULT_TTL_SECONDS = 60
MAX_SHEDDING_BOUND = 32


class ProbeUnavailable(Exception):
    """The probe could not be carried out (no admin token, platform unreachable); the run says unknown."""


class Platform:
    """The platform's API for one probe: synthetic headers on every call, the admin token on admin calls."""

    def __init__(self, ctx: CheckContext, *, timeout: float = 30.0) -> None:
        token = ctx.settings.platform_admin_token
        if token is None:
            raise ProbeUnavailable("CONTROLPLANE_PLATFORM_ADMIN_TOKEN is not set, so the platform cannot be probed")
        self.url = ctx.settings.platform_url.rstrip("/")
        self.admin = {"Authorization": f"Bearer {token.get_secret_value()}"}
        self.transport = ctx.transport
        # The platform honours X-Synthetic only beside a probe token; the admin token is one when no
        # probe token of its own is set (CONTROLPLANE_PLATFORM_PROBE_TOKEN).
        probe = ctx.settings.platform_probe_token or token
        self.synthetic = {**SYNTHETIC, PROBE_HEADER: probe.get_secret_value()}
        self.client = httpx.Client(base_url=self.url, headers=self.synthetic, timeout=timeout, transport=ctx.transport)
        self.label = f"checklist-{ctx.run_id}"

    def call(self, method: str, path: str, *, admin: bool = False, **kwargs: Any) -> httpx.Response:
        headers = {**kwargs.pop("headers", {}), **(self.admin if admin else {})}
        try:
            return self.client.request(method, path, headers=headers, **kwargs)
        except httpx.TimeoutException as exc:
            raise ProbeUnavailable(f"{method} {path} got no answer from {self.url} ({type(exc).__name__})") from exc
        except httpx.HTTPError as exc:
            raise ProbeUnavailable(f"platform unreachable at {self.url}: {type(exc).__name__}: {exc}") from exc

    def expect(self, method: str, path: str, status: int, *, admin: bool = False, **kwargs: Any) -> Any:
        response = self.call(method, path, admin=admin, **kwargs)
        body = body_json(response)
        if response.status_code != status or body is None:
            raise ProbeUnavailable(f"{method} {path} answered {response.status_code}: {response.text[:200]}")
        return body

    def limits(self) -> dict[str, Any]:
        return self.expect("GET", "/", 200)

    def account(self, role: str) -> dict[str, Any]:
        username = f"probe-{self.label[10:22]}-{role}"
        body = {"username": username, "password": secrets.token_urlsafe(18), "synthetic": True}
        return self.expect("POST", "/v1/accounts", 201, admin=True, json=body) | {"password": body["password"]}

    @contextmanager
    def fault(self, **fault: Any) -> Iterator[str]:
        body = {
            **fault,
            "ttl_seconds": FAULT_TTL_SECONDS,
            "synthetic_only": True,
            "actor": "checklist",
            "reason": self.label,
        }
        created = self.expect("POST", "/v1/admin/faults", 201, admin=True, json=body)
        try:
            yield created["id"]
        finally:
            try:
                self.call("DELETE", "/v1/admin/faults", admin=True, params={"id": created["id"], "actor": "checklist"})
            except ProbeUnavailable:
                pass  # the fault's TTL ends it

    def close(self) -> None:
        self.client.close()


def body_json(response: httpx.Response) -> Any:
    """The JSON body, or None when there is none (an edge proxy's plain-text answer, say)."""
    if "json" not in response.headers.get("content-type", ""):
        return None
    try:
        return response.json()
    except ValueError:
        return None


def probe(fn: Callable[[Any, CheckContext, Platform], Outcome]) -> Callable[[Any, CheckContext], Outcome]:
    """Wrap a probe: refuse for another instant, turn unavailability into unknown (the runner gives
    each probe its turn: they never overlap)."""

    def run(params: Any, ctx: CheckContext) -> Outcome:
        if not ctx.live:
            return Outcome.unknown("probes observe the platform now; this run is for another instant (--at)")
        try:
            platform = Platform(ctx)
        except ProbeUnavailable as exc:
            return Outcome.unknown(str(exc))
        try:
            return fn(params, ctx, platform)
        except ProbeUnavailable as exc:
            return Outcome.unknown(str(exc), platform_url=platform.url)
        finally:
            platform.close()

    run.__name__ = fn.__name__
    return run


def _get(client: httpx.Client, method: str, path: str) -> httpx.Response:
    try:
        return client.request(method, path)
    except httpx.HTTPError as exc:
        raise ProbeUnavailable(f"{method} {path} failed: {type(exc).__name__}: {exc}") from exc


def _split(route: str) -> tuple[str, str]:
    method, _, path = route.partition(" ")
    return method.upper(), path


def funded_bettor_and_market(platform: Platform, role: str, deposit_minor: int) -> tuple[dict, dict]:
    """A synthetic bettor holding `deposit_minor` and a synthetic two-way market at evens, for one probe."""
    bettor = platform.account(role)
    platform.expect(
        "POST", "/v1/admin/deposit", 200, admin=True,
        json={"account_id": bettor["id"], "amount_minor": deposit_minor, "reference": platform.label},
    )  # fmt: skip
    market = platform.expect(
        "POST", "/v1/admin/markets", 201, admin=True,
        json={"name": f"synthetic {platform.label}", "synthetic": True,
              "selections": [{"name": "home", "odds": "2.00"}, {"name": "away", "odds": "2.00"}]},
    )  # fmt: skip
    return bettor, market


@probe
def probe_idempotency(params: ProbeIdempotency, ctx: CheckContext, platform: Platform) -> Outcome:
    bettor, market = funded_bettor_and_market(platform, "bettor", params.stake_minor * 10)
    player = {"Authorization": f"Bearer {bettor['token']}"}
    bet = {
        "market_id": market["id"],
        "selection_id": market["selections"][0]["id"],
        "stake_minor": params.stake_minor,
        "odds": market["selections"][0]["odds"],
        "price_version": market["price_version"],
    }
    key = f"{platform.label}-{uuid.uuid4().hex[:8]}"
    answers = []
    try:
        for _attempt in range(2):
            response = _send_bet(platform, bet, {**player, "Idempotency-Key": key})
            answers.append(response)
        wallet = platform.expect("GET", "/v1/wallet", 200, headers=player)
    finally:
        platform.call("POST", f"/v1/admin/markets/{market['id']}/result", admin=True, json={"void": True})
    first, second = answers
    ids = [(body_json(a) or {}).get("id") for a in answers]
    replayed = second.headers.get("Idempotent-Replayed", "").lower() == "true"
    balance = wallet.get("balance_minor")
    expected_balance = params.stake_minor * 9
    evidence = {
        "account_id": bettor["id"],
        "market_id": market["id"],
        "idempotency_key": key,
        "statuses": [first.status_code, second.status_code],
        "bet_ids": ids,
        "replayed_header": second.headers.get("Idempotent-Replayed"),
        "wallet_balance_minor": balance,
        "expected_balance_minor": expected_balance,
    }
    if first.status_code != 201:
        return Outcome.failed(f"the probe bet was refused with {first.status_code}: {first.text[:120]}", **evidence)
    if ids[0] != ids[1] or not replayed:
        return Outcome.failed(
            f"the same Idempotency-Key gave bets {ids[0]} and {ids[1]} (replay header: {evidence['replayed_header']})",
            **evidence,
        )
    if balance != expected_balance:
        return Outcome.failed(
            f"the wallet holds {balance}, not {expected_balance}: the stake was taken twice", **evidence
        )
    return Outcome.passed(f"one bet ({ids[0]}) and a replay for two sends with one Idempotency-Key", **evidence)


def _send_bet(platform: Platform, bet: dict, headers: dict) -> httpx.Response:
    """POST the bet, retrying retryable 503s (shed, database busy) with the same key a few times."""
    for _attempt in range(5):
        response = platform.call("POST", "/v1/bets", headers=headers, json=bet)
        if response.status_code != 503:
            return response
        time.sleep(min(float(response.headers.get("Retry-After", "1") or 1), 2.0))
    return response


@probe
def probe_login_limit(params: ProbeLoginLimit, ctx: CheckContext, platform: Platform) -> Outcome:
    user = platform.account("login")
    statuses: list[int] = []
    for _attempt in range(params.max_attempts):
        response = platform.call(
            "POST", "/v1/login", json={"username": user["username"], "password": "not-" + user["password"]}
        )
        statuses.append(response.status_code)
        if response.status_code == 429:
            retry_after = response.headers.get("Retry-After")
            evidence = {
                "username": user["username"],
                "attempts": len(statuses),
                "statuses": statuses,
                "retry_after": retry_after,
                "limit": (body_json(response) or {}).get("limit"),
            }
            if not retry_after or not retry_after.isdigit():
                return Outcome.failed("429 without a usable Retry-After header", **evidence)
            return Outcome.passed(
                f"failed logins got 429 ({evidence['limit']}) after {len(statuses)} attempts, "
                f"Retry-After {retry_after}s",
                **evidence,
            )
    return Outcome.failed(
        f"{params.max_attempts} failed logins in a row were never refused with 429: login limits are off",
        username=user["username"],
        attempts=len(statuses),
        statuses=statuses,
    )


@probe
def probe_latency(params: ProbeLatency, ctx: CheckContext, platform: Platform) -> Outcome:
    timeout = platform.limits().get("request_timeout_seconds")
    if not isinstance(timeout, int | float):
        return Outcome.unknown("the platform does not advertise request_timeout_seconds at GET /")
    method, path = _split(params.route)
    with platform.fault(kind="latency", route=params.route, latency_ms=params.latency_ms) as fault_id:
        started = time.monotonic()
        response = platform.call(method, path)
        elapsed = time.monotonic() - started
    evidence = {
        "route": params.route,
        "fault_id": fault_id,
        "injected_latency_ms": params.latency_ms,
        "status": response.status_code,
        "elapsed_ms": round(elapsed * 1000, 1),
        "request_timeout_seconds": timeout,
        "max_timeout_seconds": params.max_timeout_seconds,
    }
    if timeout > params.max_timeout_seconds:
        return Outcome.failed(
            f"the platform's request timeout is {timeout:g}s, above {params.max_timeout_seconds:g}s", **evidence
        )
    if response.status_code >= 500 or elapsed > timeout:
        return Outcome.failed(
            f"a request slowed by {params.latency_ms} ms got {response.status_code} after {elapsed:.2f}s "
            f"(timeout {timeout:g}s)",
            **evidence,
        )
    if elapsed * 1000 < params.latency_ms:
        return Outcome.unknown(
            "the injected latency did not act on the probe request (synthetic-only faults?)", **evidence
        )
    return Outcome.passed(
        f"answered {response.status_code} in {elapsed:.2f}s with {params.latency_ms} ms injected "
        f"(timeout {timeout:g}s)",
        **evidence,
    )


@probe
def probe_shedding(params: ProbeShedding, ctx: CheckContext, platform: Platform) -> Outcome:
    bound = platform.limits().get("synthetic_max_in_flight")
    if not isinstance(bound, int) or bound < 1:
        return Outcome.unknown("the platform does not advertise synthetic_max_in_flight at GET /")
    if bound > MAX_SHEDDING_BOUND:
        return Outcome.unknown(
            f"the platform's synthetic bound is {bound}; above {MAX_SHEDDING_BOUND} a probe would need too many "
            "concurrent requests (set PLATFORM_SYNTHETIC_MAX_IN_FLIGHT lower)"
        )
    method, path = _split(params.route)
    sends = bound + 2
    with platform.fault(kind="latency", route=params.route, latency_ms=params.latency_ms) as fault_id:
        limits = httpx.Limits(max_connections=sends, max_keepalive_connections=sends)
        with (
            httpx.Client(
                base_url=platform.url,
                headers=platform.synthetic,
                timeout=30.0,
                limits=limits,
                transport=platform.transport,
            ) as burst,
            ThreadPoolExecutor(max_workers=sends) as pool,
        ):
            answers = list(pool.map(lambda _i: _get(burst, method, path), range(sends)))
    shed = [a for a in answers if a.status_code == 503 and (body_json(a) or {}).get("type", "").endswith("overloaded")]
    evidence = {
        "route": params.route,
        "fault_id": fault_id,
        "bound": bound,
        "sent": sends,
        "statuses": sorted(a.status_code for a in answers),
        "retry_after": [a.headers.get("Retry-After") for a in shed],
        "types": sorted({str((body_json(a) or {}).get("type")) for a in answers if a.status_code >= 400}),
    }
    if not shed:
        return Outcome.failed(
            f"none of {sends} concurrent slow requests was shed as overloaded past a bound of {bound}", **evidence
        )
    if not all(a.headers.get("Retry-After") for a in shed):
        return Outcome.failed("a shed request had no Retry-After header", **evidence)
    return Outcome.passed(
        f"{len(shed)} of {sends} concurrent requests shed with 503 and Retry-After (bound {bound})", **evidence
    )
