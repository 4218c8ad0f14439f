"""The checklist against a running platform and collector, as on the eve of an event: all green, a
game-day fault turns the matching check red with evidence, clearing it turns it green, a waiver and
an expired attestation move the exit code as documented, and probe traffic never reaches the SLIs."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from controlplane.scraped import latest
from controlplane.storage import make_engine
from controlplane.store import SliBucket, table
from sample_platform.client import PlatformClient
from tests.conftest import ADMIN_TOKEN, SLICES_PATH
from tests.controlplane.checklist.conftest import CONFIG
from tests.support import CONTROLPLANE, PlatformProcess, ServiceProcess, free_port

pytestmark = pytest.mark.slow

SPEC = """
checks:
  - {id: bet-idempotency, title: One bet per Idempotency-Key, severity: blocking, owner: betting, runbook: r,
     evaluator: {type: probe_idempotency}}
  - {id: login-limits-live, title: Login limits refuse a burst, severity: blocking, owner: platform, runbook: r,
     evaluator: {type: probe_login_limit}}
  - {id: api-timeouts-sane, title: Slowed requests answered in time, severity: blocking, owner: platform, runbook: r,
     evaluator: {type: probe_latency, latency_ms: 200, max_timeout_seconds: 30}}
  - {id: load-shedding-live, title: Shedding past the bound, severity: blocking, owner: platform, runbook: r,
     evaluator: {type: probe_shedding, latency_ms: 1500}}
  - {id: risk-cache-warm, title: Risk cache serves most lookups, severity: blocking, owner: risk,
     runbook: pre-warm the cache, evaluator: {type: scraped_signal, signal: risk_cache_hit_ratio, at_least: 0.5,
     window: 8s, max_age: 30s}}
  - {id: outbox-depth, title: Outbox drained, severity: blocking, owner: platform, runbook: r,
     evaluator: {type: scraped_signal, signal: outbox_depth, at_most: 1000, max_age: 30s}}
"""
SIGNALS = """
checks:
  - {id: risk-cache-warm, title: Risk cache serves most lookups, severity: blocking, owner: risk,
     runbook: pre-warm the cache, evaluator: {type: scraped_signal, signal: risk_cache_hit_ratio, at_least: 0.5,
     window: 8s, max_age: 30s}}
"""
PEOPLE = """
  - {id: incident-roles, title: Incident roles named, severity: blocking, owner: lead, runbook: r,
     evaluator: {type: attestation}}
  - {id: status-page-ready, title: Status page ready, severity: warning, owner: comms, runbook: r,
     evaluator: {type: attestation}}
"""


class Traffic:
    """Players betting on a market in a loop, so the risk cache has lookups to count."""

    def __init__(self, url: str) -> None:
        self.client = PlatformClient(url, admin_token=ADMIN_TOKEN)
        self.players = []
        for _ in range(3):
            account = self.client.create_account(f"p-{uuid.uuid4().hex[:10]}")
            self.client.deposit(account["id"], 10_000_000)
            self.players.append(account)
        self.market = self.client.create_market("Derby", [("Home", "2.50"), ("Away", "2.80")])
        self.bet_responses = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        selection = self.market["selections"][0]
        body = {"market_id": self.market["id"], "selection_id": selection["id"], "stake_minor": 100,
                "odds": selection["odds"], "price_version": self.market["price_version"]}  # fmt: skip
        i = 0
        while not self.stop.is_set():
            player = self.players[i % len(self.players)]
            try:
                self.client.place_bet(player["token"], body, key=uuid.uuid4().hex)
                self.bet_responses += 1
            except httpx.HTTPError:
                pass
            i += 1
            time.sleep(0.02)

    def close(self) -> None:
        if not self.stop.is_set():
            self.stop.set()
            self.thread.join(timeout=60)
            self.client.close()


@pytest.fixture
def running(database_url: str, tmp_path: Path):
    platform_port = free_port()
    collector = ServiceProcess(
        "collector",
        {
            "CONTROLPLANE_STORE_URL": database_url,
            "CONTROLPLANE_SLICES_PATH": str(SLICES_PATH),
            "CONTROLPLANE_SCRAPE_TARGETS": f"http://127.0.0.1:{platform_port}/metrics",
            "CONTROLPLANE_SCRAPE_INTERVAL_SECONDS": "0.5",
        },
        tmp_path / "collector.log",
        "/healthz",
    )
    platform = PlatformProcess(
        database_url,
        tmp_path / "outbox.jsonl",
        port=platform_port,
        PLATFORM_OTLP_ENDPOINT=collector.url,
        PLATFORM_OTLP_METRIC_INTERVAL_SECONDS="1",
    )
    traffic = Traffic(platform.url)
    try:
        yield platform, collector, traffic
    finally:
        traffic.close()
        platform.stop()  # first: its exporter would keep retrying a stopped collector
        collector.stop()


def _env(database_url: str, tmp_path: Path, platform_url: str) -> dict[str, str]:
    spec = tmp_path / "checklist.yaml"
    spec.write_text(SPEC + PEOPLE)
    (tmp_path / "signals.yaml").write_text(SIGNALS + PEOPLE)
    return os.environ | {
        "CONTROLPLANE_STORE_URL": database_url,
        "CONTROLPLANE_AUDIT_URL": database_url,
        "CONTROLPLANE_AUDIT_KEY_DIR": str(tmp_path / "keys"),
        "CONTROLPLANE_CHECKLIST_PATH": str(spec),
        "CONTROLPLANE_SLOS_PATH": str(CONFIG / "slos.yaml"),
        "CONTROLPLANE_EVENTS_PATH": str(CONFIG / "events.yaml"),
        "CONTROLPLANE_SLICES_PATH": str(SLICES_PATH),
        "CONTROLPLANE_PLATFORM_URL": platform_url,
        "CONTROLPLANE_PLATFORM_ADMIN_TOKEN": ADMIN_TOKEN,
    }


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([CONTROLPLANE, *args], env=env, capture_output=True, text=True, timeout=300)
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    return done


def _run_until(env: dict[str, str], want: int, *args: str, deadline_s: float = 120) -> dict:
    """Run the checklist until it exits `want` (signals need a few scrapes to settle); the last run."""
    deadline = time.monotonic() + deadline_s
    while True:
        done = _cli(env, "checklist", "run", "--format", "json", *args)
        assert done.returncode in (0, 1, 2), done.stderr
        run = json.loads(done.stdout)
        if done.returncode == want or time.monotonic() > deadline:
            statuses = {c["id"]: (c["status"], c["reason"]) for c in run["checks"]}
            assert done.returncode == want, statuses
            return run
        time.sleep(1)


def _check(run: dict, check_id: str) -> dict:
    return next(c for c in run["checks"] if c["id"] == check_id)


def test_the_eve_of_an_event(running, database_url: str, tmp_path: Path) -> None:
    platform, _collector, traffic = running
    env = _env(database_url, tmp_path, platform.url)
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    event = ("--event", "cup-final")
    assert _cli(env, "checklist", "attest", "incident-roles", "--by", "ana", "--expires", "1h").returncode == 0
    attested = _cli(env, "checklist", "attest", "status-page-ready", "--by", "bo", "--expires", "1h", *event)
    assert attested.returncode == 0, attested.stderr

    green = _run_until(env, 0, *event)
    assert all(c["status"] == "pass" for c in green["checks"]), green
    assert _check(green, "bet-idempotency")["evidence"]["statuses"] == [201, 201]
    assert _check(green, "load-shedding-live")["evidence"]["statuses"].count(503) >= 1

    # From here on, the signal checks alone (the probes have shown what they do).
    env = env | {"CONTROLPLANE_CHECKLIST_PATH": str(tmp_path / "signals.yaml")}
    # Game day: the risk cache is switched off for players; the warm-cache check goes red with evidence.
    httpx.post(f"{platform.url}/v1/admin/faults", headers=admin, json={"kind": "cache_off", "ttl_seconds": 600},
               timeout=30).raise_for_status()  # fmt: skip
    red = _run_until(env, 2, *event)
    cache = _check(red, "risk-cache-warm")
    assert cache["status"] == "fail" and cache["evidence"]["value"] < 0.5
    assert cache["evidence"]["increase"].get("bypass", 0) > 0
    assert red["decision"] == "no-go" and "risk-cache-warm" in red["summary"]

    httpx.delete(f"{platform.url}/v1/admin/faults", headers=admin, params={"kind": "cache_off"}, timeout=30)
    assert _check(_run_until(env, 0, *event), "risk-cache-warm")["status"] == "pass"

    # The fault again, this time waived by two people: reported waived (what it found underneath: fail).
    httpx.post(f"{platform.url}/v1/admin/faults", headers=admin, json={"kind": "cache_off", "ttl_seconds": 600},
               timeout=30).raise_for_status()  # fmt: skip
    waived = _cli(env, "checklist", "waive", "risk-cache-warm", "--by", "ana", "--approved-by", "bo",
                  "--reason", "cache rebuilt, warming before kickoff", "--expires", "1h")  # fmt: skip
    assert waived.returncode == 0, waived.stderr
    deadline = time.monotonic() + 120
    while True:
        run = _run_until(env, 0, *event)
        cache = _check(run, "risk-cache-warm")
        if cache["waiver"]["outcome"] == "fail" or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert cache["status"] == "waived" and cache["waiver"]["outcome"] == "fail"

    # For no event in particular, the event's attestation does not hold; a fresh one that has expired
    # fails its (warning) check, and the exit code becomes 1.
    attested = _cli(env, "checklist", "attest", "status-page-ready", "--by", "bo", "--expires", "1s")
    assert attested.returncode == 0, attested.stderr  # a lifetime counts from when it is recorded
    until = datetime.fromisoformat(attested.stdout.split(" until ")[1].split()[0].replace("Z", "+00:00"))
    while datetime.now(UTC) <= until:  # the attestation's own clock, not the system under test
        time.sleep(0.05)
    expired = _run_until(env, 1)
    assert _check(expired, "status-page-ready")["status"] == "fail"
    assert "expired" in _check(expired, "status-page-ready")["reason"]

    # Everything is in the audit log, and the last run exports as a bundle that verifies offline.
    assert _cli(env, "audit", "verify").returncode == 0
    assert _cli(env, "audit", "checkpoint").returncode == 0
    bundle = tmp_path / "run.json"
    assert _cli(env, "audit", "export", "--checklist-run", expired["run_id"], "--out", str(bundle)).returncode == 0
    key = _cli(env, "audit", "verifier-key").stdout.strip()
    verified = subprocess.run(["python", "-m", "audit.verify", str(bundle), "--key", key], capture_output=True,
                              text=True, env=env)  # fmt: skip
    assert verified.returncode == 0, verified.stdout + verified.stderr
    kinds = sorted(json.loads(e["entry"])["kind"] for e in json.loads(bundle.read_text())["entries"])
    assert kinds == ["attestation", "checklist", "checklist"], "the run, its waiver and its attestation"

    # Probe faults were synthetic-only and are gone; the scraper kept seeing the platform throughout.
    faults = httpx.get(f"{platform.url}/v1/admin/faults", headers=admin, timeout=30).json()["faults"]
    assert [f["kind"] for f in faults] == ["cache_off"]
    engine = make_engine(database_url)
    try:
        assert latest(engine, name="platform_outbox_depth"), "the collector scraped the platform"
        # Probe bets (two per run) never reach the SLIs: bet placement counts exactly the players' bets.
        traffic.close()
        deadline = time.monotonic() + 90
        while _bet_events(engine) != traffic.bet_responses and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _bet_events(engine) == traffic.bet_responses
    finally:
        engine.dispose()


def _bet_events(engine) -> int:
    with engine.connect() as conn:
        total = conn.execute(
            select(func.sum(table(SliBucket).c.total)).where(table(SliBucket).c.slice == "bet-placement")
        )
        return int(total.scalar() or 0)
