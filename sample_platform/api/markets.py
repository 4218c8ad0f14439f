"""Public market routes: the markets with their prices, and the live odds stream (Server-Sent Events)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import StreamingResponse

from sample_platform import markets
from sample_platform.api.deps import PlatformDep
from sample_platform.api.openapi import problems
from sample_platform.api.routing import JsonBodyRoute
from sample_platform.schemas import MarketList, MarketView

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
def get_market(market_id: int, platform: PlatformDep) -> MarketView:
    return MarketView.model_validate(markets.get_market(platform.engine, market_id))


@router.get(
    "/v1/odds/stream",
    response_class=StreamingResponse,
    responses={
        200: {"description": ODDS_EVENTS, "content": {"text/event-stream": {"schema": {"type": "string"}}}},
        **problems(503),
    },
)
async def odds_stream(platform: PlatformDep) -> StreamingResponse:
    """Server-Sent Events: one `odds` event per price change, with `published_at` (UTC) and
    `price_version`. A subscriber more than `PLATFORM_ODDS_SUBSCRIBER_QUEUE` updates behind
    gets a final `overflow` event and is disconnected; it should reconnect and re-read markets."""
    return StreamingResponse(
        platform.broker.stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
