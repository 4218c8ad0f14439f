"""The typed cost report: its JSON (what scripts read) and its table and CSV, from exact amounts, without
a store."""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from controlplane.cost.render import render_csv, render_table
from controlplane.cost.results import (
    ComponentCost,
    CostBucket,
    CostFigures,
    CostReport,
    CostWindow,
    EventCost,
    SloBeside,
)
from controlplane.formatting import money

START = datetime(2026, 6, 3, 18, tzinfo=UTC)
END = START + timedelta(hours=2)


def _report(settled: int = 3, *, event: bool = False) -> CostReport:
    per_bet = Decimal("3.0000005") / settled if settled else None
    allocated_per_bet = Decimal("2.0000005") / settled if settled else None
    return CostReport(
        window=CostWindow(START, END, complete=True, event="cup-final" if event else None, by="hour"),
        currency="EUR",
        unallocated_policy="separate",
        figures=CostFigures(Decimal("3.0000005"), Decimal("2.0000005"), settled, 1),
        warnings=("no CPU scraped",),
        probe_bets_excluded=1,
        resettled_bets=0,
        unmapped_billing_cost=Decimal(0),
        unmapped_billing_other_currencies={"USD": Decimal("1.5"), "GBP": Decimal("0.25")},
        components=(
            ComponentCost(
                "database",
                Decimal("3.0000005"),
                Decimal("2.0000005"),
                Decimal(1),
                per_bet,
                allocated_per_bet,
                "rate",
                "direct",
            ),
        ),
        buckets=tuple(
            CostBucket(
                START + timedelta(hours=h),
                START + timedelta(hours=h + 1),
                START + timedelta(hours=h),
                CostFigures(Decimal("1.5"), Decimal("1"), settled if h else 0, 0),
            )
            for h in range(2)
        ),
        slos=(
            SloBeside("bet-placement-availability", "bet-placement", 0.999, -0.25, "ticket", 2, 600, Decimal("1.2")),
        ),
        event=EventCost("cup-final", START, END, Decimal("0.4"), {"bet-placement-availability": 1.25, "login": None})
        if event
        else None,
    )


def test_the_json_keeps_its_keys_order_and_decimal_strings() -> None:
    document = _report(event=True).to_dict()
    assert list(document) == [
        "window", "currency", "unallocated_policy", "total_cost", "allocated_cost", "unallocated_cost",
        "settled_bets", "voided_bets", "cost_per_settled_bet", "allocated_cost_per_settled_bet",
        "cost_per_settled_bet_reason", "warnings",
        "probe_bets_excluded", "resettled_bets", "unmapped_billing_cost", "unmapped_billing_other_currencies",
        "components", "buckets", "slos", "event",
    ]  # fmt: skip
    assert document["window"] == {
        "start": "2026-06-03T18:00:00Z", "end": "2026-06-03T20:00:00Z", "complete": True, "event": "cup-final",
        "by": "hour",
    }  # fmt: skip
    # Half to even at the 6th place: 3.0000005 -> 3.000000, 2.0000005 -> 2.000000; the difference is exact.
    assert (document["total_cost"], document["allocated_cost"], document["unallocated_cost"]) == (
        "3.000000", "2.000000", "1.000000",
    )  # fmt: skip
    # The cost per settled bet is the total cost ÷ the settled bets; the allocated part stands beside it.
    assert document["cost_per_settled_bet"] == "1.000000" and document["cost_per_settled_bet_reason"] is None
    assert document["allocated_cost_per_settled_bet"] == "0.666667"
    assert document["unmapped_billing_other_currencies"] == {"GBP": "0.250000", "USD": "1.500000"}
    assert list(document["unmapped_billing_other_currencies"]) == ["GBP", "USD"]
    assert document["components"][0]["unallocated"] == "1.000000" and document["components"][0]["share"] == "1.000000"
    assert list(document["buckets"][0]) == [
        "start", "end", "total_cost", "allocated_cost", "unallocated_cost", "settled_bets", "voided_bets",
        "cost_per_settled_bet", "allocated_cost_per_settled_bet", "cost_per_settled_bet_reason", "bucket",
    ]  # fmt: skip
    assert document["slos"][0]["slice_cost"] == "1.200000" and document["slos"][0]["budget_remaining"] == -0.25
    assert document["event"]["headroom_cost"] == "0.400000"
    assert document["event"]["budget_consumed"] == {"bet-placement-availability": 1.25, "login": None}
    assert json.loads(json.dumps(document)) == document


def test_no_event_key_outside_an_event_and_the_reason_when_nothing_settled() -> None:
    document = _report(settled=0).to_dict()
    assert "event" not in document
    assert document["cost_per_settled_bet"] is None and document["allocated_cost_per_settled_bet"] is None
    assert "no bet was settled" in document["cost_per_settled_bet_reason"]
    assert document["components"][0]["cost_per_settled_bet"] is None


@pytest.mark.parametrize("settled", [0, 3])
def test_the_table_and_csv_print_the_json_amounts(settled: int) -> None:
    report = _report(settled, event=True)
    document = report.to_dict()
    table = render_table(report)
    for label, key in (("Cost per settled bet", "cost_per_settled_bet"), ("Total cost", "total_cost"),
                       ("Allocated per settled bet", "allocated_cost_per_settled_bet")):  # fmt: skip
        amount = document[key]
        assert f"{label}: {money(Decimal(amount) if amount else None, 'EUR')}" in table
    if settled:  # the explanation shows its own arithmetic
        assert "total cost ÷ settled bets (3.00 EUR ÷ 3)" in table and "(2.00 EUR ÷ 3)" in table
    assert "warning: no CPU scraped" in table
    assert re.search(r"bet-placement-availability +125.0%", table) and re.search(r"login +no data", table)
    assert re.search(r"bet-placement-availability +bet-placement +exhausted, 1.25x", table)  # never -25.0%
    assert ("Cost per settled bet: none (no bet was settled" in table) == (settled == 0)
    rows = list(csv.DictReader(io.StringIO(render_csv(report))))
    assert [r["bucket_start"] for r in rows] == [b["start"] for b in document["buckets"]]
    for key in ("cost_per_settled_bet", "allocated_cost_per_settled_bet"):
        assert [r[key] or None for r in rows] == [b[key] for b in document["buckets"]]
    by_component = list(csv.DictReader(io.StringIO(render_csv(replace(report, buckets=())))))
    assert [r["component"] for r in by_component] == ["database", "total"]
    assert by_component[-1]["cost"] == document["total_cost"]
    assert by_component[-1]["cost_per_settled_bet"] == (document["cost_per_settled_bet"] or "")
    assert by_component[-1]["allocated_cost_per_settled_bet"] == (document["allocated_cost_per_settled_bet"] or "")


def test_a_window_not_over_yet_says_so() -> None:
    report = _report()
    assert "not over yet" not in render_table(report)
    assert "[window not over yet: cost so far]" in render_table(
        replace(report, window=replace(report.window, complete=False))
    )
