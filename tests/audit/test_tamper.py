"""Property-based tampering: any change behind the database's back is found, at the right entry."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from audit.canonical import canonical_json
from audit.log import GENESIS, AuditLog
from audit.merkle import leaf_hash
from audit.note import NoteSigner
from audit.schema import migrate_audit
from controlplane.storage import make_engine

SIZE = 10


@pytest.fixture(scope="module")
def signer() -> NoteSigner:
    return NoteSigner.generate("audit.test/tamper")


def fresh_log(tmp_path_factory, signer):  # type: ignore[no-untyped-def]
    path = tmp_path_factory.mktemp("tamper") / "audit.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate_audit(engine)
    with engine.begin() as conn:  # tampering needs the triggers out of the way, as an owner could
        for table in ("audit_entries", "audit_nodes", "audit_checkpoints"):
            for action in ("update", "delete"):
                conn.execute(text(f"DROP TRIGGER {table}_no_{action}"))
    log = AuditLog(engine, origin="audit.test/tamper", signer=signer)
    for i in range(SIZE):
        log.append(kind="money", actor="relay", subject=f"bet:{i}", payload={"stake_minor": 100 + i, "odds": "2.50"})
    log.checkpoint()
    return log


operations = st.one_of(
    st.tuples(st.just("byte"), st.integers(0, SIZE - 1), st.integers(0, 10_000), st.integers(1, 255)),
    st.tuples(st.just("delete"), st.integers(0, SIZE - 1)),
    st.tuples(st.just("swap"), st.integers(0, SIZE - 2)),
    st.tuples(st.just("truncate"), st.integers(1, SIZE - 1)),
    st.tuples(st.just("insert"), st.integers(0, SIZE - 1)),
)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(op=operations)
def test_any_tampering_is_found_at_the_first_bad_entry(tmp_path_factory, signer, op) -> None:  # type: ignore[no-untyped-def]
    log = fresh_log(tmp_path_factory, signer)
    with log.engine.begin() as conn:
        rows = {r.seq: r for r in conn.execute(text("SELECT seq, entry, leaf_hash FROM audit_entries"))}
        if op[0] == "byte":
            _, seq, position, delta = op
            raw = bytearray(rows[seq].entry.encode())
            raw[position % len(raw)] = (raw[position % len(raw)] + delta) % 256
            changed = raw.decode("utf-8", errors="replace")
            if changed == rows[seq].entry:
                return
            conn.execute(text("UPDATE audit_entries SET entry = :e WHERE seq = :s"), {"e": changed, "s": seq})
            expected = seq
        elif op[0] == "delete":
            conn.execute(text("DELETE FROM audit_entries WHERE seq = :s"), {"s": op[1]})
            expected = op[1]
        elif op[0] == "swap":
            a, b = rows[op[1]], rows[op[1] + 1]
            conn.execute(
                text("UPDATE audit_entries SET entry = :e, leaf_hash = :h WHERE seq = :s"),
                {"e": b.entry, "h": b.leaf_hash, "s": a.seq},
            )
            conn.execute(
                text("UPDATE audit_entries SET entry = :e, leaf_hash = :h WHERE seq = :s"),
                {"e": a.entry, "h": a.leaf_hash, "s": b.seq},
            )
            expected = op[1]
        elif op[0] == "truncate":
            conn.execute(text("DELETE FROM audit_entries WHERE seq >= :s"), {"s": op[1]})
            expected = op[1]
        else:  # insert a well-formed entry in the middle, renumbering everything after it
            at = op[1]
            forged = canonical_json(
                {
                    "seq": at,
                    "kind": "money",
                    "actor": "mallory",
                    "subject": "bet:x",
                    "payload": {},
                    "prev_hash": rows[at - 1].leaf_hash if at else GENESIS,
                    "time": "2026-01-01T00:00:00Z",
                }
            )
            later = sorted(rows.values(), key=lambda r: r.seq, reverse=True)
            for r in later:
                if r.seq >= at:
                    moved = json.loads(r.entry) | {"seq": r.seq + 1}
                    text_ = canonical_json(moved)
                    conn.execute(
                        text("UPDATE audit_entries SET seq = :n, entry = :e, leaf_hash = :h WHERE seq = :s"),
                        {"n": r.seq + 1, "e": text_, "h": leaf_hash(text_.encode()).hex(), "s": r.seq},
                    )
            conn.execute(
                text(
                    "INSERT INTO audit_entries (seq, created_at, kind, actor, subject, entry, leaf_hash) VALUES (:s, CURRENT_TIMESTAMP, 'money', 'mallory', 'bet:x', :e, :h)"
                ),
                {"s": at, "e": forged, "h": leaf_hash(forged.encode()).hex()},
            )
            expected = at
    result = log.verify(signer.verifier)
    assert not result.ok
    assert result.first_bad_seq == expected, (op, result.problem)
    log.engine.dispose()
