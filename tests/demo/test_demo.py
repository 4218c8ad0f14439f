"""`controlplane demo` end to end, on SQLite and on PostgreSQL: a short derby night whose report
shows the page alert firing during the lock-wait fault and not before the first fault, a balanced
ledger, a verified audit log, two bundles verified offline, the checklist run before kickoff and in
the audit log, and a positive cost per settled bet."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest

from tests.support import CONTROLPLANE

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def test_derby_night_in_one_command(database_url: str, tmp_path: Path) -> None:
    work = tmp_path / "demo"
    urls = [] if database_url.startswith("sqlite") else [
        "--database-url", database_url, "--store-url", database_url, "--audit-url", database_url,
    ]  # fmt: skip
    done = subprocess.run(
        [CONTROLPLANE, "demo", "--duration", "60", "--no-dashboard", "--format", "json", "--workdir", str(work), *urls],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=900,
    )
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    report = json.loads(done.stdout)
    assert report["ok"] is True

    faults = {f["kind"]: f for f in report["faults"]}
    assert list(faults) == ["cache_off", "broker_slow", "lock_wait"]
    assert all(f["cleared_at"] for f in faults.values()), "every fault was cleared"
    first_fault = min(datetime.fromisoformat(f["set_at"]) for f in faults.values())
    pages = [a for a in report["alerts"] if a["severity"] == "page" and a["state"] == "firing"]
    assert pages, report["alerts"]
    assert all(datetime.fromisoformat(a["at"].replace("Z", "+00:00")) >= first_fault for a in pages), pages
    availability = [a for a in pages if a["slo"] == "bet-placement-availability"]
    assert availability and availability[0]["when"] == "during lock_wait", availability
    assert faults["lock_wait"]["cleared_because"] == "the page alert fired"

    assert report["ledger"]["ok"] is True and report["ledger"]["transactions"] > 0
    audit = report["audit"]
    assert audit["verified"] is True and audit["money_problems"] == []
    assert len(audit["bundles"]) == 2 and all(b["verified"] for b in audit["bundles"]), audit["bundles"]
    assert audit["by_kind"]["money"] > 0 and audit["by_kind"]["checklist"] >= 1

    checklist = report["checklist"]
    assert checklist["ran"] and checklist["before_kickoff"], checklist
    assert checklist["audit_seq"] is not None
    assert checklist["decision"] in ("go", "go-with-warnings", "no-go")

    cost = report["cost"]
    assert cost["settled_bets"] > 0
    assert Decimal(cost["cost_per_settled_bet"]) > 0

    load = report["load"]
    assert load["bets_placed"] > 0 and load["markets_settled"] == 4
    slos = {s["slo"]: s for s in report["slos"]}
    assert slos["bet-placement-availability"]["bad_events"] > 0
    assert slos["bet-placement-availability"]["alert"] == "page"

    # Without --keep the databases are gone; the report and the bundles stay, and verify again offline.
    assert (work / "report.json").exists()
    assert not (work / "keys").exists()
    for bundle in audit["bundles"]:
        key = audit["verifier_key"]
        again = subprocess.run(
            [sys.executable, "-m", "audit.verify", bundle["path"], "--key", key],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        assert again.returncode == 0, again.stdout + again.stderr
