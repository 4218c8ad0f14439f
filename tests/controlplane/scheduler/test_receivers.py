"""Receivers: the Alertmanager and webhook payloads, how answers are classified, and their config."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from controlplane.config import ControlPlaneConfig
from controlplane.scheduler import receivers as receivers_module
from controlplane.scheduler.receivers import (
    FIRING_TTL,
    AlertmanagerReceiver,
    ReceiverConfigError,
    ReceiverSpec,
    SloRunbooks,
    Transition,
    WebhookReceiver,
    alertmanager_alert,
    classify,
    receivers_from,
    webhook_document,
)
from controlplane.settings import Settings
from tests.controlplane.scheduler.alerting import DETAIL

CONFIG = Path(__file__).parents[3] / "config"

NO_URLS = Settings(alertmanager_url="", alert_webhook_url="")
AT = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)
STARTED = AT - timedelta(minutes=7)


def transition(state: str = "firing", **changes: object) -> Transition:
    values: dict = {
        "id": "a" * 32,
        "slo": "bet-placement-availability",
        "slice": "bet-placement",
        "severity": "page",
        "state": state,
        "at": AT if state == "resolved" else STARTED,
        "started_at": STARTED,
        "detail": DETAIL,
    }
    return Transition(**(values | changes))


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        *[(200, "delivered"), (202, "delivered"), (204, "delivered")],
        *[(400, "permanent"), (401, "permanent"), (404, "permanent"), (422, "permanent")],
        *[(408, "retry"), (429, "retry"), (500, "retry"), (503, "retry")],
    ],
)
def test_answers_are_classified(status: int, outcome: str) -> None:
    assert classify(status) == outcome


def test_a_firing_alert_carries_the_rule_names_labels_burn_rates_and_a_dashboard_link() -> None:
    now = STARTED + timedelta(minutes=2)
    alert = alertmanager_alert(transition(), dashboard_url="https://ops.example/", now=now)
    assert alert["labels"] == {
        "alertname": "SLOErrorBudgetBurnPage",
        "slo": "bet-placement-availability",
        "slice": "bet-placement",
        "severity": "page",
    }
    assert alert["annotations"]["dashboard"] == "https://ops.example/oncall?slo=bet-placement-availability"
    assert "1h 15.25" in alert["annotations"]["description"]
    assert "1h and 5m above 14.4" in alert["annotations"]["description"]
    assert alert["startsAt"] == "2025-05-01T11:53:00Z"
    # Open, but not forever: the scheduler refreshes it every minute while it still fires.
    assert alert["endsAt"] == (now + FIRING_TTL).isoformat().replace("+00:00", "Z")


def test_a_resolved_alert_ends_when_it_resolved() -> None:
    alert = alertmanager_alert(transition("resolved"), dashboard_url="http://x", now=AT + timedelta(hours=1))
    assert alert["startsAt"] == "2025-05-01T11:53:00Z" and alert["endsAt"] == "2025-05-01T12:00:00Z"


def test_a_firing_alert_sent_after_its_resolution_does_not_reopen_it() -> None:
    late = transition(ended_at=AT)
    alert = alertmanager_alert(late, dashboard_url="http://x", now=AT + timedelta(hours=1))
    assert alert["endsAt"] == "2025-05-01T12:00:00Z"


def test_ticket_alerts_are_named_as_the_exported_rules_name_them() -> None:
    assert transition(severity="ticket").alertname == "SLOErrorBudgetBurnTicket"


def test_the_webhook_posts_the_documented_document_with_an_idempotency_key() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(202)

    hook = WebhookReceiver("hook", "https://hooks.example/slo", transport=httpx.MockTransport(handler))
    assert hook.send(transition(), now=AT).outcome == "delivered"
    (request,) = seen
    assert request.headers["Idempotency-Key"] == "a" * 32
    body = json.loads(request.content)
    assert body == webhook_document(transition(), dashboard_url="http://127.0.0.1:8501")
    assert body["state"] == "firing" and body["burn_rates"]["1h"] == 15.25
    assert body["exemplars"] == DETAIL["exemplars"]
    assert body["link"] == "http://127.0.0.1:8501/oncall?slo=bet-placement-availability"


def test_alertmanager_posts_a_list_to_its_v2_api() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    am = AlertmanagerReceiver("am", "http://am.example:9093/", transport=httpx.MockTransport(handler))
    assert am.send(transition(), now=AT).outcome == "delivered"
    assert str(seen[0].url) == "http://am.example:9093/api/v2/alerts"
    assert json.loads(seen[0].content)[0]["labels"]["alertname"] == "SLOErrorBudgetBurnPage"


@pytest.mark.parametrize(
    ("answer", "outcome", "error"),
    [
        (httpx.Response(503, text="overloaded"), "retry", "HTTP 503 from https://h.example/x: overloaded"),
        (httpx.Response(400, text="bad\nbody"), "permanent", "HTTP 400 from https://h.example/x: bad body"),
        (httpx.ConnectError("connection refused"), "retry", "ConnectError from https://h.example/x"),
    ],
)
def test_failures_say_what_and_where(answer: object, outcome: str, error: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(answer, Exception):
            raise answer
        assert isinstance(answer, httpx.Response)
        return answer

    result = WebhookReceiver("h", "https://h.example/x", transport=httpx.MockTransport(handler)).send(
        transition(), now=AT
    )
    assert result.outcome == outcome
    assert result.error is not None and result.error.startswith(error)
    assert ("permanent: not retried" in result.error) == (outcome == "permanent")


def test_settings_urls_make_the_simple_case_receivers() -> None:
    settings = Settings(alertmanager_url="http://127.0.0.1:9093", alert_webhook_url="https://hooks.example/slo")
    receivers = receivers_from(settings, [])
    assert [(r.name, r.kind, r.url) for r in receivers] == [
        ("alertmanager", "alertmanager", "http://127.0.0.1:9093"),
        ("webhook", "webhook", "https://hooks.example/slo"),
    ]
    assert receivers_from(Settings(alertmanager_url="", alert_webhook_url=""), []) == []


def test_config_file_receivers_with_a_bearer_token_from_the_environment() -> None:
    spec = ReceiverSpec.model_validate(
        {"name": "chatops", "kind": "webhook", "url": "https://hooks.example/slo", "bearer_token_env": "HOOK_TOKEN"}
    )
    (hook,) = receivers_from(NO_URLS, [spec], environ={"HOOK_TOKEN": "s3cret"})
    assert hook.headers["Authorization"] == "Bearer s3cret"
    with pytest.raises(ReceiverConfigError, match="HOOK_TOKEN, which is not set"):
        receivers_from(NO_URLS, [spec], environ={})


def test_receiver_config_errors_name_the_fix() -> None:
    spec = ReceiverSpec(name="alertmanager", kind="alertmanager", url="http://am:9093")
    with pytest.raises(ReceiverConfigError, match="already used by receiver 'alertmanager'"):
        receivers_from(Settings(alertmanager_url="http://other:9093"), [spec])
    with pytest.raises(ReceiverConfigError, match=r"CONTROLPLANE_ALERT_WEBHOOK_URL: .*not an http"):
        receivers_from(Settings(alertmanager_url="", alert_webhook_url="hooks.example/slo"), [])
    with pytest.raises(ValueError, match="kind"):
        ReceiverSpec.model_validate({"name": "x", "kind": "pager", "url": "http://x"})


RUNBOOK = "https://ops.example/runbook?name=bet-placement"


def test_an_slo_runbook_is_alertmanagers_runbook_url_annotation_and_the_webhooks_runbook_url() -> None:
    alert = alertmanager_alert(transition(), dashboard_url="https://ops.example", now=AT, runbook_url=RUNBOOK)
    assert alert["annotations"]["runbook_url"] == RUNBOOK
    resolved = alertmanager_alert(transition("resolved"), dashboard_url="x", now=AT, runbook_url=RUNBOOK)
    assert resolved["annotations"]["runbook_url"] == RUNBOOK
    # No runbook: no annotation at all (Alertmanager's annotations are strings), and null in the webhook.
    assert "runbook_url" not in alertmanager_alert(transition(), dashboard_url="x", now=AT)["annotations"]
    assert webhook_document(transition(), dashboard_url="x", runbook_url=RUNBOOK)["runbook_url"] == RUNBOOK
    assert webhook_document(transition(), dashboard_url="x")["runbook_url"] is None


def _slo_file(path: Path, runbook: str | None) -> None:
    text = (CONFIG / "slos.yaml").read_text()
    text = text.replace("    runbook: bet-placement\n", f"    runbook: {runbook}\n" if runbook else "", 1)
    path.write_text(text)


def _settings(tmp_path: Path, **changes: object) -> Settings:
    return Settings(
        slos_path=tmp_path / "slos.yaml",
        slices_path=CONFIG / "slices.yaml",
        events_path=tmp_path / "no-events.yaml",
        dashboard_url="https://ops.example/",
        **changes,  # type: ignore[arg-type]
    )


def test_receivers_send_the_runbook_the_slo_file_names(tmp_path: Path) -> None:
    _slo_file(tmp_path / "slos.yaml", "bet-placement")
    settings = _settings(tmp_path, alertmanager_url="http://am.example:9093", alert_webhook_url="https://h.example/x")
    seen: dict[str, object] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen[request.url.host] = json.loads(request.content)
        return httpx.Response(200)

    for receiver in receivers_from(settings, []):
        receiver.transport = httpx.MockTransport(handler)
        assert receiver.send(transition(), now=AT).outcome == "delivered"
    assert seen["am.example"][0]["annotations"]["runbook_url"] == RUNBOOK  # type: ignore[index]
    assert seen["h.example"]["runbook_url"] == RUNBOOK  # type: ignore[index]


def test_slo_runbooks_read_the_file_again_only_when_it_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "slos.yaml"
    _slo_file(path, "bet-placement")
    reads: list[Settings] = []
    real = receivers_module.load_config

    def counted(settings: Settings) -> ControlPlaneConfig:
        reads.append(settings)
        return real(settings)

    monkeypatch.setattr(receivers_module, "load_config", counted)
    runbooks = SloRunbooks(_settings(tmp_path))
    for _ in range(5):
        assert runbooks("bet-placement-availability") == RUNBOOK
    assert runbooks("odds-feed-freshness") == "https://ops.example/runbook?name=odds-feed"
    assert runbooks("no-such-slo") is None
    assert len(reads) == 1, "one stat per alert, one read per change of the file"

    _slo_file(path, "https://wiki.example/bets")
    assert runbooks("bet-placement-availability") == "https://wiki.example/bets" and len(reads) == 2
    _slo_file(path, None)
    assert runbooks("bet-placement-availability") is None

    # A broken file: the links read before stand, it is said once, and sending goes on.
    _slo_file(path, "https://wiki.example/bets")
    assert runbooks("bet-placement-availability") == "https://wiki.example/bets"
    path.write_text("slos: [not: valid")
    with caplog.at_level(logging.WARNING, logger=receivers_module.__name__):
        for _ in range(3):
            assert runbooks("bet-placement-availability") == "https://wiki.example/bets"
    assert len([r for r in caplog.records if "runbook links" in r.getMessage()]) == 1
    path.unlink()
    assert runbooks("bet-placement-availability") == "https://wiki.example/bets"
