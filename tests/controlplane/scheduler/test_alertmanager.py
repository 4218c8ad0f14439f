"""Delivery to a real Alertmanager (Debian's prometheus-alertmanager): a firing transition shows in its
v2 API with our labels and the SLO's runbook link, and the resolved one resolves it."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine

from controlplane.scheduler.delivery import deliver_pending, enqueue, refresh_firing
from controlplane.scheduler.receivers import receivers_from
from controlplane.settings import Settings
from tests.controlplane.scheduler.alerting import add_transition
from tests.support import free_port, wait_until

CONFIG_DIR = Path(__file__).parents[3] / "config"
ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
REQUIRED = os.environ.get("CONTROLPLANE_TEST_REQUIRE_ALERTMANAGER") == "1"
CONFIG = """\
route:
  receiver: blackhole
  group_wait: 1s
receivers:
  - name: blackhole
"""


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/-/ready", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[str]:
    """A real Alertmanager on a free port, no clustering, its own storage; yields its base URL."""
    if ALERTMANAGER is None:
        if REQUIRED:
            pytest.fail("prometheus-alertmanager is required in CI (Debian package prometheus-alertmanager)")
        pytest.skip("Alertmanager not installed (apt-get install prometheus-alertmanager)")
    config = tmp_path / "alertmanager.yml"
    config.write_text(CONFIG)
    log = tmp_path / "alertmanager.log"
    for attempt in range(5):  # a free port can be taken by another test worker before we bind it
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [
                    ALERTMANAGER,
                    f"--config.file={config}",
                    f"--storage.path={tmp_path / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--cluster.listen-address=",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while proc.poll() is None and not _ready(url) and time.monotonic() < deadline:
            time.sleep(0.1)
        if proc.poll() is None and _ready(url):
            break
        proc.kill()
        proc.wait(timeout=30)
        if "address already in use" not in log.read_text().lower() or attempt == 4:
            pytest.fail(f"Alertmanager did not start: {log.read_text()}")
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


def _alerts(url: str, **params: str) -> list[dict]:
    response = httpx.get(f"{url}/api/v2/alerts", params=params, timeout=5)
    response.raise_for_status()
    return [a for a in response.json() if a["labels"].get("slo") == "bet-placement-availability"]


def test_a_transition_fires_and_resolves_in_alertmanager(store: Engine, alertmanager: str) -> None:
    # Alertmanager judges activity by its own clock, so these times are real ones.
    started = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    settings = Settings(
        alertmanager_url=alertmanager,
        alert_webhook_url="",
        dashboard_url="https://ops.example",
        slos_path=CONFIG_DIR / "slos.yaml",  # names the runbook `bet-placement`
        slices_path=CONFIG_DIR / "slices.yaml",
        events_path=CONFIG_DIR / "events.yaml",
    )
    (am,) = receivers_from(settings, [])
    firing = add_transition(store, at=started)
    enqueue(store, [firing], [am], now=datetime.now(UTC))
    assert deliver_pending(store, [am], now=datetime.now(UTC)).delivered == 1

    wait_until(
        lambda: [a for a in _alerts(alertmanager) if a["status"]["state"] == "active"],
        "the firing alert showing as active in GET /api/v2/alerts",
        timeout=60,
    )
    (alert,) = _alerts(alertmanager)
    assert alert["labels"] == {
        "alertname": "SLOErrorBudgetBurnPage",
        "slo": "bet-placement-availability",
        "slice": "bet-placement",
        "severity": "page",
    }
    assert alert["status"]["state"] == "active"
    assert alert["annotations"]["dashboard"] == "https://ops.example/oncall?slo=bet-placement-availability"
    assert alert["annotations"]["runbook_url"] == "https://ops.example/runbook?name=bet-placement"
    assert "15.25" in alert["annotations"]["description"]
    assert datetime.fromisoformat(alert["startsAt"].replace("Z", "+00:00")) == started
    assert datetime.fromisoformat(alert["endsAt"].replace("Z", "+00:00")) > datetime.now(UTC)
    assert refresh_firing(store, [am], now=datetime.now(UTC)) == 1  # still firing: kept open

    resolved = add_transition(store, at=datetime.now(UTC).replace(microsecond=0), started_at=started, state="resolved")
    enqueue(store, [resolved], [am], now=datetime.now(UTC))
    assert deliver_pending(store, [am], now=datetime.now(UTC)).delivered == 1
    # The v2 API lists only alerts that have not ended: a resolved one is gone from it.
    wait_until(lambda: not _alerts(alertmanager), "the alert resolving in Alertmanager", timeout=60)
    assert refresh_firing(store, [am], now=datetime.now(UTC)) == 0
