"""Configuration facts: an SLO for each slice that matters, and the exported Prometheus rules hold the
alerts a betting platform needs (burn rate, outbox queue depth, broker lag)."""

from __future__ import annotations

from controlplane.checklist.context import CheckContext
from controlplane.checklist.results import Outcome
from controlplane.checklist.spec import PrometheusRules, SloCoverage
from controlplane.slo.rules import alert_names
from controlplane.slo.spec import SloConfigError


def slo_coverage(params: SloCoverage, ctx: CheckContext) -> Outcome:
    by_slice: dict[str, list[str]] = {}
    for spec in ctx.slos:
        by_slice.setdefault(spec.slice, []).append(spec.name)
    covered = {s: sorted(by_slice.get(s, [])) for s in params.slices}
    missing = [s for s, names in covered.items() if not names]
    evidence = {"slos_path": str(ctx.settings.slos_path), "slices": covered, "missing": missing}
    if missing:
        return Outcome.failed(f"no SLO for {', '.join(missing)}; add one to {ctx.settings.slos_path}", **evidence)
    return Outcome.passed(f"every slice has an SLO ({', '.join(params.slices)})", **evidence)


def prometheus_rules(params: PrometheusRules, ctx: CheckContext) -> Outcome:
    path = params.file
    evidence: dict = {"file": str(path), "required": params.alerts}
    try:
        text = path.read_text()
    except FileNotFoundError:
        return Outcome.failed(
            f"{path} does not exist; write it with `controlplane slo rules --out {path}` and load it into Prometheus",
            **evidence,
        )
    except OSError as exc:
        return Outcome.unknown(f"cannot read {path}: {exc.strerror or exc}", **evidence)
    try:
        found = alert_names(text, source=str(path))
    except SloConfigError as exc:
        return Outcome.failed(f"{path} is not a Prometheus rules file: {exc}", **evidence)
    missing = [name for name in params.alerts if name not in found]
    evidence |= {"found": sorted(found), "missing": missing}
    if missing:
        return Outcome.failed(
            f"{path} lacks {', '.join(missing)}; regenerate it with `controlplane slo rules --out {path}`", **evidence
        )
    return Outcome.passed(f"{path} holds {', '.join(params.alerts)}", **evidence)
