"""The OTLP receiver with CONTROLPLANE_COLLECTOR_TOKENS: 401 and nothing stored without a valid bearer token;
any of the configured tokens works (rotation); the platform's real exporter sends its token through the
standard OTLP headers setting."""

from __future__ import annotations

import uuid

import httpx
import pytest
from pydantic import SecretStr

from sample_platform.client import PlatformClient
from tests.collectors.otlp_samples import trace_request
from tests.collectors.test_otlp_sdk import totals
from tests.conftest import ADMIN_TOKEN, bet_body
from tests.support import PlatformProcess

PB = {"Content-Type": "application/x-protobuf"}
TOKENS = SecretStr("old-token, new-token")


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token", "Basic b2xkLXRva2Vu", "Bearer", "old-token"])
def test_without_a_valid_token_nothing_is_stored(start_receiver, store, authorization: str | None) -> None:
    receiver = start_receiver(collector_tokens=TOKENS)
    headers = PB | ({"Authorization": authorization} if authorization else {})
    body = trace_request(spans=50, seed=1).SerializeToString()
    for path in ("/v1/traces", "/v1/metrics"):
        response = httpx.post(f"{receiver.url}{path}", content=body, headers=headers)
        assert response.status_code == 401, response.text
        assert response.headers["www-authenticate"] == "Bearer"
        assert "CONTROLPLANE_COLLECTOR_TOKENS" in response.json()["message"]
    assert totals(store) == {}
    assert httpx.get(f"{receiver.url}/healthz").status_code == 200  # health and /metrics stay open


@pytest.mark.parametrize("token", ["old-token", "new-token"])
def test_any_configured_token_is_accepted(start_receiver, store, token: str) -> None:
    receiver = start_receiver(collector_tokens=TOKENS)
    request = trace_request(spans=50, seed=1)
    response = httpx.post(
        f"{receiver.url}/v1/traces",
        content=request.SerializeToString(),
        headers=PB | {"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200
    assert sum(total for total, _bad in totals(store).values()) == len(request.resource_spans[0].scope_spans[0].spans)


@pytest.mark.parametrize("exporter_token", ["new-token", None])
def test_the_platforms_exporter_sends_its_token(start_receiver, store, tmp_path, exporter_token) -> None:
    receiver = start_receiver(collector_tokens=TOKENS)
    headers = {"PLATFORM_OTLP_HEADERS": f"Authorization=Bearer%20{exporter_token}"} if exporter_token else {}
    platform = PlatformProcess(
        f"sqlite:///{tmp_path / 'platform.db'}",
        tmp_path / "outbox.jsonl",
        PLATFORM_OTLP_ENDPOINT=receiver.url,
        PLATFORM_OTLP_METRIC_INTERVAL_SECONDS="1",
        **headers,
    )
    try:
        admin = PlatformClient(platform.url, admin_token=ADMIN_TOKEN)
        player = admin.create_account(f"t{uuid.uuid4().hex[:8]}")
        admin.deposit(player["id"], 1_000_000)
        market = admin.create_market("Token cup", [("A", "2.00"), ("B", "2.00")])
        statuses = [admin.place_bet(player["token"], bet_body(market, stake=100)).status_code for _ in range(12)]
        admin.close()
    finally:
        platform.stop()  # SIGTERM: the exporters flush on the way out
    assert statuses == [201] * 12
    if exporter_token:
        assert totals(store)["bet-placement"] == (12, 0)
    else:
        assert totals(store) == {}
