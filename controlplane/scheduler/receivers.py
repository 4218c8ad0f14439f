"""Where SLO alert transitions go: Alertmanager (its v2 API) and generic JSON webhooks, and their config.

Usage:

    receivers = receivers_from(settings, specs)   # specs: the `receivers:` of config/scheduler.yaml
    result = receivers[0].send(transition, now=utcnow())   # SendResult: delivered | retry | permanent

An SLO that names a runbook (`runbook:` in config/slos.yaml) sends its link with each alert: Alertmanager's
`runbook_url` annotation and the webhook's `runbook_url` (`SloRunbooks`).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar, Literal
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from controlplane.clock import as_utc, utc_text
from controlplane.config import CONFIG_ERRORS, load_config
from controlplane.runbooks import runbook_link
from controlplane.settings import Settings

log = logging.getLogger(__name__)

# Alertmanager resolves an alert by itself once its endsAt passes. A firing alert is sent with an
# endsAt this far ahead, and `refresh_firing` re-sends it every minute while it still fires (what
# Prometheus does: endsAt = 4 x the resend interval). If the scheduler stops, its alerts resolve
# after at most this long instead of firing forever.
FIRING_TTL = timedelta(minutes=15)
# The names the exported Prometheus rules give these alerts (controlplane.slo.rules).
ALERT_NAMES = {"page": "SLOErrorBudgetBurnPage", "ticket": "SLOErrorBudgetBurnTicket"}
WEBHOOK_VERSION = 1

Outcome = Literal["delivered", "retry", "permanent"]
RunbookLookup = Callable[[str], str | None]  # SLO name -> the link of its runbook, if it names one


class ReceiverConfigError(ValueError):
    """A receiver that cannot be built as configured; the message names it and the fix."""


class ReceiverSpec(BaseModel):
    """One receiver as configured in the scheduler's config file (`receivers:`).

    ReceiverSpec(name="oncall", kind="alertmanager", url="http://alertmanager:9093")
    ReceiverSpec(name="chatops", kind="webhook", url="https://hooks.example/slo", bearer_token_env="HOOK_TOKEN")
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    kind: Literal["alertmanager", "webhook"]
    url: str = Field(description="Alertmanager's base URL (without /api/v2), or the webhook's full URL.")
    headers: dict[str, str] = Field(default_factory=dict, description="Extra request headers (not secrets).")
    bearer_token_env: str | None = Field(
        None, description="Name of an environment variable whose value is sent as `Authorization: Bearer ...`."
    )
    timeout_seconds: float = Field(10.0, gt=0, le=300)

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        url = url.strip()
        if not url.startswith(("http://", "https://")) or len(url) <= len("https://"):
            raise ValueError(f"{url!r} is not an http:// or https:// URL")
        return url.rstrip("/")


@dataclass(frozen=True)
class Transition:
    """An alert transition as stored (`alert_transitions`), its `detail` JSON read back."""

    id: str
    slo: str
    slice: str
    severity: str  # page | ticket
    state: str  # firing | resolved
    at: datetime
    started_at: datetime
    detail: Mapping[str, Any] = field(default_factory=dict)
    # For a firing transition already followed by its resolution: when it resolved. Sent as endsAt,
    # so a firing alert delivered late (after retries) does not re-open an alert already resolved.
    ended_at: datetime | None = None

    @classmethod
    def from_row(cls, row: Any, *, ended_at: datetime | None = None) -> Transition:
        detail = json.loads(row.detail) if row.detail else {}
        return cls(
            id=row.id,
            slo=row.slo,
            slice=row.slice,
            severity=row.severity,
            state=row.state,
            at=as_utc(row.at),
            started_at=as_utc(row.started_at),
            detail=detail if isinstance(detail, dict) else {},
            ended_at=as_utc(ended_at) if ended_at is not None else None,
        )

    @property
    def alertname(self) -> str:
        return ALERT_NAMES.get(self.severity, f"SLOErrorBudgetBurn{self.severity.capitalize()}")

    @property
    def burn_rates(self) -> dict[str, float]:
        rates = self.detail.get("burn_rates")
        return {str(k): float(v) for k, v in rates.items()} if isinstance(rates, dict) else {}


@dataclass(frozen=True)
class SendResult:
    """What one attempt came to: `delivered` (2xx), `retry` (network error, 5xx, 408, 429) or
    `permanent` (any other status: retrying the same request cannot succeed)."""

    outcome: Outcome
    error: str | None = None


def classify(status: int) -> Outcome:
    if 200 <= status < 300:
        return "delivered"
    if status >= 500 or status in (408, 429):
        return "retry"
    return "permanent"


def dashboard_link(dashboard_url: str, slo: str) -> str:
    return f"{dashboard_url.rstrip('/')}/oncall?slo={quote(slo, safe='')}"


def _thresholds_text(transition: Transition) -> str:
    """'1h and 5m above 14.4, or 6h and 30m above 6' from the detail's thresholds, if it has them."""
    thresholds = transition.detail.get("thresholds")
    if isinstance(thresholds, dict):
        thresholds = thresholds.get(transition.severity)
    if not isinstance(thresholds, list):
        return ""
    rules = [
        f"{t['long']} and {t['short']} above {t['burn']:g}"
        for t in thresholds
        if isinstance(t, dict) and {"long", "short", "burn"} <= t.keys()
    ]
    return ", or ".join(rules)


def describe(transition: Transition) -> str:
    """The human text of an alert: burn rates per window, the rule's thresholds, budget left."""
    rates = ", ".join(f"{w} {r:.2f}" for w, r in transition.burn_rates.items()) or "none recorded"
    parts = [f"Burn rates: {rates}."]
    rule = _thresholds_text(transition)
    if rule:
        parts.append(f"{transition.severity.capitalize()} fires when burn rates over {rule}.")
    objective, remaining = transition.detail.get("objective"), transition.detail.get("budget_remaining")
    if isinstance(objective, int | float):
        parts.append(f"Objective {100 * objective:g}%.")
    if isinstance(remaining, int | float):
        parts.append(f"Error budget remaining {100 * remaining:.1f}%.")
    return " ".join(parts)


def alertmanager_alert(
    transition: Transition, *, dashboard_url: str, now: datetime, runbook_url: str | None = None
) -> dict[str, Any]:
    """One alert of Alertmanager's v2 API (`postableAlert`) for a transition, as of `now`; with the SLO's
    runbook as the `runbook_url` annotation (the name Prometheus alerting rules use)."""
    link = dashboard_link(dashboard_url, transition.slo)
    if transition.state == "resolved":
        ends_at = transition.at
        summary = f"{transition.slo} has stopped burning its error budget too fast ({transition.severity})"
    else:
        ends_at = transition.ended_at or max(as_utc(now), transition.at) + FIRING_TTL
        summary = f"{transition.slo} is burning its error budget too fast ({transition.severity})"
    return {
        "labels": {
            "alertname": transition.alertname,
            "slo": transition.slo,
            "slice": transition.slice,
            "severity": transition.severity,
        },
        "annotations": {
            "summary": summary,
            "description": describe(transition),
            "dashboard": link,
            "transition_id": transition.id,
            **({"runbook_url": runbook_url} if runbook_url else {}),
        },
        "startsAt": utc_text(transition.started_at),
        "endsAt": utc_text(ends_at),
        "generatorURL": link,
    }


def webhook_document(transition: Transition, *, dashboard_url: str, runbook_url: str | None = None) -> dict[str, Any]:
    """The generic webhook's JSON body (documented in the README's "Alert delivery"); `runbook_url` is null
    when the SLO names no runbook."""
    detail = transition.detail
    return {
        "version": WEBHOOK_VERSION,
        "transition_id": transition.id,
        "alertname": transition.alertname,
        "slo": transition.slo,
        "slice": transition.slice,
        "severity": transition.severity,
        "state": transition.state,
        "at": utc_text(transition.at),
        "started_at": utc_text(transition.started_at),
        "burn_rates": transition.burn_rates,
        "thresholds": detail.get("thresholds"),
        "objective": detail.get("objective"),
        "budget_remaining": detail.get("budget_remaining"),
        "exemplars": list(detail.get("exemplars") or []),
        "link": dashboard_link(dashboard_url, transition.slo),
        "runbook_url": runbook_url,
    }


class SloRunbooks:
    """Each SLO's runbook link, for its alerts. The SLO file is read again only when it changes (one stat
    per alert sent); a file that cannot be read leaves the links last read, so a delivery never fails for it.

    runbooks = SloRunbooks(settings)
    runbooks("bet-placement-availability")   # 'http://127.0.0.1:8501/runbook?name=bet-placement', or None
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._read: tuple[int, int, int] | None = None  # the SLO file's (mtime_ns, size, inode) when read
        self._links: dict[str, str] = {}

    def __call__(self, slo: str) -> str | None:
        try:
            stat = os.stat(self.settings.slos_path)
            version = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        except OSError:
            version = None
        with self._lock:
            if version is not None and version != self._read:
                self._read = version  # a broken file is reported once, not at every alert
                try:
                    specs = load_config(self.settings).specs
                except CONFIG_ERRORS as exc:
                    log.warning("alerts keep the runbook links read before: %s", exc)
                else:
                    url = self.settings.dashboard_url
                    self._links = {s.name: runbook_link(s.runbook, dashboard_url=url) for s in specs if s.runbook}
            return self._links.get(slo)


@dataclass
class Receiver:
    """Base of the receivers: one HTTP POST per attempt, its status classified by `classify`."""

    name: str
    url: str
    dashboard_url: str = "http://127.0.0.1:8501"
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout_seconds: float = 10.0
    transport: httpx.BaseTransport | None = field(default=None, repr=False)  # tests: httpx.MockTransport
    runbooks: RunbookLookup | None = field(default=None, repr=False, compare=False)  # e.g. SloRunbooks
    kind: ClassVar[str] = ""
    refreshes_firing: ClassVar[bool] = False  # re-sent every minute while firing (see FIRING_TTL)

    def endpoint(self) -> str:
        return self.url

    def body(self, transition: Transition, *, now: datetime) -> Any:
        raise NotImplementedError

    def request_headers(self, transition: Transition) -> dict[str, str]:
        return dict(self.headers)

    def runbook_url(self, transition: Transition) -> str | None:
        return self.runbooks(transition.slo) if self.runbooks is not None else None

    def send(self, transition: Transition, *, now: datetime) -> SendResult:
        """One attempt to deliver `transition`; never raises for the receiver's failures."""
        endpoint = self.endpoint()
        try:
            with httpx.Client(timeout=self.timeout_seconds, transport=self.transport) as client:
                response = client.post(
                    endpoint, json=self.body(transition, now=now), headers=self.request_headers(transition)
                )
        except httpx.HTTPError as exc:
            return SendResult("retry", f"{type(exc).__name__} from {endpoint}: {exc}"[:500])
        outcome = classify(response.status_code)
        if outcome == "delivered":
            return SendResult("delivered")
        text = " ".join(response.text.split())[:200]
        error = f"HTTP {response.status_code} from {endpoint}: {text}"
        if outcome == "permanent":
            error += " (a 4xx other than 408/429 is permanent: not retried; fix the receiver or its configuration)"
        return SendResult(outcome, error)


@dataclass
class AlertmanagerReceiver(Receiver):
    """Alertmanager's v2 API: `POST {url}/api/v2/alerts` with a list of one alert.

    am = AlertmanagerReceiver("oncall", "http://127.0.0.1:9093")
    am.send(transition, now=utcnow())
    """

    kind: ClassVar[str] = "alertmanager"
    refreshes_firing: ClassVar[bool] = True

    def endpoint(self) -> str:
        return f"{self.url.rstrip('/')}/api/v2/alerts"

    def body(self, transition: Transition, *, now: datetime) -> Any:
        return [
            alertmanager_alert(
                transition, dashboard_url=self.dashboard_url, now=now, runbook_url=self.runbook_url(transition)
            )
        ]


@dataclass
class WebhookReceiver(Receiver):
    """A generic JSON webhook: `POST {url}` of `webhook_document`, with `Idempotency-Key: <transition id>`.

    hook = WebhookReceiver("chatops", "https://hooks.example/slo", headers={"Authorization": "Bearer ..."})
    """

    kind: ClassVar[str] = "webhook"

    def body(self, transition: Transition, *, now: datetime) -> Any:
        return webhook_document(transition, dashboard_url=self.dashboard_url, runbook_url=self.runbook_url(transition))

    def request_headers(self, transition: Transition) -> dict[str, str]:
        return {**self.headers, "Idempotency-Key": transition.id}


KINDS: dict[str, type[Receiver]] = {"alertmanager": AlertmanagerReceiver, "webhook": WebhookReceiver}


def _build(
    spec: ReceiverSpec, settings: Settings, environ: Mapping[str, str], where: str, runbooks: RunbookLookup
) -> Receiver:
    headers = dict(spec.headers)
    if spec.bearer_token_env:
        token = environ.get(spec.bearer_token_env, "")
        if not token:
            raise ReceiverConfigError(
                f"{where}: bearer_token_env names {spec.bearer_token_env}, which is not set or empty; "
                f"set it to the receiver's token, or remove bearer_token_env"
            )
        headers["Authorization"] = f"Bearer {token}"
    return KINDS[spec.kind](
        name=spec.name,
        url=spec.url,
        dashboard_url=settings.dashboard_url,
        headers=headers,
        timeout_seconds=spec.timeout_seconds,
        runbooks=runbooks,
    )


def _from_setting(variable: str, name: str, kind: str, url: str) -> ReceiverSpec:
    try:
        return ReceiverSpec(name=name, kind=kind, url=url)  # type: ignore[arg-type]
    except ValidationError as exc:
        problem = "; ".join(e["msg"] for e in exc.errors())
        raise ReceiverConfigError(f"{variable}: {problem}; use a URL like http://127.0.0.1:9093") from None


def receivers_from(
    settings: Settings, specs: Sequence[ReceiverSpec] = (), *, environ: Mapping[str, str] | None = None
) -> list[Receiver]:
    """The receivers of the scheduler's config file, plus the simple-case ones from the settings:
    CONTROLPLANE_ALERTMANAGER_URL (named `alertmanager`) and CONTROLPLANE_ALERT_WEBHOOK_URL (`webhook`).
    They share one `SloRunbooks` of the settings' SLO file."""
    environ = os.environ if environ is None else environ
    named = [(spec, f"receiver {spec.name!r}") for spec in specs]
    if settings.alertmanager_url.strip():
        variable = "CONTROLPLANE_ALERTMANAGER_URL"
        named.append((_from_setting(variable, "alertmanager", "alertmanager", settings.alertmanager_url), variable))
    if settings.alert_webhook_url.strip():
        variable = "CONTROLPLANE_ALERT_WEBHOOK_URL"
        named.append((_from_setting(variable, "webhook", "webhook", settings.alert_webhook_url), variable))
    seen: dict[str, str] = {}
    receivers = []
    runbooks = SloRunbooks(settings)
    for spec, where in named:
        if spec.name in seen:
            raise ReceiverConfigError(
                f"{where}: the receiver name {spec.name!r} is already used by {seen[spec.name]}; "
                "give each receiver its own name"
            )
        seen[spec.name] = where
        receivers.append(_build(spec, settings, environ, where, runbooks))
    return receivers
