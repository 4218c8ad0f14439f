"""The platform verbs of the CLI against a running platform: faults and the load generator."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from sqlalchemy import select

from controlplane.storage import reader
from sample_platform.models import Bet, Market
from tests.conftest import ADMIN_TOKEN
from tests.support import CONTROLPLANE, PlatformProcess

DERBY_SECONDS = float(os.environ.get("CONTROLPLANE_TEST_DERBY_SECONDS", "20"))
REQUEST_TIMEOUT = 10.0


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([CONTROLPLANE, *args], capture_output=True, text=True, timeout=timeout)


def test_faults_set_list_clear(server) -> None:
    common = ("--target", server.url, "--admin-token", ADMIN_TOKEN)
    made = run_cli(
        "platform",
        "faults",
        "set",
        "latency",
        "--route",
        "GET /v1/markets",
        "--latency-ms",
        "20",
        "--ttl",
        "60",
        "--reason",
        "drill",
        *common,
        "--format",
        "json",
    )
    assert made.returncode == 0, made.stderr
    fault = json.loads(made.stdout)[0]
    assert fault["kind"] == "latency" and fault["route"] == "GET /v1/markets" and fault["reason"] == "drill"
    listed = run_cli("platform", "faults", "list", *common)
    assert listed.returncode == 0 and fault["id"] in listed.stdout and "20ms" in listed.stdout
    cleared = run_cli("platform", "faults", "clear", "--kind", "latency", *common, "--format", "json")
    assert [f["id"] for f in json.loads(cleared.stdout)] == [fault["id"]]
    assert "no faults in force" in run_cli("platform", "faults", "list", *common).stdout


def test_faults_set_synthetic_only(server) -> None:
    common = ("--target", server.url, "--admin-token", ADMIN_TOKEN)
    args = ("platform", "faults", "set", "error_rate", "--error-rate", "1", "--ttl", "60", "--synthetic-only")
    made = run_cli(*args, *common, "--format", "json")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)[0]["synthetic_only"] is True
    assert "synthetic only" in run_cli("platform", "faults", "list", *common).stdout
    refused = run_cli("platform", "faults", "set", "cache_off", "--ttl", "60", "--synthetic-only", *common)
    assert refused.returncode == 3 and "synthetic_only" in refused.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("platform", "faults", "set", "meteor", "--ttl", "5"), "kind"),
        (("platform", "faults", "set", "latency", "--ttl", "999999"), "TTL"),
        (("platform", "faults", "list", "--format", "xml"), "--format"),
    ],
)
def test_fault_cli_errors_are_messages(server, args, message) -> None:
    result = run_cli(*args, "--target", server.url, "--admin-token", ADMIN_TOKEN)
    assert result.returncode == 3
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_faults_without_a_token_say_how_to_give_one(server) -> None:
    env = {k: v for k, v in os.environ.items() if not k.endswith("PLATFORM_ADMIN_TOKEN")}
    result = subprocess.run(
        [CONTROLPLANE, "platform", "faults", "list", "--target", server.url], capture_output=True, text=True, env=env
    )
    assert result.returncode == 3 and "PLATFORM_ADMIN_TOKEN" in result.stderr


@pytest.mark.slow
@pytest.mark.timing
def test_derby_night_run_reconciles_with_the_database(engine, settings, tmp_path) -> None:
    platform = PlatformProcess(
        settings.database_url, tmp_path / "outbox.jsonl", PLATFORM_PRICE_MOVER_INTERVAL_SECONDS="1"
    )
    try:
        result = run_cli(
            "platform",
            "load",
            "--profile",
            "derby-night",
            "--duration",
            str(DERBY_SECONDS),
            "--rate",
            "20",
            "--request-timeout",
            str(REQUEST_TIMEOUT),
            "--target",
            platform.url,
            "--admin-token",
            ADMIN_TOKEN,
            "--format",
            "json",
            "--no-progress",
            timeout=DERBY_SECONDS + 120,
        )
    finally:
        platform.stop()
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    with reader(engine).connect() as conn:
        stored = set(conn.execute(select(Bet.__table__.c.id)).scalars())
        market_status = set(conn.execute(select(Market.__table__.c.status)).scalars())
    assert report["bets_accepted"] == len(stored) > 0
    assert set(report["accepted_bet_ids"]) == stored
    assert report["bets_unknown"] == 0
    # The load phase ends on time whatever the server did: arrivals, then at most one request timeout.
    assert report["elapsed_s"] <= DERBY_SECONDS + REQUEST_TIMEOUT + 1.5
    assert report["settlement"]["all_settled"] and market_status == {"settled"}
    server_errors = {
        f"{route} {code}": n
        for route, stats in report["routes"].items()
        for code, n in stats["errors"].items()
        if code.startswith("5") and "overloaded" not in code and "database-busy" not in code
    }
    assert server_errors == {}
    assert report["sse"]["events"] > 0
