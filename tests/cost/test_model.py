"""The cost model file: the simplest file is valid, the shipped one loads, and every mistake is named by
file, component and field."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from controlplane.cost.model import CostConfigError, load_cost_model

SIMPLEST = '{currency: EUR, components: [{name: database, rate: {per_hour: "1.20"}, allocation: direct}]}'


def _load(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "costs.yaml"
    path.write_text(text)
    return load_cost_model(path)


def test_the_simplest_file_and_the_shipped_one(tmp_path: Path) -> None:
    model = _load(tmp_path, SIMPLEST)
    (database,) = model.components
    assert (model.currency, model.unallocated) == ("EUR", "separate")
    assert database.rate is not None and database.rate.per_hour == Decimal("1.20")
    assert database.allocation.rule == "direct" and database.source() == "rate 1.20 per hour"
    shipped = load_cost_model(Path("config/costs.yaml"))
    rules = {c.name: c.allocation.rule for c in shipped.components}
    assert set(rules.values()) == {"direct", "by_requests", "by_cpu_seconds", "fixed_share"}


def test_every_allocation_form(tmp_path: Path) -> None:
    model = _load(
        tmp_path,
        """
currency: GBP
unallocated: spread
components:
  - {name: a, rate: {per_month: "100"}, allocation: by_requests}
  - {name: b, rate: {per_hour: 2}, allocation: {by_requests: {slices: [login]}}}
  - {name: c, focus: {service: Managed PostgreSQL}, allocation: {by_cpu_seconds: {targets: [http://x/metrics]}}}
  - {name: d, focus: {resource_id: r-1, cost_column: BilledCost}, allocation: {fixed_share: "0.25"}}
""",
    )
    a, b, c, d = model.components
    assert a.allocation.by_requests is not None and a.allocation.by_requests.slices is None
    assert b.allocation.by_requests is not None and b.allocation.by_requests.slices == ["login"]
    assert c.allocation.by_cpu_seconds is not None and c.allocation.by_cpu_seconds.cores is None
    assert d.allocation.fixed_share is not None and d.allocation.fixed_share.share == Decimal("0.25")
    assert (
        d.source() == "focus ResourceId=r-1 (BilledCost)"
        and c.source() == "focus ServiceName=Managed PostgreSQL (EffectiveCost)"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{currency: EUR, components: [{name: db, rate: {per_hour: 1.2}, allocation: direct}]}',
         "component 'db': rate.per_hour: write amounts as strings"),
        ('{currency: EUR, components: [{name: db, rate: {per_hour: "-1"}, allocation: direct}]}',
         "component 'db': rate.per_hour: '-1' must be a finite amount"),
        ('{currency: EUR, components: [{name: db, rate: {per_hour: "1", per_month: "2"}, allocation: direct}]}',
         "component 'db': rate: give exactly one of per_hour or per_month"),
        ('{currency: EUR, components: [{name: db, allocation: direct}]}', "component 'db': give one cost source"),
        ('{currency: EUR, components: [{name: db, rate: {per_hour: "1"}, allocation: sideways}]}',
         "component 'db': allocation.rule"),
        ('{currency: EUR, components: [{name: db, rate: {per_hour: "1"}, allocation: fixed_share}]}',
         "component 'db': allocation: fixed_share needs parameters"),
        ('{currency: EUR, components: [{name: db, rate: {per_hour: "1"}, allocation: {fixed_share: "1.5"}}]}',
         "allocation.fixed_share.share: '1.5' must be a fraction"),
        ('{currency: EUR, components: [{name: db, rate: {per_hour: "1"}, allocation: {by_cpu_seconds: {cores: "2"}}}]}',
         "allocation.by_cpu_seconds.targets: Field required"),
        ('{currency: EUR, components: [{name: db, focus: {service: a, tag: {x: y}}, allocation: direct}]}',
         "component 'db': focus: give exactly one of service, tag or resource_id"),
        ('{currency: euro, components: [{name: db, rate: {per_hour: "1"}, allocation: direct}]}', "currency:"),
        ("{currency: EUR, components: []}", "components: List should have at least 1 item"),
        ('{currency: EUR, components: [{name: db, rate: {per_hour: "1"}, allocation: direct}, '
         '{name: db, rate: {per_hour: "2"}, allocation: direct}]}', "component names must be unique; repeated: db"),
        ("currency: [", "not valid YAML"),
        ('{currency: EUR, components: [{name: db, rate: {per_hour: "1e30"}, allocation: direct}]}',
         "rate.per_hour: '1e30' must be under 10^15"),
        ('{currency: EUR, components: [{name: db, rate: {per_hour: "1"}, allocation: {rule: fixed_share}}]}',
         "allocation: fixed_share needs parameters"),
        ('{currency: EUR, components: [{name: db, rate: {per_hour: "1"}, '
         'allocation: {rule: direct, fixed_share: {share: "0.1"}}}]}', "fixed_share does not go with rule direct"),
    ],
)  # fmt: skip
def test_mistakes_are_named(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(CostConfigError) as caught:
        _load(tmp_path, text)
    assert message in str(caught.value) and str(tmp_path / "costs.yaml") in str(caught.value)


def test_a_missing_file_says_where_to_start(tmp_path: Path) -> None:
    with pytest.raises(CostConfigError, match=r"file not found; copy config/costs\.yaml"):
        load_cost_model(tmp_path / "nope.yaml")
