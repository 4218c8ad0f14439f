"""The error budget policy: states from budgets and burn, recorded once per change in the store and
the audit log, a freeze that turns a release checklist no-go, admin changes marked while frozen, and
a wrong policy file named with exit 3."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import Engine

from audit.log import AuditLog
from audit.query import find_entries
from audit.schema import migrate_audit
from audit.sink import OutboxAuditSink, SubjectKeys
from controlplane.auditing import audit_engine
from controlplane.policy.evaluate import slo_policy
from controlplane.policy.flag import FreezeFlag
from controlplane.policy.recorder import frozen_slices, record_policy
from controlplane.policy.spec import BudgetPolicyError, load_policy
from controlplane.settings import Settings
from controlplane.slo.engine import MinuteCounts, evaluate
from controlplane.slo.periods import floor_minute, minute_index
from controlplane.slo.spec import SloSpec
from controlplane.storage import make_engine
from controlplane.store import SliBucket, table
from tests.support import CONTROLPLANE

CONFIG = Path(__file__).parents[3] / "config"
POLICY = """rules:
  - {state: freeze, when: {budget_spent: true}, reason: spent}
  - {state: caution, when: {budget_left_below: 0.5}, reason: under half left}
"""
CHECKLIST = """checks:
  - {id: no-freeze, title: No slice frozen, severity: blocking, owner: sre, runbook: r,
     evaluator: {type: budget_policy, slices: [bet-placement]}}
"""


@pytest.fixture
def policy_settings(controlplane_settings: Settings, tmp_path: Path) -> Settings:
    (tmp_path / "policy.yaml").write_text(POLICY)
    (tmp_path / "checklist.yaml").write_text(CHECKLIST)
    paths = {"checklist_path": tmp_path / "checklist.yaml", "budget_policy_path": tmp_path / "policy.yaml"}
    return controlplane_settings.model_copy(update=paths)


def _minutes(store: Engine, start: datetime, count: int, *, bad_at: dict[int, int] | None = None) -> None:
    rows = [{"slice": "bet-placement", "minute": start + timedelta(minutes=i), "total": 100,
             "bad": (bad_at or {}).get(i, 0)} for i in range(count)]  # fmt: skip
    with store.begin() as conn:
        conn.execute(table(SliBucket).insert(), rows)


def _cli(settings: Settings, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CONTROLPLANE_STORE_URL": settings.store_url, "CONTROLPLANE_AUDIT_URL": settings.audit_url,
           "CONTROLPLANE_AUDIT_KEY_DIR": str(settings.audit_key_dir), "CONTROLPLANE_SLOS_PATH": str(settings.slos_path),
           "CONTROLPLANE_SLICES_PATH": str(settings.slices_path), "CONTROLPLANE_EVENTS_PATH": str(settings.events_path),
           "CONTROLPLANE_CHECKLIST_PATH": str(settings.checklist_path), "CONTROLPLANE_ENVIRONMENT": "test",
           "CONTROLPLANE_BUDGET_POLICY_PATH": str(settings.budget_policy_path), **extra}  # fmt: skip
    return subprocess.run([CONTROLPLANE, *args], capture_output=True, text=True, env=env, timeout=120)


def test_each_threshold_crossed_changes_the_state_once_and_is_audited(policy_settings: Settings, store: Engine) -> None:
    now = floor_minute(datetime.now(UTC)) - timedelta(minutes=10)  # the commands below evaluate at the real now
    start = now - timedelta(minutes=1000)
    _minutes(store, start, 1000)  # 100,000 events: a budget of 100 bad ones at 99.9%
    assert [c["to"] for c in record_policy(policy_settings, store, now=now)] == ["ship"] * 5  # every slice, once
    _minutes(store, now, 1, bad_at={0: 60})  # 60 of ~100 allowed: 0.4 left
    changed = record_policy(policy_settings, store, now=now + timedelta(minutes=1))
    assert [(c["slice"], c["from"], c["to"]) for c in changed] == [("bet-placement", "ship", "caution")]
    assert record_policy(policy_settings, store, now=now + timedelta(minutes=2)) == []  # no change, no entry
    _minutes(store, now + timedelta(minutes=2), 1, bad_at={0: 50})
    changed = record_policy(policy_settings, store, now=now + timedelta(minutes=3))
    assert [(c["from"], c["to"], c["reason"]) for c in changed] == [
        ("caution", "freeze", "bet-placement-availability: spent")
    ]
    entries = find_entries(audit_engine(policy_settings), kind="policy", subject="policy:bet-placement")
    assert [(e.payload["from"], e.payload["to"]) for e in entries] == [
        (None, "ship"),
        ("ship", "caution"),
        ("caution", "freeze"),
    ]
    assert entries[-1].payload["slos"]["bet-placement-availability"]["state"] == "freeze"
    assert frozen_slices(store) == ["bet-placement"]

    status = _cli(policy_settings, "policy", "status", "--format", "json")
    assert status.returncode == 2, status.stderr  # a frozen slice
    states = {s["slice"]: s["state"] for s in json.loads(status.stdout)["slices"]}
    assert states["bet-placement"] == "freeze" and states["settlement"] == "ship"
    table_out = _cli(policy_settings, "slo", "status", "--format", "json")
    slos = {s["name"]: s["policy"] for s in json.loads(table_out.stdout)["slos"]}
    assert slos["bet-placement-availability"] == "freeze" and slos["settlement-availability"] == "ship"

    run = _cli(policy_settings, "checklist", "run", "--format", "json")
    assert run.returncode == 2, run.stdout + run.stderr  # no-go
    result = json.loads(run.stdout)
    assert result["decision"] == "no-go"
    (check,) = result["checks"]
    assert check["status"] == "fail" and "bet-placement is in FREEZE" in check["reason"], check


def test_the_default_rules_caution_on_a_paging_burn_and_freeze_when_spent() -> None:
    policy = load_policy(Path("/nonexistent/budget_policy.yaml"))
    spec = SloSpec.model_validate({"name": "bets", "slice": "bet-placement", "objective": 0.999,
                                   "window": {"rolling_days": 30}})  # fmt: skip
    at = floor_minute(datetime.now(UTC))
    first = minute_index(at) - 43200

    def state(bad_last_hour: int) -> tuple[str, str]:
        events, bad = [1000] * 43200, [0] * 43200
        for i in range(43200 - 60, 43200):
            bad[i] = bad_last_hour
        result = slo_policy(policy, evaluate(spec, MinuteCounts(first, events, bad), at=at, events={}))
        return result.state, result.reason

    assert state(0)[0] == "ship"
    assert state(15) == ("caution", "the budget burns at the paging rate; every change needs a second approver")
    assert state(1000)[0] == "freeze"


def test_admin_changes_while_frozen_are_marked(policy_settings: Settings, store: Engine) -> None:
    engine = make_engine(policy_settings.audit_url)
    migrate_audit(engine)
    sink = OutboxAuditSink(AuditLog(engine, origin="t"), SubjectKeys(engine), annotate=FreezeFlag(store, ttl=0))

    def message(event_type: str) -> Any:
        return SimpleNamespace(event_id="e", event_type=event_type, aggregate_type="fault", aggregate_id="f1",
                               payload={"actor": "riley", "reason": "drill", "fault": {"kind": "lock_wait"}})  # fmt: skip

    assert "policy" not in sink.entry(message("change.fault_set"))["payload"]
    now = floor_minute(datetime.now(UTC))
    _minutes(store, now - timedelta(minutes=10), 10, bad_at={9: 90})
    record_policy(policy_settings, store, now=now)
    marked = sink.entry(message("change.fault_set"))["payload"]
    assert marked["policy"] == "freeze" and marked["frozen_slices"] == ["bet-placement"]
    assert "policy" not in sink.entry(message("bet.placed"))["payload"]  # money flow is not a change
    engine.dispose()


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("rules: [", "not valid YAML"),
        ("rules:\n  - {state: frozen, when: {budget_spent: true}, reason: r}", "rules.0.state"),
        ("rules:\n  - {state: freeze, when: {burn_above: 2, window: 2w}, reason: r}", "window '2w'"),
        ("rules:\n  - {state: freeze, when: {}, reason: r}", "at least one of"),
        ("rules: []", "`rules` is empty"),
        (
            "rules:\n  - {state: freeze, when: {budget_spent: true}, reason: r}\noverrides: {nope: []}",
            "overrides name nope",
        ),
    ],
)
def test_a_wrong_policy_file_is_named_with_exit_3(
    policy_settings: Settings, store: Engine, text: str, words: str
) -> None:
    Path(policy_settings.budget_policy_path).write_text(text)
    commands = [("policy", "status")] + ([("slo", "status")] if "YAML" in words else [])  # one is enough there
    for args in commands:
        done = _cli(policy_settings, *args)
        assert done.returncode == 3, (args, done.stdout, done.stderr)
        assert words in done.stderr and "Traceback" not in done.stderr, done.stderr
    with pytest.raises(BudgetPolicyError):
        from controlplane.config import load_config

        load_config(policy_settings).budget_policy()


def test_the_shipped_policy_file_is_the_default(tmp_path: Path) -> None:
    shipped = load_policy(CONFIG / "budget_policy.yaml")
    default = load_policy(tmp_path / "missing.yaml")
    assert [r.model_dump() for r in shipped.rules] == [r.model_dump() for r in default.rules]
