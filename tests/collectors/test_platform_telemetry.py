"""The instrumented platform, exporting with the real OTLP/HTTP exporters to our receiver."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

from sample_platform.client import PlatformClient
from tests.collectors.test_otlp_sdk import totals
from tests.conftest import ADMIN_TOKEN, bet_body
from tests.support import PlatformProcess


def test_platform_spans_become_slice_counts(receiver, store, tmp_path, database_url) -> None:
    platform = PlatformProcess(
        f"sqlite:///{tmp_path / 'platform-under-watch.db'}",
        tmp_path / "outbox.jsonl",
        PLATFORM_OTLP_ENDPOINT=receiver.url,
        PLATFORM_OTLP_METRIC_INTERVAL_SECONDS="1",
    )
    try:
        admin = PlatformClient(platform.url, admin_token=ADMIN_TOKEN)
        password = "a long enough password"
        player = admin.http.post(
            "/v1/accounts",
            json={"username": f"t{uuid.uuid4().hex[:8]}", "password": password},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        ).json()
        admin.deposit(player["id"], 1_000_000)
        market = admin.create_market("Telemetry cup", [("A", "2.00"), ("B", "2.00")])
        logins = [
            admin.http.post("/v1/login", json={"username": player["username"], "password": p}).status_code
            for p in (password, "wrong password", password)
        ]
        statuses = [admin.place_bet(player["token"], bet_body(market, stake=100)).status_code for _ in range(20)]
        admin.http.post(
            "/v1/admin/faults",
            json={
                "kind": "error_rate",
                "route": "POST /v1/bets",
                "error_rate": 1.0,
                "error_status": 500,
                "ttl_seconds": 60,
            },
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        )
        statuses += [admin.place_bet(player["token"], bet_body(market, stake=100)).status_code for _ in range(7)]
        admin.result(market["id"], winner_selection_id=market["selections"][0]["id"])
        admin.close()
    finally:
        platform.stop()  # SIGTERM: the exporters flush on the way out
    assert statuses.count(201) == 20 and statuses.count(500) == 7
    assert logins == [200, 401, 200]
    counted = totals(store)
    assert counted["bet-placement"] == (27, 7)
    assert counted["login"] == (2, 0)  # the wrong password's 401 is the client's: counted apart
    assert counted["settlement"] == (1, 0)
    log = platform.log.read_text()
    assert password not in log and player["token"] not in log


def test_shed_bets_are_bad_events_of_the_bet_placement_slice(receiver, store, tmp_path, database_url) -> None:
    platform = PlatformProcess(
        f"sqlite:///{tmp_path / 'platform-shedding.db'}",
        tmp_path / "outbox.jsonl",
        PLATFORM_OTLP_ENDPOINT=receiver.url,
        PLATFORM_OTLP_METRIC_INTERVAL_SECONDS="1",
        PLATFORM_BET_MAX_IN_FLIGHT="1",
    )
    try:
        admin = PlatformClient(platform.url, admin_token=ADMIN_TOKEN)
        player = admin.create_account(f"t{uuid.uuid4().hex[:8]}")
        admin.deposit(player["id"], 1_000_000)
        market = admin.create_market("Shed cup", [("A", "2.00"), ("B", "2.00")])
        # Every admitted bet is held a while, so a burst finds the one slot taken.
        admin.http.post(
            "/v1/admin/faults",
            json={"kind": "latency", "route": "POST /v1/bets", "latency_ms": 1500, "ttl_seconds": 60},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        )
        with ThreadPoolExecutor(max_workers=10) as pool:
            statuses = list(
                pool.map(lambda _: admin.place_bet(player["token"], bet_body(market, stake=100)).status_code, range(10))
            )
        metrics = admin.http.get("/metrics").text
        admin.close()
    finally:
        platform.stop()  # SIGTERM: the exporters flush on the way out
    shed = statuses.count(503)
    assert shed >= 1 and statuses.count(201) == 10 - shed, statuses
    assert f'platform_http_requests_total{{code="503",method="POST",route="/v1/bets"}} {float(shed)}' in metrics
    # The shed requests are server spans with their route: bad events of the slice, not invisible.
    assert totals(store)["bet-placement"] == (10, shed)


PROBE_SLICES_YAML = """
slices:
  - name: bet-placement
    signal: traces
    service: sample-platform
    spans: ["POST /v1/bets"]
    kinds: [server]
  - name: ledger-commits
    signal: traces
    service: sample-platform
    spans: ["ledger commit"]
    kinds: [internal]
  - name: bets-by-metrics
    signal: metrics
    service: sample-platform
    metric: http.server.request.duration
    routes: ["POST /v1/bets"]
"""


def test_synthetic_requests_are_marked_and_never_counted(start_receiver, store, tmp_path, database_url) -> None:
    slices = tmp_path / "slices.yaml"
    slices.write_text(PROBE_SLICES_YAML)
    receiver = start_receiver(slices)
    platform = PlatformProcess(
        f"sqlite:///{tmp_path / 'platform-probed.db'}",
        tmp_path / "outbox.jsonl",
        PLATFORM_OTLP_ENDPOINT=receiver.url,
        PLATFORM_OTLP_METRIC_INTERVAL_SECONDS="1",
    )
    try:
        admin = PlatformClient(platform.url, admin_token=ADMIN_TOKEN)
        player = admin.create_account(f"t{uuid.uuid4().hex[:8]}")
        admin.deposit(player["id"], 1_000_000)
        market = admin.create_market("Probe cup", [("A", "2.00"), ("B", "2.00")])
        played = [admin.place_bet(player["token"], bet_body(market, stake=100)).status_code for _ in range(5)]
        probed = [
            admin.http.post(
                "/v1/bets",
                json=bet_body(market, stake=100),
                headers={
                    "Authorization": f"Bearer {player['token']}",
                    "Idempotency-Key": str(uuid.uuid4()),
                    "X-Synthetic": "checklist",
                    "X-Probe-Token": ADMIN_TOKEN,
                },
            ).status_code
            for _ in range(3)
        ]
        metrics = admin.http.get("/metrics").text
        admin.close()
    finally:
        platform.stop()  # SIGTERM: the exporters flush on the way out
    assert played == [201] * 5 and probed == [201] * 3
    assert 'platform_synthetic_requests_total{code="201",method="POST",route="/v1/bets"} 3.0' in metrics
    assert 'platform_http_requests_total{code="201",method="POST",route="/v1/bets"} 5.0' in metrics
    # The probes' server spans, the spans inside them and their histogram points are all marked, so
    # every slice counts the players' five bets only.
    assert totals(store) == {"bet-placement": (5, 0), "ledger-commits": (5, 0), "bets-by-metrics": (5, 0)}
    registry = receiver.app.state.metrics.registry
    assert registry.get_sample_value("collector_synthetic_items_total", {"signal": "traces"}) == 6
    assert registry.get_sample_value("collector_synthetic_items_total", {"signal": "metrics"}) >= 1
