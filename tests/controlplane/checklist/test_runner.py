"""The runner and the results: concurrency, timeouts, errors as unknown, waivers, the decision, JUnit."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from xml.etree import ElementTree as ET

import pytest

from controlplane.checklist import runner
from controlplane.checklist.records import load_run, save_run, waive
from controlplane.checklist.results import ChecklistRun, CheckResult, Outcome, render_junit, render_table
from controlplane.checklist.spec import Checklist
from controlplane.clock import utcnow
from tests.controlplane.checklist.conftest import check


def _result(id: str, status: str, severity: str = "blocking") -> CheckResult:
    return CheckResult(id=id, title=id, severity=severity, owner="o", runbook="r", status=status, reason=status,  # type: ignore[arg-type]
                       evidence={}, duration_ms=1)  # fmt: skip


@pytest.mark.parametrize(
    ("statuses", "decision", "code"),
    [
        ([("a", "pass", "blocking"), ("b", "pass", "warning")], "go", 0),
        ([("a", "pass", "blocking"), ("b", "fail", "warning")], "go-with-warnings", 1),
        ([("a", "pass", "blocking"), ("b", "unknown", "warning")], "go-with-warnings", 1),
        ([("a", "fail", "blocking"), ("b", "pass", "warning")], "no-go", 2),
        ([("a", "unknown", "blocking")], "no-go", 2),
        ([("a", "waived", "blocking"), ("b", "waived", "warning")], "go", 0),
    ],
)
def test_decision(statuses, decision, code) -> None:
    run = ChecklistRun(run_id="r", event=None, at=utcnow(), checks=[_result(*s) for s in statuses])
    assert (run.decision, run.exit_code) == (decision, code)


def test_an_unknown_blocking_check_says_why_it_is_no_go() -> None:
    run = ChecklistRun(run_id="r", event=None, at=utcnow(), checks=[_result("budget", "unknown")])
    assert "budget (unknown)" in run.summary() and "cannot be shown ready" in run.summary()


def test_junit_has_one_testcase_per_check() -> None:
    checks = [_result("a", "pass"), _result("b", "fail"), _result("c", "unknown"), _result("d", "waived", "warning")]
    run = ChecklistRun(run_id="r1", event="cup-final", at=utcnow(), checks=checks)
    root = ET.fromstring(render_junit(run))
    suite = root.find("testsuite")
    assert suite is not None
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == ["a", "b", "c", "d"]
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"), suite.get("skipped")) == (
        "4",
        "1",
        "1",
        "1",
    )
    assert cases[1].find("failure") is not None and cases[2].find("error") is not None
    assert cases[3].find("skipped") is not None and cases[0].find("failure") is None
    assert "NO-GO" in render_table(run)


def _checklist(*checks) -> Checklist:
    return Checklist(checks=list(checks), path="test.yaml", digest="0" * 64)


def test_checks_run_concurrently_and_a_slow_one_times_out(make_ctx, monkeypatch) -> None:
    started = threading.Barrier(2, timeout=60)
    release = threading.Event()

    def meets_the_other(params, ctx) -> Outcome:
        started.wait()  # both checks must be running at once to get past this
        return Outcome.passed("met")

    def hangs(params, ctx) -> Outcome:
        started.wait()
        release.wait(120)
        return Outcome.passed("too late")

    monkeypatch.setitem(runner.EVALUATORS, "slo_coverage", meets_the_other)
    monkeypatch.setitem(runner.EVALUATORS, "prometheus_rules", hangs)
    spec = _checklist(
        check({"type": "slo_coverage"}, id="fast"),
        check({"type": "prometheus_rules"}, id="slow", timeout_seconds=0.5),
    )
    try:
        run = runner.run_checklist(spec, make_ctx())
    finally:
        release.set()
    by_id = {c.id: c for c in run.checks}
    assert by_id["fast"].status == "pass"
    assert by_id["slow"].status == "unknown" and "timed out after 0.5s" in by_id["slow"].reason
    assert run.decision == "no-go"


def test_an_evaluator_error_is_unknown_not_a_crash(make_ctx, monkeypatch) -> None:
    def broken(params, ctx) -> Outcome:
        raise RuntimeError("boom\nwith a second line")

    monkeypatch.setitem(runner.EVALUATORS, "slo_coverage", broken)
    run = runner.run_checklist(_checklist(check({"type": "slo_coverage"}, severity="warning")), make_ctx())
    assert run.checks[0].status == "unknown"
    assert run.checks[0].reason == "could not evaluate: RuntimeError: boom with a second line"
    assert run.decision == "go-with-warnings"


def test_probes_take_turns_and_waiting_is_not_timing_out(make_ctx, monkeypatch) -> None:
    inside: list[int] = []
    overlap: list[int] = []

    def probe(params, ctx) -> Outcome:
        inside.append(1)
        overlap.append(len(inside))
        time.sleep(0.3)
        inside.pop()
        return Outcome.passed("probed")

    monkeypatch.setitem(runner.EVALUATORS, "probe_login_limit", probe)
    # Five probes of 0.3 s each with a 1 s timeout: together longer than one timeout, each well within it.
    checks = [check({"type": "probe_login_limit"}, id=f"p{i}", timeout_seconds=1) for i in range(5)]
    run = runner.run_checklist(_checklist(*checks), make_ctx())
    assert [c.status for c in run.checks] == ["pass"] * 5, [c.reason for c in run.checks]
    assert max(overlap) == 1


def test_a_waiver_reports_waived_never_pass_and_is_recorded(make_ctx, cp_settings, store, monkeypatch) -> None:
    monkeypatch.setitem(runner.EVALUATORS, "slo_coverage", lambda p, c: Outcome.failed("missing login"))
    spec = _checklist(check({"type": "slo_coverage"}, id="coverage"))
    assert runner.run_checklist(spec, make_ctx()).decision == "no-go"
    w = waive(cp_settings, store, check_id="coverage", requested_by="ana", approved_by="bo",
              reason="login SLO lands next sprint", expires_at=utcnow() + timedelta(hours=1))  # fmt: skip
    run = runner.run_checklist(spec, make_ctx())
    result = run.checks[0]
    assert (result.status, run.decision) == ("waived", "go")
    assert result.waiver is not None and result.waiver["id"] == w.id and result.waiver["outcome"] == "fail"
    assert "missing login" in result.reason and "ana" in result.reason
    monkeypatch.setitem(runner.EVALUATORS, "slo_coverage", lambda p, c: Outcome.passed("all there"))
    assert runner.run_checklist(spec, make_ctx()).checks[0].status == "waived"
    later = runner.run_checklist(spec, make_ctx(at=utcnow() + timedelta(hours=2)))
    assert later.checks[0].status == "pass" and later.checks[0].waiver is None

    saved = save_run(cp_settings, store, run)
    assert saved.audit_seq is not None
    loaded = load_run(store, run.run_id)
    assert loaded is not None and loaded.to_dict() == saved.to_dict()
