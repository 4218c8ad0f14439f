"""The database-backed audit log on SQLite and PostgreSQL: append-only, verifiable, tamper-evident."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from audit.log import AuditError, AuditLog
from audit.note import NoteSigner
from audit.verify import verify_bundle
from controlplane.storage import make_engine

ORIGIN = "audit.test/betting"


@pytest.fixture
def signer() -> NoteSigner:
    return NoteSigner.generate(ORIGIN)


@pytest.fixture
def log(audit_engine, signer) -> AuditLog:  # type: ignore[no-untyped-def]
    return AuditLog(audit_engine, origin=ORIGIN, signer=signer)


def fill(log: AuditLog, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        log.append(kind="money", actor="relay", subject=f"bet:{i}", payload={"stake_minor": 100 + i})


def test_append_checkpoint_verify_and_export(log, signer) -> None:
    fill(log, 13)
    log.checkpoint()
    fill(log, 7, start=13)
    note = log.checkpoint()
    assert note.startswith(f"{ORIGIN}\n20\n")
    result = log.verify(signer.verifier)
    assert result.ok and result.entries == 20 and result.checkpoints == 2
    bundle = log.export([3, 4, 5, 19], verifier_key=signer.verifier_key())
    assert verify_bundle(json.loads(json.dumps(bundle)), signer.verifier_key())["entries"] == 4
    entry = json.loads(bundle["entries"][0]["entry"])
    assert entry["seq"] == 3 and entry["payload"] == {"stake_minor": 103}


def test_verify_reports_progress_on_long_logs(log, signer) -> None:  # type: ignore[no-untyped-def]
    fill(log, 23)
    log.checkpoint()
    seen: list[int] = []
    result = log.verify(signer.verifier, progress=seen.append, progress_every=10)
    assert result.ok and result.entries == 23 and seen == [10, 20]


def test_group_commit_and_event_dedup(log, signer) -> None:
    first = log.append_many(
        [
            {"kind": "money", "actor": "relay", "subject": f"bet:{i}", "payload": {"i": i}, "event_id": f"e{i}"}
            for i in range(50)
        ]
    )
    again = log.append(kind="money", actor="relay", subject="bet:3", payload={"i": 3}, event_id="e3")
    assert [a.seq for a in first] == list(range(50))
    assert again.duplicate and again.seq == 3 and log.size() == 50
    assert log.verify(signer.verifier).ok


def test_duplicates_are_found_among_a_large_batch_of_event_ids(log, signer) -> None:
    n = 3000  # the ids go to the database as one parameter, whatever their number
    batch = [
        {"kind": "money", "actor": "relay", "subject": "bet:b", "payload": {}, "event_id": f"b{i}"} for i in range(n)
    ]
    assert [a.seq for a in log.append_many(batch)] == list(range(n))
    again = log.append_many([*batch[-3:], {**batch[0], "event_id": "new"}])
    assert [a.duplicate for a in again] == [True, True, True, False] and log.size() == n + 1
    assert [a.seq for a in again] == [n - 3, n - 2, n - 1, n]


def test_floats_and_unknown_kinds_are_refused(log) -> None:
    with pytest.raises(Exception, match="floats"):
        log.append(kind="money", actor="a", subject="s", payload={"amount": 1.5})
    with pytest.raises(AuditError, match="kind"):
        log.append(kind="gossip", actor="a", subject="s", payload={})


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_entries SET actor = 'mallory'",
        "DELETE FROM audit_entries",
        "DELETE FROM audit_nodes",
        "UPDATE audit_checkpoints SET note = 'x'",
    ],
)
def test_the_database_refuses_changes(log, audit_engine, statement: str) -> None:
    fill(log, 20)  # a stored subtree hash (the first 16 entries') for the DELETE on audit_nodes to meet
    log.checkpoint()
    with pytest.raises(DBAPIError, match="append-only"), audit_engine.begin() as conn:
        conn.execute(text(statement))
    assert log.size() == 20


def _bypass(audit_engine, sql: str, params: dict | None = None) -> None:  # type: ignore[no-untyped-def]
    """Tamper as someone with the database owner's rights would: triggers off, change, triggers on."""
    with audit_engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("ALTER TABLE audit_entries DISABLE TRIGGER USER"))
            conn.execute(text(sql), params or {})
            conn.execute(text("ALTER TABLE audit_entries ENABLE TRIGGER USER"))
        else:
            conn.execute(text("DROP TRIGGER audit_entries_no_update"))
            conn.execute(text("DROP TRIGGER audit_entries_no_delete"))
            conn.execute(text(sql), params or {})


@pytest.mark.parametrize(
    ("tamper", "params", "first_bad"),
    [
        (
            "UPDATE audit_entries SET entry = replace(entry, :old, :new) WHERE seq = 5",
            {"old": '"stake_minor":105', "new": '"stake_minor":905'},
            5,
        ),
        ("DELETE FROM audit_entries WHERE seq = 7", {}, 7),
        ("DELETE FROM audit_entries WHERE seq >= 10", {}, 10),  # the tail behind a signed checkpoint
        (
            "UPDATE audit_entries SET leaf_hash = (SELECT leaf_hash FROM audit_entries WHERE seq = 3) WHERE seq = 2",
            {},
            2,
        ),
    ],
)
def test_tampering_is_detected_and_located(
    log, signer, audit_engine, tamper: str, params: dict, first_bad: int
) -> None:
    fill(log, 12)
    log.checkpoint()
    assert log.verify(signer.verifier).ok
    _bypass(audit_engine, tamper, params)
    result = log.verify(signer.verifier)
    assert not result.ok
    assert result.first_bad_seq == first_bad, result.problem


def test_swapped_entries_are_detected(log, signer, audit_engine) -> None:
    fill(log, 6)
    log.checkpoint()
    with audit_engine.connect() as conn:
        _a, b = (
            conn.execute(text("SELECT entry, leaf_hash FROM audit_entries WHERE seq = :s"), {"s": s}).one()
            for s in (2, 3)
        )
    _bypass(
        audit_engine,
        "UPDATE audit_entries SET entry = :e, leaf_hash = :h WHERE seq = 2",
        {"e": b.entry, "h": b.leaf_hash},
    )
    result = log.verify(signer.verifier)
    assert not result.ok and result.first_bad_seq == 2


def test_a_checkpoint_by_another_key_fails_verification(log, signer) -> None:
    fill(log, 4)
    log.checkpoint()
    stranger = NoteSigner.generate(ORIGIN)
    result = log.verify(stranger.verifier)
    assert not result.ok and "trusted key" in (result.problem or "")


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_postgres_writer_role_cannot_change_the_log(database_url, audit_engine) -> None:
    """The documented role set-up (audit/postgres-roles.sql): appends work, changes are not even permitted."""
    import uuid
    from pathlib import Path

    from sqlalchemy.engine import make_url

    role = f"audit_writer_{uuid.uuid4().hex[:8]}"
    sql = (Path(__file__).parents[2] / "audit" / "postgres-roles.sql").read_text()
    schema = make_url(database_url).query["options"].split("=", 1)[1]
    statements = [
        s.strip() for s in sql.replace("audit_writer", role).replace("SCHEMA public", f'SCHEMA "{schema}"').split(";")
    ]
    with audit_engine.begin() as conn:
        for statement in statements:
            body = "\n".join(line for line in statement.splitlines() if not line.strip().startswith("--"))
            if body.strip():
                conn.execute(text(body))
    writer_url = make_url(database_url).set(username=role, password="change-this-password")
    writer = make_engine(writer_url.render_as_string(hide_password=False))
    try:
        log = AuditLog(writer, origin=ORIGIN, signer=NoteSigner.generate(ORIGIN))
        log.append(kind="change", actor="app", subject="s", payload={"n": 1})
        log.checkpoint()
        for statement in (
            "UPDATE audit_entries SET actor = 'x'",
            "DELETE FROM audit_entries",
            "TRUNCATE audit_entries",
            "ALTER TABLE audit_entries DISABLE TRIGGER USER",
        ):
            with pytest.raises(DBAPIError, match=r"permission denied|must be owner"), writer.begin() as conn:
                conn.execute(text(statement))
    finally:
        writer.dispose()
        with audit_engine.begin() as conn:
            conn.execute(text(f'DROP OWNED BY "{role}"'))
            conn.execute(text(f'DROP ROLE "{role}"'))
