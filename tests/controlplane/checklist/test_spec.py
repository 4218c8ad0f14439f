"""The checklist file: the shipped one is valid; mistakes are errors naming the file, the check and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from controlplane.checklist.spec import ChecklistConfigError, load_checklist
from controlplane.slo.spec import load_events, load_slos
from tests.controlplane.checklist.conftest import CONFIG

GOOD = """
checks:
  - id: budget
    title: Budget left
    severity: blocking
    owner: sre
    runbook: https://runbooks.example/budget
    evaluator: {type: error_budget, slo: bet-placement-availability, min_remaining: 0.5}
"""


def test_the_shipped_checklist_covers_the_pre_event_list() -> None:
    slos = {s.name for s in load_slos(CONFIG / "slos.yaml", events=load_events(CONFIG / "events.yaml"))}
    checklist = load_checklist(CONFIG / "checklist.yaml", slo_names=slos)
    types = {c.evaluator.type for c in checklist.checks}
    assert types == {
        "error_budget", "no_page_alert", "probe_idempotency", "probe_trace", "probe_login_limit", "probe_latency",
        "probe_shedding", "scraped_signal", "slo_coverage", "prometheus_rules", "audit_evidence", "budget_policy",
        "attestation", "stream_lag", "dead_letters",
    }  # fmt: skip
    signals = {c.evaluator.signal for c in checklist.checks if c.evaluator.type == "scraped_signal"}
    assert signals == {"risk_cache_hit_ratio", "outbox_depth", "relay_lag_seconds", "lock_timeout_rate"}
    assert {"blocking", "warning"} == {c.severity for c in checklist.checks}
    assert len(checklist.digest) == 64


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (GOOD.replace("severity: blocking", "severity: urgent"), ["check 'budget'", "severity"]),
        (GOOD.replace("    owner: sre\n", ""), ["check 'budget'", "owner", "Field required"]),
        (GOOD.replace("error_budget", "vibes"), ["check 'budget'", "evaluator", "error_budget"]),
        (GOOD.replace("min_remaining: 0.5", "min_remaining: 5"), ["min_remaining", "less than or equal to 1"]),
        (GOOD.replace("slo: bet-placement-availability", "slo: nope"), ["check 'budget'", "no SLO named 'nope'"]),
        (GOOD + GOOD.replace("checks:\n", ""), ["unique", "budget"]),
        (GOOD.replace("id: budget", "id: Budget Check"), ["id", "pattern"]),
        ("checks: []\n", ["checks", "at least 1"]),
        (GOOD.replace("min_remaining: 0.5", "min_remaining: .nan"), ["min_remaining", "finite"]),
        ("checks: [\n", ["not valid YAML"]),
        (
            GOOD.replace(
                "{type: error_budget, slo: bet-placement-availability, min_remaining: 0.5}",
                "{type: scraped_signal, signal: outbox_depth, at_most: 3, at_least: 1}",
            ),
            ["exactly one of at_least or at_most"],
        ),
        (
            GOOD.replace(
                "{type: error_budget, slo: bet-placement-availability, min_remaining: 0.5}",
                "{type: scraped_signal, signal: outbox_depth, at_most: 3, max_age: soon}",
            ),
            ["max_age", "a whole number and a unit"],
        ),
        (
            GOOD.replace(
                "{type: error_budget, slo: bet-placement-availability, min_remaining: 0.5}",
                "{type: probe_latency, route: 'POST /v1/bets'}",
            ),
            ["route", "pattern"],
        ),
    ],
)
def test_mistakes_name_the_file_check_and_field(tmp_path: Path, text: str, words: list[str]) -> None:
    path = tmp_path / "checklist.yaml"
    path.write_text(text)
    with pytest.raises(ChecklistConfigError) as caught:
        load_checklist(path, slo_names={"bet-placement-availability"})
    message = str(caught.value)
    assert message.startswith(str(path)), message
    for word in words:
        assert word in message, (word, message)


def test_an_unreadable_file_is_a_message(tmp_path: Path) -> None:
    with pytest.raises(ChecklistConfigError, match="cannot be read"):
        load_checklist(tmp_path)
    (tmp_path / "latin1.yaml").write_bytes("checks: [caf\xe9]".encode("latin-1"))
    with pytest.raises(ChecklistConfigError, match="not UTF-8"):
        load_checklist(tmp_path / "latin1.yaml")


def test_a_missing_file_says_where_to_get_one(tmp_path: Path) -> None:
    with pytest.raises(ChecklistConfigError, match=r"file not found; copy config/checklist\.yaml"):
        load_checklist(tmp_path / "nope.yaml")
