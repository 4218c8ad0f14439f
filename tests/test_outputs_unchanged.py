"""What users and their scripts read stays byte-identical across internal changes: `slo status`, `cost
report`, `checklist run` and `history`, `sli show`, as JSON (and tables and CSV where people read them),
on one fixed store, against recorded files.

The store holds three days of SLI minutes for every slice (rolled up), scraped CPU and risk-cache
samples, and settled bets in the audit log, all at fixed instants; every command is asked about a
fixed instant. A run's own identity (its id, how long each check took) is the only thing masked.

To record the files anew after an intended change of output: CONTROLPLANE_TEST_RECORD_OUTPUTS=1.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import audit.log
from audit.schema import migrate_audit
from collectors.ingest import Batch, commit_batch
from controlplane.slo.rollups import refresh_rollups
from controlplane.storage import make_engine
from controlplane.store import ScrapedSample, migrate_store, table
from tests.support import CONTROLPLANE

CONFIG = Path(__file__).parents[1] / "config"
RECORDED = Path(__file__).with_name("recorded")
RECORD = os.environ.get("CONTROLPLANE_TEST_RECORD_OUTPUTS") == "1"
START = datetime(2026, 6, 1, tzinfo=UTC)
AT = START + timedelta(days=3)  # 2026-06-04T00:00:00Z
SLICES = ("bet-placement", "settlement", "login", "odds-feed")
EVENTS = """
events:
  - {name: cup-final, kickoff: "2026-06-03T19:00:00Z", settlement_expected: "2026-06-03T21:30:00Z"}
"""
CHECKLIST = """
checks:
  - {id: slos-defined, title: Every slice has an SLO, severity: blocking, owner: sre, runbook: add SLOs,
     evaluator: {type: slo_coverage}}
  - {id: bet-budget, title: Bet placement budget, severity: blocking, owner: sre, runbook: freeze changes,
     evaluator: {type: error_budget, slo: bet-placement-availability, min_remaining: 0.5}}
  - {id: login-budget, title: Login budget, severity: warning, owner: sre, runbook: look at login,
     evaluator: {type: error_budget, slo: login-availability, min_remaining: 0.25}}
  - {id: no-page, title: No page in a day, severity: warning, owner: sre, runbook: read the alert history,
     evaluator: {type: no_page_alert, slo: bet-placement-availability, hours: 24}}
  - {id: risk-cache, title: Risk cache warm, severity: warning, owner: trading, runbook: warm it,
     evaluator: {type: scraped_signal, signal: risk_cache_hit_ratio, at_least: 0.8, window: 15m, max_age: 2m}}
  - {id: drill, title: A failover drill this week, severity: warning, owner: sre, runbook: run one,
     evaluator: {type: audit_evidence, kinds: [failover], within_days: 7}}
  - {id: roles, title: Incident roles named, severity: blocking, owner: event-lead, runbook: attest,
     evaluator: {type: attestation}}
"""
CPU_TARGET = "http://127.0.0.1:8080/metrics"


def _minute_counts(slice_index: int, minute: int) -> tuple[int, int]:
    """A slice's (requests, bad) in one minute: a steady rate, an incident on the third evening."""
    total = 20 + (minute * 7 + slice_index * 3) % 11
    bad = 0 if minute % 97 else 1
    if slice_index == 0 and 2 * 1440 + 19 * 60 <= minute < 2 * 1440 + 19 * 60 + 25:  # bet placement, 19:00
        bad = total // 3
    return total, bad


def _seed_store(url: str) -> None:
    engine = make_engine(url)
    migrate_store(engine)
    for day in range(3):
        batch = Batch()
        for minute in range(day * 1440, (day + 1) * 1440):
            for i, name in enumerate(SLICES):
                total, bad = _minute_counts(i, minute)
                delta = batch.bucket(name, START + timedelta(minutes=minute))
                delta.total, delta.bad = total, bad
                delta.latency["0.1"] = total - bad - (minute % 3)
                delta.latency["0.5"] = minute % 3
                delta.latency["+Inf"] = bad
        commit_batch(engine, digest=f"day{day}", signal="traces", batch=batch)
    samples = table(ScrapedSample)
    rows: list[dict[str, Any]] = []
    for step in range(0, 3 * 1440, 15):  # every 15 minutes: CPU at 0.4 cores, the cache at 0.9 then 0.6
        at = START + timedelta(minutes=step)
        rows.append({"target": CPU_TARGET, "name": "process_cpu_seconds_total", "labels": "{}",
                     "value": step * 60 * 0.4, "scraped_at": at})  # fmt: skip
        for result, share in (("hit", 9 if step < 2 * 1440 else 6), ("miss", 1 if step < 2 * 1440 else 4)):
            rows.append({"target": CPU_TARGET, "name": "platform_risk_cache_lookups_total",
                         "labels": json.dumps({"result": result}), "value": step * share, "scraped_at": at})  # fmt: skip
    with engine.begin() as conn:
        conn.execute(samples.insert(), rows)
    refresh_rollups(engine, until=AT)
    engine.dispose()


def _seed_audit(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = make_engine(url)
    migrate_audit(engine)
    log = audit.log.AuditLog(engine, origin="audit.test/outputs")
    for bet in range(60):
        when = START + timedelta(days=2, hours=17, minutes=bet * 5)
        monkeypatch.setattr(audit.log, "_now", lambda when=when: when)
        kind = "void" if bet % 10 == 0 else ("payout" if bet % 3 == 0 else "bet_lost")
        log.append(kind="money", actor="platform", subject=f"bet:{bet}", payload={"type": kind, "bet_id": bet})
        if bet % 7 == 0:  # a resettlement a minute later
            monkeypatch.setattr(audit.log, "_now", lambda when=when: when + timedelta(minutes=1))
            log.append(kind="money", actor="platform", subject=f"bet:{bet}", payload={"type": "payout", "bet_id": bet})
    engine.dispose()


@pytest.fixture
def fixed_store(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    (tmp_path / "events.yaml").write_text(EVENTS)
    (tmp_path / "checklist.yaml").write_text(CHECKLIST)
    _seed_store(database_url)
    _seed_audit(database_url, monkeypatch)
    for name in ("slos.yaml", "slices.yaml", "costs.yaml"):
        shutil.copy(CONFIG / name, tmp_path / name)
    # Every file relative to the commands' working directory: paths show in the output (a run's
    # `spec.path`, a check's evidence), so they must be the same in every checkout.
    yield {
        "CONTROLPLANE_STORE_URL": database_url,
        "CONTROLPLANE_AUDIT_URL": database_url,
        "CONTROLPLANE_AUDIT_ORIGIN": "audit.test/outputs",
        "CONTROLPLANE_AUDIT_KEY_DIR": str(tmp_path / "keys"),
        "CONTROLPLANE_SLOS_PATH": "slos.yaml",
        "CONTROLPLANE_SLICES_PATH": "slices.yaml",
        "CONTROLPLANE_COSTS_PATH": "costs.yaml",
        "CONTROLPLANE_EVENTS_PATH": "events.yaml",
        "CONTROLPLANE_CHECKLIST_PATH": "checklist.yaml",
        "CONTROLPLANE_PLATFORM_URL": "http://127.0.0.1:9",  # nothing listens: probes are unknown
    }


def _masked(document: Any) -> Any:
    """A run's own identity out: its id and how long each check took."""
    if isinstance(document, dict):
        return {k: ("<masked>" if k in ("run_id", "duration_ms") else _masked(v)) for k, v in document.items()}
    if isinstance(document, list):
        return [_masked(v) for v in document]
    return document


WINDOW = ["--from", "2026-06-03T12:00:00Z", "--to", "2026-06-04T00:00:00Z"]
# name -> (arguments, exit code); a name's file ends in .json for JSON, else .txt. In order: the
# history lists the run made before it.
COMMANDS: dict[str, tuple[list[str], int]] = {
    "slo-status": (["slo", "status", "--format", "json", "--at", "2026-06-03T19:30:00Z"], 2),
    "slo-status-table": (["slo", "status", "--at", "2026-06-03T19:30:00Z"], 2),
    "cost-report": (["cost", "report", "--format", "json", *WINDOW, "--by", "hour"], 0),
    "cost-report-event": (["cost", "report", "--format", "json", "--event", "cup-final"], 0),
    "cost-report-csv": (["cost", "report", "--format", "csv", *WINDOW, "--by", "hour"], 0),
    "cost-report-table": (["cost", "report", *WINDOW], 0),
    "checklist-run": (
        ["checklist", "run", "--format", "json", "--event", "cup-final", "--at", "2026-06-03T18:30:00Z"],
        2,
    ),
    "checklist-history": (["checklist", "history", "--format", "json"], 0),
    "sli-show": (["sli", "show", "--slice", "bet-placement", "--since", "2026-06-03T23:50:00Z", "--format", "json"], 0),
}
MASKED = ("checklist-run", "checklist-history")


def test_outputs_are_what_was_recorded(fixed_store: dict[str, str], tmp_path: Path) -> None:
    differ = []
    for name, (args, code) in COMMANDS.items():
        done = subprocess.run(
            [CONTROLPLANE, *args], env=os.environ | fixed_store, capture_output=True, text=True, cwd=tmp_path,
            timeout=300,
        )  # fmt: skip
        assert done.returncode == code, (name, done.returncode, done.stdout, done.stderr)
        text = done.stdout
        if name in MASKED:
            text = json.dumps(_masked(json.loads(text)), indent=2) + "\n"
        path = RECORDED / f"{name}.{'json' if '--format' in args and 'json' in args else 'txt'}"
        if RECORD:
            path.write_text(text)
        if text != path.read_text():
            differ.append(name)
    assert not differ, f"the output of {differ} differs from what {RECORDED} holds"
