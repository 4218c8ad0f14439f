"""Scraped signals: pass, fail and unknown (stale or missing), for gauges and counters."""

from __future__ import annotations

from datetime import timedelta

from controlplane.checklist.signals import scraped_signal
from tests.controlplane.checklist.conftest import assert_outcome, check


def _signal(**params):
    return check({"type": "scraped_signal", **params}).evaluator


def test_a_fresh_gauge_under_its_bound_passes(make_ctx, seed_samples, now) -> None:
    seed_samples("platform_outbox_depth", [(now - timedelta(minutes=5), 5000), (now - timedelta(seconds=20), 12)])
    outcome = scraped_signal(_signal(signal="outbox_depth", at_most=1000, max_age="2m"), make_ctx())
    assert_outcome(outcome, "pass", "12")
    assert outcome.evidence["value"] == 12
    assert outcome.evidence["samples"][0]["time"].endswith("Z")


def test_a_gauge_over_its_bound_fails(make_ctx, seed_samples, now) -> None:
    seed_samples("platform_outbox_relay_lag_seconds", [(now - timedelta(seconds=10), 95.0)])
    outcome = scraped_signal(_signal(signal="relay_lag_seconds", at_most=30), make_ctx())
    assert_outcome(outcome, "fail", "95", "at most 30")


def test_a_stale_gauge_is_unknown_never_a_pass(make_ctx, seed_samples, now) -> None:
    seed_samples("platform_outbox_depth", [(now - timedelta(minutes=10), 0)])
    outcome = scraped_signal(_signal(signal="outbox_depth", at_most=1000, max_age="2m"), make_ctx())
    assert_outcome(outcome, "unknown", "no sample")


def test_the_worst_target_decides(make_ctx, seed_samples, now) -> None:
    seed_samples("platform_outbox_depth", [(now - timedelta(seconds=5), 10)], target="a")
    seed_samples("platform_outbox_depth", [(now - timedelta(seconds=5), 2000)], target="b")
    assert scraped_signal(_signal(signal="outbox_depth", at_most=1000), make_ctx()).status == "fail"


def _lookups(seed_samples, now, hits: list[float], misses: list[float]) -> None:
    times = [now - timedelta(minutes=len(hits) - 1 - i) for i in range(len(hits))]
    seed_samples("platform_risk_cache_lookups_total", list(zip(times, hits, strict=True)), labels={"result": "hit"})
    seed_samples("platform_risk_cache_lookups_total", list(zip(times, misses, strict=True)), labels={"result": "miss"})


def test_hit_ratio_is_computed_over_the_window(make_ctx, seed_samples, now) -> None:
    _lookups(seed_samples, now, hits=[100, 190, 280], misses=[50, 55, 60])  # +180 hits, +10 misses
    outcome = scraped_signal(_signal(signal="risk_cache_hit_ratio", at_least=0.8, window="15m"), make_ctx())
    assert_outcome(outcome, "pass")
    assert abs(outcome.evidence["value"] - 180 / 190) < 1e-6
    assert outcome.evidence["increase"] == {"hit": 180.0, "miss": 10.0}


def test_a_cold_cache_fails(make_ctx, seed_samples, now) -> None:
    _lookups(seed_samples, now, hits=[100, 101, 102], misses=[0, 50, 100])
    outcome = scraped_signal(_signal(signal="risk_cache_hit_ratio", at_least=0.8), make_ctx())
    assert_outcome(outcome, "fail", "at least 0.8")


def test_a_counter_reset_counts_from_zero(make_ctx, seed_samples, now) -> None:
    _lookups(seed_samples, now, hits=[5000, 40, 80], misses=[10, 0, 1])  # restart between the first two
    outcome = scraped_signal(_signal(signal="risk_cache_hit_ratio", at_least=0.8), make_ctx())
    assert outcome.evidence["increase"] == {"hit": 80.0, "miss": 1.0}


def test_increases_add_up_across_a_restart_in_the_middle(make_ctx, seed_samples, now) -> None:
    _lookups(seed_samples, now, hits=[1000, 5000, 40, 6000], misses=[0, 0, 0, 10])
    outcome = scraped_signal(_signal(signal="risk_cache_hit_ratio", at_least=0.8), make_ctx())
    assert outcome.evidence["increase"] == {"hit": 4000.0 + 40 + 5960, "miss": 10.0}


def test_a_target_gone_stale_is_unknown_not_left_out(make_ctx, seed_samples, now) -> None:
    seed_samples("platform_outbox_depth", [(now - timedelta(seconds=5), 3)], target="a")
    seed_samples("platform_outbox_depth", [(now - timedelta(minutes=5), 3)], target="b")
    outcome = scraped_signal(_signal(signal="outbox_depth", at_most=1000, max_age="2m"), make_ctx())
    assert_outcome(outcome, "unknown", "from b")
    assert outcome.evidence["stale_targets"] == ["b"]
    times = [now - timedelta(minutes=m) for m in (6, 5)]
    seed_samples("platform_db_lock_timeouts_total", list(zip(times, [0, 0], strict=True)), target="b")
    seed_samples("platform_db_lock_timeouts_total", [(now - timedelta(minutes=1), 0), (now, 0)], target="a")
    outcome = scraped_signal(_signal(signal="lock_timeout_rate", at_most=1, max_age="2m"), make_ctx())
    assert_outcome(outcome, "unknown", "stale: b")


def test_no_lookups_is_unknown(make_ctx, seed_samples, now) -> None:
    _lookups(seed_samples, now, hits=[7, 7], misses=[3, 3])
    assert_outcome(scraped_signal(_signal(signal="risk_cache_hit_ratio", at_least=0.8), make_ctx()), "unknown")


def test_one_sample_is_not_a_rate(make_ctx, seed_samples, now) -> None:
    seed_samples("platform_db_lock_timeouts_total", [(now - timedelta(seconds=5), 3)])
    outcome = scraped_signal(_signal(signal="lock_timeout_rate", at_most=1), make_ctx())
    assert_outcome(outcome, "unknown", "not enough fresh samples")


def test_lock_timeouts_per_minute(make_ctx, seed_samples, now) -> None:
    seed_samples("platform_db_lock_timeouts_total", [(now - timedelta(minutes=4), 0), (now, 20)])
    outcome = scraped_signal(_signal(signal="lock_timeout_rate", at_most=1), make_ctx())
    assert_outcome(outcome, "fail")
    assert outcome.evidence["value"] == 5.0
    seed_samples("platform_db_lock_timeouts_total", [(now - timedelta(minutes=4), 7), (now, 7)], target="u")
    assert scraped_signal(_signal(signal="lock_timeout_rate", at_most=1, target="u"), make_ctx()).status == "pass"
