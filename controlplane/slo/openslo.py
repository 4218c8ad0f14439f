"""OpenSLO v1 import and export for what maps onto the control plane's SLOs.

Usage:

    text = export_openslo(specs)                 # multi-document YAML of `kind: SLO`
    specs = import_openslo(text, source="slos.openslo.yaml")

What maps: `kind: SLO` with an inline indicator whose `ratioMetric` (good/total, or bad/total) or
`thresholdMetric` reads a control plane slice (`metricSource: {type: controlplane, spec: {slice: NAME}}`);
`Occurrences` budgeting (ratio, or latency with `op: lte` and a `value` in seconds) and `Timeslices`
budgeting of a threshold metric (freshness, `timeSliceWindow: 1m`); rolling windows in days or weeks
and calendar months; one objective. Anything else is refused with the reason.

What OpenSLO has no field for travels as `metadata.annotations` (string to string, which OpenSLO tools
keep and ignore): `controlplane/alerting-page`, `controlplane/alerting-ticket` and `controlplane/runbook`
(a runbook name of config/runbooks, or a URL).
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from pydantic import ValidationError

from controlplane.slo.spec import SloConfigError, SloSpec

SOURCE_TYPE = "controlplane"
RUNBOOK_ANNOTATION = f"{SOURCE_TYPE}/runbook"


def _source(slice_name: str, **extra: Any) -> dict:
    return {"metricSource": {"type": SOURCE_TYPE, "spec": {"slice": slice_name, **extra}}}


def to_openslo(spec: SloSpec) -> dict:
    if spec.window.rolling_days is not None:
        window = [{"duration": f"{spec.window.rolling_days}d", "isRolling": True}]
    elif spec.window.calendar == "month":
        window = [
            {"duration": "1M", "isRolling": False, "calendar": {"startTime": "2026-01-01 00:00:00", "timeZone": "UTC"}}
        ]
    else:
        raise SloConfigError(f"slo '{spec.name}': event windows have no OpenSLO form; export refuses it")
    objective: dict[str, Any] = {"displayName": spec.name, "target": spec.objective}
    if spec.sli.kind == "ratio":
        indicator = {
            "ratioMetric": {
                "counter": True,
                "good": _source(spec.slice, events="good"),
                "total": _source(spec.slice, events="total"),
            }
        }
        budgeting = "Occurrences"
    else:
        indicator = {"thresholdMetric": _source(spec.slice, measure="latency_seconds")}
        objective.update({"op": "lte", "value": spec.sli.threshold_seconds})
        budgeting = "Occurrences"
        if spec.sli.kind == "freshness":
            budgeting = "Timeslices"
            objective.update({"timeSliceTarget": spec.sli.percentile, "timeSliceWindow": "1m"})
    return {
        "apiVersion": "openslo/v1",
        "kind": "SLO",
        "metadata": {
            "name": spec.name,
            "displayName": spec.name,
            # Our page/ticket tiers and runbook have no OpenSLO field of their own: they travel as annotations.
            "annotations": {
                f"{SOURCE_TYPE}/alerting-page": str(spec.alerting.page).lower(),
                f"{SOURCE_TYPE}/alerting-ticket": str(spec.alerting.ticket).lower(),
                **({RUNBOOK_ANNOTATION: spec.runbook} if spec.runbook else {}),
            },
        },
        "spec": {
            **({"description": spec.description} if spec.description else {}),
            "service": "sample-platform",
            "indicator": {"metadata": {"name": f"{spec.name}-sli"}, "spec": indicator},
            "timeWindow": window,
            "budgetingMethod": budgeting,
            "objectives": [objective],
        },
    }


def export_openslo(specs: list[SloSpec]) -> str:
    return yaml.safe_dump_all([to_openslo(s) for s in specs], sort_keys=False)


def _slice_of(node: Any, where: str) -> str:
    source = (node or {}).get("metricSource") or {}
    if source.get("type") != SOURCE_TYPE or not isinstance(source.get("spec"), dict) or "slice" not in source["spec"]:
        raise SloConfigError(
            f"{where}: metricSource {source.get('type')!r} does not map: the control plane computes SLIs from its "
            f"slices; use metricSource: {{type: {SOURCE_TYPE}, spec: {{slice: NAME}}}}"
        )
    return str(source["spec"]["slice"])


def _window(spec: dict, where: str) -> dict:
    windows = spec.get("timeWindow") or []
    if len(windows) != 1:
        raise SloConfigError(f"{where}: timeWindow: exactly one window maps, found {len(windows)}")
    window = windows[0]
    duration = str(window.get("duration", ""))
    if window.get("isRolling", False):
        match = re.fullmatch(r"(\d+)([dw])", duration)
        if not match:
            raise SloConfigError(
                f"{where}: timeWindow: rolling duration {duration!r} does not map; use days (30d) or weeks (4w)"
            )
        days = int(match.group(1)) * (7 if match.group(2) == "w" else 1)
        return {"rolling_days": days}
    if duration == "1M":
        return {"calendar": "month"}
    raise SloConfigError(f"{where}: timeWindow: calendar duration {duration!r} does not map; only 1M (a month) does")


def from_openslo(doc: dict, *, index: int, source: str) -> SloSpec:
    name = (doc.get("metadata") or {}).get("name", f"#{index}")
    where = f"{source}: SLO '{name}'"
    if doc.get("apiVersion") != "openslo/v1":
        raise SloConfigError(f"{where}: apiVersion {doc.get('apiVersion')!r} does not map; only openslo/v1 does")
    if doc.get("kind") != "SLO":
        raise SloConfigError(
            f"{where}: kind {doc.get('kind')!r} does not map; only kind: SLO with an inline indicator does"
        )
    spec = doc.get("spec") or {}
    indicator = ((spec.get("indicator") or {}).get("spec")) or {}
    if not indicator:
        raise SloConfigError(f"{where}: indicator: only an inline indicator maps (indicatorRef does not)")
    objectives = spec.get("objectives") or []
    if len(objectives) != 1:
        raise SloConfigError(f"{where}: objectives: exactly one objective maps, found {len(objectives)}")
    objective = objectives[0]
    budgeting = spec.get("budgetingMethod")
    annotations = (doc.get("metadata") or {}).get("annotations") or {}
    data: dict[str, Any] = {
        "name": name,
        "objective": objective.get("target"),
        "window": _window(spec, where),
        "alerting": {
            tier: str(annotations.get(f"{SOURCE_TYPE}/alerting-{tier}", "true")).lower() != "false"
            for tier in ("page", "ticket")
        },
    }
    if spec.get("description"):
        data["description"] = spec["description"]
    if annotations.get(RUNBOOK_ANNOTATION) is not None:
        data["runbook"] = str(annotations[RUNBOOK_ANNOTATION])
    if "ratioMetric" in indicator:
        if budgeting != "Occurrences":
            raise SloConfigError(
                f"{where}: budgetingMethod {budgeting!r} with ratioMetric does not map; use Occurrences"
            )
        ratio = indicator["ratioMetric"]
        data["slice"] = _slice_of(ratio.get("total"), where)
        data["sli"] = {"kind": "ratio"}
    elif "thresholdMetric" in indicator:
        data["slice"] = _slice_of(indicator["thresholdMetric"], where)
        if objective.get("op") not in ("lte", "lt"):
            raise SloConfigError(
                f"{where}: objectives[0].op {objective.get('op')!r} does not map; use lte (at or under value seconds)"
            )
        if budgeting == "Occurrences":
            data["sli"] = {"kind": "latency", "threshold_seconds": objective.get("value")}
        elif budgeting == "Timeslices":
            if objective.get("timeSliceWindow", "1m") != "1m":
                raise SloConfigError(
                    f"{where}: timeSliceWindow {objective.get('timeSliceWindow')!r} does not map; only 1m does"
                )
            data["sli"] = {
                "kind": "freshness",
                "threshold_seconds": objective.get("value"),
                "percentile": objective.get("timeSliceTarget", 0.99),
            }
        else:
            raise SloConfigError(f"{where}: budgetingMethod {budgeting!r} does not map; use Occurrences or Timeslices")
    else:
        raise SloConfigError(f"{where}: indicator: only ratioMetric and thresholdMetric map")
    try:
        return SloSpec.model_validate(data)
    except ValidationError as exc:
        raise SloConfigError(f"{where}: {_problems(exc)}") from None


def _problems(exc: ValidationError) -> str:
    """One `field: message` per problem, a field that came from an annotation named as that annotation."""
    problems = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"])
        if field == "runbook":
            field = f"metadata.annotations.{RUNBOOK_ANNOTATION}"
        message = err["msg"].removeprefix("Value error, ")
        problems.append(f"{field}: {message}" if field else message)
    return "; ".join(problems)


def import_openslo(text: str, *, source: str) -> list[SloSpec]:
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise SloConfigError(f"{source}: not valid YAML ({exc})") from None
    if not docs:
        raise SloConfigError(f"{source}: no OpenSLO documents found")
    return [from_openslo(doc if isinstance(doc, dict) else {}, index=i, source=source) for i, doc in enumerate(docs)]
