"""The Incidents page: a staged incident's figures as `incidents show` computes them, its changes
nearest first, an open incident on top, declaring one as the person signed in (compliance only reads),
and the error budget policy per slice on the on-call page."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

import audit.log
from audit.query import find_entries
from controlplane.incidents.tracker import Tracker
from controlplane.settings import Settings
from controlplane.traces.store import Keep, keep
from tests.controlplane.incidents.conftest import AVAILABILITY, FAILURES, append_change, minute, write_minutes
from tests.controlplane.scheduler.alerting import add_transition
from tests.dashboards.test_pages import _assert_clean, _open, _signed_in, dashboard_store

FAILING = "fa" * 16  # a kept trace of a failed bet during the impact


@pytest.fixture
def staged(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    users = {"ana": "oncall", "cleo": "compliance", "ada": "admin"}
    with dashboard_store(database_url, tmp_path, monkeypatch, "audit.test/incidents", users) as engine:
        t0 = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=3)
        write_minutes(engine, t0, FAILURES)
        add_transition(engine, at=minute(t0, 63), slo=AVAILABILITY)
        add_transition(engine, at=minute(t0, 75), started_at=minute(t0, 63), state="resolved", slo=AVAILABILITY)
        log = audit.log.AuditLog(engine, origin="audit.test/incidents")
        append_change(
            monkeypatch, log, minute(t0, 59.5), kind="change", actor="riley.gameday", subject="fault:f1",
            payload={"type": "fault_set", "fault": {"kind": "lock_wait", "route": "*"}, "reason": "game day"},
        )  # fmt: skip
        keep(engine, [Keep(FAILING, "bet-placement", minute(t0, 62), "bad", 0.4)])
        keep(engine, [Keep("0b" * 16, "bet-placement", minute(t0, 20), "bad", 0.4)])  # before the impact
        Tracker(Settings(), engine).track(now=minute(t0, 95))
        yield engine


def test_the_page_shows_the_staged_figures_and_changes(staged: Engine) -> None:
    at = _open(_signed_in("ada"), "incidents").run()
    _assert_clean(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Detected in"] == "3 min" and metrics["Mitigated in"] == "5 min"
    assert metrics["User-impact minutes"] == "6" and metrics["Bad events"] == "170"
    changes = at.dataframe[0].value
    assert changes.iloc[0]["Change"] == "lock_wait fault set on *" and changes.iloc[0]["By"] == "riley.gameday"
    assert changes.iloc[0]["From impact start"] == "-30 s"
    kept = next(m.value for m in at.markdown if "trace?id=" in m.value)
    assert f"[`{FAILING}`](trace?id={FAILING})" in kept and "0b" * 16 not in kept
    assert not at.error  # nothing open
    assert any(c.proto.spec and "time to detect" in c.proto.spec for c in at.get("plotly_chart"))


def test_an_open_incident_is_on_top_and_declaring_records_the_person(staged: Engine) -> None:
    at = _open(_signed_in("ana"), "incidents").run()
    form_slice = next(s for s in at.selectbox if s.label == "Slice")
    form_slice.select("settlement")
    next(t for t in at.text_input if t.label == "What users see").input("payouts stuck")
    next(b for b in at.button if b.label == "Declare").click().run()
    _assert_clean(at)
    assert any("opened on settlement" in s.value for s in at.success), [s.value for s in at.success]
    at.run()
    assert any("OPEN: payouts stuck" in e.value for e in at.error), [e.value for e in at.error]
    (entry,) = [e for e in find_entries(staged, kind="incident") if e.payload.get("declared")]
    assert entry.actor == "ana" and entry.subject.endswith("-settlement")

    readonly = _open(_signed_in("cleo"), "incidents").run()
    _assert_clean(readonly)
    assert not [b for b in readonly.button if b.label == "Declare"]  # compliance reads only
    assert any("OPEN: payouts stuck" in e.value for e in readonly.error)


def test_the_oncall_page_shows_the_policy_per_slice(staged: Engine) -> None:
    at = _open(_signed_in("ana"), "oncall").run()
    _assert_clean(at)
    policy = [w.value for w in at.warning if w.value.startswith("Error budget policy")]
    assert policy and "**bet-placement** FREEZE" in policy[0] and "**settlement** ship" in policy[0], policy
