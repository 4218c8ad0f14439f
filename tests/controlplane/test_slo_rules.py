"""Generated Prometheus rules: valid for promtool, and computing what our engine computes.

The differential test feeds the same per-minute request series to our SLI store and, as
`input_series`, to `promtool test rules` with our generated rules, and expects Prometheus's error
ratios and alert states to equal ours at several evaluation times. The outbox alerts are run
through `promtool test rules` too: each fires once its condition has held for `for:`, not before.
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
from controlplane.slo.engine import BURN_WINDOWS, evaluate_all
from controlplane.slo.rules import OUTBOX_GROUP, OutboxThresholds, alert_names, render_rules, rule_groups
from controlplane.slo.spec import SloConfigError, SloSpec, load_events, load_slos
from controlplane.store import SliBucket, SliLatencyBucket
from tests.support import CONTROLPLANE

CONFIG = Path(__file__).parents[2] / "config"
PROMTOOL = shutil.which("promtool")
REQUIRED = os.environ.get("CONTROLPLANE_TEST_REQUIRE_PROMTOOL") == "1"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # promtool's tests start at time 0
SELECTOR = 'method="POST",route="/v1/bets"'
LES = ("0.1", "0.5", "1.0", "+Inf")
SLO_ALERTS = {"SLOErrorBudgetBurnPage", "SLOErrorBudgetBurnTicket"}
OUTBOX_ALERTS = {"OutboxQueueDepthHigh", "OutboxRelayLagHigh", "OutboxMetricsAbsent"}


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
    assert alert_names(path.read_text()) == SLO_ALERTS | OUTBOX_ALERTS


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
    # Refusals the client caused, which the collector leaves out of the stored SLI: the rules must too.
    refused = " ".join(str(37 * i) for i in range(len(traffic) + 1))
    for code in ("401", "429"):
        out.append({"series": f'platform_http_requests_total{{{SELECTOR},code="{code}"}}', "values": refused})
        out.append(
            {"series": f'platform_http_request_duration_seconds_count{{{SELECTOR},code="{code}"}}', "values": refused}
        )
        out += [
            {
                "series": f'platform_http_request_duration_seconds_bucket{{{SELECTOR},code="{code}",le="{le}"}}',
                "values": refused,
            }
            for le in LES
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


def _run_rules(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = os.environ | {
        "CONTROLPLANE_SLOS_PATH": str(CONFIG / "slos.yaml"),
        "CONTROLPLANE_EVENTS_PATH": str(CONFIG / "events.yaml"),
        "CONTROLPLANE_SLICES_PATH": str(CONFIG / "slices.yaml"),
    }
    return subprocess.run(
        [CONTROLPLANE, "slo", "rules", "--out", str(tmp_path / "rules.yml"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_rules_command_writes_the_outbox_alerts_with_its_thresholds(tmp_path) -> None:
    promtool = _promtool()
    result = _run_rules(tmp_path, "--outbox-depth-threshold", "250", "--relay-lag-threshold", "2m", "--for", "10m")
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "rules.yml").read_text()
    assert alert_names(text) == SLO_ALERTS | OUTBOX_ALERTS
    outbox = next(g for g in yaml.safe_load(text)["groups"] if g["name"] == OUTBOX_GROUP)
    by_expr = {r["expr"]: r for r in outbox["rules"]}
    assert by_expr["platform_outbox_depth > 250"]["labels"]["severity"] == "ticket"
    assert by_expr["platform_outbox_relay_lag_seconds > 120"]["labels"]["severity"] == "page"
    assert {r["for"] for r in outbox["rules"]} == {"10m"}
    check = subprocess.run([promtool, "check", "rules", str(tmp_path / "rules.yml")], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_no_outbox_alerts_leaves_only_the_slo_rules(tmp_path) -> None:
    result = _run_rules(tmp_path, "--no-outbox-alerts")
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "rules.yml").read_text()
    assert alert_names(text) == SLO_ALERTS
    assert "platform_outbox" not in text


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--outbox-depth-threshold", "0"),
        ("--outbox-depth-threshold", "lots"),
        ("--relay-lag-threshold", "30x"),
        ("--relay-lag-threshold", "0s"),
        ("--relay-lag-threshold", "30"),
        ("--for", "soon"),
        ("--for", "-1m"),
        ("--for", "400d"),
    ],
)
def test_bad_outbox_options_are_usage_errors_naming_the_flag(tmp_path, flag: str, value: str) -> None:
    result = _run_rules(tmp_path, flag, value)
    assert result.returncode == 3, result.stdout + result.stderr
    assert f"'{flag}'" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert not (tmp_path / "rules.yml").exists()


def test_outbox_thresholds_refuse_what_prometheus_cannot_use() -> None:
    with pytest.raises(ValueError, match="at least 1 event"):
        OutboxThresholds(depth=0)
    with pytest.raises(ValueError, match="at least 1s"):
        OutboxThresholds(relay_lag=timedelta(milliseconds=500))
    with pytest.raises(ValueError, match="365d"):
        OutboxThresholds(for_duration=timedelta(days=366))


def test_alert_names_reads_text_documents_and_groups() -> None:
    document = rule_groups([], load_slices(CONFIG / "slices.yaml"), events={})
    text = yaml.safe_dump(document)
    assert alert_names(text) == alert_names(document) == alert_names(document["groups"]) == OUTBOX_ALERTS
    assert alert_names("") == set()
    assert alert_names("groups: []") == set()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("groups:\n  - name: x\n    rules: [\n", "exported.yml: not valid YAML (line 4"),
        ("groups:\n\t- name: x\n", "exported.yml: not valid YAML (line 2"),
        ("just words", "exported.yml: not a Prometheus rules file"),
        ("groups: 3", "exported.yml: not a Prometheus rules file"),
        ("groups:\n  - name: x\n", "exported.yml: group 1 has no `rules:` list"),
    ],
)
def test_alert_names_refuses_what_is_not_a_rules_file(text: str, message: str) -> None:
    with pytest.raises(SloConfigError) as caught:
        alert_names(text, source="exported.yml")
    assert str(caught.value).startswith(message), str(caught.value)


def _expected(rule: dict, value: str = "") -> dict:
    """The alert promtool should report: the rule's labels, its annotations with `$value` filled in."""
    annotations = {
        k: v.replace("{{ $value | humanizeDuration }}", value).replace("{{ $value }}", value)
        for k, v in rule["annotations"].items()
    }
    return {"exp_labels": rule["labels"], "exp_annotations": annotations}


def _promtool_test(promtool: str, tmp_path: Path, groups: dict, tests: list[dict]) -> None:
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump(groups, sort_keys=False))
    test_file = tmp_path / "test.yml"
    test_file.write_text(
        yaml.safe_dump({"rule_files": [str(rules)], "evaluation_interval": "1m", "tests": tests}, sort_keys=False)
    )
    result = subprocess.run([promtool, "test", "rules", str(test_file)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]


THRESHOLDS = [
    OutboxThresholds(),
    OutboxThresholds(depth=50, relay_lag=timedelta(seconds=10), for_duration=timedelta(minutes=2)),
]


@pytest.mark.parametrize("thresholds", THRESHOLDS, ids=["defaults", "custom"])
def test_outbox_alerts_fire_once_the_condition_has_held_for_the_duration(tmp_path, thresholds) -> None:
    promtool = _promtool()
    groups = rule_groups([], load_slices(CONFIG / "slices.yaml"), events={}, outbox=thresholds)
    rules = {r["alert"]: r for r in groups["groups"][0]["rules"]}
    severities = {name: rule["labels"]["severity"] for name, rule in rules.items()}
    assert severities == {"OutboxQueueDepthHigh": "ticket", "OutboxRelayLagHigh": "page", "OutboxMetricsAbsent": "page"}
    hold = int(thresholds.for_duration.total_seconds() // 60)
    depth, lag = thresholds.depth, int(thresholds.relay_lag.total_seconds())
    assert lag + 15 < 60  # humanizeDuration then prints plain seconds, as _expected assumes
    # At the threshold (not above) for longer than `for:`, then above it: depth from minute 10, lag from 20.
    series = [
        {"series": "platform_outbox_depth", "values": f"{depth}x9 {depth + 1}x30"},
        {"series": "platform_outbox_relay_lag_seconds", "values": f"{lag}x19 {lag + 15}x20"},
    ]
    depth_fired = _expected(rules["OutboxQueueDepthHigh"], str(depth + 1))
    lag_fired = _expected(rules["OutboxRelayLagHigh"], f"{lag + 15}s")
    checks = [
        (9, "OutboxQueueDepthHigh", []),
        (10 + hold - 1, "OutboxQueueDepthHigh", []),
        (10 + hold, "OutboxQueueDepthHigh", [depth_fired]),
        (19, "OutboxRelayLagHigh", []),
        (20 + hold - 1, "OutboxRelayLagHigh", []),
        (20 + hold, "OutboxRelayLagHigh", [lag_fired]),
        (20 + hold, "OutboxMetricsAbsent", []),
    ]
    absent = [r for r in groups["groups"][0]["rules"] if r["alert"] == "OutboxMetricsAbsent"]
    depth_absent, lag_absent = (_expected(r) for r in absent)
    assert [r["labels"]["metric"] for r in absent] == ["platform_outbox_depth", "platform_outbox_relay_lag_seconds"]
    tests = [
        {
            "interval": "1m",
            "input_series": series,
            "alert_rule_test": [{"eval_time": f"{m}m", "alertname": a, "exp_alerts": e} for m, a, e in checks],
        },
        {  # the platform is scraped, but publishes no outbox gauges at all
            "interval": "1m",
            "input_series": [{"series": 'up{job="platform"}', "values": "1x30"}],
            "alert_rule_test": [
                {"eval_time": f"{hold - 1}m", "alertname": "OutboxMetricsAbsent", "exp_alerts": []},
                {"eval_time": f"{hold}m", "alertname": "OutboxMetricsAbsent", "exp_alerts": [depth_absent, lag_absent]},
                {"eval_time": f"{hold}m", "alertname": "OutboxRelayLagHigh", "exp_alerts": []},
            ],
        },
        {  # only the lag gauge is missing
            "interval": "1m",
            "input_series": [{"series": "platform_outbox_depth", "values": "0x30"}],
            "alert_rule_test": [
                {"eval_time": f"{hold - 1}m", "alertname": "OutboxMetricsAbsent", "exp_alerts": []},
                {"eval_time": f"{hold}m", "alertname": "OutboxMetricsAbsent", "exp_alerts": [lag_absent]},
            ],
        },
    ]
    _promtool_test(promtool, tmp_path, groups, tests)
