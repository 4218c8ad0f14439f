"""One load run: set-up, open-model arrivals, SSE subscribers, price moves, a bounded drain, then the
unknown bets re-sent and every market settled, all within a bounded time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

from sample_platform.loadgen.bets import Bettor
from sample_platform.loadgen.client import LoadClient, Reply, TransportFailure
from sample_platform.loadgen.feed import OddsFeed
from sample_platform.loadgen.profiles import (
    BET_RETRIES,
    DEPOSIT_MINOR,
    HEALTH,
    LOGIN,
    MARKETS,
    MIX,
    ODDS,
    RESULT,
    SETUP_CONCURRENCY,
    SLIP_LIMIT,
    SSE,
    STOP_POLL,
    WALLET,
    LoadConfig,
    LoadSetupError,
    arrival_offsets,
)
from sample_platform.loadgen.report import LoadReport
from sample_platform.loadgen.wire import Market, Player, pick, problem_slug


class LoadRun:
    """One load run's state; everything it starts, it also ends. Setting `stop` (from any thread) ends the
    arrivals early; the rest of the run (drain, re-sent bets, settlement) goes on as after a normal end."""

    def __init__(
        self,
        config: LoadConfig,
        client: LoadClient,
        progress: Callable | None,
        stop: threading.Event | None = None,
    ) -> None:
        self.config = config
        self.client = client
        self.progress = progress
        self.stop = stop
        self.report = LoadReport(config)
        self.rng = random.Random(f"mix-{config.seed}")  # which request each arrival is
        self.loop = asyncio.get_running_loop()
        self.players: list[Player] = []
        self.markets: dict[int, Market] = {}  # the players' view of prices (odds reads and SSE)
        self.house: dict[int, Market] = {}  # the trader's own view (admin responses)
        self.outstanding: set[asyncio.Task] = set()
        self.phase = "setup"
        self.t0 = self.loop.time()
        self.retry_horizon = float("inf")  # no bet retry starts after this loop time (end of the arrivals)
        self.bettor = Bettor(self, config.seed)
        self.feed = OddsFeed(self, config.seed)

    # ------------------------------------------------------------------ requests

    async def request(
        self,
        route: str,
        method: str,
        path: str,
        *,
        start: float,
        headers: dict[str, str] | None = None,
        json: Any = None,
        timeout: float | None = None,
    ) -> Reply | None:
        """One HTTP attempt, recorded under `route`; latency from `start` (the scheduled time).
        The deadline counts from `start` too, so time spent waiting in the generator is not free."""
        stats = self.report.route(route)
        stats.sent += 1
        deadline = start + (timeout or self.config.request_timeout)
        try:
            response = await self.client.request(method, path, deadline=deadline, headers=headers, json=json)
        except TransportFailure as exc:
            stats.errors[str(exc)] += 1
            stats.latency.record_seconds(self.loop.time() - start)
            return None
        stats.latency.record_seconds(self.loop.time() - start)
        if response.headers.get("idempotent-replayed", "").lower() == "true":
            stats.replays += 1
        if response.is_success:
            stats.ok += 1
        else:
            slug = problem_slug(response)
            stats.errors[f"{response.status} {slug}" if slug else str(response.status)] += 1
            if response.status in (404, 405) and route in (LOGIN, SSE):
                self.mark_unavailable(route, f"{response.status} from the server")
        return response

    def mark_unavailable(self, route: str, why: str) -> None:
        self.report.unavailable.setdefault(route, why)

    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.config.admin_token}"}

    async def setup_call(self, method: str, path: str, body: dict | None = None) -> Reply:
        response = await self.client.request(
            method, path, deadline=self.loop.time() + self.config.request_timeout, json=body, headers=self.admin()
        )
        if not response.is_success:
            raise LoadSetupError(f"load setup failed: {method} {path} -> {response.status}: {response.text[:300]}")
        return response

    # ------------------------------------------------------------------ setup

    async def setup(self) -> None:
        if self.config.mix == "health":
            return
        try:
            await self.create_fixture()
        except TransportFailure as exc:
            raise LoadSetupError(f"load setup against {self.config.target} failed: {exc}") from exc

    async def create_fixture(self) -> None:
        if self.config.admin_token is None:
            await self.use_existing_markets()
            return
        run_id = secrets.token_hex(4)
        gate = asyncio.Semaphore(SETUP_CONCURRENCY)

        async def make_player(i: int) -> Player:
            async with gate:
                return await self.create_player(f"load-{run_id}-{i}")

        # return_exceptions: on a failure, wait for the rest to end too, so no setup task outlives the client.
        made = await asyncio.gather(*(make_player(i) for i in range(self.config.players)), return_exceptions=True)
        self.players = []
        for outcome in made:
            if isinstance(outcome, BaseException):
                raise outcome
            self.players.append(outcome)
        for m in range(self.config.markets):
            rng = self.feed.house_rng
            runners = [{"name": f"runner {s + 1}", "odds": f"{rng.uniform(1.5, 12):.2f}"} for s in range(6)]
            body = {"name": f"load {run_id} race {m + 1}", "selections": runners}
            self.remember_market((await self.setup_call("POST", "/v1/admin/markets", body)).json(), house=True)

    async def create_player(self, username: str) -> Player:
        password: str | None = secrets.token_urlsafe(12)
        response = await self.client.request(
            "POST",
            "/v1/accounts",
            deadline=self.loop.time() + self.config.request_timeout,
            json={"username": username, "password": password},
            headers=self.admin(),
        )
        if response.status == 422 and "password" in response.text:
            # This server's accounts take no password yet, so nobody can log in.
            self.mark_unavailable(LOGIN, "POST /v1/accounts takes no password on this server")
            password = None
            response = await self.setup_call("POST", "/v1/accounts", {"username": username})
        elif not response.is_success:
            raise LoadSetupError(f"load setup failed: POST /v1/accounts -> {response.status}: {response.text[:300]}")
        account = response.json()
        await self.setup_call("POST", "/v1/admin/deposit", {"account_id": account["id"], "amount_minor": DEPOSIT_MINOR})
        return Player(account["id"], username, password, account["token"])

    async def use_existing_markets(self) -> None:
        self.report.notes.append("no admin token: only odds reads and SSE ran (no accounts, bets, logins or wallet)")
        response = await self.client.request(
            "GET", "/v1/markets", deadline=self.loop.time() + self.config.request_timeout
        )
        if not response.is_success:
            raise LoadSetupError(f"load setup failed: GET /v1/markets -> {response.status}: {response.text[:300]}")
        for market in response.json().get("markets", []):
            if market.get("status") == "open":
                self.remember_market(market)
        if not self.markets:
            self.report.notes.append("the server has no open markets: the odds reads went to GET /v1/markets")

    def remember_market(self, view: dict, *, house: bool = False) -> None:
        odds = {s["id"]: s["odds"] for s in view["selections"]}
        self.markets[view["id"]] = Market(view["id"], view["price_version"], dict(odds), view.get("status", "open"))
        if house:
            self.house[view["id"]] = Market(view["id"], view["price_version"], dict(odds))

    def update_price(self, market_id: int, selection_id: int, odds: str, version: int) -> None:
        market = self.markets.get(market_id)
        if market is not None and version >= market.price_version and selection_id in market.odds:
            market.odds[selection_id], market.price_version = odds, version

    # ------------------------------------------------------------------ the mix

    def pick_kind(self, rng: random.Random) -> str:
        if self.config.mix == "health":
            return "health"
        if self.config.admin_token is None:
            return "odds"
        kind = pick(rng, MIX)
        # A missing login route must not lower the offered load: its share goes to odds reads.
        return "odds" if kind == "login" and LOGIN in self.report.unavailable else kind

    async def arrival(self, kind: str, rng: random.Random, scheduled: float) -> None:
        """One arrival; `rng` is its own, so what it does depends on the seed, not on task timing."""
        try:
            if kind == "bet":
                await self.bettor.bet(rng, scheduled)
            elif kind == "login":
                await self.login(rng.choice(self.players), scheduled)
            elif kind == "wallet":
                await self.wallet(rng.choice(self.players), scheduled)
            elif kind == "health":
                await self.request(HEALTH, "GET", "/v1/health", start=scheduled)
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
        if response is not None and response.status == 200:
            view = response.json()
            market = self.markets[market_id]
            if view["price_version"] >= market.price_version:
                market.price_version, market.status = view["price_version"], view["status"]
                market.odds = {s["id"]: s["odds"] for s in view["selections"]}

    async def login(self, player: Player, start: float) -> None:
        body = {"username": player.username, "password": player.password}
        response = await self.request(LOGIN, "POST", "/v1/login", start=start, json=body)
        if response is not None and response.is_success:
            data = response.json()
            player.session = data.get("token") or data.get("access_token") or player.session

    async def wallet(self, player: Player, start: float) -> None:
        response = await self.request(WALLET, "GET", "/v1/wallet", start=start, headers=player.bearer())
        if response is not None and response.status == 401:
            player.session = None  # the short-lived token expired: use the account token again

    # ------------------------------------------------------------------ progress

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
            "offered_rate": self.config.offered_rate(min(elapsed, self.config.arrival_seconds)),
            "stopped_at": self.report.stopped_at,
            "arrivals": self.report.arrivals,
            "sent": sum(r.sent for r in self.report.routes.values()),
            "errors": self.report.errors_total(),
            "outstanding": len(self.outstanding),
            "bets_accepted": self.report.bets_accepted,
        }
        self.progress(elapsed, snapshot)

    # ------------------------------------------------------------------ the run

    async def schedule(self) -> None:
        """Launch every arrival at its scheduled time, whatever happened to the earlier ones, until the
        profile (and its extension) ends or the stop signal is set.

        At most `max_connections` arrivals are in flight: one more is dropped and counted, never queued,
        so the generator's own work stays bounded whatever the server does. An arrival launched more
        than SLIP_LIMIT after its time marks the generator itself as the bottleneck from then on."""
        if self.config.curve_at is not None:  # the lead-in ends on the wall clock, however long setup took
            lead_in = max(0.0, self.config.curve_at - time.time() - 0.05)
            self.config = self.report.config = dataclasses.replace(self.config, lead_in_seconds=lead_in, curve_at=None)
        config = self.config
        arrivals_rng = random.Random(f"arrivals-{config.seed}")
        self.t0 = self.loop.time() + 0.05
        self.retry_horizon = self.t0 + config.arrival_seconds
        report = self.report
        offsets = arrival_offsets(
            config.profile,
            config.duration,
            config.rate,
            arrivals_rng,
            extend=config.extend_seconds,
            lead_in=config.lead_in_seconds,
        )
        for offset in offsets:
            scheduled = self.t0 + offset
            if not await self.sleep_until(scheduled):
                self.stopped_early()
                return
            report.arrivals += 1
            rng = random.Random(self.rng.getrandbits(64))  # drawn even when dropped: arrival i is always the same
            lag = self.loop.time() - scheduled
            report.start_lag.record_seconds(lag)
            if lag > SLIP_LIMIT:
                report.launched_late(offset)
            if len(self.outstanding) >= self.config.max_connections:
                report.dropped(offset)
                continue
            task = asyncio.create_task(self.arrival(self.pick_kind(rng), rng, scheduled))
            self.outstanding.add(task)
            task.add_done_callback(self.outstanding.discard)

    async def sleep_until(self, when: float) -> bool:
        """Wait until loop time `when`; False instead once the stop signal is set. The wait is cut into
        STOP_POLL slices, so a signal set from another thread is seen that soon, however far `when` is."""
        while self.stop is None or not self.stop.is_set():
            delay = when - self.loop.time()
            if delay <= 0:
                return True
            await asyncio.sleep(min(delay, STOP_POLL))
        return False

    def stopped_early(self) -> None:
        """No arrival is launched from now on, and no bet retry starts (so the drain is bounded from here)."""
        now = self.loop.time()
        self.retry_horizon = min(self.retry_horizon, now)
        self.report.stopped_at = max(0.0, now - self.t0)
        self.report.notes.append(
            f"the arrivals were stopped early, {self.report.stopped_at:.1f} s into the "
            f"{self.config.arrival_seconds:g} s planned"
        )

    async def drain(self) -> None:
        """Let in-flight work end: every attempt has a deadline and no retry starts after the arrivals
        end, so this waits at most one request timeout; what is still running then is cancelled."""
        if not self.outstanding:
            return
        limit = max(0.0, self.retry_horizon + self.config.request_timeout + 1.0 - self.loop.time())
        _, pending = await asyncio.wait(set(self.outstanding), timeout=limit)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        self.report.cancelled_at_end += len(pending)

    async def settle(self, deadline: float) -> None:
        """Full time: result every market of ours (same result again on failure: settlement is idempotent)."""
        for market in self.house.values():
            winner = self.feed.house_rng.choice(list(market.odds))
            response = None
            for attempt in range(BET_RETRIES + 1):
                if attempt:
                    await asyncio.sleep(self.bettor.backoff(attempt, response))
                now = self.loop.time()
                response = await self.request(
                    RESULT,
                    "POST",
                    f"/v1/admin/markets/{market.id}/result",
                    start=now,
                    json={"winner_selection_id": winner},
                    headers=self.admin(),
                    timeout=max(1.0, deadline - now),
                )
                if response is not None and response.status != 429 and response.status < 500:
                    break
            entry: dict[str, Any] = {"market_id": market.id, "winner_selection_id": winner, "status": "unsettled"}
            if response is not None and response.is_success:
                data = response.json()
                entry.update(data.get("settlement", {}), status=data.get("market", {}).get("status"))
            self.report.settlements.append(entry)

    async def after_the_load(self) -> None:
        """Unknown bets re-sent with their keys, then every market settled, within `settle_timeout`."""
        deadline = self.loop.time() + self.config.settle_timeout
        try:
            async with asyncio.timeout_at(deadline):
                self.phase = "resolving"
                # Half the phase at most for unknown bets: the markets must be settled too.
                await self.bettor.resolve_pending(self.loop.time() + self.config.settle_timeout / 2)
                self.phase = "settling"
                await self.settle(deadline)
        except TimeoutError:
            self.report.notes.append(
                f"the settle phase was cut at {self.config.settle_timeout:g} s: "
                "some bets or markets may be left unresolved"
            )

    async def run(self) -> LoadReport:
        background: list[asyncio.Task] = [asyncio.create_task(self.tick())]
        try:
            await self.setup()
            mover = asyncio.create_task(self.feed.move_prices()) if self.house else None
            background += [mover] if mover else []
            if self.config.mix != "health":
                background += [asyncio.create_task(self.feed.subscribe()) for _ in range(self.config.sse_subscribers)]
            self.phase = "load"
            cpu = time.process_time()
            await self.schedule()
            self.phase = "draining"
            if mover:
                mover.cancel()  # prices are final once the race is run; bets still in flight drain
            await self.drain()
            self.report.elapsed = self.loop.time() - self.t0
            self.report.cpu_seconds = time.process_time() - cpu
            await self.after_the_load()
        finally:
            for task in [*background, *self.outstanding]:
                task.cancel()
            await asyncio.gather(*background, *self.outstanding, return_exceptions=True)
        self.report.unknown_keys = self.bettor.unknown_keys()
        self.phase = "done"
        self.report_progress()
        for route, why in self.report.unavailable.items():
            self.report.notes.append(
                f"{route} unavailable ({why})" + ("; its share went to odds reads" if route == LOGIN else "")
            )
        return self.report
