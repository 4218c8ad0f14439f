"""The readiness page in Streamlit's AppTest, on SQLite and PostgreSQL, as a release lead uses it at 2 a.m.:
the decision is a banner in its colour and in words, what needs attention comes first with its reason,
runbook and evidence as a table, the history reads as text, running now asks first (it probes the live
platform) and is recorded under the signed-in person's name, and bad input is a message beside its field."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from streamlit.testing.v1 import AppTest

from audit.query import find_entries
from controlplane.checklist.records import list_runs, save_run
from controlplane.checklist.results import ChecklistRun, CheckResult
from controlplane.formatting import utc
from controlplane.settings import Settings
from dashboards.readiness import counts_text, evidence_rows, ordered
from tests.dashboards.test_pages import _open, _signed_in, dashboard  # noqa: F401  (dashboard: a fixture)

EVENT = "derby"
CONFIRM, CANCEL, RUN_NOW = "Yes, probe the platform and run", "Cancel", "Run the checklist now"
BANNER_WORDS = {"go": "**GO**", "go-with-warnings": "**GO WITH WARNINGS**", "no-go": "**NO-GO**"}
# (id, status, severity, evidence), in the checklist's own order: a pass first, failures scattered.
CHECKS: list[tuple[str, str, str, dict[str, Any]]] = [
    ("api-timeouts", "pass", "blocking", {"latency_ms": 12.5, "healthy": True}),
    ("game-day", "fail", "warning", {"found": [], "since": "2026-11-04T20:26:47.038059Z"}),
    ("risk-cache", "waived", "blocking", {"ratio": 0.5}),
    ("incident-roles", "fail", "blocking", {"last_attestation": None}),
    ("bet-budget", "unknown", "blocking",
     {"window": {"kind": "rolling", "start": "2026-11-04T20:26:00Z"}, "thresholds": [{"long": "1h", "burn": 14.4}]}),
    ("login-budget", "unknown", "warning", {"events": 0}),
]  # fmt: skip
NOW = datetime.now(UTC).replace(microsecond=0)  # one instant for the runs a test records, so their times are exact
ATTENTION_FIRST = ["incident-roles", "bet-budget", "game-day", "login-budget", "risk-cache", "api-timeouts"]


@pytest.fixture
def readiness(dashboard: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:  # noqa: F811
    """The dashboard with one event ahead, and a platform nobody can probe (no admin token, nothing listening):
    a run from the page does everything but reach a platform, and says `unknown` for the probes."""
    kickoff = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    events = tmp_path / "events.yaml"
    events.write_text(
        f'events:\n  - name: {EVENT}\n    kickoff: "{kickoff.isoformat()}"\n'
        f'    settlement_expected: "{(kickoff + timedelta(hours=2)).isoformat()}"\n'
    )
    monkeypatch.setenv("CONTROLPLANE_EVENTS_PATH", str(events))
    monkeypatch.setenv("CONTROLPLANE_PLATFORM_URL", "http://127.0.0.1:9")
    monkeypatch.delenv("CONTROLPLANE_PLATFORM_ADMIN_TOKEN", raising=False)
    yield dashboard


def _check(id: str, status: str, severity: str, evidence: dict[str, Any]) -> CheckResult:
    return CheckResult(
        id=id, title=f"the {id} check", severity=severity, owner="sre", runbook=f"fix {id}",  # type: ignore[arg-type]
        status=status, reason=f"{id} is {status}", evidence=evidence, duration_ms=3,  # type: ignore[arg-type]
    )  # fmt: skip


def _recorded(engine: Engine, checks: list[CheckResult], *, actor: str, ago: timedelta) -> ChecklistRun:
    run = ChecklistRun(run_id=f"run{int(ago.total_seconds())}", event=EVENT, at=NOW - ago, checks=checks)
    return save_run(Settings(), engine, run, actor=actor)


def _readiness(user: str, **params: str) -> AppTest:
    at = _signed_in(user)
    if at.title[0].value != "Readiness":
        _open(at, "readiness")
    for name, value in params.items():
        at.query_params[name] = value
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _banners(at: AppTest) -> dict[str, list[str]]:
    """Every decision banner on the page, by the kind of box it is drawn in."""
    kinds = {"error": at.error, "warning": at.warning, "success": at.success, "info": at.info}
    return {
        kind: [e.value for e in boxes if any(e.value.startswith(w) for w in BANNER_WORDS.values())]
        for kind, boxes in kinds.items()
    }


def _rows(at: AppTest, column: str) -> list[dict[str, str]]:
    """The rows of every table on the page that has `column`, in page order."""
    return [row for t in at.table if column in t.value.columns for row in t.value.to_dict("records")]


def test_failures_and_unknowns_come_first_then_warnings_waived_and_passes() -> None:
    checks = [_check(*c) for c in CHECKS]
    assert [c.id for c in ordered(checks)] == ATTENTION_FIRST


def test_evidence_reads_as_rows_of_text() -> None:
    rows = evidence_rows(CHECKS[4][3] | {"found": [], "ok": False, "seen": ["a", "b"], "seqs": [3, 4]})
    assert rows == [
        {"what": "window.kind", "value": "rolling"},
        {"what": "window.start", "value": "2026-11-04 20:26:00Z"},
        {"what": "thresholds 1", "value": "long: 1h; burn: 14.4"},
        {"what": "found", "value": "none"},
        {"what": "ok", "value": "no"},
        {"what": "seen", "value": "a, b"},
        {"what": "seqs", "value": "3, 4"},
    ]


def test_the_latest_run_is_a_no_go_banner_with_what_needs_attention_first(readiness: Engine) -> None:
    earlier = _recorded(readiness, [_check("api-timeouts", "pass", "blocking", {})], actor="controlplane",
                        ago=timedelta(hours=2))  # fmt: skip
    latest = _recorded(readiness, [_check(*c) for c in CHECKS], actor="ada", ago=timedelta(minutes=5))
    at = _readiness("ana")
    banners = _banners(at)
    assert banners["warning"] == banners["success"] == banners["info"] == []
    (banner,) = banners["error"]
    assert banner.startswith(f"**NO-GO** for **{EVENT}**")
    assert f"Run {utc(latest.at)} by ada: 1 passed, 2 failed, 2 unknown, 1 waived." in banner
    assert "Blocking: incident-roles (failed), bet-budget (unknown)." in banner
    # Every check in attention order, each with its evidence; the runbook only where it failed.
    assert [e.label for e in at.expander] == [f"Evidence of {c}" for c in ATTENTION_FIRST]
    texts = [m.value for m in at.markdown]
    assert "**Runbook:** fix incident-roles  \n**Owner:** sre" in texts
    assert not any("fix api-timeouts" in t for t in texts) and "api-timeouts is pass" in texts
    assert not at.json
    assert {"what": "window.start", "value": "2026-11-04 20:26:00Z"} in _rows(at, "what")
    # The history: newest first, counts and times as text, who started each run.
    assert _rows(at, "Checks") == [
        {"When (UTC)": utc(latest.at), "Decision": "NO-GO", "Checks": "1 passed, 2 failed, 2 unknown, 1 waived",
         "Started by": "ada", "Run": latest.run_id, "Audit entry": str(latest.audit_seq)},
        {"When (UTC)": utc(earlier.at), "Decision": "GO", "Checks": "1 passed, 0 failed, 0 unknown, 0 waived",
         "Started by": "controlplane", "Run": earlier.run_id, "Audit entry": str(earlier.audit_seq)},
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("statuses", "decision", "box"),
    [
        ([("a", "pass", "blocking")], "go", "success"),
        ([("a", "pass", "blocking"), ("b", "fail", "warning")], "go-with-warnings", "warning"),
        ([("a", "unknown", "blocking"), ("b", "pass", "warning")], "no-go", "error"),
    ],
)
def test_each_decision_has_its_colour_and_its_words(
    readiness: Engine, statuses: list[tuple[str, str, str]], decision: str, box: str
) -> None:
    _recorded(readiness, [_check(*s, {}) for s in statuses], actor="ada", ago=timedelta(minutes=1))
    banners = _banners(_readiness("ana"))
    assert {kind: len(found) for kind, found in banners.items() if found} == {box: 1}
    assert banners[box][0].startswith(f"{BANNER_WORDS[decision]} for **{EVENT}**")


def test_run_now_asks_first_and_cancel_runs_nothing(readiness: Engine) -> None:
    at = _readiness("ana")
    next(b for b in at.button if b.label == RUN_NOW).click().run()
    assert [b.label for b in at.button if b.label in (CONFIRM, CANCEL)] == [CONFIRM, CANCEL]
    assert any("probes the live platform" in w.value and "http://127.0.0.1:9" in w.value for w in at.warning)
    assert list_runs(readiness) == []
    next(b for b in at.button if b.label == CANCEL).click().run()
    assert RUN_NOW in [b.label for b in at.button] and CONFIRM not in [b.label for b in at.button]
    assert list_runs(readiness) == []


def test_a_confirmed_run_is_the_signed_in_persons_and_its_decision_is_the_banner(readiness: Engine) -> None:
    at = _readiness("ana")
    next(b for b in at.button if b.label == RUN_NOW).click().run()
    next(b for b in at.button if b.label == CONFIRM).click().run()
    assert not at.exception, [e.value for e in at.exception]
    (run,) = list_runs(readiness, event=EVENT)
    (entry,) = find_entries(readiness, kind="checklist", subject=f"checklist-run:{run.run_id}")
    assert entry.actor == "ana"
    assert run.decision == "no-go"  # nobody has attested anything and the platform cannot be probed
    banners = _banners(at)
    assert banners["success"] == [] and len(banners["error"]) == 1
    assert f"Run {utc(run.at)} by ana (you, just now):" in banners["error"][0]
    assert RUN_NOW in [b.label for b in at.button]  # the confirmation is over
    # Beside the button too, in the same colour: whoever pressed it at the bottom of the page sees it.
    assert [e.value for e in at.error if e.value.startswith("Your run")] == [
        f"Your run {run.run_id} ({utc(run.at)}): **NO-GO**, {counts_text(run.counts)}. Its checks are at the top "
        "of the page."
    ]


def test_the_scheduler_and_the_cli_still_run_as_the_control_plane(readiness: Engine) -> None:
    from controlplane.checklist.session import run_and_record

    done = run_and_record(Settings(), readiness, event=None)
    (entry,) = find_entries(readiness, kind="checklist", subject=f"checklist-run:{done.run_id}")
    assert entry.actor == "controlplane"


def test_compliance_reads_the_runs_but_cannot_run_attest_or_waive(readiness: Engine) -> None:
    _recorded(readiness, [_check(*c) for c in CHECKS], actor="ada", ago=timedelta(minutes=5))
    at = _readiness("cleo")
    assert len(_banners(at)["error"]) == 1
    assert RUN_NOW not in [b.label for b in at.button] and not at.form_submit_button
    assert not [w for w in at.text_input if w.label in ("Holds for", "Justification")]


def test_the_event_lives_in_the_url(readiness: Engine) -> None:
    at = _readiness("ana")
    assert at.selectbox[0].value == EVENT and at.query_params["event"] == EVENT
    at.selectbox[0].select("(no event)").run()
    assert at.query_params["event"] == "_none"
    assert _readiness("ana", event="_none").selectbox[0].value == "(no event)"
    at = _readiness("ana", event="no-such-event")
    assert any("no-such-event" in w.value and "does not hold" in w.value for w in at.warning)
    assert at.selectbox[0].value == EVENT and at.query_params["event"] == EVENT


def _right_after(at: AppTest, key: str) -> str:
    """The error in the slot right under the field `key` (in the same block), or "" when there is none."""

    def below(node: Any) -> Any:
        children = list(getattr(node, "children", {}).values())
        for i, child in enumerate(children):
            if getattr(child, "key", None) == key:
                return children[i + 1] if i + 1 < len(children) else None
            if (found := below(child)) is not None:
                return found
        return None

    slot = below(at._tree)
    return str(slot.value) if getattr(slot, "type", None) == "error" else ""


def test_bad_input_is_a_message_beside_its_field_and_good_input_is_recorded(readiness: Engine) -> None:
    at = _readiness("ana")
    key = f"attest-for-{EVENT}"
    at.text_input(key=key).input("soon")
    next(b for b in at.form_submit_button if b.label == "Attest").click().run()
    assert not at.exception
    assert _right_after(at, key).startswith("Holds for: cannot read 'soon' as a duration")
    at.text_input(key=key).input("90d")
    next(b for b in at.form_submit_button if b.label == "Attest").click().run()
    assert _right_after(at, key).startswith("Holds for: an attestation holds at most 30 days")
    at.text_input(key=key).input("12h")
    next(b for b in at.form_submit_button if b.label == "Attest").click().run()
    assert any(s.value.startswith("Attested until") for s in at.success)

    waive = next(b for b in at.form_submit_button if b.label == "Waive")
    waive.click().run()
    assert _right_after(at, f"waive-by-{EVENT}").startswith("Approved by: choose the second person")
    at.selectbox(key=f"waive-by-{EVENT}").select("ada")
    at.text_input(key=f"waive-why-{EVENT}").input("short")
    next(b for b in at.form_submit_button if b.label == "Waive").click().run()
    assert _right_after(at, f"waive-why-{EVENT}").startswith("Justification must justify the waiver")
    at.text_input(key=f"waive-why-{EVENT}").input("cache rebuilt at 14:00, checked by hand")
    at.text_input(key=f"waive-for-{EVENT}").input("forever")
    next(b for b in at.form_submit_button if b.label == "Waive").click().run()
    assert _right_after(at, f"waive-for-{EVENT}").startswith("Lasts: cannot read 'forever'")
    at.text_input(key=f"waive-for-{EVENT}").input("6h")
    next(b for b in at.form_submit_button if b.label == "Waive").click().run()
    assert any(s.value.startswith("Waived until") for s in at.success)
    assert [e.actor for e in find_entries(readiness, subject_prefix="waiver:")] == ["ana"]
    assert [e.actor for e in find_entries(readiness, subject_prefix="attestation:")] == ["ana"]
