"""`controlplane slo status --format json` is read by users' scripts: its keys, order and types are pinned here."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from collectors.ingest import Batch, commit_batch
from controlplane.slices import DEFAULT_BOUNDARIES
from controlplane.slo.engine import MinuteCounts, evaluate, evaluate_all
from controlplane.slo.results import SloReport
from controlplane.slo.spec import EventSpec, SloSpec

T = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
EVENTS = {
    "derby": EventSpec(
        name="derby",
        kickoff=datetime(2026, 11, 2, 10, tzinfo=UTC),
        settlement_expected=datetime(2026, 11, 2, 13, tzinfo=UTC),
    )
}
THRESHOLD = {"long": str, "short": str, "burn": float}
# One SLO's keys in order, each with the JSON types its value may have (None only where documented).
SLO_SHAPE: dict[str, Any] = {
    "name": str,
    "slice": str,
    "sli_kind": str,
    "objective": float,
    "window": {"kind": str, "start": str, "end": str, "period_days": float},
    "sli": float,
    "no_data": bool,
    "events": int,
    "bad_events": int,
    "budget_total_events": float,
    "budget_remaining_events": float,
    "budget_consumed": float,
    "budget_remaining": float,
    "burn_rates": dict.fromkeys(("5m", "30m", "1h", "2h", "6h", "1d", "3d"), float),
    "alerts": {"page": bool, "ticket": bool},
    "alert_thresholds": {"page": [THRESHOLD, THRESHOLD], "ticket": [THRESHOLD, THRESHOLD]},
    "time_to_exhaustion_seconds": (float, type(None)),
}


def spec(**overrides: Any) -> SloSpec:
    data = {"name": "bets", "slice": "bet-placement", "objective": 0.75, "window": {"rolling_days": 30}}
    return SloSpec.model_validate(data | overrides)


def last_minutes(events: list[int], bad: list[int], at: datetime = T) -> MinuteCounts:
    return MinuteCounts(int(at.timestamp()) // 60 - len(events), events, bad)


def assert_shape(value: Any, shape: Any, where: str = "$") -> None:
    if isinstance(shape, dict):
        assert isinstance(value, dict), where
        assert list(value) == list(shape), f"{where}: keys or their order changed"
        for key, inner in shape.items():
            assert_shape(value[key], inner, f"{where}.{key}")
    elif isinstance(shape, list):
        assert isinstance(value, list) and len(value) == len(shape), where
        for i, (item, inner) in enumerate(zip(value, shape, strict=True)):
            assert_shape(item, inner, f"{where}[{i}]")
    else:
        # Exact types: JSON writes 30 and 30.0 differently, and a bool is not an int to a script.
        allowed = shape if isinstance(shape, tuple) else (shape,)
        assert type(value) in allowed, f"{where}: {type(value).__name__} is not {allowed}"


def as_json(report: SloReport) -> Any:
    return json.loads(json.dumps(report.to_dict()))


@pytest.mark.parametrize(
    ("overrides", "counts", "window_kind"),
    [
        ({}, last_minutes([100] * 10, [0] * 9 + [20]), "rolling"),
        ({}, last_minutes([0] * 10, [0] * 10), "rolling"),  # no data: time to exhaustion is null
        ({"objective": 0.999}, last_minutes([1], [1]), "rolling"),  # overspent
        ({"window": {"calendar": "month"}}, last_minutes([100] * 10, [5] * 10), "calendar-month"),
        ({"window": {"event": "derby"}}, last_minutes([100] * 10, [5] * 10), "event"),
        ({"sli": {"kind": "latency", "threshold_seconds": 0.5}}, MinuteCounts(0, [], []), "rolling"),
    ],
    ids=["with-data", "no-data", "overspent", "calendar-month", "event", "latency-no-counts"],
)
def test_json_shape(overrides: dict[str, Any], counts: MinuteCounts, window_kind: str) -> None:
    document = as_json(SloReport(at=T, slos=[evaluate(spec(**overrides), counts, at=T, events=EVENTS)]))
    assert_shape(document, {"at": str, "slos": [SLO_SHAPE]})
    assert document["at"] == "2026-11-02T12:00:00Z" and document["slos"][0]["window"]["kind"] == window_kind


def test_json_shape_from_the_store(store) -> None:
    """The same types whichever database the counts come from."""
    batch = Batch()
    delta = batch.bucket("bet-placement", T - timedelta(minutes=3))
    delta.total, delta.bad = 100, 2
    delta.latency.update({"0.1": 90, "1.0": 10})
    commit_batch(store, digest="d1", signal="traces", batch=batch)
    specs = [spec(), spec(name="bets-latency", sli={"kind": "latency", "threshold_seconds": 0.5})]
    document = as_json(evaluate_all(store, specs, events={}, boundaries=DEFAULT_BOUNDARIES, at=T))
    assert_shape(document, {"at": str, "slos": [SLO_SHAPE, SLO_SHAPE]})
    assert [s["events"] for s in document["slos"]] == [100, 100]


def test_json_document() -> None:
    """Values as well as shape: 1000 events at 75%, 20 bad in the last minute."""
    result = evaluate(spec(), last_minutes([100] * 10, [0] * 9 + [20]), at=T, events={})
    assert SloReport(at=T, slos=[result]).to_dict() == {
        "at": "2026-11-02T12:00:00Z",
        "slos": [
            {
                "name": "bets",
                "slice": "bet-placement",
                "sli_kind": "ratio",
                "objective": 0.75,
                "window": {
                    "kind": "rolling",
                    "start": "2026-10-03T12:00:00Z",
                    "end": "2026-11-02T12:00:00Z",
                    "period_days": 30.0,
                },
                "sli": 0.98,
                "no_data": False,
                "events": 1000,
                "bad_events": 20,
                "budget_total_events": 250.0,
                "budget_remaining_events": 230.0,
                "budget_consumed": 0.08,
                "budget_remaining": 0.92,
                "burn_rates": {"5m": 0.16, "30m": 0.08, "1h": 0.08, "2h": 0.08, "6h": 0.08, "1d": 0.08, "3d": 0.08},
                "alerts": {"page": False, "ticket": False},
                "alert_thresholds": {
                    "page": [{"long": "1h", "short": "5m", "burn": 14.4}, {"long": "6h", "short": "30m", "burn": 6.0}],
                    "ticket": [{"long": "1d", "short": "2h", "burn": 3.0}, {"long": "3d", "short": "6h", "burn": 1.0}],
                },
                "time_to_exhaustion_seconds": 41400.0,
            }
        ],
    }


@pytest.mark.parametrize("at", [T.astimezone(timezone(timedelta(hours=2))), T.replace(tzinfo=None)])
def test_times_are_reported_in_utc(at: datetime) -> None:
    """Another zone, or no zone (taken as UTC, as the store does), gives the same report as UTC."""
    counts = last_minutes([100] * 10, [1] * 10)
    for window in ({"rolling_days": 30}, {"calendar": "month"}):
        expected = evaluate(spec(window=window), counts, at=T, events={}).to_dict()
        assert evaluate(spec(window=window), counts, at=at, events={}).to_dict() == expected
