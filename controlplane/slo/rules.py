"""Prometheus recording and alerting rules for the SLOs, over the platform's own Prometheus metrics.

Usage:

    text = render_rules(specs, slices, events=events)   # YAML for Prometheus `rule_files`
    assert "OutboxRelayLagHigh" in alert_names(text)

Recording rules `slo:sli_error:ratio_rate<window>` (5m ... 3d) hold each SLO's error ratio; alerting
rules `SLOErrorBudgetBurnPage` and `SLOErrorBudgetBurnTicket` are the Workbook's multi-window
multi-burn-rate alerts, with thresholds scaled like `controlplane slo status` does. Calendar-month
windows are treated as 30 days (Prometheus rules are static). As in Prometheus generally, a window
with no requests at all has no ratio (0/0), so no alert fires on it.

The group `platform-outbox` watches the transactional outbox: `OutboxQueueDepthHigh`,
`OutboxRelayLagHigh`, and `OutboxMetricsAbsent` so that a missing gauge does not look healthy.
`alert_names(text)` lists the alerts of a rules file, for checks that read an exported one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

import yaml

from controlplane.clock import parse_duration
from controlplane.slices import SliceConfig, label
from controlplane.slo.engine import BURN_WINDOWS, PAGE_RULES, TICKET_RULES
from controlplane.slo.spec import EventSpec, SloConfigError, SloSpec

REQUESTS = "platform_http_requests_total"
DURATION = "platform_http_request_duration_seconds"
ODDS_LAG = "platform_odds_publish_lag_seconds"
STREAM_LAG = "audit_ingest_lag_seconds"  # what `controlplane audit ingest --metrics-port` serves
PROM_METRICS = {
    "http.server.request.duration": DURATION,
    "platform.odds.publish_lag": ODDS_LAG,
    "audit.ingest.lag": STREAM_LAG,
}
OUTBOX_DEPTH = "platform_outbox_depth"
OUTBOX_LAG = "platform_outbox_relay_lag_seconds"
OUTBOX_GROUP = "platform-outbox"


def _selector(spec: SloSpec, slices: SliceConfig) -> str:
    """PromQL label matchers for the slice's HTTP requests: method and route from its span names."""
    slice_spec = next((s for s in slices.slices if s.name == spec.slice), None)
    if slice_spec is None:
        raise SloConfigError(f"slo '{spec.name}': slice {spec.slice!r} is not in the slices file")
    names = slice_spec.spans if slice_spec.signal == "traces" else slice_spec.routes
    pairs = [name.split(" ", 1) for name in names if " " in name]
    if not pairs:
        raise SloConfigError(
            f"slo '{spec.name}': slice {spec.slice!r} names no '<METHOD> <route>' to select requests by"
        )
    methods = sorted({m for m, _ in pairs})
    routes = sorted({r for _, r in pairs})
    method = f'method="{methods[0]}"' if len(methods) == 1 else f'method=~"{"|".join(methods)}"'
    route = f'route="{routes[0]}"' if len(routes) == 1 else f'route=~"{"|".join(re.escape(r) for r in routes)}"'
    # Refusals the client caused are neither good nor bad events, as in the stored SLI.
    excluded = slice_spec.bad.excluded_statuses
    code = f',code!~"{"|".join(str(c) for c in excluded)}"' if excluded else ""
    return f"{method},{route}{code}"


def _bad_codes(spec: SloSpec, slices: SliceConfig) -> str:
    slice_spec = next(s for s in slices.slices if s.name == spec.slice)
    if slice_spec.bad.http_status_min != 500:
        raise SloConfigError(
            f"slo '{spec.name}': only 'bad = 5xx' (http_status_min: 500) maps to Prometheus rules; "
            f"slice {spec.slice!r} has {slice_spec.bad.http_status_min}"
        )
    return 'code=~"5.."'


def _threshold_label(spec: SloSpec, slices: SliceConfig) -> str:
    le = label(spec.sli.threshold_seconds or 0.0)
    if le not in slices.labels:
        raise SloConfigError(
            f"slo '{spec.name}': latency threshold {spec.sli.threshold_seconds}s is not a histogram bucket "
            f"boundary (boundaries: {', '.join(str(b) for b in slices.boundaries)}); pick one of those"
        )
    return le


def error_ratio_expr(spec: SloSpec, slices: SliceConfig, window: str) -> str:
    kind = spec.sli.kind
    if kind == "freshness":
        slice_spec = next((s for s in slices.slices if s.name == spec.slice), None)
        metric = PROM_METRICS.get((slice_spec.metric or "") if slice_spec else "", ODDS_LAG)
        threshold = spec.sli.threshold_seconds
        return (
            f"avg_over_time((histogram_quantile({spec.sli.percentile}, sum by (le) "
            f"(rate({metric}_bucket[1m]))) > bool {threshold})[{window}:1m])"
        )
    slice_spec = next((s for s in slices.slices if s.name == spec.slice), None)
    if kind == "latency" and slice_spec is not None and slice_spec.signal == "metrics" and not slice_spec.routes:
        # A histogram of its own (the stream's lag): every observation is one event of the slice.
        own = PROM_METRICS.get(slice_spec.metric or "")
        if own is None:
            raise SloConfigError(
                f"slo '{spec.name}': metric {slice_spec.metric!r} has no Prometheus name here "
                f"(known: {', '.join(sorted(PROM_METRICS))})"
            )
        le = _threshold_label(spec, slices)
        fast = f'sum(rate({own}_bucket{{le="{le}"}}[{window}]))'
        return f"1 - (\n  {fast}\n  /\n  sum(rate({own}_count[{window}]))\n)"
    selector = _selector(spec, slices)
    if kind == "ratio":
        bad = f"sum(rate({REQUESTS}{{{selector},{_bad_codes(spec, slices)}}}[{window}]))"
        return f"({bad} or vector(0))\n/\nsum(rate({REQUESTS}{{{selector}}}[{window}]))"
    le = _threshold_label(spec, slices)
    fast = f'sum(rate({DURATION}_bucket{{{selector},le="{le}"}}[{window}]))'
    return f"1 - (\n  {fast}\n  /\n  sum(rate({DURATION}_count{{{selector}}}[{window}]))\n)"


def _period_days(spec: SloSpec, events: dict[str, EventSpec]) -> float:
    if spec.window.rolling_days is not None:
        return float(spec.window.rolling_days)
    if spec.window.event is not None:
        start, end = events[spec.window.event].window()
        return (end - start).total_seconds() / 86400
    return 30.0


def _alert(spec: SloSpec, tier: str, rules: tuple, scale: float) -> dict:
    budget = 1.0 - spec.objective
    parts = []
    for long_w, short_w, burn in rules:
        threshold = round(burn * scale * budget, 12)
        parts.append(
            f'(slo:sli_error:ratio_rate{long_w}{{slo="{spec.name}"}} > {threshold!r}\n'
            f" and on (slo, slice)\n"
            f' slo:sli_error:ratio_rate{short_w}{{slo="{spec.name}"}} > {threshold!r})'
        )
    return {
        "alert": f"SLOErrorBudgetBurn{tier.capitalize()}",
        "expr": "\nor\n".join(parts),
        "labels": {"severity": tier, "slo": spec.name, "slice": spec.slice},
        "annotations": {
            "summary": f"{spec.name} is burning its error budget too fast",
            "description": f"Objective {spec.objective}; see `controlplane slo status` for burn rates and budget left.",
        },
    }


@dataclass(frozen=True)
class OutboxThresholds:
    """When the outbox alerts fire; each must hold for `for_duration` (Prometheus `for:`) first.

    OutboxThresholds(depth=5000, relay_lag=timedelta(minutes=1))   # the rest at their defaults
    """

    depth: int = 1000  # undelivered events
    relay_lag: timedelta = timedelta(seconds=30)  # age of the oldest undelivered event
    for_duration: timedelta = timedelta(minutes=5)

    def __post_init__(self) -> None:
        if self.depth < 1:
            raise ValueError(f"outbox depth threshold {self.depth} must be at least 1 event")
        _check_alert_duration(self.relay_lag, f"relay lag threshold {self.relay_lag}")
        _check_alert_duration(self.for_duration, f"for duration {self.for_duration}")


MAX_ALERT_DURATION = timedelta(days=365)


def _check_alert_duration(value: timedelta, what: str) -> None:
    if value < timedelta(seconds=1) or value.microseconds:
        raise ValueError(f"{what} is too short or not whole seconds: use at least 1s")
    if value > MAX_ALERT_DURATION:  # also keeps `for:` inside Prometheus's duration range
        raise ValueError(f"{what} is longer than {MAX_ALERT_DURATION.days}d: an alert that late is no alert")


def alert_duration(text: str) -> timedelta:
    """'30s', '5m', '2h': a duration the outbox alerts can use (1s to 365d); the ValueError says what is wrong."""
    value = parse_duration(text)
    _check_alert_duration(value, repr(text.strip()))
    return value


def prometheus_duration(value: timedelta) -> str:
    """`timedelta(minutes=90)` -> '90m': the largest unit that divides it (Prometheus duration syntax)."""
    seconds = int(value.total_seconds())
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def outbox_group(thresholds: OutboxThresholds) -> dict:
    """Alerts on the platform's outbox gauges. The relay lag pages: money-flow events (to the audit log)
    are not being delivered. A deep queue with a moving relay is a capacity question, so a ticket.
    A missing gauge pages too: while it is missing, the lag page cannot fire."""
    hold = prometheus_duration(thresholds.for_duration)
    lag = int(thresholds.relay_lag.total_seconds())
    lag_text = prometheus_duration(thresholds.relay_lag)
    where = (
        "Check the platform's outbox relay (its `outbox relay` spans and logs), the sink it delivers to "
        "(the audit log or the JSON-lines file), and the faults in force (`controlplane platform faults list`)."
    )
    rules: list[dict] = [
        {
            "alert": "OutboxQueueDepthHigh",
            "expr": f"{OUTBOX_DEPTH} > {thresholds.depth}",
            "for": hold,
            "labels": {"severity": "ticket"},
            "annotations": {
                "summary": "Outbox holds {{ $value }} undelivered events",
                "description": (
                    f"The outbox has held more than {thresholds.depth} committed, undelivered events for {hold}: "
                    f"the platform commits events faster than the relay delivers them. {where} If `{OUTBOX_LAG}` "
                    "stays low, the relay keeps up and the backlog is load: plan relay and sink capacity."
                ),
            },
        },
        {
            "alert": "OutboxRelayLagHigh",
            "expr": f"{OUTBOX_LAG} > {lag}",
            "for": hold,
            "labels": {"severity": "page"},
            "annotations": {
                "summary": "Outbox relay is {{ $value | humanizeDuration }} behind",
                "description": (
                    f"The oldest undelivered outbox event has been older than {lag_text} for {hold}: the relay is "
                    f"stuck or its sink is failing, so money-flow events do not reach the audit log. {where}"
                ),
            },
        },
    ]
    for metric in (OUTBOX_DEPTH, OUTBOX_LAG):
        rules.append(
            {
                "alert": "OutboxMetricsAbsent",
                "expr": f"absent({metric})",
                "for": hold,
                "labels": {"severity": "page", "metric": metric},
                "annotations": {
                    "summary": f"{metric} is missing, so the outbox alerts cannot fire",
                    "description": (
                        f"Prometheus has had no {metric} series for {hold}. The platform is down or not "
                        "scraped (check `up` and the scrape target), its /metrics could not read the outbox "
                        "(a busy or unreachable database), or the metric was renamed. Use "
                        "`controlplane slo rules --no-outbox-alerts` if the platform has no outbox."
                    ),
                },
            }
        )
    return {"name": OUTBOX_GROUP, "rules": rules}


def rule_groups(
    specs: list[SloSpec],
    slices: SliceConfig,
    *,
    events: dict[str, EventSpec],
    outbox: OutboxThresholds | None = OutboxThresholds(),
) -> dict:
    """The rules document: one group per SLO, then the outbox group (unless `outbox` is None)."""
    groups = []
    for spec in specs:
        labels = {"slo": spec.name, "slice": spec.slice}
        records = [
            {"record": f"slo:sli_error:ratio_rate{w}", "expr": error_ratio_expr(spec, slices, w), "labels": labels}
            for w in BURN_WINDOWS
        ]
        scale = _period_days(spec, events) / 30.0
        alerts = []
        if spec.alerting.page:
            alerts.append(_alert(spec, "page", PAGE_RULES, scale))
        if spec.alerting.ticket:
            alerts.append(_alert(spec, "ticket", TICKET_RULES, scale))
        groups.append({"name": f"slo-{spec.name}", "rules": records + alerts})
    if outbox is not None:
        groups.append(outbox_group(outbox))
    return {"groups": groups}


def alert_names(document: str | Mapping[str, object] | Sequence[object], *, source: str = "rules file") -> set[str]:
    """The alert names in a Prometheus rules document: its YAML text, the mapping `rule_groups` returns,
    or its list of groups. Raises SloConfigError, naming `source`, when it is not such a document."""
    if isinstance(document, str):
        try:
            document = yaml.safe_load(document)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
            problem = getattr(exc, "problem", None) or type(exc).__name__
            raise SloConfigError(
                f"{source}: not valid YAML{where}: {problem}; export it again with `controlplane slo rules`"
            ) from None
    if document is None:
        return set()
    groups = document.get("groups") if isinstance(document, Mapping) else document
    if isinstance(groups, str) or not isinstance(groups, Sequence):
        raise SloConfigError(f"{source}: not a Prometheus rules file; it should start with `groups:`, a list")
    names: set[str] = set()
    for i, group in enumerate(groups, 1):
        rules = group.get("rules") if isinstance(group, Mapping) else None
        if isinstance(rules, str) or not isinstance(rules, Sequence):
            raise SloConfigError(f"{source}: group {i} has no `rules:` list; each group needs `name:` and `rules:`")
        for rule in rules:
            alert = rule.get("alert") if isinstance(rule, Mapping) else None
            if isinstance(alert, str):
                names.add(alert)
    return names


class _RulesDumper(yaml.SafeDumper):
    """Readable rules: multi-line expressions as literal blocks, no YAML anchors."""

    def ignore_aliases(self, data: object) -> bool:
        return True


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|" if "\n" in data else None)


_RulesDumper.add_representer(str, _represent_str)


def render_rules(
    specs: list[SloSpec],
    slices: SliceConfig,
    *,
    events: dict[str, EventSpec],
    outbox: OutboxThresholds | None = OutboxThresholds(),
) -> str:
    header = (
        "# Generated by `controlplane slo rules` from config/slos.yaml and its outbox options; "
        "edit those, not this file.\n"
    )
    groups = rule_groups(specs, slices, events=events, outbox=outbox)
    body = yaml.dump(groups, Dumper=_RulesDumper, sort_keys=False, width=120)
    return header + body
