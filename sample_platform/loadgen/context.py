"""What bettors and the odds feed may use of a load run: its client, clock, report and view of the
markets. `LoadRun` provides it; `Bettor` and `OddsFeed` depend on this, never on the run itself.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from sample_platform.loadgen.client import LoadClient, Reply
from sample_platform.loadgen.profiles import LoadConfig
from sample_platform.loadgen.report import LoadReport
from sample_platform.loadgen.wire import Market, Player


class RunContext(Protocol):
    """The shared pieces of one run, live: price moves and answers update them in place. Anything with
    these members will do; in the generator it is the LoadRun itself:

        feed = OddsFeed(run, seed)
        await feed.subscribe()
    """

    @property
    def config(self) -> LoadConfig: ...

    @property
    def client(self) -> LoadClient: ...

    @property
    def report(self) -> LoadReport: ...

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...

    @property
    def players(self) -> list[Player]: ...

    @property
    def markets(self) -> dict[int, Market]:
        """The players' view of prices (odds reads and SSE)."""
        ...

    @property
    def house(self) -> dict[int, Market]:
        """The trader's own view of prices (admin responses)."""
        ...

    @property
    def retry_horizon(self) -> float:
        """No bet retry starts after this loop time."""
        ...

    async def request(
        self,
        route: str,
        method: str,
        path: str,
        *,
        start: float,
        headers: dict[str, str] | None = None,
        json: Any = None,
    ) -> Reply | None:
        """One HTTP attempt recorded under `route`, its latency from `start`; None if no answer came."""
        ...

    async def read_odds(self, market_id: int, start: float) -> None: ...

    def update_price(self, market_id: int, selection_id: int, odds: str, version: int) -> None: ...

    def mark_unavailable(self, route: str, why: str) -> None: ...

    def admin(self) -> dict[str, str]:
        """Headers that authorise the trading desk."""
        ...
