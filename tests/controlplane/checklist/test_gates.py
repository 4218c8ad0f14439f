"""Error-budget gates: a pass, a fail and an unknown each, from stored SLI minutes."""

from __future__ import annotations

from datetime import timedelta

from controlplane.checklist.gates import error_budget, no_page_alert
from tests.controlplane.checklist.conftest import assert_outcome, check


def _budget(min_remaining: float = 0.5):
    return check(
        {"type": "error_budget", "slo": "bet-placement-availability", "min_remaining": min_remaining}
    ).evaluator


def _no_page(hours: int = 2):
    return check({"type": "no_page_alert", "slo": "bet-placement-availability", "hours": hours}).evaluator


def test_budget_left_passes(make_ctx, seed_minutes, now) -> None:
    seed_minutes("bet-placement", now - timedelta(hours=3), minutes=180, total=1000, bad=0)
    outcome = error_budget(_budget(), make_ctx())
    assert_outcome(outcome, "pass", "100.0%")
    assert outcome.evidence["events"] == 180_000
    assert outcome.evidence["threshold"] == 0.5


def test_budget_spent_fails_with_the_values_seen(make_ctx, seed_minutes, now) -> None:
    # 0.1% allowed; 0.08% bad over the window -> 80% consumed, 20% left.
    seed_minutes("bet-placement", now - timedelta(hours=3), minutes=100, total=10_000, bad=8)
    outcome = error_budget(_budget(0.5), make_ctx())
    assert_outcome(outcome, "fail", "20.0%")
    assert abs(outcome.evidence["budget_remaining"] - 0.2) < 1e-6
    assert outcome.evidence["bad_events"] == 800


def test_budget_without_data_is_unknown(make_ctx) -> None:
    assert_outcome(error_budget(_budget(), make_ctx()), "unknown", "no events")


def test_budget_as_of_an_earlier_instant(make_ctx, seed_minutes, now) -> None:
    seed_minutes("bet-placement", now - timedelta(minutes=30), minutes=30, total=100, bad=100)
    assert error_budget(_budget(), make_ctx()).status == "fail"
    seed_minutes("bet-placement", now - timedelta(hours=5), minutes=60, total=100, bad=0)
    assert error_budget(_budget(), make_ctx(at=now - timedelta(hours=2))).status == "pass"


def test_quiet_hours_pass_the_page_gate(make_ctx, seed_minutes, now) -> None:
    seed_minutes("bet-placement", now - timedelta(hours=8), minutes=8 * 60, total=100, bad=0)
    outcome = no_page_alert(_no_page(2), make_ctx())
    assert_outcome(outcome, "pass", "did not page")
    assert outcome.evidence["minutes_firing"] == 0


def test_a_burn_within_the_hours_fails_the_page_gate(make_ctx, seed_minutes, now) -> None:
    # An hour of 5% errors, from 4h to 3h ago, quiet before and after: burn 50 over 1h and 5m, far above 14.4.
    seed_minutes("bet-placement", now - timedelta(hours=8), minutes=4 * 60, total=100, bad=0)
    seed_minutes("bet-placement", now - timedelta(hours=4), minutes=60, total=100, bad=5)
    seed_minutes("bet-placement", now - timedelta(hours=3), minutes=3 * 60, total=100, bad=0)
    outcome = no_page_alert(_no_page(5), make_ctx())
    assert_outcome(outcome, "fail", "paged for")
    assert 30 <= outcome.evidence["minutes_firing"] <= 100
    first = outcome.evidence["first_firing"]
    assert first > (now - timedelta(hours=4)).isoformat().replace("+00:00", "Z")
    # The 6h/30m rule keeps paging for up to 30 minutes after the burn stops.
    assert outcome.evidence["last_firing"] <= (now - timedelta(hours=2, minutes=30)).isoformat().replace("+00:00", "Z")
    # Two hours back, the burn is outside the window and not held against the SLO.
    assert_outcome(no_page_alert(_no_page(2), make_ctx()), "pass")


def test_page_gate_without_data_is_unknown(make_ctx) -> None:
    assert_outcome(no_page_alert(_no_page(2), make_ctx()), "unknown", "no events")
