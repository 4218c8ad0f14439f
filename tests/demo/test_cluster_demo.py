"""`controlplane demo --topology cluster` on PostgreSQL: its own nats-server, 3 platform replicas, 2
collectors, 2 audit ingesters and the scheduler; an ingester, the broker and a replica SIGKILLed on the
night. The report shows each replica's bets, every outbox event in the audit log exactly once, the
stream's lag and no dead letters; the ledger balances and the audit log verifies. Without PostgreSQL
the cluster is refused with the fix."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.demo.test_demo import check_game_day
from tests.streams.conftest import NATS_SERVER, REQUIRED
from tests.support import CONTROLPLANE

ROOT = Path(__file__).resolve().parents[2]


def _demo(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CONTROLPLANE, "demo", "--no-dashboard", *args], capture_output=True, text=True, cwd=ROOT, timeout=timeout
    )


@pytest.mark.parametrize(
    ("urls", "message"),
    [
        ([], "--topology cluster runs 3 platform replicas"),
        (["--database-url", "sqlite:///{work}/p.db"], "--database-url: --topology cluster needs PostgreSQL"),
    ],
)
def test_a_cluster_needs_postgresql(tmp_path: Path, urls: list[str], message: str) -> None:
    work = tmp_path / "demo"
    done = _demo("--topology", "cluster", "--workdir", str(work), *[u.format(work=work) for u in urls], timeout=120)
    assert done.returncode == 3, done.stdout + done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr, done.stderr


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.xdist_group("derby-night")  # one derby night at a time (see test_demo.py)
def test_derby_night_on_a_cluster(database_url: str, tmp_path: Path) -> None:
    if database_url.startswith("sqlite"):
        pytest.skip("the cluster runs on PostgreSQL (refused on SQLite: test_a_cluster_needs_postgresql)")
    if NATS_SERVER is None:
        if REQUIRED:
            pytest.fail("nats-server is required in CI (Debian package nats-server)")
        pytest.skip("nats-server not installed (apt-get install nats-server)")
    work = tmp_path / "demo"
    done = _demo(
        "--topology", "cluster", "--duration", "60", "--rate", "2", "--format", "json", "--workdir", str(work),
        "--database-url", database_url,
    )  # fmt: skip
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    report = json.loads(done.stdout)
    assert report["ok"] is True
    check_game_day(report, work)  # the single topology's game day holds on the cluster too

    cluster = report["cluster"]
    assert (cluster["collectors"], cluster["ingesters"]) == (2, 2)
    replicas = cluster["replicas"]
    assert [r["process"] for r in replicas] == ["platform-1", "platform-2", "platform-3"]
    assert all(r["requests"] > 0 and r["bets_accepted"] > 0 for r in replicas), replicas
    assert sum(r["bets_accepted"] for r in replicas) <= report["load"]["bets_placed"]
    # The cluster's own faults, each process back afterwards.
    faults = {f["process"]: f for f in cluster["faults"]}
    assert set(faults) == {"audit-ingest-2", "nats-server", "platform-3"}, cluster["faults"]
    assert all(f["back_after_s"] is not None for f in faults.values())
    # Through them, every outbox event reached the audit log exactly once, and none was dead-lettered.
    stream = cluster["stream"]
    assert stream["outbox_events"] > 0 and stream["audited_once"] == stream["outbox_events"], stream
    assert stream["missing"] == 0 and stream["doubled"] == 0 and stream["dead_letters"] == 0
    assert 0 <= stream["lag_p50_s"] <= stream["lag_p99_s"] <= stream["lag_max_s"]

    assert report["ledger"]["ok"] is True
    audit = report["audit"]
    assert audit["verified"] is True and audit["money_problems"] == []
    assert report["load"]["markets_settled"] == 3
    checklist = report["checklist"]
    assert checklist["ran"] and checklist["before_kickoff"], checklist
    # The stream slice is among the SLOs, fed by the ingesters' lag histogram through the collectors.
    slos = {s["slo"]: s for s in report["slos"]}
    assert slos["stream-lag"]["events"] > 0, slos["stream-lag"]
