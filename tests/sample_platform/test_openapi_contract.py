"""The running platform keeps the promises of its own /openapi.json (Schemathesis), on both databases.

Schemathesis generates valid and invalid requests from the document (coverage and fuzzing phases,
undocumented methods included) and checks every answer: its status is documented, so are its media
type and headers, its body matches the documented schema, invalid requests are refused, valid ones
are not refused as malformed nor by the server's own validation (every limit it enforces is in the
document), and auth is not ignored.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import schemathesis
import schemathesis.engine
from schemathesis import BaseSchema, Case, HookContext
from schemathesis.engine import events

from sample_platform.client import PlatformClient
from sample_platform.server import PlatformServer
from tests.conftest import ADMIN_TOKEN

# Bounded so each run stays well under a minute per database on a small, busy machine.
MAX_EXAMPLES = 50
# A schema-valid request may still break a business rule (unknown market, risk limit: 422) or be shed
# (503). A valid request answered 400, or with an undocumented status, still fails the run.
ACCEPTED_VALID_STATUSES = ["2xx", "401", "403", "404", "409", "422", "429", "503"]
# Fault kinds that slow the database or the outbox, which the fault routes themselves write to.
SELF_DISTURBING_FAULT_KINDS = {"db_latency", "lock_wait", "broker_slow"}


@schemathesis.check
def valid_requests_pass_validation(ctx: schemathesis.CheckContext, response: schemathesis.Response, case: Case) -> None:
    """A request the document calls valid is never refused by the server's own request validation (422
    `validation`): every limit and exclusive choice the server enforces is in the document. A business
    rule (unknown market, risk limit) may still refuse it, with a problem type of its own."""
    if case.meta is None or case.meta.generation.mode.is_negative or response.status_code != 422:
        return
    try:
        problem = response.json()
    except ValueError:
        return
    if isinstance(problem, dict) and str(problem.get("type", "")).endswith("validation"):
        raise AssertionError(f"a request the document calls valid was refused as invalid: {problem.get('detail')}")


def contract_config(player_token: str, operations: list[dict[str, Any]]) -> schemathesis.Config:
    return schemathesis.Config.from_dict(
        {
            "seed": 20240601,
            # Each run starts from the document alone, and leaves nothing behind in the checkout.
            "cache": {"enabled": False},
            "generation": {"max-examples": MAX_EXAMPLES, "database": "none"},
            "phases": {"stateful": {"enabled": False}},
            "request-timeout": 60,
            "checks": {"positive_data_acceptance": {"expected-statuses": ACCEPTED_VALID_STATUSES}},
            "auth": {
                "auto-signup": False,
                "openapi": {"AdminToken": {"bearer": ADMIN_TOKEN}, "PlayerToken": {"bearer": player_token}},
            },
            "operations": operations,
        }
    )


def load_contract(url: str, player_token: str, operations: list[dict[str, Any]]) -> BaseSchema:
    # Every input is sent, hostile ones included (ids past 64 bits, NUL characters, huge numbers): none
    # may come back as a server error.
    return schemathesis.openapi.from_url(f"{url}/openapi.json", config=contract_config(player_token, operations))


@dataclass
class ContractRun:
    breaches: list[str] = field(default_factory=list)  # operation: check: what it saw
    requests: Counter[str] = field(default_factory=Counter)  # by operation


def run_contract(schema: BaseSchema) -> ContractRun:
    run = ContractRun()
    breaches: set[str] = set()
    for event in schemathesis.engine.from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished | events.FuzzScenarioFinished):
            run.requests[event.recorder.label] += len(event.recorder.interactions)
            for checks in event.recorder.checks.values():
                for check in checks:
                    if check.failure_info is not None:
                        failure = check.failure_info.failure
                        breaches.add(f"{failure.operation}: {check.name}: {failure.title}: {failure.message}")
        elif isinstance(event, events.NonFatalError):
            breaches.add(f"{event.label}: error: {event.info.title}: {event.info.message}")
        elif isinstance(event, events.FatalError):
            breaches.add(f"fatal: {event.exception!r}")
        elif isinstance(event, events.EngineFinished):
            breaches.update(f"{f.operation}: {f.title}: {f.message}" for f in event.failures)
    run.breaches = sorted(breaches)
    return run


def funded_player_token(client: PlatformClient) -> str:
    player = client.create_account(f"contract-{uuid.uuid4().hex[:8]}")
    client.deposit(player["id"], 1_000_000)
    client.create_market("Contract", [("Home", "2.50"), ("Away", "1.80")])
    return str(player["token"])


def test_platform_keeps_its_openapi_promises(server: PlatformServer, client: PlatformClient) -> None:
    operations = [
        # An endless event stream: no response ever completes.
        {"include-name": "GET /v1/odds/stream", "enabled": False},
        # Its faults slow and fail the other routes on purpose; it has a run of its own below.
        {"include-name": "POST /v1/admin/faults", "enabled": False},
    ]
    schema = load_contract(server.url, funded_player_token(client), operations)
    run = run_contract(schema)
    assert not run.breaches, "\n".join(run.breaches)
    documented = {f"{method.upper()} {path}" for path, item in server.app.openapi()["paths"].items() for method in item}
    assert set(run.requests) == documented - {"GET /v1/odds/stream", "POST /v1/admin/faults"}


def test_fault_injection_keeps_its_openapi_promises(server: PlatformServer, client: PlatformClient) -> None:
    # Only the fault routes are called, and faults never act on those: the run cannot disturb itself
    # as long as no fault slows the database or the outbox that the fault routes write to.
    operations = [{"include-path-regex": "^(?!/v1/admin/faults$)", "enabled": False}]
    schema = load_contract(server.url, funded_player_token(client), operations)

    @schema.hook
    def filter_case(context: HookContext, case: Case[Any]) -> bool:
        kind = case.body.get("kind") if isinstance(case.body, dict) else None
        return not (isinstance(kind, str) and kind in SELF_DISTURBING_FAULT_KINDS)

    run = run_contract(schema)
    assert not run.breaches, "\n".join(run.breaches)
    assert set(run.requests) == {"POST /v1/admin/faults", "GET /v1/admin/faults", "DELETE /v1/admin/faults"}
