"""The collector keeps the traces that matter, whole: a platform process exports its spans and log lines
with the real OpenTelemetry SDK over OTLP/HTTP; a bet refused during a `lock_wait` fault is kept (a bad
event), and `controlplane trace show` prints its API, idempotency, risk and ledger spans, the error and
the log line written inside it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

from sqlalchemy import text

from collectors.receiver import create_receiver
from controlplane.settings import Settings
from controlplane.slices import load_slices
from controlplane.storage import make_engine
from controlplane.store import migrate_store
from controlplane.traces.store import read_trace
from sample_platform.client import PlatformClient
from sample_platform.server import ThreadedServer
from tests.conftest import ADMIN_TOKEN, SLICES_PATH, bet_body
from tests.support import PlatformProcess, ServiceProcess, wait_until

CONTROLPLANE = str(Path(sys.executable).with_name("controlplane"))


def _store_url(database_url: str, tmp_path: Path) -> str:
    # On SQLite the fault locks the platform's database file: the store gets a file of its own.
    return f"sqlite:///{tmp_path / 'store.db'}" if database_url.startswith("sqlite") else database_url


def test_a_bet_refused_under_lock_wait_is_kept_with_its_spans_and_log_line(tmp_path: Path, database_url: str) -> None:
    store_url = _store_url(database_url, tmp_path)
    # SQLite's write lock stops the bet at its first write (the idempotency claim); PostgreSQL's lock on
    # the ledger lets it through the risk check to the ledger commit, which waits and fails.
    reached = {"POST /v1/bets", "idempotency claim"}
    if database_url.startswith("postgresql"):
        reached |= {"risk check", "ledger commit"}
    settings = Settings(environment="test", store_url=store_url, slices_path=SLICES_PATH)
    store = make_engine(store_url)
    migrate_store(store)
    collector = ThreadedServer(create_receiver(settings, engine=store, slices=load_slices(SLICES_PATH)))
    username = f"kept{uuid.uuid4().hex[:8]}"
    with collector:
        platform = PlatformProcess(
            database_url,
            tmp_path / "outbox.jsonl",
            PLATFORM_OTLP_ENDPOINT=collector.url,
            PLATFORM_DB_LOCK_TIMEOUT_MS="300",
        )
        try:
            with PlatformClient(platform.url, admin_token=ADMIN_TOKEN) as admin:
                player = admin.create_account(username)
                admin.deposit(player["id"], 1_000_000)
                market = admin.create_market("Kept cup", [("A", "2.00"), ("B", "2.00")])
                fault = admin.http.post(
                    "/v1/admin/faults",
                    json={"kind": "lock_wait", "ttl_seconds": 60},
                    headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                )
                assert fault.status_code == 201, fault.text
                refused = admin.place_bet(player["token"], bet_body(market, stake=100))
                admin.http.delete("/v1/admin/faults", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        finally:
            platform.stop()  # SIGTERM: the exporters flush on the way out
        assert refused.status_code == 503, refused.text
        trace_id = refused.json()["trace_id"]

        def kept_whole() -> bool:
            view = read_trace(store, trace_id)
            return view is not None and bool(view.logs) and reached <= {s["name"] for s in view.spans}

        wait_until(kept_whole, "the collector kept the refused bet's trace with its log line", timeout=90)
    shown = subprocess.run(
        [CONTROLPLANE, "trace", "show", trace_id, "--format", "json"],
        capture_output=True,
        text=True,
        env={**os.environ, "CONTROLPLANE_STORE_URL": store_url},
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr
    view = json.loads(shown.stdout)
    assert view["trace_id"] == trace_id and view["reason"] == "bad" and view["slice"] == "bet-placement"
    spans = {s["name"]: s for s in view["spans"]}
    assert reached <= spans.keys(), spans.keys()
    server = spans["POST /v1/bets"]
    assert server["status_code"] == 2 and server["attributes"]["http.response.status_code"] == 503
    assert all(s["trace_id"] == trace_id for s in view["spans"])
    span_ids = {s["span_id"] for s in view["spans"]}
    refusal = [line for line in view["logs"] if "refused" in line["body"]]
    assert refusal, view["logs"]
    assert all(line["trace_id"] == trace_id and line["span_id"] in span_ids for line in refusal)
    assert refusal[0]["attributes"].get("problem.type", "").endswith("database-busy"), refusal[0]
    assert username not in shown.stdout and player["token"] not in shown.stdout
    tree = subprocess.run(
        [CONTROLPLANE, "trace", "show", trace_id],
        capture_output=True,
        text=True,
        env={**os.environ, "CONTROLPLANE_STORE_URL": store_url},
        timeout=120,
    )
    assert tree.returncode == 0 and "└─" in tree.stdout and "idempotency claim" in tree.stdout and "log " in tree.stdout
    store.dispose()


def test_trace_show_says_what_is_wrong(tmp_path: Path) -> None:
    env = {**os.environ, "CONTROLPLANE_STORE_URL": f"sqlite:///{tmp_path / 'store.db'}"}
    malformed = subprocess.run([CONTROLPLANE, "trace", "show", "nothex"], capture_output=True, text=True, env=env)
    assert malformed.returncode == 3 and "32 hex digits" in malformed.stderr and "Traceback" not in malformed.stderr
    unknown = subprocess.run([CONTROLPLANE, "trace", "show", "ab" * 16], capture_output=True, text=True, env=env)
    assert unknown.returncode == 1 and "was not kept" in unknown.stderr


def test_no_log_line_of_any_process_holds_a_secret_or_a_name(tmp_path: Path, database_url: str) -> None:
    """A player signs up, logs in (once wrongly), bets and is refused, with known values; then the
    platform's log, the collector's log and every log line and span the collector kept are searched."""
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    username, password = f"pii{uuid.uuid4().hex[:10]}", f"Pw-{uuid.uuid4().hex}"
    collector = ServiceProcess(
        "collector",
        {"CONTROLPLANE_STORE_URL": store_url, "CONTROLPLANE_SLICES_PATH": str(SLICES_PATH)},
        tmp_path / "collector.log",
        "/healthz",
    )
    try:
        platform = PlatformProcess(database_url, tmp_path / "outbox.jsonl", PLATFORM_OTLP_ENDPOINT=collector.url)
        try:
            with PlatformClient(platform.url, admin_token=ADMIN_TOKEN) as admin:
                admin_headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
                made = admin.http.post(
                    "/v1/accounts", json={"username": username, "password": password}, headers=admin_headers
                )
                assert made.status_code == 201, made.text
                account_id = made.json()["id"]
                admin.deposit(account_id, 1_000_000)
                market = admin.create_market("Private cup", [("A", "2.00"), ("B", "2.00")])
                wrong = admin.http.post("/v1/login", json={"username": username, "password": "not-" + password})
                assert wrong.status_code == 401
                login = admin.http.post("/v1/login", json={"username": username, "password": password})
                assert login.status_code == 200, login.text
                token = login.json()["token"]
                assert admin.place_bet(token, bet_body(market, stake=100)).status_code == 201
                refused = admin.place_bet(token, bet_body(market, stake=100, market_id=999_999))
                assert refused.status_code == 422
        finally:
            platform.stop()
        store = make_engine(store_url)
        wait_until(lambda: read_trace(store, refused.json()["trace_id"]) is not None, "the refusal's trace was kept")
        wait_until(lambda: bool(read_trace(store, refused.json()["trace_id"]).logs), "its log line arrived")  # type: ignore[union-attr]
    finally:
        collector.stop()
    with store.connect() as conn:
        kept = [
            json.dumps([list(r) for r in conn.execute(text(f"SELECT * FROM {t}"))]) for t in ("kept_spans", "kept_logs")
        ]
    store.dispose()
    texts = {"platform log": platform.log.read_text(), "collector log": collector.log.read_text()}
    texts |= {"kept spans": kept[0], "kept log lines": kept[1]}
    assert "request refused" in texts["platform log"] and "request refused" in texts["kept log lines"]
    for where, found in texts.items():
        for secret in (username, password, token, ADMIN_TOKEN):
            assert secret not in found, f"{where} holds {secret!r}"
        assert not re.search(rf'"account(_id|\.id)":\s*"?{account_id}\b', found), f"{where} holds the account id"
