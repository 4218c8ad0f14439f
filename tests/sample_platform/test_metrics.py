"""GET /metrics: the platform's Prometheus exposition, parseable, with the series on-call relies on."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import bet_body


def _scrape(client) -> dict[str, list]:  # type: ignore[no-untyped-def]
    response = client.http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {family.name: family.samples for family in text_string_to_metric_families(response.text)}


def test_metrics_exposition(client, funded_player, market) -> None:
    body = bet_body(market, stake=100)
    assert client.place_bet(funded_player["token"], body, key="m1").status_code == 201
    assert client.place_bet(funded_player["token"], body, key="m1").headers["Idempotent-Replayed"] == "true"
    families = _scrape(client)
    for name in (
        "platform_http_requests",
        "platform_http_request_duration_seconds",
        "platform_http_requests_in_flight",
        "platform_outbox_depth",
        "platform_outbox_relay_lag_seconds",
        "platform_idempotency_replays",
        "platform_risk_cache_lookups",
        "platform_db_lock_timeouts",
        "platform_rate_limited",
        "platform_shed_requests",
        "platform_odds_publish_lag_seconds",
        "platform_odds_subscribers",
    ):
        assert name in families, name
    replays = [s for s in families["platform_idempotency_replays"] if s.name.endswith("_total")]
    assert replays[0].value == 1
    created = [
        s
        for s in families["platform_http_requests"]
        if s.name.endswith("_total") and s.labels["route"] == "/v1/bets" and s.labels["code"] == "201"
    ]
    assert created[0].value == 2
    buckets = {
        s.labels["le"]
        for s in families["platform_http_request_duration_seconds"]
        if s.name.endswith("_bucket") and s.labels["route"] == "/v1/bets"
    }
    assert {"0.005", "0.25", "10.0", "+Inf"} <= buckets  # seconds, OpenTelemetry's boundaries
