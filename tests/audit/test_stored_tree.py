"""Proofs from stored subtrees read in one statement (`audit.stored_tree`): the same proofs, roots and
appends as from the leaves in memory, on SQLite and PostgreSQL, with one read of `audit_nodes` per
proof and none per appended entry beyond the batch's first."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine, event

from audit.log import AuditLog
from audit.merkle import consistency_proof, inclusion_proof, leaf_hash, tree_hash
from audit.note import NoteSigner
from audit.schema import migrate_audit
from audit.stored_tree import aligned_nodes
from controlplane.storage import make_engine

ORIGIN = "audit.test/stored"


@pytest.fixture
def log(database_url: str) -> Iterator[AuditLog]:
    engine = make_engine(database_url)
    migrate_audit(engine)
    yield AuditLog(engine, origin=ORIGIN, signer=NoteSigner.generate(ORIGIN))
    engine.dispose()


def _statements(engine: Engine, table: str) -> list[str]:
    seen: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def count(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if table in statement and statement.lstrip().upper().startswith("SELECT"):
            seen.append(statement)

    return seen


def test_proofs_roots_and_appends_match_the_leaves_in_memory(log: AuditLog) -> None:
    texts: list[bytes] = []
    for batch in (1, 6, 1, 13, 2, 21):  # batches ending everywhere in the tree
        appended = log.append_many(
            [{"kind": "money", "actor": "r", "subject": f"bet:{i}", "payload": {"i": i}} for i in range(batch)]
        )
        texts += [bytes.fromhex(a.leaf_hash) for a in appended]
        log.checkpoint()
    size = len(texts)
    assert log.root() == tree_hash(texts)
    reads = _statements(log.engine, "audit_nodes")
    for seq in range(size):
        assert log.inclusion_proof(seq, size) == inclusion_proof(texts, seq)
    assert len(reads) == size, "one read of the stored subtrees per proof"
    for old in range(1, size):
        assert log.consistency_proof(old, size) == consistency_proof(texts[:size], old)
    reads.clear()
    more = [{"kind": "money", "actor": "r", "subject": "bet:x", "payload": {}} for _ in range(40)]
    texts += [bytes.fromhex(a.leaf_hash) for a in log.append_many(more)]
    assert reads == [], reads  # the frontier is kept from this log's own last append
    other = AuditLog(log.engine, origin=ORIGIN, signer=log.signer)  # as another process would append
    texts += [bytes.fromhex(a.leaf_hash) for a in other.append_many(more)]
    assert len(reads) == 1, reads  # the frontier, read once for the whole batch
    texts += [bytes.fromhex(a.leaf_hash) for a in log.append_many(more)]  # after the other's: read again
    assert len(reads) == 2, reads
    assert log.root() == tree_hash(texts)
    for seq in (0, size, len(texts) - 41, len(texts) - 1):
        assert log.inclusion_proof(seq, len(texts)) == inclusion_proof(texts, seq)
    assert log.verify(log.signer.verifier).ok  # type: ignore[union-attr]


def test_a_bundle_proves_each_entry_against_the_checkpoint(log: AuditLog) -> None:
    for i in range(40):  # past 16 entries: proofs read stored subtrees as well as leaf hashes
        log.append(kind="money", actor="r", subject=f"bet:{i}", payload={"i": i})
    log.checkpoint()
    reads = _statements(log.engine, "audit_nodes")
    bundle = log.export(range(40), verifier_key=log.signer.verifier_key())  # type: ignore[union-attr]
    assert len(reads) == 1
    leaves = [bytes.fromhex(e["leaf_hash"]) for e in bundle["entries"]]
    assert [leaf_hash(e["entry"].encode()) for e in bundle["entries"]] == leaves
    assert [e["inclusion_proof"] for e in bundle["entries"]] == [
        [p.hex() for p in inclusion_proof(leaves, i)] for i in range(40)
    ]


@given(start=st.integers(0, 200), width=st.integers(0, 200))
def test_aligned_nodes_tile_the_range(start: int, width: int) -> None:
    covered = []
    for level, idx in aligned_nodes(start, start + width):
        covered += range(idx << level, (idx + 1) << level)
    assert covered == list(range(start, start + width))
