"""Incidents from alerts: opened by a page, gathering the slice's other alerts, closed after the quiet
period, every figure equal to a hand computation over the staged minutes (see conftest.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest
from sqlalchemy import Engine, select

from audit.query import find_entries
from controlplane.auditing import audit_engine, open_audit
from controlplane.incidents.record import IncidentRecord
from controlplane.incidents.render import render_markdown
from controlplane.incidents.tables import incidents_t
from controlplane.incidents.tracker import IncidentError, Tracker
from controlplane.settings import Settings
from tests.controlplane.incidents.conftest import AVAILABILITY, SLICE, minute, write_minutes
from tests.controlplane.scheduler.alerting import add_transition
from tests.support import CONTROLPLANE


def _tracked(settings: Settings, store: Engine, t0: Any) -> Tracker:
    tracker = Tracker(settings, store)
    tracker.track(now=minute(t0, 95))
    return tracker


def test_a_staged_incident_has_the_figures_computed_by_hand(
    incident_settings: Settings, store: Engine, staged: dict[str, Any]
) -> None:
    t0 = staged["t0"]
    tracker = Tracker(incident_settings, store)
    result = tracker.track(now=minute(t0, 95))
    assert len(result.opened) == 1 and result.closed == result.opened, result
    record = tracker.record(result.opened[0], now=minute(t0, 95)).to_dict()

    assert record["slice"] == SLICE and record["state"] == "closed"
    assert record["opened_at"] == f"{minute(t0, 63):%Y-%m-%dT%H:%M:%S}Z"
    # The unbroken bad run that led to the page starts at m60 (m40 was a lone bad minute before it).
    assert record["impact_started_at"] == f"{minute(t0, 60):%Y-%m-%dT%H:%M:%S}Z"
    assert record["detected_at"] == f"{minute(t0, 63):%Y-%m-%dT%H:%M:%S}Z"
    assert record["time_to_detect_s"] == 180.0
    # m65..m66 were clean but shorter than the quiet period; the last bad minute is m67, so mitigated at m68.
    assert record["mitigated_at"] == f"{minute(t0, 68):%Y-%m-%dT%H:%M:%S}Z"
    assert record["time_to_mitigate_s"] == 300.0
    assert record["resolved_at"] == f"{minute(t0, 78):%Y-%m-%dT%H:%M:%S}Z"
    assert record["closed_at"] == f"{minute(t0, 78):%Y-%m-%dT%H:%M:%S}Z"  # mitigated + 10 min = last resolution
    assert record["user_impact_minutes"] == 6  # m60..m64 and m67
    assert record["bad_events"] == {AVAILABILITY: 5 * 30 + 20, "bet-placement-latency": 0}
    # 170 bad events against a budget of 0.1% of the 68 minutes x 100 events in the window at m68.
    assert record["budget_spent"][AVAILABILITY] == pytest.approx(170 / (0.001 * 6800), rel=1e-6)
    assert record["budget_spent"]["bet-placement-latency"] == 0.0
    assert [(a["severity"], a["fired_at"][11:16]) for a in record["alerts"]] == [
        ("page", f"{minute(t0, 63):%H:%M}"),
        ("ticket", f"{minute(t0, 64):%H:%M}"),
    ]
    changes = record["changes"]
    assert changes[0]["seq"] == staged["seqs"]["fault"], changes  # the nearest to the impact's start
    assert changes[0] | {"at": None} == {
        "seq": staged["seqs"]["fault"], "at": None, "actor": "riley.gameday", "type": "fault_set",
        "reason": "game day: the ledger lock is held", "subject": "fault:f1", "what": "lock_wait fault set on *",
        "offset_s": -30.0,
    }  # fmt: skip
    assert [c["seq"] for c in changes] == [staged["seqs"]["fault"], staged["seqs"]["slo"]]  # m20 is too early
    assert changes[1]["type"] == "slo" and changes[1]["offset_s"] == -25 * 60.0


def test_the_closed_record_is_kept_and_audited(
    incident_settings: Settings, store: Engine, staged: dict[str, Any]
) -> None:
    t0 = staged["t0"]
    tracker = _tracked(incident_settings, store, t0)
    with store.connect() as conn:
        row = conn.execute(select(incidents_t)).one()
    assert row.opened_seq is not None and row.closed_seq is not None
    entries = find_entries(audit_engine(incident_settings), kind="incident", subject=f"incident:{row.id}")
    assert [e.payload["type"] for e in entries] == ["opened", "closed"]
    assert entries[0].actor == "controlplane" and entries[0].payload["alert"]["slo"] == AVAILABILITY
    kept = tracker.record(row.id, now=minute(t0, 500))  # read back, not recomputed: the same figures
    assert kept.to_dict() == json.loads(row.record)
    # The audit log keeps numbers as strings (it refuses floats); read back, the record is the same.
    assert IncidentRecord.from_dict(entries[1].payload["record"]).to_dict() == kept.to_dict()
    again = tracker.track(now=minute(t0, 96))  # idempotent: nothing new
    assert again.opened == [] and again.closed == []


def test_an_open_incident_stays_open_until_the_quiet_period_has_passed(
    incident_settings: Settings, store: Engine, staged: dict[str, Any]
) -> None:
    t0 = staged["t0"]
    tracker = Tracker(incident_settings, store)
    first = tracker.track(now=minute(t0, 70))
    assert len(first.opened) == 1 and first.closed == []
    live = tracker.record(first.opened[0], now=minute(t0, 70))
    assert live.state == "open" and live.kpis.mitigated_at is None and live.kpis.resolved_at is None
    assert tracker.track(now=minute(t0, 77)).closed == []  # the ticket still fires until m78
    assert tracker.track(now=minute(t0, 79)).closed == first.opened


def test_overlapping_alerts_on_one_slice_make_one_incident_two_slices_two(
    incident_settings: Settings, store: Engine, t0: Any
) -> None:
    write_minutes(store, t0, {m: 50 for m in range(60, 66)})
    write_minutes(store, t0, {m: 50 for m in range(61, 64)}, slice_name="login")
    add_transition(store, at=minute(t0, 62), slo=AVAILABILITY)
    add_transition(store, at=minute(t0, 64), slo="bet-placement-latency")  # overlaps the first
    add_transition(store, at=minute(t0, 63), slo="login-availability", slice="login")
    for slo, fired, resolved in (
        (AVAILABILITY, 62, 70),
        ("bet-placement-latency", 64, 71),
        ("login-availability", 63, 69),
    ):
        add_transition(
            store, at=minute(t0, resolved), started_at=minute(t0, fired), state="resolved", slo=slo,
            slice="login" if slo.startswith("login") else SLICE,
        )  # fmt: skip
    tracker = Tracker(incident_settings, store)
    result = tracker.track(now=minute(t0, 95))
    assert sorted(i.split("-", 2)[2] for i in result.opened) == ["bet-placement", "login"]
    bets = tracker.record(next(i for i in result.opened if i.endswith(SLICE)), now=minute(t0, 95))
    assert {(a.slo, a.severity) for a in bets.alerts} == {(AVAILABILITY, "page"), ("bet-placement-latency", "page")}
    assert bets.kpis.resolved_at == minute(t0, 71)


def test_a_page_after_an_incident_closed_opens_the_next(
    incident_settings: Settings, store: Engine, staged: dict[str, Any]
) -> None:
    t0 = staged["t0"]
    add_transition(store, at=minute(t0, 88), slo=AVAILABILITY)  # after the first closed at m78
    result = Tracker(incident_settings, store).track(now=minute(t0, 89))
    assert len(result.opened) == 2 and len(result.closed) == 1 and result.closed[0] == result.opened[0]


def test_declared_incidents_and_bad_input(incident_settings: Settings, store: Engine, t0: Any) -> None:
    tracker = Tracker(incident_settings, store)
    ident = tracker.declare("settlement", by="ana", title="payouts slow", now=minute(t0, 10))
    record = tracker.record(ident, now=minute(t0, 11))
    assert record.opened_by == "ana" and record.kpis.detected_at == minute(t0, 10) and record.state == "open"
    with pytest.raises(IncidentError, match="already open"):
        tracker.declare("settlement", by="bo", title="again", now=minute(t0, 12))
    with pytest.raises(IncidentError, match="no slice 'nope'"):
        tracker.declare("nope", by="bo", title="t", now=minute(t0, 12))
    with pytest.raises(IncidentError, match="no incident 'nope'"):
        tracker.record("nope", now=minute(t0, 12))
    assert tracker.track(now=minute(t0, 25)).closed == [ident]  # no alert, no bad minute: over after the quiet


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CONTROLPLANE_STORE_URL": settings.store_url, "CONTROLPLANE_AUDIT_URL": settings.audit_url,
           "CONTROLPLANE_AUDIT_KEY_DIR": str(settings.audit_key_dir), "CONTROLPLANE_SLOS_PATH": str(settings.slos_path),
           "CONTROLPLANE_SLICES_PATH": str(settings.slices_path), "CONTROLPLANE_EVENTS_PATH": str(settings.events_path),
           "CONTROLPLANE_ENVIRONMENT": "test"}  # fmt: skip
    return subprocess.run([CONTROLPLANE, *args], capture_output=True, text=True, env=env, timeout=120)


def test_the_cli_forms_agree_and_the_bundle_verifies_offline(
    incident_settings: Settings, store: Engine, staged: dict[str, Any], tmp_path: Any
) -> None:
    t0 = staged["t0"]
    _tracked(incident_settings, store, t0)
    listed = _cli(incident_settings, "incidents", "list", "--from", "1d", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    (incident,) = json.loads(listed.stdout)["incidents"]
    shown = _cli(incident_settings, "incidents", "show", incident["id"], "--format", "json")
    assert json.loads(shown.stdout) == incident
    markdown = _cli(incident_settings, "incidents", "show", incident["id"], "--format", "markdown").stdout
    assert markdown.strip() == render_markdown(IncidentRecord.from_dict(incident)).strip()
    for figure in ("| User-impact minutes | 6 |", "3 min after the impact started", "5 min after detection",
                   "lock_wait fault set on *", "riley.gameday", "## Action items"):  # fmt: skip
        assert figure in markdown, figure
    report = _cli(incident_settings, "incidents", "report", "--from", "1d", "--format", "json")
    (month,) = json.loads(report.stdout)["months"]
    assert month == {"slice": SLICE, "month": f"{minute(t0, 63):%Y-%m}", "incidents": 1, "mttd_s": 180.0,
                     "mttm_s": 300.0, "user_impact_minutes": 6}  # fmt: skip

    log, _ring = open_audit(incident_settings)
    log.checkpoint()
    out = tmp_path / "incident.json"
    exported = _cli(incident_settings, "audit", "export", "--incident", incident["id"], "--out", str(out))
    assert exported.returncode == 0, exported.stderr
    bundle = json.loads(out.read_text())
    subjects = [json.loads(e["entry"])["subject"] for e in bundle["entries"]]
    assert subjects.count(f"incident:{incident['id']}") == 2 and "fault:f1" in subjects
    verified = subprocess.run(
        [sys.executable, "-m", "audit.verify", str(out), "--key", bundle["verifier_key"]],
        capture_output=True,
        text=True,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("incidents", "show", "no-such"), "no incident 'no-such'"),
        (("incidents", "list", "--from", "yesterday-ish"), "--from"),
        (("incidents", "report", "--from", "2026-13-40"), "--from"),
        (("incidents", "list", "--from", "1d", "--to", "2d"), "--to must be after --from"),
        (("incidents", "list", "--from", "99999999d"), "--from"),
        (("incidents", "declare", "--slice", "login", "--by", "x" * 65, "--title", "t"), "at most 64"),
        (("incidents", "declare", "--slice", "nope", "--by", "ana", "--title", "t"), "no slice 'nope'"),
        (("audit", "export", "--incident", "no-such", "--out", "x.json"), "no incident 'no-such'"),
    ],
)
def test_bad_input_is_named_with_exit_3(
    incident_settings: Settings, store: Engine, args: tuple[str, ...], words: str
) -> None:
    done = _cli(incident_settings, *args)
    assert done.returncode == 3, (done.stdout, done.stderr)
    assert words in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_the_quiet_period_is_a_setting_with_bounds(incident_settings: Settings, store: Engine, t0: Any) -> None:
    with pytest.raises(ValueError, match="incident_quiet_minutes"):
        Settings(incident_quiet_minutes=0)
    write_minutes(store, t0, {m: 50 for m in range(60, 62)})
    add_transition(store, at=minute(t0, 61), slo=AVAILABILITY)
    add_transition(store, at=minute(t0, 66), started_at=minute(t0, 61), state="resolved", slo=AVAILABILITY)
    quick = Tracker(incident_settings.model_copy(update={"incident_quiet_minutes": 3}), store)
    (ident,) = quick.track(now=minute(t0, 80)).opened
    record = quick.record(ident, now=minute(t0, 80))
    assert record.kpis.mitigated_at == minute(t0, 62) and record.closed_at == minute(t0, 66)  # max(62 + 3, 66)


def test_an_open_incident_exports_what_is_known_so_far(
    incident_settings: Settings, store: Engine, staged: dict[str, Any], tmp_path: Any
) -> None:
    t0 = staged["t0"]
    (ident,) = Tracker(incident_settings, store).track(now=minute(t0, 70)).opened  # open: the ticket still fires
    log, _ring = open_audit(incident_settings)
    log.checkpoint()
    out = tmp_path / "open.json"
    exported = _cli(incident_settings, "audit", "export", "--incident", ident, "--out", str(out))
    assert exported.returncode == 0, exported.stderr
    bundle = json.loads(out.read_text())
    subjects = [json.loads(e["entry"])["subject"] for e in bundle["entries"]]
    assert subjects.count(f"incident:{ident}") == 1 and "fault:f1" in subjects  # opened, and the nearest change


def test_a_later_run_never_closes_an_incident_by_its_own_page(
    incident_settings: Settings, store: Engine, t0: Any
) -> None:
    """An old blip hours before, then an outage that pages: the second run must neither close the incident
    (as of just before its own page) nor take its impact from the blip."""
    write_minutes(store, t0, {20: 50, 88: 80, 89: 80})
    add_transition(store, at=minute(t0, 90), slo=AVAILABILITY)
    tracker = Tracker(incident_settings, store)
    (ident,) = tracker.track(now=minute(t0, 91)).opened
    assert tracker.track(now=minute(t0, 92)).closed == []
    record = tracker.record(ident, now=minute(t0, 92))
    assert record.state == "open" and record.kpis.impact_started_at == minute(t0, 88)


def test_a_declared_incident_never_closes_before_it_opened_nor_takes_an_old_impact(
    incident_settings: Settings, store: Engine, t0: Any
) -> None:
    write_minutes(store, t0, {10: 50})  # a blip 80 minutes before the declaration
    tracker = Tracker(incident_settings, store)
    ident = tracker.declare(SLICE, by="ana", title="bettors report slow cash-out", now=minute(t0, 90))
    assert tracker.record(ident, now=minute(t0, 91)).kpis.impact_started_at == minute(t0, 90)
    assert tracker.track(now=minute(t0, 95)).closed == []  # the quiet period counts from the declaration
    assert tracker.track(now=minute(t0, 101)).closed == [ident]
    with store.connect() as conn:
        closed_at = conn.execute(select(incidents_t.c.closed_at).where(incidents_t.c.id == ident)).scalar_one()
    assert closed_at.replace(tzinfo=None) == minute(t0, 100).replace(tzinfo=None)


def test_a_page_seen_after_a_later_declaration_joins_it(incident_settings: Settings, store: Engine, t0: Any) -> None:
    write_minutes(store, t0, {m: 50 for m in range(60, 64)})
    add_transition(store, at=minute(t0, 62), slo=AVAILABILITY)  # the tracker has not run since
    tracker = Tracker(incident_settings, store)
    ident = tracker.declare(SLICE, by="ana", title="bets failing", now=minute(t0, 63))
    assert tracker.track(now=minute(t0, 64)).opened == []
    assert {(a.slo, a.severity) for a in tracker.record(ident, now=minute(t0, 64)).alerts} == {(AVAILABILITY, "page")}


def test_waivers_near_the_impact_are_changes(
    incident_settings: Settings, store: Engine, staged: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import audit.log as audit_log
    from controlplane.storage import make_engine
    from tests.controlplane.incidents.conftest import append_change

    t0 = staged["t0"]
    engine = make_engine(incident_settings.audit_url)
    log = audit_log.AuditLog(engine, origin=incident_settings.audit_origin)
    seq = append_change(
        monkeypatch, log, minute(t0, 58), kind="checklist", actor="bo", subject="waiver:w1",
        payload={"type": "waiver", "check_id": "risk-cache-warm", "reason": "cache rebuilt at 14:00"},
    )  # fmt: skip
    engine.dispose()
    (ident,) = Tracker(incident_settings, store).track(now=minute(t0, 95)).opened
    changes = Tracker(incident_settings, store).record(ident, now=minute(t0, 95)).changes
    waiver = next(c for c in changes if c.seq == seq)
    assert waiver.what == "waiver of check risk-cache-warm" and waiver.reason == "cache rebuilt at 14:00"
