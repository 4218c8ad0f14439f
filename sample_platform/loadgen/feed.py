"""The odds side of a run: the trading desk moving prices, and long-lived SSE subscribers reading them."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator

from sample_platform.loadgen.client import TransportFailure
from sample_platform.loadgen.context import RunContext
from sample_platform.loadgen.profiles import ODDS_CHANGE, ODDS_MOVE_INTERVAL, SSE
from sample_platform.loadgen.wire import epoch


class OddsFeed:
    def __init__(self, run: RunContext, seed: int) -> None:
        self.run = run
        self.house_rng = random.Random(f"house-{seed}")  # price moves and results

    async def move_prices(self) -> None:
        """The trading desk moves one price a second, as it would during a race."""
        run = self.run
        while True:
            await asyncio.sleep(ODDS_MOVE_INTERVAL)
            market = run.house[self.house_rng.choice(list(run.house))]
            selection_id = self.house_rng.choice(list(market.odds))
            odds = max(1.05, float(market.odds[selection_id]) * self.house_rng.uniform(0.85, 1.15))
            body = {"selection_id": selection_id, "odds": f"{min(odds, 999.0):.2f}"}
            path = f"/v1/admin/markets/{market.id}/odds"
            response = await run.request(
                ODDS_CHANGE, "POST", path, start=run.loop.time(), json=body, headers=run.admin()
            )
            if response is not None and response.status == 200:
                view = response.json()
                market.price_version, market.odds = (
                    view["price_version"],
                    {s["id"]: s["odds"] for s in view["selections"]},
                )

    async def subscribe(self) -> None:
        """One long-lived SSE connection, reconnecting after a second if it drops."""
        run = self.run
        stats = run.report.route(SSE)
        while SSE not in run.report.unavailable:
            start = run.loop.time()
            stats.sent += 1
            try:
                async with run.client.stream_lines(
                    "/v1/odds/stream",
                    connect_deadline=start + run.config.request_timeout,
                    headers={"Accept": "text/event-stream"},
                ) as (response, lines):
                    stats.latency.record_seconds(run.loop.time() - start)
                    if response.status in (404, 405):
                        stats.errors[str(response.status)] += 1
                        run.mark_unavailable(SSE, f"{response.status} from the server")
                        return
                    if not response.is_success:
                        stats.errors[str(response.status)] += 1
                    else:
                        stats.ok += 1
                        await self.read_events(lines)
            except TransportFailure as exc:
                stats.errors[str(exc)] += 1
            await asyncio.sleep(1.0)

    async def read_events(self, lines: AsyncIterator[str]) -> None:
        name, data = "message", []
        async for line in lines:
            if line.startswith("data:"):
                data.append(line[5:].removeprefix(" "))
            elif line.startswith("event:"):
                name = line[6:].strip()
            elif not line:  # a blank line ends an event; comments (": keepalive") carry none
                if data:
                    self.on_event(name, "\n".join(data))
                name, data = "message", []

    def on_event(self, name: str, data: str) -> None:
        run = self.run
        run.report.sse_events[name] += 1
        try:
            event = json.loads(data)
        except ValueError:
            return
        if not isinstance(event, dict):
            return
        published = epoch(event.get("published_at"))
        if published is not None:
            run.report.sse_lag.record_seconds(time.time() - published)
        for part in (event, event.get("payload"), event.get("data")):
            if isinstance(part, dict) and {"market_id", "selection_id", "odds", "price_version"} <= part.keys():
                run.update_price(part["market_id"], part["selection_id"], part["odds"], part["price_version"])
