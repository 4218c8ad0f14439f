"""Prometheus recording and alerting rules for the SLOs, over the platform's own Prometheus metrics.

Usage:

    text = render_rules(specs, slices, events=events)   # YAML for Prometheus `rule_files`

Recording rules `slo:sli_error:ratio_rate<window>` (5m ... 3d) hold each SLO's error ratio; alerting
rules `SLOErrorBudgetBurnPage` and `SLOErrorBudgetBurnTicket` are the Workbook's multi-window
multi-burn-rate alerts, with thresholds scaled like `controlplane slo status` does. Calendar-month
windows are treated as 30 days (Prometheus rules are static). As in Prometheus generally, a window
with no requests at all has no ratio (0/0), so no alert fires on it.
"""

from __future__ import annotations

import re

import yaml

from controlplane.slices import SliceConfig, label
from controlplane.slo import BURN_WINDOWS, PAGE_RULES, TICKET_RULES
from controlplane.slo_spec import EventSpec, SloConfigError, SloSpec

REQUESTS = "platform_http_requests_total"
DURATION = "platform_http_request_duration_seconds"
ODDS_LAG = "platform_odds_publish_lag_seconds"
PROM_METRICS = {"http.server.request.duration": DURATION, "platform.odds.publish_lag": ODDS_LAG}


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
    return f"{method},{route}"


def _bad_codes(spec: SloSpec, slices: SliceConfig) -> str:
    slice_spec = next(s for s in slices.slices if s.name == spec.slice)
    if slice_spec.bad.http_status_min != 500:
        raise SloConfigError(
            f"slo '{spec.name}': only 'bad = 5xx' (http_status_min: 500) maps to Prometheus rules; "
            f"slice {spec.slice!r} has {slice_spec.bad.http_status_min}"
        )
    return 'code=~"5.."'


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
    selector = _selector(spec, slices)
    if kind == "ratio":
        bad = f"sum(rate({REQUESTS}{{{selector},{_bad_codes(spec, slices)}}}[{window}]))"
        return f"({bad} or vector(0))\n/\nsum(rate({REQUESTS}{{{selector}}}[{window}]))"
    le = label(spec.sli.threshold_seconds or 0.0)
    if le not in slices.labels:
        raise SloConfigError(
            f"slo '{spec.name}': latency threshold {spec.sli.threshold_seconds}s is not a histogram bucket "
            f"boundary (boundaries: {', '.join(str(b) for b in slices.boundaries)}); pick one of those"
        )
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


def rule_groups(specs: list[SloSpec], slices: SliceConfig, *, events: dict[str, EventSpec]) -> dict:
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
    return {"groups": groups}


class _RulesDumper(yaml.SafeDumper):
    """Readable rules: multi-line expressions as literal blocks, no YAML anchors."""

    def ignore_aliases(self, data: object) -> bool:
        return True


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|" if "\n" in data else None)


_RulesDumper.add_representer(str, _represent_str)


def render_rules(specs: list[SloSpec], slices: SliceConfig, *, events: dict[str, EventSpec]) -> str:
    header = "# Generated by `controlplane slo rules` from config/slos.yaml; edit the SLOs, not this file.\n"
    body = yaml.dump(rule_groups(specs, slices, events=events), Dumper=_RulesDumper, sort_keys=False, width=120)
    return header + body
