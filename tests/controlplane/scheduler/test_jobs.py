"""Scheduler jobs with a test clock: snapshots and alert transitions once each, pre-event checklist
runs exactly once per offset across restarts, missed offsets coalesced."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from controlplane.scheduler import jobs
from controlplane.scheduler.config import SchedulerConfigError, load_scheduler_config
from controlplane.scheduler.service import SchedulerService
from controlplane.scheduler.tables import scheduled_t, snapshots_t, transitions_t
from controlplane.settings import Settings
from controlplane.slo.minute_store import blocks_t
from controlplane.slo.periods import floor_minute, minute_index
from controlplane.store import SliBucket, table
from tests.conftest import SLICES_PATH

CONFIG = Path(__file__).parents[3] / "config"
SLO = """slos:
  - {name: bets, slice: bet-placement, sli: {kind: ratio}, objective: 0.999, window: {rolling_days: 30}}
"""
CHECKLIST = """checks:
  - {id: coverage, title: t, severity: warning, owner: o, runbook: r, evaluator: {type: slo_coverage, slices: [bet-placement]}}
"""


@pytest.fixture
def sched_settings(database_url: str, tmp_path: Path) -> Settings:
    (tmp_path / "slos.yaml").write_text(SLO)
    (tmp_path / "checklist.yaml").write_text(CHECKLIST)
    (tmp_path / "events.yaml").write_text("events: []\n")
    return Settings(
        environment="test",
        store_url=database_url,
        audit_url=database_url,
        audit_key_dir=tmp_path / "keys",
        slices_path=SLICES_PATH,
        slos_path=tmp_path / "slos.yaml",
        events_path=tmp_path / "events.yaml",
        checklist_path=tmp_path / "checklist.yaml",
    )


def _seed(store: Engine, start: datetime, minutes: int, total: int, bad: int) -> None:
    rows = [{"slice": "bet-placement", "minute": start + timedelta(minutes=i), "total": total, "bad": bad}
            for i in range(minutes)]  # fmt: skip
    with store.begin() as conn:
        conn.execute(table(SliBucket).insert(), rows)


def _count(store: Engine, t) -> int:
    with store.connect() as conn:
        return conn.execute(select(func.count()).select_from(t)).scalar() or 0


def test_a_burst_fires_one_page_transition_and_resolves(sched_settings, store) -> None:
    t0 = floor_minute(datetime.now(UTC)) - timedelta(hours=3)
    _seed(store, t0 - timedelta(hours=2), 120, 100, 0)
    _seed(store, t0, 10, 100, 50)  # 50% errors for ten minutes: far past the page thresholds
    firing = jobs.evaluate_slos(sched_settings, store, now=t0 + timedelta(minutes=10))
    assert [(t["severity"], t["state"]) for t in firing.transitions] == [("page", "firing"), ("ticket", "firing")]
    detail = json.loads(firing.transitions[0]["detail"])
    assert detail["burn_rates"]["5m"] > 14.4 and detail["thresholds"][0] == {"long": "1h", "short": "5m", "burn": 14.4}

    again = jobs.evaluate_slos(sched_settings, store, now=t0 + timedelta(minutes=10, seconds=30))
    assert again.snapshots == 0 and again.transitions == [], "the same minute is evaluated once"
    still = jobs.evaluate_slos(sched_settings, store, now=t0 + timedelta(minutes=11))
    assert still.snapshots == 1 and still.transitions == [], "still firing: no new transition"

    _seed(store, t0 + timedelta(minutes=10), 120, 100, 0)
    quiet = jobs.evaluate_slos(sched_settings, store, now=t0 + timedelta(minutes=130))
    page = [t for t in quiet.transitions if t["severity"] == "page"]
    assert [t["state"] for t in page] == ["resolved"]
    assert page[0]["started_at"] == t0 + timedelta(minutes=10)
    assert _count(store, transitions_t) == 2 + len(quiet.transitions)
    assert _count(store, snapshots_t) == 3


def _event(path: Path, kickoff: datetime) -> None:
    settles = kickoff + timedelta(hours=2)
    path.write_text(f"events:\n  - {{name: final, kickoff: '{kickoff.isoformat()}', "
                    f"settlement_expected: '{settles.isoformat()}'}}\n")  # fmt: skip


def test_a_checklist_runs_once_per_offset_across_restarts(sched_settings, store) -> None:
    kickoff = floor_minute(datetime.now(UTC)) + timedelta(hours=30)
    _event(sched_settings.events_path, kickoff)
    offsets = ["24h", "1h"]
    assert jobs.run_due_checklists(sched_settings, store, now=kickoff - timedelta(hours=25), offsets=offsets) == []
    first = jobs.run_due_checklists(sched_settings, store, now=kickoff - timedelta(hours=24), offsets=offsets)
    assert [r["offsets"] for r in first] == [["24h"]] and first[0]["decision"] == "go"
    # A restart: a new service, the same store; the T-24h run is not repeated.
    service = SchedulerService(sched_settings, store, load_scheduler_config(Path("/nonexistent")))
    service.clock = lambda: kickoff - timedelta(hours=23)
    assert service.run_once("checklists") == []
    second = jobs.run_due_checklists(sched_settings, store, now=kickoff - timedelta(minutes=59), offsets=offsets)
    assert [r["offsets"] for r in second] == [["1h"]]
    assert jobs.run_due_checklists(sched_settings, store, now=kickoff - timedelta(minutes=30), offsets=offsets) == []
    with store.connect() as conn:
        outcomes = [json.loads(o) for o in conn.execute(select(scheduled_t.c.outcome)).scalars()]
    assert sorted(o["offsets"][0] for o in outcomes) == ["1h", "24h"] and all(o["decision"] == "go" for o in outcomes)


def test_missed_offsets_coalesce_into_one_run_and_none_after_kickoff(sched_settings, store) -> None:
    kickoff = floor_minute(datetime.now(UTC)) + timedelta(hours=2)
    _event(sched_settings.events_path, kickoff)
    late = jobs.run_due_checklists(sched_settings, store, now=kickoff - timedelta(minutes=10), offsets=["24h", "1h"])
    assert [r["offsets"] for r in late] == [["24h", "1h"]], "one run stands for both missed offsets"
    assert _count(store, scheduled_t) == 2
    kickoff2 = floor_minute(datetime.now(UTC)) + timedelta(hours=1)
    _event(sched_settings.events_path, kickoff2)
    assert jobs.run_due_checklists(sched_settings, store, now=kickoff2 + timedelta(minutes=1), offsets=["1h"]) == []


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("jobs: {checkpoint: {cron: 'every minute'}}", ["jobs.checkpoint.cron", "crontab"]),
        ("jobs: {nightly: {cron: '* * * * *'}}", ["unknown job", "nightly"]),
        ("checklist_offsets: [soon]", ["checklist_offsets", "a whole number"]),
        ("minute_retention: 2d", ["at least 8 days"]),
        ("lease_seconds: 1", ["lease_seconds"]),
    ],
)
def test_config_mistakes_name_the_file_and_field(tmp_path: Path, text: str, words: list[str]) -> None:
    path = tmp_path / "scheduler.yaml"
    path.write_text(text)
    with pytest.raises(SchedulerConfigError) as caught:
        load_scheduler_config(path)
    assert str(caught.value).startswith(str(path))
    for word in words:
        assert word in str(caught.value)


def test_retention_purges_rolled_up_minutes_and_keeps_the_answers(sched_settings, store) -> None:
    from controlplane.slices import load_slices
    from controlplane.slo.rolled import evaluate_all_from_rollups
    from controlplane.slo.spec import load_slos
    from controlplane.slo.tables import rollups_t

    now = floor_minute(datetime.now(UTC))
    _seed(store, now - timedelta(days=40), 600, 100, 1)
    _seed(store, now - timedelta(days=3), 600, 100, 2)
    specs = load_slos(sched_settings.slos_path)
    boundaries = load_slices(SLICES_PATH).boundaries
    jobs.refresh(sched_settings, store, now=now)
    # The refresh also packed the minutes of every past hour: one block per slice-hour, no rows left.
    old_hours, recent_hours = (
        len({minute_index(start + timedelta(minutes=i)) // 60 for i in range(600)})
        for start in (now - timedelta(days=40), now - timedelta(days=3))
    )
    assert _count(store, table(SliBucket)) == 0 and _count(store, blocks_t) == old_hours + recent_hours
    before = evaluate_all_from_rollups(store, specs, events={}, boundaries=boundaries, at=now)
    # A late event for an old minute after the refresh, upserted as a collector does (a minute row
    # again beside its packed hour): retention folds it in before it deletes.
    late = floor_minute(now - timedelta(days=40) + timedelta(hours=2, minutes=7))
    with store.begin() as conn:
        conn.execute(table(SliBucket).insert().values(slice="bet-placement", minute=late, total=1, bad=0))

    deleted = jobs.retention(sched_settings, store, now=now, minute_retention="35d")
    assert deleted["sli_buckets"] == 1 and deleted["sli_minute_blocks"] == old_hours, "older than the horizon"
    assert deleted["dashboard_sessions"] == 0
    with store.connect() as conn:
        old_total = conn.execute(
            select(func.sum(rollups_t.c.total)).where(
                rollups_t.c.period == "hour", rollups_t.c.start < now - timedelta(days=35)
            )
        ).scalar()
    assert _count(store, table(SliBucket)) == 0 and _count(store, blocks_t) == recent_hours
    assert old_total == 600 * 100 + 1, "the late event reached the rollups before its minute went"
    after = evaluate_all_from_rollups(store, specs, events={}, boundaries=boundaries, at=now)
    assert after.to_dict() == before.to_dict()
    assert jobs.retention_horizon(sched_settings, "8d", now=now) == now - timedelta(days=32), "never under a month"


def test_cost_rollups_keep_each_hour_and_wait_for_a_cost_model(sched_settings: Settings, store: Engine) -> None:
    from audit.log import AuditLog
    from audit.schema import migrate_audit
    from controlplane.cost.hours import cost_history
    from controlplane.cost.tables import hours_t

    settings = sched_settings.model_copy(update={"costs_path": sched_settings.slos_path.with_name("costs.yaml")})
    now = datetime.now(UTC)
    assert "no cost model" in jobs.cost_rollups(settings, store, now=now)["skipped"]
    settings.costs_path.write_text(
        '{currency: EUR, components: [{name: db, rate: {per_hour: "3.60"}, allocation: direct},'
        ' {name: api, rate: {per_hour: "1.20"}, allocation: {fixed_share: "0.5"}}]}'
    )
    migrate_audit(store)
    log = AuditLog(store, origin="audit.test/cost-hours")
    for bet, kind in ((1, "payout"), (2, "bet_lost"), (3, "void"), (4, "payout")):
        log.append(kind="money", actor="platform", subject=f"bet:{bet}", payload={"type": kind})
    later = now + timedelta(hours=1)  # the hour of those entries is complete by then
    done = jobs.cost_rollups(settings, store, now=later)
    assert done["rows"] == 2 * 3
    assert jobs.cost_rollups(settings, store, now=later)["rows"] == 6 and _count(store, hours_t) == 6  # recomputed
    history = cost_history(store, since=now - timedelta(hours=3))
    assert [h.total_cost for h in history] == [Decimal("4.80")] * 3
    this_hour = now.replace(minute=0, second=0, microsecond=0)
    (entry,) = [h for h in history if h.hour == this_hour]
    assert (entry.settled_bets, entry.voided_bets) == (3, 1)
    assert entry.allocated_cost == Decimal("4.20") and entry.allocated_cost_per_settled_bet == Decimal("1.40")
    assert entry.cost_per_settled_bet == Decimal("1.60")  # total cost ÷ settled bets, as the report has it
    assert all(h.cost_per_settled_bet is None for h in history if h.hour != this_hour)


def test_retention_deletes_kept_traces_past_their_days(sched_settings, store) -> None:
    from controlplane.traces.store import Keep, keep, read_trace
    from controlplane.traces.tables import kept_traces_t

    now = floor_minute(datetime.now(UTC))
    span = {
        "span_id": "00000000000000aa", "parent_span_id": "", "name": "POST /v1/bets", "service": "s", "kind": "server",
        "start_unix_nano": 1, "end_unix_nano": 2, "status_code": 2, "status_message": "", "attributes": "{}",
        "events": "[]", "links": "[]",
    }  # fmt: skip
    old, fresh = "0a" * 16, "0f" * 16
    keep(store, [Keep(old, "bet-placement", now, "bad", 1.0), Keep(fresh, "bet-placement", now, "bad", 1.0)],
         spans=[span | {"trace_id": old}, span | {"trace_id": fresh}])  # fmt: skip
    with store.begin() as conn:  # kept eight days ago, past the default seven
        conn.execute(
            kept_traces_t.update().where(kept_traces_t.c.trace_id == old).values(kept_at=now - timedelta(days=8))
        )
    deleted = jobs.retention(sched_settings, store, now=now, minute_retention="35d")
    assert deleted["kept_traces_expired"] == 1 and deleted["kept_traces_evicted"] == 0
    assert read_trace(store, old) is None and read_trace(store, fresh) is not None
