"""Evidence checks: drills and game days in the audit log, attestations, waivers; configuration facts."""

from __future__ import annotations

from datetime import timedelta

import pytest

from controlplane.checklist.evidence import attestation, audit_evidence
from controlplane.checklist.facts import prometheus_rules, slo_coverage
from controlplane.checklist.records import RecordError, active_waiver, attest, record_drill, waive
from controlplane.clock import utcnow
from controlplane.slo.spec import SloSpec
from tests.controlplane.checklist.conftest import assert_outcome, check


def _drills(kinds: list[str], days: int = 7):
    return check({"type": "audit_evidence", "kinds": kinds, "within_days": days}).evaluator


def test_a_recorded_drill_passes_and_names_its_entry(make_ctx, cp_settings) -> None:
    done = record_drill(cp_settings, kind="restore", by="ana", note="restored last night's backup to staging")
    outcome = audit_evidence(_drills(["failover", "restore"]), make_ctx())
    assert_outcome(outcome, "pass", "restore drill", "ana")
    assert outcome.evidence["found"][-1]["seq"] == done.audit_seq


def test_no_drill_fails_and_says_how_to_record_one(make_ctx, cp_settings) -> None:
    record_drill(cp_settings, kind="gameday", by="ana", note="cache off for ten minutes")
    assert_outcome(audit_evidence(_drills(["failover"]), make_ctx()), "fail", "controlplane drill record")


def test_an_old_drill_does_not_count(make_ctx, cp_settings, now) -> None:
    record_drill(cp_settings, kind="failover", by="ana", note="promoted the replica")
    assert audit_evidence(_drills(["failover"], days=7), make_ctx(at=now + timedelta(days=8))).status == "fail"
    assert audit_evidence(_drills(["failover"], days=7), make_ctx(at=now - timedelta(days=1))).status == "fail"


def test_game_day_faults_count_but_probe_faults_do_not(make_ctx, audit_log) -> None:
    fault = {"kind": "latency", "synthetic_only": True}
    audit_log.append(
        kind="change", actor="checklist", subject="fault:a1", payload={"type": "fault_set", "fault": fault}
    )
    assert audit_evidence(_drills(["gameday"], 30), make_ctx()).status == "fail"
    fault = {"kind": "cache_off"}
    audit_log.append(kind="change", actor="ops", subject="fault:b2", payload={"type": "fault_set", "fault": fault})
    assert_outcome(audit_evidence(_drills(["gameday"], 30), make_ctx()), "pass", "cache_off", "ops")


def test_an_unreachable_audit_log_makes_the_check_unknown(make_ctx) -> None:
    from controlplane.checklist.runner import run_checklist
    from controlplane.checklist.spec import Checklist

    ctx = make_ctx(audit_url="postgresql+psycopg://nobody@127.0.0.1:1/none")
    spec = Checklist(
        checks=[check({"type": "audit_evidence", "kinds": ["failover"], "within_days": 7})], path="x", digest="0"
    )
    [result] = run_checklist(spec, ctx).checks
    assert result.status == "unknown" and "OperationalError" in result.reason


def test_attestation_passes_until_it_expires(make_ctx, cp_settings, store, now) -> None:
    assert_outcome(attestation("incident-roles", make_ctx())[0], "fail", "nobody has attested")
    done = attest(cp_settings, store, check_id="incident-roles", by="ana", expires_at=utcnow() + timedelta(hours=2))
    outcome, used = attestation("incident-roles", make_ctx(at=utcnow()))
    assert_outcome(outcome, "pass", "ana")
    assert used is not None and used["id"] == done.id and used["audit_seq"] is not None
    expired, _ = attestation("incident-roles", make_ctx(at=utcnow() + timedelta(hours=3)))
    assert_outcome(expired, "fail", "expired")


def test_an_event_attestation_holds_only_for_that_event(make_ctx, cp_settings, store) -> None:
    attest(
        cp_settings,
        store,
        check_id="oncall-rested",
        by="bo",
        expires_at=utcnow() + timedelta(hours=1),
        event="cup-final",
    )
    assert attestation("oncall-rested", make_ctx(at=utcnow(), event="cup-final"))[0].status == "pass"
    assert attestation("oncall-rested", make_ctx(at=utcnow()))[0].status == "fail"


def test_a_lifetime_counts_from_when_the_attestation_is_recorded(cp_settings, store) -> None:
    before = utcnow()
    done = attest(cp_settings, store, check_id="incident-roles", by="ana", expires_at=timedelta(seconds=1))
    expires = done.expires_at
    assert before + timedelta(seconds=1) <= expires <= utcnow() + timedelta(seconds=1)


def test_malformed_attestations_and_waivers_are_refused(cp_settings, store) -> None:
    soon = utcnow() + timedelta(hours=1)
    with pytest.raises(RecordError, match="future"):
        attest(cp_settings, store, check_id="x", by="ana", expires_at=utcnow() - timedelta(minutes=1))
    with pytest.raises(RecordError, match="--by"):
        attest(cp_settings, store, check_id="x", by="  ", expires_at=soon)
    with pytest.raises(RecordError, match="further than any date"):
        attest(cp_settings, store, check_id="x", by="ana", expires_at=timedelta(days=999_999_999))
    with pytest.raises(RecordError, match="second person"):
        waive(
            cp_settings,
            store,
            check_id="x",
            requested_by="Ana",
            approved_by="ana",
            reason="a good reason",
            expires_at=soon,
        )
    with pytest.raises(RecordError, match="justify"):
        waive(cp_settings, store, check_id="x", requested_by="ana", approved_by="bo", reason="ok", expires_at=soon)
    with pytest.raises(RecordError, match="expired"):
        waive(
            cp_settings, store, check_id="x", requested_by="ana", approved_by="bo", reason="a good reason",
            expires_at=utcnow() - timedelta(seconds=1),
        )  # fmt: skip


def test_lifetimes_are_capped_and_a_failed_audit_append_leaves_no_record(cp_settings, store) -> None:
    from sqlalchemy import func, select

    from controlplane.checklist.tables import attestations_t, waivers_t

    with pytest.raises(RecordError, match="at most 30 days"):
        attest(cp_settings, store, check_id="x", by="ana", expires_at=utcnow() + timedelta(days=31))
    with pytest.raises(RecordError, match="at most 30 days"):
        waive(cp_settings, store, check_id="x", requested_by="ana", approved_by="bo", reason="a good reason",
              expires_at=utcnow() + timedelta(days=31))  # fmt: skip
    broken = cp_settings.model_copy(update={"audit_url": "postgresql+psycopg://nobody:pw@127.0.0.1:1/none"})
    with pytest.raises(RecordError, match="cannot be written") as caught:
        attest(broken, store, check_id="x", by="ana", expires_at=utcnow() + timedelta(hours=1))
    assert "pw" not in str(caught.value)
    with pytest.raises(RecordError, match="cannot be written"):
        waive(broken, store, check_id="x", requested_by="ana", approved_by="bo", reason="a good reason",
              expires_at=utcnow() + timedelta(hours=1))  # fmt: skip
    with store.connect() as conn:
        assert conn.execute(select(func.count()).select_from(attestations_t)).scalar() == 0
        assert conn.execute(select(func.count()).select_from(waivers_t)).scalar() == 0


def test_a_waiver_is_gone_once_expired(cp_settings, store) -> None:
    done = waive(
        cp_settings, store, check_id="risk-cache-warm", requested_by="ana", approved_by="bo",
        reason="cache rebuilt at 14:00, warming", expires_at=utcnow() + timedelta(hours=1),
    )  # fmt: skip
    found = active_waiver(store, "risk-cache-warm", at=utcnow(), event=None)
    assert found is not None and found.id == done.id
    assert active_waiver(store, "risk-cache-warm", at=utcnow() + timedelta(hours=2), event=None) is None
    assert active_waiver(store, "other-check", at=utcnow(), event=None) is None


def test_slo_coverage(make_ctx) -> None:
    params = check({"type": "slo_coverage"}).evaluator
    assert_outcome(slo_coverage(params, make_ctx()), "pass")
    ctx = make_ctx()
    ctx.slos = [s for s in ctx.slos if s.slice != "login"]
    outcome = slo_coverage(params, ctx)
    assert_outcome(outcome, "fail", "login")
    assert outcome.evidence["missing"] == ["login"]
    ctx.slos.append(
        SloSpec.model_validate({"name": "x", "slice": "login", "objective": 0.9, "window": {"rolling_days": 7}})
    )
    assert slo_coverage(params, ctx).status == "pass"


def test_rules_file_must_hold_the_alerts(make_ctx, tmp_path) -> None:
    rules = tmp_path / "rules.yml"
    params = check({"type": "prometheus_rules", "file": str(rules), "alerts": ["A", "B"]}).evaluator
    assert_outcome(prometheus_rules(params, make_ctx()), "fail", "controlplane slo rules")
    rules.write_text("groups:\n- name: g\n  rules:\n  - alert: A\n    expr: up == 0\n")
    outcome = prometheus_rules(params, make_ctx())
    assert_outcome(outcome, "fail", "lacks B")
    rules.write_text("groups:\n- name: g\n  rules:\n  - alert: A\n    expr: up == 0\n  - alert: B\n    expr: up == 0\n")
    assert_outcome(prometheus_rules(params, make_ctx()), "pass")
    rules.write_text("groups: [\n")
    assert_outcome(prometheus_rules(params, make_ctx()), "fail", "not a Prometheus rules file")
    unreadable = check({"type": "prometheus_rules", "file": str(tmp_path), "alerts": ["A"]}).evaluator
    assert_outcome(prometheus_rules(unreadable, make_ctx()), "unknown", "cannot read")
