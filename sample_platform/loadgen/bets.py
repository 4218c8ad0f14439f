"""Bets as a careful client places them: one Idempotency-Key per bet, retried with the same key and body,
re-quoted once on a price change, and any bet whose outcome is still unknown after the load re-sent
with its key until the server says what became of it.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import uuid
from dataclasses import dataclass

from sample_platform.loadgen.client import Reply
from sample_platform.loadgen.context import RunContext
from sample_platform.loadgen.profiles import ACCEPT_PRICE_CHANGE, BET_RETRIES, BETS, STAKES_MINOR
from sample_platform.loadgen.wire import Market, Player, pick, problem_slug, retry_after


@dataclass(frozen=True)
class PendingBet:
    """A bet sent with `key` whose answer never came (or came from an attempt that may not be the last)."""

    player: Player
    key: str
    body: dict


class Bettor:
    """The bet traffic of one run; outcomes are recorded in the run's report."""

    def __init__(self, run: RunContext, seed: int) -> None:
        self.run = run
        self.jitter_rng = random.Random(f"jitter-{seed}")  # retry backoff
        self.pending: dict[str, PendingBet] = {}

    def body(self, market: Market, selection_id: int, stake: int, accept: str) -> dict:
        return {
            "market_id": market.id,
            "selection_id": selection_id,
            "stake_minor": stake,
            "odds": market.odds[selection_id],
            "price_version": market.price_version,
            "accept_price_change": accept,
        }

    async def bet(self, rng: random.Random, scheduled: float) -> None:
        run = self.run
        player = rng.choice(run.players)
        market = run.markets[rng.choice(list(run.markets))]
        selection_id = rng.choice(list(market.odds))
        stake, accept = rng.choice(STAKES_MINOR), pick(rng, ACCEPT_PRICE_CHANGE)
        outcome = await self.place(player, self.body(market, selection_id, stake, accept), scheduled)
        if outcome == "price-changed":
            # What a punter does: look at the new price and place a new bet (a new key) once.
            run.report.price_change_requotes += 1
            await run.read_odds(market.id, run.loop.time())
            await self.place(player, self.body(market, selection_id, stake, accept), run.loop.time())
        run.report.bet_latency.record_seconds(run.loop.time() - scheduled)

    async def place(self, player: Player, body: dict, start: float) -> str:
        """POST /v1/bets with one key, retried with the same key and body; returns the outcome.

        No attempt starts after the run's retry horizon, so the load phase ends on time; a bet left
        without an answer stays pending and is resolved after the load."""
        run = self.run
        key = str(uuid.uuid4())
        self.pending[key] = PendingBet(player, key, body)  # until an answer settles it (covers cancellation)
        response: Reply | None = None
        for attempt in range(BET_RETRIES + 1):
            if attempt:
                delay = self.backoff(attempt, response)
                if run.loop.time() + delay >= run.retry_horizon:
                    break
                await asyncio.sleep(delay)
                if run.loop.time() >= run.retry_horizon:
                    break  # a stop came during the backoff
                run.report.bet_retries += 1
                start = run.loop.time()
            response = await run.request(
                BETS, "POST", "/v1/bets", start=start, headers=self.headers(player, key), json=body
            )
            if response is None:
                continue  # no answer: the server may still commit it; the same key is resent
            outcome = self.outcome(player, key, body, response)
            if outcome != "retry":
                # Any answer to the key is the truth about it: a replay if an earlier attempt committed.
                self.pending.pop(key, None)
                return outcome
        return "unknown"

    def headers(self, player: Player, key: str) -> dict[str, str]:
        return player.bearer() | {"Idempotency-Key": f'"{key}"'}

    def outcome(self, player: Player, key: str, body: dict, response: Reply) -> str:
        run, status, slug = self.run, response.status, problem_slug(response)
        if status == 201:
            run.report.accepted_keys.add(key)
            run.report.accepted_bet_ids.add(int(response.json()["id"]))
            return "accepted"
        if status in (429, 503, 504) or (status == 409 and slug == "idempotency-key-in-flight"):
            return "retry"
        if status == 409 and slug == "price-changed":
            problem = response.json()
            if "current_odds" in problem and "current_price_version" in problem:
                run.update_price(
                    body["market_id"], body["selection_id"], problem["current_odds"], problem["current_price_version"]
                )
            return "price-changed"
        if status == 401:
            player.session = None
        return "refused"

    def backoff(self, attempt: int, response: Reply | None) -> float:
        """Jittered exponential backoff (0.1 s, 0.2 s, 0.4 s ...), at least the server's Retry-After."""
        base = min(2.0, 0.1 * 2 ** (attempt - 1))
        delay = base / 2 + self.jitter_rng.uniform(0, base / 2)  # jitter: retries of a burst do not realign
        hint = retry_after(response)
        return max(delay, hint + self.jitter_rng.uniform(0, 0.1)) if hint is not None else delay

    async def resolve_pending(self, deadline: float) -> None:
        """Re-send every bet whose outcome is unknown with its own key and body, as a real client would
        after a timeout: the server answers with the first response (it committed) or does it now.
        All in parallel, each until the server gives an answer or `deadline` (loop time) passes; a
        server still working through a backlog answers 409 in-flight meanwhile, with Retry-After."""
        todo = [self.pending[key] for key in self.unknown_keys()]
        self.run.report.bets_resent_after_load = len(todo)
        try:
            async with asyncio.timeout_at(deadline):
                await asyncio.gather(*(self.resolve(bet) for bet in todo))
        except TimeoutError:
            self.run.report.notes.append(
                f"{len(self.unknown_keys())} bets still had no answer after re-sending them with their keys "
                "until the deadline"
            )

    async def resolve(self, bet: PendingBet) -> None:
        run, response = self.run, None
        for attempt in itertools.count():
            if attempt:
                await asyncio.sleep(self.backoff(min(attempt, 6), response))
            response = await run.request(
                BETS,
                "POST",
                "/v1/bets",
                start=run.loop.time(),
                headers=self.headers(bet.player, bet.key),
                json=bet.body,
            )
            if response is None:
                continue
            if self.outcome(bet.player, bet.key, bet.body, response) != "retry":
                self.pending.pop(bet.key, None)
                return

    def unknown_keys(self) -> set[str]:
        """Keys of bets sent whose outcome no answer has settled yet."""
        return set(self.pending) - self.run.report.accepted_keys
