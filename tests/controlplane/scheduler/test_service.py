"""The scheduler service: cadences (crontab or `every`) as `--list` shows them and as APScheduler runs
them, SLO evaluation waiting `evaluation_delay` for late telemetry, and new transitions sent to the
receivers in the run that finds them."""

from __future__ import annotations

import json
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, JobExecutionEvent
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from controlplane.cli import app
from controlplane.clock import as_utc
from controlplane.scheduler.config import SchedulerConfigError, SchedulerFile, load_scheduler_config
from controlplane.scheduler.delivery import DeliveryStats
from controlplane.scheduler.service import SchedulerService
from controlplane.scheduler.tables import deliveries_t, snapshots_t
from controlplane.settings import Settings
from controlplane.slo.periods import floor_minute
from tests.controlplane.scheduler.alerting import webhook_server
from tests.controlplane.scheduler.test_jobs import _seed, sched_settings  # noqa: F401 - the fixture
from tests.support import wait_until

NOON = datetime(2025, 5, 1, 12, 0, 20, tzinfo=UTC)


@pytest.mark.parametrize(
    ("config", "cron", "slo_evaluation_next"),
    [
        ({}, "* * * * *", "2025-05-01T12:01:15Z"),  # the default delay: 15 s into the minute
        ({"evaluation_delay": "0s"}, "* * * * *", "2025-05-01T12:01:00Z"),
        ({"evaluation_delay": "75s"}, "* * * * *", "2025-05-01T12:01:15Z"),  # judges the minute before last
        ({"evaluation_delay": "5m"}, "* * * * *", "2025-05-01T12:01:00Z"),
        ({"jobs": {"slo-evaluation": {"cron": "*/5 * * * *"}}}, "*/5 * * * *", "2025-05-01T12:05:15Z"),
    ],
)
def test_cron_slo_evaluation_fires_the_evaluation_delay_into_its_minutes(
    store: Engine, config: dict, cron: str, slo_evaluation_next: str
) -> None:
    service = SchedulerService(Settings(environment="test"), store, SchedulerFile.model_validate(config))
    rows = {row.job: row.to_dict() for row in service.listing(NOON)}
    assert rows["slo-evaluation"] == {"job": "slo-evaluation", "cron": cron, "next_run": slo_evaluation_next}
    # Only SLO evaluation waits for telemetry; the other jobs keep their crontab to the second.
    assert rows["alert-delivery"]["next_run"] == "2025-05-01T12:01:00Z"
    assert rows["checkpoint"]["next_run"] == "2025-05-01T12:05:00Z"


def test_list_shows_cron_and_every_cadences(store: Engine, store_settings: Settings, tmp_path: Path) -> None:
    config = tmp_path / "scheduler.yaml"
    config.write_text(
        "jobs:\n  slo-evaluation: {every: 5s}\n  checklists: {every: 2m}\n  rollups: {enabled: false, cron: '* * * * *'}\n"
    )
    args = ["scheduler", "--list", "--config", str(config), "--store-url", store_settings.store_url]
    before = datetime.now(UTC)
    result = CliRunner().invoke(app, [*args, "--format", "json"])
    after = datetime.now(UTC)
    assert result.exit_code == 0, result.output
    rows = {row["job"]: row for row in json.loads(result.output)["jobs"]}
    assert "rollups" not in rows
    assert set(rows["slo-evaluation"]) == {"job", "every", "next_run"} and rows["slo-evaluation"]["every"] == "5s"
    assert set(rows["checkpoint"]) == {"job", "cron", "next_run"} and rows["checkpoint"]["cron"] == "*/5 * * * *"
    for job, interval in (("slo-evaluation", timedelta(seconds=5)), ("checklists", timedelta(minutes=2))):
        upcoming = datetime.fromisoformat(rows[job]["next_run"].replace("Z", "+00:00"))
        assert before + interval <= upcoming <= after + interval, (job, upcoming)

    table = CliRunner().invoke(app, args)
    assert table.exit_code == 0, table.output
    lines = {line.split()[0]: line for line in table.output.splitlines()[1:]}
    assert "every 5s" in lines["slo-evaluation"] and "every 2m" in lines["checklists"]
    assert "*/5 * * * *" in lines["checkpoint"]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("jobs: {checkpoint: {cron: '* * * * *', every: 5s}}", ["jobs.checkpoint:", "both cron and every"]),
        ("jobs: {checkpoint: {enabled: false}}", ["jobs.checkpoint:", "no cadence", "cron", "every"]),
        ("jobs: {checklists: {every: 500ms}}", ["jobs.checklists.every", "'500ms'", "a whole number"]),
        ("jobs: {checklists: {every: 0s}}", ["jobs.checklists.every", "1s to 1d"]),
        ("jobs: {checklists: {every: 2d}}", ["jobs.checklists.every", "1s to 1d"]),
        ("evaluation_delay: 6m", ["evaluation_delay", "0s to 5m"]),
        ("evaluation_delay: soon", ["evaluation_delay", "a whole number"]),
    ],
)
def test_cadence_mistakes_name_the_file_job_and_field(tmp_path: Path, text: str, words: list[str]) -> None:
    path = tmp_path / "scheduler.yaml"
    path.write_text(text)
    with pytest.raises(SchedulerConfigError) as caught:
        load_scheduler_config(path)
    assert str(caught.value).startswith(f"{path}: ")
    for word in words:
        assert word in str(caught.value)


def test_interval_jobs_run_every_few_seconds_and_each_minute_is_recorded_once(sched_settings, store) -> None:  # noqa: F811
    config = SchedulerFile.model_validate(
        {"jobs": {"slo-evaluation": {"every": "1s"}, "checklists": {"every": "1s"}, "alert-delivery": {"every": "1s"}}}
    )
    service = SchedulerService(sched_settings, store, config)
    runs: Counter[str] = Counter()
    failures: list[BaseException] = []
    lock = threading.Lock()

    def count(event: JobExecutionEvent) -> None:
        with lock:
            runs[event.job_id] += 1
            if event.exception is not None:
                failures.append(event.exception)

    scheduler = service.build()
    scheduler.add_listener(count, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
    first = floor_minute(datetime.now(UTC) - config.delay)
    scheduler.start()
    try:
        # A crontab cannot run a job three times within a minute; an interval of 1 s does.
        wait_until(lambda: runs["slo-evaluation"] >= 3 and runs["checklists"] >= 3, "three runs of each 1 s job")
    finally:
        scheduler.shutdown(wait=True)
    assert failures == []
    last = floor_minute(datetime.now(UTC) - config.delay)
    with store.connect() as conn:
        query = select(snapshots_t.c.at).where(snapshots_t.c.slo == "bets").order_by(snapshots_t.c.at)
        minutes = [as_utc(at) for at in conn.execute(query).scalars()]
    # At most one snapshot per minute the runs reached (each `evaluation_delay` back), however many runs
    # each minute had.
    assert minutes and len(set(minutes)) == len(minutes), minutes
    assert all(first <= at <= last and at == floor_minute(at) for at in minutes), (minutes, first, last)


def test_evaluation_waits_for_the_last_minutes_late_telemetry(sched_settings, store) -> None:  # noqa: F811
    late = floor_minute(datetime.now(UTC)) - timedelta(hours=3)
    _seed(store, late - timedelta(hours=2), 120, 100, 0)
    clock = {"now": late + timedelta(minutes=1, seconds=5)}  # the minute `late` ended 5 s ago
    service = SchedulerService(
        sched_settings, store, load_scheduler_config(Path("/nonexistent")), clock=lambda: clock["now"]
    )
    early = service.run_once("slo-evaluation")
    assert early.at == late, "the minute that just ended is not judged yet"
    assert early.transitions == []

    _seed(store, late, 1, 1000, 1000)  # that minute's telemetry arrives, all of it errors
    clock["now"] = late + timedelta(minutes=1, seconds=15)
    judged = service.run_once("slo-evaluation")
    assert judged.at == late + timedelta(minutes=1) and judged.snapshots == 1
    assert [(t["severity"], t["state"]) for t in judged.transitions] == [("page", "firing"), ("ticket", "firing")]
    with store.connect() as conn:
        events = conn.execute(select(snapshots_t.c.events).where(snapshots_t.c.at == judged.at)).scalar_one()
    assert events == 120 * 100 + 1000, "the snapshot counts the late minute"


def _firing_burst(store: Engine) -> datetime:
    """Ten minutes of 50% errors after two good hours; returns when the burst ends."""
    t0 = floor_minute(datetime.now(UTC)) - timedelta(hours=3)
    _seed(store, t0 - timedelta(hours=2), 120, 100, 0)
    _seed(store, t0, 10, 100, 50)
    return t0 + timedelta(minutes=10)


def test_a_new_transition_reaches_the_receiver_in_the_evaluation_run(sched_settings, store) -> None:  # noqa: F811
    end = _firing_burst(store)
    with webhook_server(200) as hook:
        config = SchedulerFile.model_validate({"receivers": [{"name": "hook", "kind": "webhook", "url": hook.url}]})
        now = end + config.delay + timedelta(seconds=1)
        service = SchedulerService(sched_settings, store, config, clock=lambda: now)
        evaluation = service.evaluate_and_enqueue()  # and no alert-delivery run
        ids = {t["id"] for t in evaluation.transitions}
        assert len(ids) == 2
        assert {r.headers["idempotency-key"] for r in hook.accepted()} == ids
        assert {r.body["state"] for r in hook.accepted()} == {"firing"}
    assert evaluation.delivery == DeliveryStats(attempted=2, delivered=2)
    with store.connect() as conn:
        delivered = conn.execute(select(deliveries_t.c.transition_id, deliveries_t.c.delivered_at)).all()
    assert {tid for tid, at in delivered if at is not None} == ids


def test_a_failed_first_send_is_retried_by_alert_delivery(sched_settings, store) -> None:  # noqa: F811
    end = _firing_burst(store)
    with webhook_server(503, 503, 200) as hook:
        config = SchedulerFile.model_validate({"receivers": [{"name": "hook", "kind": "webhook", "url": hook.url}]})
        clock = {"now": end + config.delay + timedelta(seconds=1)}
        service = SchedulerService(sched_settings, store, config, clock=lambda: clock["now"])
        evaluation = service.run_once("slo-evaluation")
        assert evaluation.delivery == DeliveryStats(attempted=2, retrying=2)
        assert hook.accepted() == []
        clock["now"] += timedelta(hours=1)  # past any backoff
        assert service.run_once("alert-delivery").delivered == 2
        assert {r.headers["idempotency-key"] for r in hook.accepted()} == {t["id"] for t in evaluation.transitions}
