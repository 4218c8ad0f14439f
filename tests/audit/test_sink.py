"""The platform's outbox into the audit log: at-least-once in, exactly once in the log; pseudonyms; money checks."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from audit.log import AuditLog
from audit.note import NoteSigner
from audit.schema import entries, migrate_audit
from audit.sink import OutboxAuditSink, SubjectKeys, check_money
from controlplane.storage import make_engine
from sample_platform.client import PlatformClient
from sample_platform.outbox import OutboxRelay
from tests.conftest import ADMIN_TOKEN, bet_body
from tests.support import PlatformProcess


@pytest.fixture
def audit_log(database_url, tmp_path):  # type: ignore[no-untyped-def]
    # The audit log in a database of its own (SQLite file), beside the platform's.
    engine = make_engine(f"sqlite:///{tmp_path / 'audit.db'}")
    migrate_audit(engine)
    signer = NoteSigner.generate("audit.test/platform")
    yield AuditLog(engine, origin="audit.test/platform", signer=signer), signer
    engine.dispose()


def test_outbox_events_land_once_as_typed_entries(client, engine, funded_player, market, audit_log) -> None:
    log, signer = audit_log
    ids = [
        client.place_bet(funded_player["token"], bet_body(market, selection=i % 3, stake=100 + i)).json()["id"]
        for i in range(6)
    ]
    client.result(market["id"], winner_selection_id=market["selections"][0]["id"])
    client.result(market["id"], winner_selection_id=market["selections"][1]["id"])  # a corrected result
    client.http.post(
        "/v1/admin/faults",
        json={"kind": "cache_off", "ttl_seconds": 30, "actor": "ana", "reason": "drill"},
        headers={"Authorization": "Bearer test-admin-token"},
    )
    keys = SubjectKeys(log.engine)
    sink = OutboxAuditSink(log, keys)
    OutboxRelay(engine, sink, name="audit-1").drain()
    OutboxRelay(engine, sink, name="audit-2").drain()  # everything delivered a second time
    with log.engine.connect() as conn:
        documents = [json.loads(t) for t in conn.execute(select(entries.c.entry).order_by(entries.c.seq)).scalars()]
        distinct = conn.execute(select(func.count(func.distinct(entries.c.event_id)))).scalar_one()
    assert len(documents) == distinct  # each event once
    types = [d["payload"]["type"] for d in documents]
    assert types.count("deposit") == 1 and types.count("bet_placed") == 6
    assert types.count("resettlement") == 6 and "payout" in types and "bet_lost" in types
    fault = next(d for d in documents if d["kind"] == "change" and d["payload"]["type"] == "fault_set")
    assert fault["actor"] == "ana" and fault["payload"]["reason"] == "drill"
    # No account id in the log, only its pseudonym.
    placed = next(d for d in documents if d["payload"]["type"] == "bet_placed")
    assert "account_id" not in placed["payload"]
    assert placed["payload"]["account"] == keys.pseudonym(f"account:{funded_player['id']}")
    assert check_money(log).ok and check_money(log).bets == 6
    log.checkpoint()
    assert log.verify(signer.verifier).ok
    assert {f"bet:{i}" for i in ids} <= {d["subject"] for d in documents}


def test_crypto_shredding_unlinks_without_breaking_proofs(audit_log) -> None:
    log, signer = audit_log
    keys = SubjectKeys(log.engine)
    pseudonym = keys.pseudonym("account:42")
    log.append(
        kind="money",
        actor="platform",
        subject="bet:1",
        payload={"type": "bet_placed", "account": pseudonym, "stake_minor": 100, "odds": "2.00"},
    )
    log.checkpoint()
    assert keys.shred("account:42") and not keys.exists("account:42")
    assert keys.pseudonym("account:42") != pseudonym  # a new key: the old entries no longer link to 42
    assert log.verify(signer.verifier).ok


def test_money_checker_finds_a_wrong_payout(audit_log) -> None:
    log, _signer = audit_log
    log.append(
        kind="money", actor="p", subject="bet:9", payload={"type": "bet_placed", "stake_minor": 333, "odds": "1.33"}
    )
    log.append(
        kind="money", actor="p", subject="bet:9", payload={"type": "payout", "payout_minor": 443, "outcome": "won"}
    )
    log.append(
        kind="money", actor="p", subject="bet:10", payload={"type": "payout", "payout_minor": 1, "outcome": "won"}
    )
    problems = check_money(log).problems
    assert any("bet:9 paid 443" in p and "expected 442" in p for p in problems)
    assert any("bet:10 was settled but never placed" in p for p in problems)


def test_platform_relay_can_deliver_straight_into_the_audit_log(settings, tmp_path) -> None:
    audit_url = f"sqlite:///{tmp_path / 'relay-audit.db'}"
    platform = PlatformProcess(
        settings.database_url,
        tmp_path / "outbox.jsonl",
        CONTROLPLANE_OUTBOX_SINK="audit",
        CONTROLPLANE_AUDIT_URL=audit_url,
        CONTROLPLANE_AUDIT_ORIGIN="audit.test/platform",
    )
    client = PlatformClient(platform.url, admin_token=ADMIN_TOKEN)
    player = client.create_account("relayed")
    client.deposit(player["id"], 1_000)
    market = client.create_market("Relay cup", [("A", "2.00"), ("B", "2.00")])
    assert client.place_bet(player["token"], bet_body(market, stake=100)).status_code == 201
    engine = make_engine(audit_url)
    import time

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            kinds = [json.loads(t)["payload"]["type"] for t in conn.execute(select(entries.c.entry)).scalars()]
        if "bet_placed" in kinds and "deposit" in kinds:
            break
        time.sleep(0.1)
    client.close()
    platform.stop()
    assert "bet_placed" in kinds and "deposit" in kinds
    engine.dispose()
