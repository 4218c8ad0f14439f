"""Generated Prometheus rules: valid for promtool, and computing what our engine computes.

The differential test feeds the same per-minute request series to our SLI store and, as
`input_series`, to `promtool test rules` with our generated rules, and expects Prometheus's error
ratios and alert states to equal ours at several evaluation times.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from controlplane.slices import load_slices
from controlplane.slo import BURN_WINDOWS, evaluate_all
from controlplane.slo_rules import render_rules, rule_groups
from controlplane.slo_spec import SloSpec, load_events, load_slos
from controlplane.store import SliBucket, SliLatencyBucket

CONFIG = Path(__file__).parents[2] / "config"
PROMTOOL = shutil.which("promtool")
REQUIRED = os.environ.get("CONTROLPLANE_TEST_REQUIRE_PROMTOOL") == "1"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # promtool's tests start at time 0
SELECTOR = 'method="POST",route="/v1/bets"'
LES = ("0.1", "0.5", "1.0", "+Inf")


def _promtool() -> str:
    if PROMTOOL is None:
        if REQUIRED:
            pytest.fail("promtool is required in CI (Debian package prometheus)")
        pytest.skip("promtool not installed (apt-get install prometheus)")
    return PROMTOOL


def test_shipped_rules_pass_promtool_check(tmp_path) -> None:
    promtool = _promtool()
    events = load_events(CONFIG / "events.yaml")
    text = render_rules(
        load_slos(CONFIG / "slos.yaml", events=events), load_slices(CONFIG / "slices.yaml"), events=events
    )
    path = tmp_path / "rules.yml"
    path.write_text(text)
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def _traffic() -> list[tuple[int, int, dict[str, int]]]:
    """Per minute: (requests, 5xx, latency counts per bucket) over 3 days and 4 hours."""
    minutes = []
    for i in range(3 * 1440 + 240):
        if i < 3 * 1440:
            minutes.append((200, 1 if i % 3 else 0, {"0.1": 150, "0.5": 40, "1.0": 8, "+Inf": 2}))
        elif i < 3 * 1440 + 60:
            minutes.append((200, 7, {"0.1": 100, "0.5": 60, "1.0": 30, "+Inf": 10}))
        else:
            minutes.append((200, 0, {"0.1": 190, "0.5": 10, "1.0": 0, "+Inf": 0}))
    return minutes


def _load_store(store, traffic) -> None:  # type: ignore[no-untyped-def]
    buckets, latency = [], []
    for i, (total, bad, lat) in enumerate(traffic):
        minute = EPOCH + timedelta(minutes=i)
        buckets.append({"slice": "bet-placement", "minute": minute, "total": total, "bad": bad})
        latency.extend({"slice": "bet-placement", "minute": minute, "le": le, "count": n} for le, n in lat.items() if n)
    with store.begin() as conn:
        conn.execute(SliBucket.__table__.insert(), buckets)
        conn.execute(SliLatencyBucket.__table__.insert(), latency)


def _series(traffic) -> list[dict]:  # type: ignore[no-untyped-def]
    """Counters as Prometheus would scrape them each minute: sample i counts the events before minute i."""
    ok, bad, count = [0], [0], [0]
    cumulative = {le: [0] for le in LES}
    for total, errors, lat in traffic:
        ok.append(ok[-1] + total - errors)
        bad.append(bad[-1] + errors)
        count.append(count[-1] + total)
        running = 0
        for le in LES:  # histogram buckets are cumulative over `le` too
            running += lat.get(le, 0)
            cumulative[le].append(cumulative[le][-1] + running)
    out = [
        {"series": f'platform_http_requests_total{{{SELECTOR},code="201"}}', "values": " ".join(map(str, ok))},
        {"series": f'platform_http_requests_total{{{SELECTOR},code="503"}}', "values": " ".join(map(str, bad))},
        {
            "series": f'platform_http_request_duration_seconds_count{{{SELECTOR},code="201"}}',
            "values": " ".join(map(str, count)),
        },
    ]
    out += [
        {
            "series": f'platform_http_request_duration_seconds_bucket{{{SELECTOR},code="201",le="{le}"}}',
            "values": " ".join(map(str, values)),
        }
        for le, values in cumulative.items()
    ]
    return out


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_prometheus_agrees_with_our_engine(store, tmp_path) -> None:
    promtool = _promtool()
    slices = load_slices(CONFIG / "slices.yaml")
    specs = [
        SloSpec.model_validate(
            {"name": "bets-availability", "slice": "bet-placement", "objective": 0.999, "window": {"rolling_days": 30}}
        ),
        SloSpec.model_validate(
            {
                "name": "bets-latency",
                "slice": "bet-placement",
                "objective": 0.99,
                "window": {"rolling_days": 30},
                "sli": {"kind": "latency", "threshold_seconds": 0.5},
            }
        ),
    ]
    traffic = _traffic()
    _load_store(store, traffic)
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump(rule_groups(specs, slices, events={}), sort_keys=False))
    groups = {g["name"]: g for g in rule_groups(specs, slices, events={})["groups"]}

    expr_tests: list[dict] = []
    alert_tests: dict[tuple[int, str], list[dict]] = {}  # one test per time and alert name, all SLOs
    fired: set[tuple[str, str]] = set()
    for minutes in (
        3 * 1440,
        3 * 1440 + 10,
        3 * 1440 + 34,
        3 * 1440 + 35,
        3 * 1440 + 60,
        3 * 1440 + 120,
        3 * 1440 + 239,
    ):
        at = EPOCH + timedelta(minutes=minutes)
        report = evaluate_all(store, specs, events={}, boundaries=slices.boundaries, at=at)
        for spec, result in zip(specs, report.slos, strict=True):
            for window in BURN_WINDOWS:
                ratio = result.burn_rates[window] * (1 - spec.objective)
                # promtool compares exactly; the float tolerance goes into the expression instead.
                expr_tests.append(
                    {
                        "expr": f'abs(slo:sli_error:ratio_rate{window}{{slo="{spec.name}"}} - {ratio!r}) < bool 1e-9',
                        "eval_time": f"{minutes}m",
                        "exp_samples": [{"labels": f'{{slice="bet-placement",slo="{spec.name}"}}', "value": 1}],
                    }
                )
            for tier, firing in (("page", result.alerts.page), ("ticket", result.alerts.ticket)):
                alert = next(
                    r for r in groups[f"slo-{spec.name}"]["rules"] if r.get("alert", "").endswith(tier.capitalize())
                )
                expected = alert_tests.setdefault((minutes, alert["alert"]), [])
                if firing:
                    fired.add((spec.name, tier))
                    expected.append({"exp_labels": alert["labels"], "exp_annotations": alert["annotations"]})
    assert ("bets-availability", "page") in fired and (
        "bets-latency",
        "ticket",
    ) in fired  # the test exercises both states
    test_file = tmp_path / "test.yml"
    test_file.write_text(
        yaml.safe_dump(
            {
                "rule_files": [str(rules)],
                "evaluation_interval": "1m",
                "tests": [
                    {
                        "interval": "1m",
                        "input_series": _series(traffic),
                        "promql_expr_test": expr_tests,
                        "alert_rule_test": [
                            {"eval_time": f"{minutes}m", "alertname": name, "exp_alerts": expected}
                            for (minutes, name), expected in alert_tests.items()
                        ],
                    }
                ],
            },
            sort_keys=False,
            width=10**9,
        )
    )
    result = subprocess.run([promtool, "test", "rules", str(test_file)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
