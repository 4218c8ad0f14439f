"""The readiness checklist file (`config/checklist.yaml`), validated with errors that name the file,
the check and the field.

Usage:

    checklist = load_checklist(Path("config/checklist.yaml"), slo_names={"bet-placement-availability"})
    for check in checklist.checks: check.evaluator.type

Each check has one evaluator, chosen by its `type` (see EVALUATOR_TYPES and the README). Its `runbook` is
a runbook name (the file NAME.md of config/runbooks), an http(s) URL, or an instruction in words (shown
as it is, as before runbooks were files).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from controlplane.clock import parse_duration
from controlplane.config_files import explain, read_yaml
from controlplane.runbooks import link_for, missing_problem

CHECK_ID = r"^[a-z0-9][a-z0-9-]{0,63}$"
PROBE_ROUTE = r"^GET /[^\s{}]*$"
SLICES = ("bet-placement", "settlement", "login", "odds-feed")
BURN_ALERTS = ("SLOErrorBudgetBurnPage",)
OUTBOX_ALERTS = ("OutboxQueueDepthHigh", "OutboxRelayLagHigh")


class ChecklistConfigError(ValueError):
    """The checklist file is wrong; the message names the file, the check, the field and the fix."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def _duration(value: Any) -> str:
    parse_duration(value)  # raises ValueError with the accepted forms
    return str(value).strip()


Duration = Annotated[str, Field(description="e.g. 90s, 15m, 24h, 7d")]


class ErrorBudget(Strict):
    """Pass when the SLO has at least `min_remaining` of its error budget left."""

    type: Literal["error_budget"]
    slo: str
    min_remaining: float = Field(gt=0, le=1, description="fraction of the budget, e.g. 0.5")


class NoPageAlert(Strict):
    """Pass when the SLO's page-level burn alert did not fire in the last `hours` (replayed minute by minute)."""

    type: Literal["no_page_alert"]
    slo: str
    hours: int = Field(ge=1, le=720)


class ProbeIdempotency(Strict):
    """The same bet sent twice with one Idempotency-Key makes one bet and a replay (probe account)."""

    type: Literal["probe_idempotency"]
    stake_minor: int = Field(100, gt=0, le=10_000)


class ProbeTrace(Strict):
    """A probe bet's trace reaches the collector's kept traces with the platform's log line inside it
    (`expect: logs`), or with the traces of its relay and settlement linking to it (`expect: links`)."""

    type: Literal["probe_trace"]
    expect: Literal["logs", "links"] = "logs"
    wait_seconds: int = Field(30, ge=1, le=300)


class ProbeLoginLimit(Strict):
    """A burst of failed logins for a probe user gets 429 with Retry-After within `max_attempts`."""

    type: Literal["probe_login_limit"]
    max_attempts: int = Field(30, ge=2, le=200)


class ProbeLatency(Strict):
    """With a synthetic-only latency fault on `route`, a probe request is answered within the platform's
    request timeout, and that timeout is at most `max_timeout_seconds`."""

    type: Literal["probe_latency"]
    route: str = Field("GET /v1/markets", pattern=PROBE_ROUTE, description="a GET route without path parameters")
    latency_ms: int = Field(250, ge=1, le=60_000)
    max_timeout_seconds: float = Field(30.0, gt=0)


class ProbeShedding(Strict):
    """Past the platform's bound for synthetic work, a probe request is shed: 503 with Retry-After."""

    type: Literal["probe_shedding"]
    route: str = Field("GET /v1/markets", pattern=PROBE_ROUTE, description="a GET route without path parameters")
    latency_ms: int = Field(1500, ge=100, le=30_000)


Signal = Literal["risk_cache_hit_ratio", "outbox_depth", "relay_lag_seconds", "lock_timeout_rate"]


class ScrapedSignal(Strict):
    """A signal scraped from the platform's /metrics against a threshold; older than `max_age` is unknown.

    Gauges (outbox_depth, relay_lag_seconds) take the newest sample. Counters are read over `window`:
    risk_cache_hit_ratio is hits / all lookups, lock_timeout_rate is lock timeouts per minute."""

    type: Literal["scraped_signal"]
    signal: Signal
    at_least: float | None = None
    at_most: float | None = None
    max_age: Duration = "2m"
    window: Duration = "15m"
    target: str | None = Field(None, description="one scrape target URL; default: every target")

    _max_age = field_validator("max_age", "window")(_duration)

    @model_validator(mode="after")
    def _one_bound(self) -> ScrapedSignal:
        if (self.at_least is None) == (self.at_most is None):
            raise ValueError("give exactly one of at_least or at_most")
        return self


class StreamLag(Strict):
    """The audit consumer group on the event stream is at most `at_most_seconds` behind: the oldest
    event it has not acked is younger than that (read from the broker, now)."""

    type: Literal["stream_lag"]
    durable: str = Field("audit-ingest", min_length=1, max_length=200)
    at_most_seconds: float = Field(30.0, gt=0)


class DeadLetters(Strict):
    """No dead letter waits on the event stream for a fix and a replay (read from the broker, now)."""

    type: Literal["dead_letters"]
    at_most: int = Field(0, ge=0)


class SloCoverage(Strict):
    """An SLO is defined for each of `slices`."""

    type: Literal["slo_coverage"]
    slices: list[str] = Field(default_factory=lambda: list(SLICES), min_length=1)


class PrometheusRules(Strict):
    """The exported Prometheus rules file holds each alert in `alerts` (write it with `controlplane slo rules`)."""

    type: Literal["prometheus_rules"]
    file: Path = Path("slo-rules.yml")
    alerts: list[str] = Field(default_factory=lambda: [*BURN_ALERTS, *OUTBOX_ALERTS], min_length=1)


DrillKind = Literal["gameday", "failover", "restore"]


class AuditEvidence(Strict):
    """The audit log holds one of `kinds` within `within_days`: a drill recorded with `controlplane drill
    record`, and for `gameday` also a game-day fault set through the platform's admin API."""

    type: Literal["audit_evidence"]
    kinds: list[DrillKind] = Field(min_length=1)
    within_days: int = Field(ge=1, le=366)


class BudgetPolicyCheck(Strict):
    """Pass unless a slice (every slice, or those in `slices`) is frozen by the error budget policy
    (config/budget_policy.yaml); with `fail_on: caution`, also while one is in caution."""

    type: Literal["budget_policy"]
    slices: list[str] | None = Field(None, min_length=1)
    fail_on: Literal["freeze", "caution"] = "freeze"


class Attestation(Strict):
    """A named person attested this check (`controlplane checklist attest`) and it has not expired."""

    type: Literal["attestation"]


Evaluator = Annotated[
    ErrorBudget
    | NoPageAlert
    | ProbeIdempotency
    | ProbeTrace
    | ProbeLoginLimit
    | ProbeLatency
    | ProbeShedding
    | ScrapedSignal
    | StreamLag
    | DeadLetters
    | SloCoverage
    | PrometheusRules
    | AuditEvidence
    | BudgetPolicyCheck
    | Attestation,
    Field(discriminator="type"),
]
EVALUATOR_TYPES = (
    "error_budget",
    "no_page_alert",
    "probe_idempotency",
    "probe_trace",
    "probe_login_limit",
    "probe_latency",
    "probe_shedding",
    "scraped_signal",
    "stream_lag",
    "dead_letters",
    "slo_coverage",
    "prometheus_rules",
    "audit_evidence",
    "budget_policy",
    "attestation",
)


class CheckSpec(Strict):
    id: str = Field(pattern=CHECK_ID)
    title: str = Field(min_length=1, max_length=200)
    severity: Literal["blocking", "warning"]
    owner: str = Field(min_length=1, max_length=200)
    runbook: str = Field(
        min_length=1,
        max_length=2000,
        description="a runbook name (config/runbooks/NAME.md), a URL, or an instruction shown on failure",
    )
    timeout_seconds: float = Field(30.0, gt=0, le=600)
    evaluator: Evaluator

    @property
    def is_probe(self) -> bool:
        return self.evaluator.type.startswith("probe_")

    def runbook_link(self, *, runbooks: Path, dashboard_url: str) -> str | None:
        """Where the runbook opens: a URL, or the dashboard's page for a file of `runbooks`; None for words."""
        return link_for(self.runbook, directory=runbooks, dashboard_url=dashboard_url)


class ChecklistFile(Strict):
    checks: list[CheckSpec] = Field(min_length=1)


class Checklist(BaseModel):
    """A validated checklist and where it came from (path and content digest, recorded with each run)."""

    checks: list[CheckSpec]
    path: str
    digest: str

    def check(self, check_id: str) -> CheckSpec:
        for check in self.checks:
            if check.id == check_id:
                return check
        known = ", ".join(c.id for c in self.checks)
        raise ChecklistConfigError(f"{self.path}: no check {check_id!r} (checks: {known})")


def _explain(path: Path, raw: Any, exc: ValidationError) -> str:
    # `explain` names items by `name`; checks are named by `id`.
    if isinstance(raw, dict) and isinstance(raw.get("checks"), list):
        named = {
            **raw,
            "checks": [{**c, "name": c.get("id")} if isinstance(c, dict) else c for c in raw["checks"]],
        }
    else:
        named = raw
    return explain(path, named, exc, list_key="checks", what="check")


def load_checklist(path: Path, *, slo_names: set[str] | None = None, runbooks: Path | None = None) -> Checklist:
    """Read and validate the checklist; `slo_names`, when given, are the SLOs a check may name, and
    `runbooks`, the runbooks directory, whose names a check's runbook may not misspell."""
    path = Path(path)
    raw = read_yaml(
        path, error=ChecklistConfigError, missing_hint="copy config/checklist.yaml from the project and edit it"
    )
    try:
        parsed = ChecklistFile.model_validate(raw)
    except ValidationError as exc:
        raise ChecklistConfigError(_explain(path, raw, exc)) from None
    ids = [c.id for c in parsed.checks]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ChecklistConfigError(f"{path}: check ids must be unique; repeated: {', '.join(dupes)}")
    for check in parsed.checks:
        slo = getattr(check.evaluator, "slo", None)
        if slo_names is not None and slo is not None and slo not in slo_names:
            known = ", ".join(sorted(slo_names)) or "none defined"
            raise ChecklistConfigError(
                f"{path}: check '{check.id}': evaluator.slo: no SLO named {slo!r} in the SLO file (known: {known})"
            )
        problem = missing_problem(runbooks, check.runbook, free_text=True) if runbooks is not None else None
        if problem:
            raise ChecklistConfigError(f"{path}: check '{check.id}': runbook: {problem}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return Checklist(checks=parsed.checks, path=str(path), digest=digest)
