"""The trace probe against a platform process that exports over OTLP/HTTP to a running collector: a
probe bet's trace is kept with the platform's log line in it, and its relay and settlement link to it;
against a platform that exports nowhere, both fail saying what to set."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr
from sqlalchemy import Engine

from collectors.receiver import create_receiver
from controlplane.checklist.trace_probes import probe_trace
from controlplane.slices import load_slices
from sample_platform.server import ThreadedServer
from tests.conftest import ADMIN_TOKEN, SLICES_PATH
from tests.controlplane.checklist.conftest import assert_outcome, check
from tests.support import PlatformProcess

TOKEN = SecretStr(ADMIN_TOKEN)


def _params(**params):  # type: ignore[no-untyped-def]
    return check({"type": "probe_trace", **params}).evaluator


def test_a_probe_bet_is_kept_with_its_log_line_and_linked_onward(
    make_ctx, cp_settings, store: Engine, database_url: str, tmp_path: Path
) -> None:
    collector = ThreadedServer(create_receiver(cp_settings, engine=store, slices=load_slices(SLICES_PATH)))
    with collector:
        platform = PlatformProcess(database_url, tmp_path / "outbox.jsonl", PLATFORM_OTLP_ENDPOINT=collector.url)
        try:
            ctx = make_ctx(platform_url=platform.url, platform_admin_token=TOKEN)
            logs = probe_trace(_params(expect="logs", wait_seconds=60), ctx)
            links = probe_trace(_params(expect="links", wait_seconds=60), ctx)
        finally:
            platform.stop()
    assert_outcome(logs, "pass", "log lines carrying its trace and span ids")
    assert logs.evidence["log_lines"] >= 1 and len(logs.evidence["trace_id"]) == 32
    assert_outcome(links, "pass", "is linked from")
    assert links.evidence["linked_from"], links.evidence


def test_without_export_the_probe_says_what_to_set(start_platform, make_ctx) -> None:
    server, _client = start_platform()
    ctx = make_ctx(platform_url=server.url, platform_admin_token=TOKEN)
    outcome = probe_trace(_params(expect="logs", wait_seconds=2), ctx)
    assert_outcome(outcome, "fail", "PLATFORM_OTLP_ENDPOINT")
