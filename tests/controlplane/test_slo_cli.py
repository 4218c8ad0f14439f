"""`controlplane slo status` and the SLO spec files: exit codes for cron, errors that name the fix."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest

from collectors.ingest import Batch, commit_batch
from controlplane.clock import utcnow
from controlplane.slo.spec import SloConfigError, load_events, load_slos
from tests.support import CONTROLPLANE

CONFIG = Path(__file__).parents[2] / "config"


def run_status(store_url: str, *args: str) -> subprocess.CompletedProcess:
    env = os.environ | {
        "CONTROLPLANE_STORE_URL": store_url,
        "CONTROLPLANE_SLOS_PATH": str(CONFIG / "slos.yaml"),
        "CONTROLPLANE_EVENTS_PATH": str(CONFIG / "events.yaml"),
        "CONTROLPLANE_SLICES_PATH": str(CONFIG / "slices.yaml"),
    }
    return subprocess.run([CONTROLPLANE, "slo", "status", *args], capture_output=True, text=True, env=env, timeout=60)


def _write_minute(store, minute, total: int, bad: int, digest: str) -> None:  # type: ignore[no-untyped-def]
    batch = Batch()
    delta = batch.bucket("bet-placement", minute)
    delta.total, delta.bad = total, bad
    delta.latency["0.1"] = total
    commit_batch(store, digest=digest, signal="traces", batch=batch)


def test_shipped_specs_load() -> None:
    specs = load_slos(CONFIG / "slos.yaml", events=load_events(CONFIG / "events.yaml"))
    assert {s.slice for s in specs} == {"bet-placement", "settlement", "login", "odds-feed", "stream"}


def test_status_exit_codes_follow_the_alerts(store, store_settings) -> None:
    healthy = run_status(store_settings.store_url, "--format", "json")
    assert healthy.returncode == 0, healthy.stderr
    report = json.loads(healthy.stdout)
    assert {"slice", "objective", "sli", "budget_remaining", "burn_rates", "alerts"} <= report["slos"][0].keys()
    assert set(report["slos"][0]["burn_rates"]) == {"5m", "30m", "1h", "2h", "6h", "1d", "3d"}
    now = utcnow()
    from controlplane.slo.periods import floor_minute as floor

    for i in range(1, 61):  # an hour of 5% errors on bet placement
        _write_minute(store, floor(now) - timedelta(minutes=i), 100, 5, f"m{i}")
    paged = run_status(store_settings.store_url, "--format", "json")
    assert paged.returncode == 2, paged.stderr
    bets = next(s for s in json.loads(paged.stdout)["slos"] if s["name"] == "bet-placement-availability")
    assert bets["alerts"]["page"] is True and bets["burn_rates"]["1h"] == pytest.approx(50.0)
    replay = run_status(store_settings.store_url, "--at", (now - timedelta(hours=2)).isoformat())
    assert replay.returncode == 0 and "bet-placement-availability" in replay.stdout


def test_status_cannot_evaluate_is_exit_3(tmp_path) -> None:
    broken = run_status("mysql://nowhere/db")
    assert broken.returncode == 3 and "not supported" in broken.stderr and "Traceback" not in broken.stderr


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("slos: [", "not valid YAML"),
        (
            "slos:\n  - name: a\n    slice: s\n    objective: 1.5\n    window: {rolling_days: 30}\n",
            "slo 'a': objective",
        ),
        (
            "slos:\n  - name: a\n    slice: s\n    objective: 0.99\n    window: {}\n",
            "slo 'a': window: give exactly one",
        ),
        (
            "slos:\n  - name: a\n    slice: s\n    objective: 0.99\n    window: {rolling_days: 30, calendar: month}\n",
            "give exactly one",
        ),
        (
            "slos:\n  - name: a\n    slice: s\n    objective: 0.99\n    sli: {kind: latency}\n    window: {rolling_days: 7}\n",
            "slo 'a': sli: `threshold_seconds` missing",
        ),
        (
            "slos:\n  - name: a\n    slice: s\n    objective: 0.99\n    window: {event: derby}\n",
            "no event named 'derby'",
        ),
        (
            "slos:\n  - name: a\n    slice: s\n    objective: 0.99\n    window: {rolling_days: 7}\n    colour: red\n",
            "slo 'a': colour",
        ),
    ],
)
def test_spec_errors_name_file_slo_and_field(tmp_path, text: str, expected: str) -> None:
    path = tmp_path / "slos.yaml"
    path.write_text(text)
    with pytest.raises(SloConfigError) as error:
        load_slos(path, events={})
    assert str(path) in str(error.value) and expected in str(error.value)


def test_latency_threshold_must_be_a_boundary(store, store_settings, tmp_path) -> None:
    path = tmp_path / "slos.yaml"
    path.write_text(
        "slos:\n  - name: a\n    slice: bet-placement\n    objective: 0.99\n    sli: {kind: latency, threshold_seconds: 0.3}\n    window: {rolling_days: 7}\n"
    )
    result = run_status(store_settings.store_url, "--slos", str(path))
    assert result.returncode == 3
    assert "not a histogram bucket boundary" in result.stderr and "0.25, 0.5" in result.stderr
