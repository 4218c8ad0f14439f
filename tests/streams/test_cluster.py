"""A cluster and the faults it has: 3 platform replicas on one database publishing to a real nats-server,
2 `controlplane audit ingest` processes in one consumer group. 500 bets spread over the replicas; an
ingester SIGKILLed, the nats-server SIGKILLed and restarted, and a replica SIGKILLed in the middle of a
settlement that another replica then finishes. Afterwards every outbox event is in the audit log exactly
once (counted with `audit entries --format json`), `audit check-money` and `audit verify` pass and the
ledger balances. Faults set on one replica act on all of them and any replica can clear them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import uuid
from collections import Counter
from itertools import cycle
from pathlib import Path

import httpx
from sqlalchemy import Engine, func, select

from sample_platform.client import PlatformClient
from sample_platform.db import reader
from sample_platform.ledger import check_ledger
from sample_platform.models import Bet, table
from sample_platform.outbox import all_event_ids
from tests.conftest import ADMIN_TOKEN, bet_body
from tests.streams.conftest import NatsServer
from tests.support import CONTROLPLANE, PlatformProcess, wait_until

BETS = 500
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


class Ingester:
    def __init__(self, url: str, env: dict[str, str], log: Path) -> None:
        self.args = [CONTROLPLANE, "audit", "ingest", "--nats-url", url, "--batch", "50", "--log-format", "text"]
        self.env, self.log = env, log
        self.start()

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.args, env=os.environ | self.env, stdout=out, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CONTROLPLANE, *args], env=os.environ | env, capture_output=True, text=True, timeout=120)


def _outbox_entries(env: dict[str, str]) -> list[str]:
    listed = _cli(env, "audit", "entries", "--limit", "0", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    return [e["event_id"] for e in json.loads(listed.stdout) if e["event_id"] and e["kind"] != "system"]


def _settled(engine: Engine, market_id: int) -> int:
    bets = table(Bet)
    with reader(engine).connect() as conn:  # a read: it does not queue behind the replicas' writers
        query = select(func.count()).where(bets.c.market_id == market_id, bets.c.settlement_version > 0)
        return int(conn.execute(query).scalar_one())


def test_a_cluster_loses_no_event_through_killed_processes(
    nats_server: NatsServer, database_url: str, engine: Engine, tmp_path: Path
) -> None:
    audit_url = f"sqlite:///{tmp_path / 'audit.db'}" if database_url.startswith("sqlite") else database_url
    env = {
        "CONTROLPLANE_AUDIT_URL": audit_url,
        "CONTROLPLANE_STORE_URL": f"sqlite:///{tmp_path / 'store.db'}",
        "CONTROLPLANE_AUDIT_KEY_DIR": str(tmp_path / "keys"),
        "CONTROLPLANE_AUDIT_ORIGIN": "audit.test/cluster",
        "CONTROLPLANE_AUDIT_KEY_PASSPHRASE": "correct horse",
    }
    platform_env = {"PLATFORM_OUTBOX_SINK": "nats", "PLATFORM_NATS_URL": nats_server.url}
    # B settles a bet per transaction, so that it is killed part-way through a settlement.
    batch = {1: {"PLATFORM_SETTLEMENT_BATCH_SIZE": "1"}}
    replicas = [
        PlatformProcess(database_url, tmp_path / f"r{n}.jsonl", **platform_env, **batch.get(n, {})) for n in range(3)
    ]
    ingesters = [Ingester(nats_server.url, env, tmp_path / f"ingest-{n}.log") for n in range(2)]
    clients = [PlatformClient(r.url, admin_token=ADMIN_TOKEN) for r in replicas]
    try:
        a, b, c = clients
        # Faults: set through A, in force on B and C within a housekeeping round; cleared through C.
        fault = httpx.post(
            f"{replicas[0].url}/v1/admin/faults", headers=ADMIN,
            json={"kind": "latency", "ttl_seconds": 300, "route": "GET /v1/markets", "latency_ms": 1},
        ).json()  # fmt: skip
        listed = lambda r: [f["id"] for f in httpx.get(f"{r.url}/v1/admin/faults", headers=ADMIN).json()["faults"]]  # noqa: E731
        wait_until(lambda: all(listed(r) == [fault["id"]] for r in replicas), "the fault in force on every replica")
        cleared = httpx.delete(f"{replicas[2].url}/v1/admin/faults", headers=ADMIN, params={"actor": "riley"})
        assert [f["id"] for f in cleared.json()["cleared"]] == [fault["id"]]
        wait_until(lambda: all(listed(r) == [] for r in replicas), "the fault cleared on every replica")

        players = []
        for n in range(10):
            player = a.create_account(f"c{n}{uuid.uuid4().hex[:6]}")
            a.deposit(player["id"], 10_000_000)
            players.append(player)
        market = a.create_market("Cluster derby", [("Home", "2.10"), ("Away", "3.40")])
        statuses: Counter[int] = Counter()
        spread = cycle(clients)
        for n in range(BETS):
            if n == BETS // 4:
                ingesters[0].kill()  # mid-stream: its unacked events go to the other member
            if n == BETS // 2:
                nats_server.kill()  # the outbox holds the events; bets keep being taken
            if n == BETS // 2 + 50:
                nats_server.start()
                ingesters[0].start()
            response = next(spread).place_bet(players[n % 10]["token"], bet_body(market, stake=100 + n))
            statuses[response.status_code] += 1
        assert statuses == Counter({201: BETS}), statuses

        # Settlement on B, which is killed part-way; the same result through C finishes it.
        winner = market["selections"][0]["id"]
        threading.Thread(
            target=lambda: _quietly(b.result, market["id"], winner_selection_id=winner), daemon=True
        ).start()
        wait_until(lambda: _settled(engine, market["id"]) > 0, "settlement under way on B")
        replicas[1].kill()
        assert _settled(engine, market["id"]) < BETS, "B was killed before it finished"
        c.result(market["id"], winner_selection_id=winner)
        assert _settled(engine, market["id"]) == BETS

        wanted = set(all_event_ids(engine))
        wait_until(lambda: set(_outbox_entries(env)) >= wanted, "every outbox event in the audit log", 180)
    finally:
        for client in clients:
            client.close()
        for process in [*ingesters, *replicas]:
            process.stop()
    appended = _outbox_entries(env)
    assert len(appended) == len(set(appended)) == len(wanted), "each event exactly once"
    money = _cli(env, "audit", "check-money")
    assert money.returncode == 0, money.stdout + money.stderr
    verified = _cli(env, "audit", "verify")
    assert verified.returncode == 0 and "OK" in verified.stdout, verified.stdout + verified.stderr
    with reader(engine).connect() as conn:
        ledger = check_ledger(conn)
    assert not ledger.problems, ledger.problems[:5]


def _quietly(call, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
    try:
        call(*args, **kwargs)
    except httpx.HTTPError:  # the replica was killed under it
        pass
