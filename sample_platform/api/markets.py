"""Public market routes: the markets with their prices, and the live odds stream (Server-Sent Events)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse

from sample_platform import markets
from sample_platform.api.deps import PlatformDep
from sample_platform.api.openapi import problems
from sample_platform.api.routing import JsonBodyRoute
from sample_platform.schemas import MarketList, MarketView, PathId

router = APIRouter(route_class=JsonBodyRoute, tags=["markets"])

ODDS_EVENTS = (
    "An endless event stream: `event: odds` (id = sequence number) with JSON `data` holding `market_id`, "
    "`selection_id`, `odds`, `price_version`, `seq` and `published_at`, one per price change; comments as "
    "keep-alives; a final `event: overflow` before a lagging subscriber is disconnected."
)


@router.get("/v1/markets", responses=problems(503))
def list_markets(platform: PlatformDep) -> MarketList:
    return MarketList.model_validate({"markets": markets.list_markets(platform.engine)})


@router.get(
    "/v1/markets/{market_id}",
    responses=problems(404, 422, 503, descriptions={422: "`market_id` is not an integer (`validation`)."}),
)
def get_market(market_id: PathId, platform: PlatformDep) -> MarketView:
    return MarketView.model_validate(markets.get_market(platform.engine, market_id))


@router.get(
    "/v1/odds/stream",
    status_code=307,
    response_class=RedirectResponse,
    responses={
        307: {
            "description": "The stream is served by the odds stream's own server: follow `Location` there. "
            + ODDS_EVENTS,
            "headers": {"Location": {"description": "The stream's URL.", "schema": {"type": "string"}}},
        },
        **problems(503),
    },
)
async def odds_stream(request: Request, platform: PlatformDep) -> RedirectResponse:
    """Server-Sent Events: one `odds` event per price change, with `published_at` (UTC) and
    `price_version`. Served from its own port, so fanning an update out to many subscribers never
    delays the API: this answers 307 with the stream's URL. A subscriber more than
    `PLATFORM_ODDS_SUBSCRIBER_QUEUE` updates behind gets a final `overflow` event and is
    disconnected; it should reconnect and re-read markets."""
    host = request.url.hostname or platform.settings.odds_stream_host
    host = f"[{host}]" if ":" in host else host  # an IPv6 literal
    location = f"{request.url.scheme}://{host}:{platform.stream.port}/v1/odds/stream"
    return RedirectResponse(location, status_code=307, headers={"Cache-Control": "no-store"})
