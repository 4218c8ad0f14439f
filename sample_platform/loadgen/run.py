"""One load run: set-up, open-model arrivals, SSE subscribers, price moves, drain and settlement."""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx

from sample_platform.loadgen.profiles import (
    ACCEPT_PRICE_CHANGE,
    BET_RETRIES,
    BETS,
    DEPOSIT_MINOR,
    LOGIN,
    MARKETS,
    MIX,
    ODDS,
    ODDS_CHANGE,
    ODDS_MOVE_INTERVAL,
    RESULT,
    SETUP_CONCURRENCY,
    SSE,
    STAKES_MINOR,
    WALLET,
    LoadConfig,
    LoadSetupError,
    arrival_offsets,
    rate_at,
)
from sample_platform.loadgen.report import LoadReport
from sample_platform.loadgen.wire import Market, Player, epoch, pick, problem_slug, retry_after


class LoadRun:
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
        self.players: list[Player] = []
        self.markets: dict[int, Market] = {}  # the players' view of prices (odds reads and SSE)
        self.house: dict[int, Market] = {}  # the trader's own view (admin responses)
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
            slug = problem_slug(response)
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
            runners = [{"name": f"runner {s + 1}", "odds": f"{self.house_rng.uniform(1.5, 12):.2f}"} for s in range(6)]
            body = {"name": f"load {run_id} race {m + 1}", "selections": runners}
            self.remember_market((await self.setup_call("POST", "/v1/admin/markets", body)).json(), house=True)

    async def create_player(self, username: str) -> Player:
        password: str | None = secrets.token_urlsafe(12)
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
        return Player(account["id"], username, password, account["token"])

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
        self.markets[view["id"]] = Market(view["id"], view["price_version"], dict(odds), view.get("status", "open"))
        if house:
            self.house[view["id"]] = Market(view["id"], view["price_version"], dict(odds))

    def update_price(self, market_id: int, selection_id: int, odds: str, version: int) -> None:
        market = self.markets.get(market_id)
        if market is not None and version >= market.price_version and selection_id in market.odds:
            market.odds[selection_id], market.price_version = odds, version

    # ------------------------------------------------------------------ the mix

    def pick_kind(self, rng: random.Random) -> str:
        if self.config.admin_token is None:
            return "odds"
        kind = pick(rng, MIX)
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

    async def login(self, player: Player, start: float) -> None:
        body = {"username": player.username, "password": player.password}
        response = await self.request(LOGIN, "POST", "/v1/login", start=start, json=body)
        if response is not None and response.is_success:
            data = response.json()
            player.session = data.get("token") or data.get("access_token") or player.session

    async def wallet(self, player: Player, start: float) -> None:
        response = await self.request(WALLET, "GET", "/v1/wallet", start=start, headers=player.bearer())
        if response is not None and response.status_code == 401:
            player.session = None  # the short-lived token expired: use the account token again

    # ------------------------------------------------------------------ bets

    def bet_body(self, market: Market, selection_id: int, stake: int, accept: str) -> dict:
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
        stake, accept = rng.choice(STAKES_MINOR), pick(rng, ACCEPT_PRICE_CHANGE)
        outcome = await self.place(player, self.bet_body(market, selection_id, stake, accept), scheduled)
        if outcome == "price-changed":
            # What a punter does: look at the new price and place a new bet (a new key) once.
            self.report.price_change_requotes += 1
            await self.read_odds(market.id, self.loop.time())
            await self.place(player, self.bet_body(market, selection_id, stake, accept), self.loop.time())
        self.report.bet_latency.record_seconds(self.loop.time() - scheduled)

    async def place(self, player: Player, body: dict, start: float) -> str:
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

    def bet_outcome(self, player: Player, key: str, body: dict, response: httpx.Response) -> str:
        status, slug = response.status_code, problem_slug(response)
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
        hint = retry_after(response)
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
        published = epoch(event.get("published_at"))
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
