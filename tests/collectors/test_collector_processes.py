"""Collector processes (`controlplane collector serve`): several share one PostgreSQL store, nothing lost."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from collectors import otlp
from tests.collectors.conftest import SLICES
from tests.collectors.otlp_samples import trace_request
from tests.collectors.test_otlp_sdk import totals
from tests.support import CONTROLPLANE, ServiceProcess


class CollectorProcess(ServiceProcess):
    def __init__(self, store_url: str, log: Path) -> None:
        env = {"CONTROLPLANE_STORE_URL": store_url, "CONTROLPLANE_SLICES_PATH": str(SLICES)}
        super().__init__("collector", env, log, "/healthz")


@pytest.mark.parametrize("database_url", ["postgresql", "sqlite"], indirect=True)
def test_two_collectors_share_one_store_without_losing_counts(store, store_settings, tmp_path) -> None:
    collectors = [CollectorProcess(store_settings.store_url, tmp_path / f"collector-{i}.log") for i in range(2)]
    requests = [trace_request(spans=256, seed=seed, minutes=2) for seed in range(40)]
    expected: dict[str, list[int]] = {}
    for request in requests:
        for span in request.resource_spans[0].scope_spans[0].spans:
            slice_name = {"POST /v1/bets": "bet-placement", "POST /v1/login": "login"}[span.name]
            counts = expected.setdefault(slice_name, [0, 0])
            counts[0] += 1
            counts[1] += span.status.code == 2
    errors: list[str] = []

    def send(worker: int) -> None:
        with httpx.Client(timeout=30) as http:
            for i, request in enumerate(requests):
                if i % 4 != worker:
                    continue
                target = collectors[i % 2].url  # both collectors write the same slices and minutes
                for _attempt in range(20):
                    response = http.post(
                        f"{target}/v1/traces",
                        content=request.SerializeToString(),
                        headers={"Content-Type": otlp.PROTOBUF},
                    )
                    if response.status_code != 503:
                        break
                    time.sleep(float(response.headers.get("Retry-After", "1")) / 10)
                if response.status_code != 200:
                    errors.append(f"{response.status_code}: {response.text}")

    try:
        threads = [threading.Thread(target=send, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        # Every request again, to the other collector: retries across processes count nothing.
        with httpx.Client(timeout=30) as http:
            for i, request in enumerate(requests[:10]):
                http.post(
                    f"{collectors[(i + 1) % 2].url}/v1/traces",
                    content=request.SerializeToString(),
                    headers={"Content-Type": otlp.PROTOBUF},
                )
    finally:
        for collector in collectors:
            collector.stop()
    assert errors == []
    assert totals(store) == {name: (c[0], c[1]) for name, c in expected.items()}


def test_sli_show_lists_minutes(store, store_settings, receiver) -> None:
    with httpx.Client(base_url=receiver.url) as http:
        assert (
            http.post(
                "/v1/traces",
                content=trace_request(spans=50, seed=9).SerializeToString(),
                headers={"Content-Type": otlp.PROTOBUF},
            ).status_code
            == 200
        )
    env = os.environ | {"CONTROLPLANE_STORE_URL": store_settings.store_url}
    shown = subprocess.run(
        [CONTROLPLANE, "sli", "show", "--since", "2026-01-01T00:00:00Z", "--format", "json"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert shown.returncode == 0, shown.stderr
    rows = json.loads(shown.stdout)
    assert {row["slice"] for row in rows} == {"bet-placement", "login"}
    assert sum(row["total"] for row in rows) == 50
    assert all(row["minute"].endswith("Z") and {"total", "bad", "latency"} <= row.keys() for row in rows)
    table = subprocess.run(
        [CONTROLPLANE, "sli", "show", "--slice", "login", "--since", "2026-01-01T00:00:00Z"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert table.returncode == 0 and "login" in table.stdout and "bet-placement" not in table.stdout
    bad = subprocess.run(
        [CONTROLPLANE, "sli", "show", "--since", "yesterday-ish"], capture_output=True, text=True, env=env
    )
    assert bad.returncode == 3 and "90m" in bad.stderr and "Traceback" not in bad.stderr


def test_collector_scrapes_the_platform(store, store_settings, server) -> None:
    from collectors.scraper import latest
    from collectors.service import create_collector_app
    from controlplane.slices import load_slices
    from sample_platform.server import ThreadedServer

    settings = store_settings.model_copy(
        update={"scrape_targets": f"{server.url}/metrics,http://127.0.0.1:1/metrics", "scrape_interval_seconds": 0.2}
    )
    with ThreadedServer(create_collector_app(settings, engine=store, slices=load_slices(SLICES))):
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not latest(store, name="platform_outbox_depth"):
            time.sleep(0.1)
    depth = latest(store, name="platform_outbox_depth")
    assert depth and depth[0].target == f"{server.url}/metrics"
    up = {row.target: row.value for row in latest(store, name="up")}
    assert up == {f"{server.url}/metrics": 1.0, "http://127.0.0.1:1/metrics": 0.0}


def test_collector_metrics_carry_slo_gauges(store, store_settings) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from collectors.service import create_collector_app
    from controlplane.config import load_config
    from sample_platform.server import ThreadedServer

    config_dir = SLICES.parent
    config = load_config(
        store_settings.model_copy(
            update={
                "slices_path": SLICES,
                "slos_path": config_dir / "slos.yaml",
                "events_path": config_dir / "events.yaml",
            }
        )
    )
    app = create_collector_app(store_settings, engine=store, slices=config.slices, config=config)
    with ThreadedServer(app) as collector, httpx.Client(base_url=collector.url) as http:
        request = trace_request(spans=100, seed=11, minutes=1)
        now_nanos = time.time_ns() - 120 * 10**9  # two minutes ago, inside every window
        for span in request.resource_spans[0].scope_spans[0].spans:
            length = span.end_time_unix_nano - span.start_time_unix_nano
            span.start_time_unix_nano = now_nanos
            span.end_time_unix_nano = now_nanos + length
        assert (
            http.post(
                "/v1/traces", content=request.SerializeToString(), headers={"Content-Type": otlp.PROTOBUF}
            ).status_code
            == 200
        )
        text = http.get("/metrics").text
    families = {f.name: f.samples for f in text_string_to_metric_families(text)}
    assert {"slo_sli", "slo_error_budget_remaining", "slo_burn_rate", "slo_alert", "slo_objective"} <= families.keys()
    sli = {s.labels["slo"]: s.value for s in families["slo_sli"]}
    assert set(sli) == {s.name for s in config.specs}
    bets = [
        s
        for s in families["slo_burn_rate"]
        if s.labels["slo"] == "bet-placement-availability" and s.labels["window"] == "5m"
    ]
    assert bets and bets[0].value > 0  # the 5xx spans above burn budget
    pages = {s.labels["slo"]: s.value for s in families["slo_alert"] if s.labels["severity"] == "page"}
    assert pages["bet-placement-availability"] == 1.0
