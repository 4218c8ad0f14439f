"""Costs of a piece of time and the allocation rules, computed in Decimal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from controlplane.cost.compute import Charge, charges_cost, component_piece_costs, rate_cost
from controlplane.cost.model import Component, Rate
from controlplane.cost.usage import hour_pieces

NOV = datetime(2026, 11, 1, tzinfo=UTC)


def test_a_monthly_rate_is_prorated_by_the_seconds_of_each_calendar_month() -> None:
    rate = Rate(per_month=Decimal("300"))
    assert rate_cost(rate, NOV, NOV + timedelta(days=30)) == Decimal("300")  # all of November
    # The last day of November and the first of December: 1/30 of one month and 1/31 of the next.
    cost = rate_cost(rate, datetime(2026, 11, 30, tzinfo=UTC), datetime(2026, 12, 2, tzinfo=UTC))
    assert cost == Decimal(300) / 30 + Decimal(300) * 86400 / (31 * 86400)
    assert rate_cost(Rate(per_hour=Decimal("1.20")), NOV, NOV + timedelta(minutes=90)) == Decimal("1.80")


def test_a_charge_is_spread_evenly_over_its_period() -> None:
    charges = [
        Charge(NOV, NOV + timedelta(days=1), Decimal("4.80")),
        Charge(NOV, NOV + timedelta(hours=1), Decimal("1")),
    ]
    assert charges_cost(charges, NOV, NOV + timedelta(hours=2)) == Decimal("0.4") + Decimal("1")
    assert charges_cost(charges, NOV - timedelta(hours=1), NOV) == 0


def test_hour_pieces_cut_at_whole_hours() -> None:
    start = NOV + timedelta(minutes=20)
    pieces = hour_pieces(start, NOV + timedelta(hours=2, minutes=5))
    assert pieces == [
        (start, NOV + timedelta(hours=1)),
        (NOV + timedelta(hours=1), NOV + timedelta(hours=2)),
        (NOV + timedelta(hours=2), NOV + timedelta(hours=2, minutes=5)),
    ]
    assert hour_pieces(start, start) == []


def _component(allocation: object) -> Component:
    return Component.model_validate({"name": "x", "rate": {"per_hour": "3.60"}, "allocation": allocation})


def test_allocation_rules_per_piece() -> None:
    pieces = hour_pieces(NOV, NOV + timedelta(hours=2))
    requests = {"bets": [30, 0], "login": [10, 0]}
    cpu = {"a": [Decimal(900), Decimal(0)], "b": [Decimal(2700), Decimal(9000)]}
    kwargs = {"charges": [], "requests": requests, "cpu": cpu, "slices": ["bets", "login"]}

    by_requests = component_piece_costs(_component("by_requests"), pieces, **kwargs)
    assert [p.allocated for p in by_requests] == [Decimal("3.60"), 0]  # no request in the second hour: idle
    assert by_requests[0].by_slice == {"bets": Decimal("2.70"), "login": Decimal("0.90")}

    only_login = component_piece_costs(_component({"by_requests": {"slices": ["login"]}}), pieces, **kwargs)
    assert only_login[0].by_slice == {"login": Decimal("3.60")}

    cpu_rule = {"by_cpu_seconds": {"targets": ["a", "b"], "cores": "2"}}
    by_cpu = component_piece_costs(_component(cpu_rule), pieces, **kwargs)
    assert by_cpu[0].allocated == Decimal("3.60") * 3600 / 7200  # half the capacity used
    assert by_cpu[0].by_target == {"a": by_cpu[0].allocated / 4, "b": by_cpu[0].allocated * 3 / 4}
    assert by_cpu[1].allocated == Decimal("3.60")  # more than the capacity: all of it, never more

    shared = component_piece_costs(_component({"fixed_share": "0.25"}), pieces, **kwargs)
    assert [(p.allocated, p.unallocated) for p in shared] == [(Decimal("0.9000"), Decimal("2.7000"))] * 2


def test_cpu_seconds_spread_over_pieces_through_restarts_and_past_the_window(store) -> None:  # type: ignore[no-untyped-def]
    from controlplane.cost.usage import cpu_seconds_by_piece
    from controlplane.store import ScrapedSample, table

    samples = [
        (NOV - timedelta(minutes=30), 100.0),  # before the window: half of the next step falls in it
        (NOV + timedelta(minutes=30), 400.0),
        (NOV + timedelta(minutes=45), float("inf")),  # not a number of seconds: skipped
        (NOV + timedelta(minutes=90), 60.0),  # a restart: 60 s since it began again
        (NOV + timedelta(hours=2, minutes=30), 660.0),  # straddles the window's end
    ]
    with store.begin() as conn:
        conn.execute(
            table(ScrapedSample).insert(),
            [{"target": "t", "name": "process_cpu_seconds_total", "labels": "{}", "value": v, "scraped_at": at}
             for at, v in samples],
        )  # fmt: skip
    pieces = hour_pieces(NOV, NOV + timedelta(hours=2))
    spent, sampled = cpu_seconds_by_piece(store, ["t", "absent"], pieces)
    # 300 s over [-30m, +30m): 150 in hour 0. 60 s over [+30m, +90m): 30 + 30. 600 s over [+90m, +150m): 300 in hour 1.
    assert spent["t"] == [Decimal(150) + Decimal(30), Decimal(30) + Decimal(300)]
    assert spent["absent"] == [0, 0] and sampled == {"t"}
