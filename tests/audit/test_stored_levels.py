"""The tree as stored (`audit.stored_tree`): leaf hashes beside the entries, inner subtree hashes every
STRIDE levels. Exactly those rows are written, proofs from them equal proofs from the leaves in
memory, a changed or missing stored hash is found by both verification passes, and a log written in
the earlier layout (every level stored) migrates with the same roots, proofs and verification."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, text

from audit.log import AuditLog
from audit.merkle import consistency_proof, inclusion_proof, node_hash, tree_hash
from audit.note import NoteSigner
from audit.schema import MIGRATIONS
from audit.stored_tree import STRIDE

ORIGIN = "audit.test/levels"
BATCHES = (1, 15, 1, 17, 30, 200, 3, 62)  # 329 entries: levels 4 and 8 stored, batches ending everywhere


def _filled(engine: Engine) -> tuple[AuditLog, list[bytes]]:
    log = AuditLog(engine, origin=ORIGIN, signer=NoteSigner.generate(ORIGIN))
    leaves: list[bytes] = []
    for n, batch in enumerate(BATCHES):
        items = [{"kind": "money", "actor": "r", "subject": f"bet:{n}:{i}", "payload": {"i": i}} for i in range(batch)]
        leaves += [bytes.fromhex(a.leaf_hash) for a in log.append_many(items)]
        log.checkpoint()
    return log, leaves


def _every_subtree(leaves: list[bytes]) -> dict[tuple[int, int], str]:
    """(level, idx) -> hash of every complete, aligned subtree, the leaves (level 0) included."""
    out = {(0, i): h.hex() for i, h in enumerate(leaves)}
    level, depth = leaves, 0
    while len(level) > 1:
        level = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        depth += 1
        out |= {(depth, i): h.hex() for i, h in enumerate(level)}
    return out


def _rows(engine: Engine) -> dict[tuple[int, int], str]:
    with engine.connect() as conn:
        return {(r.level, r.idx): r.hash for r in conn.execute(text("SELECT level, idx, hash FROM audit_nodes"))}


def _answers(log: AuditLog, size: int) -> tuple[bytes, list[list[bytes]], list[list[bytes]]]:
    sample = [0, 1, 15, 16, 17, 255, 256, 257, size - 2, size - 1]
    return (
        log.root(size),
        [log.inclusion_proof(seq, size) for seq in sample],
        [log.consistency_proof(old, size) for old in (1, 16, 17, 256, 300, size - 1)],
    )


def _alembic(engine: Engine, step: str, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.connect() as connection:
        config.attributes["connection"] = connection
        getattr(command, step)(config, revision)
        connection.commit()


def test_only_subtrees_at_stored_levels_are_written_and_proofs_match_the_leaves(audit_engine: Engine) -> None:
    log, leaves = _filled(audit_engine)
    size = len(leaves)
    wanted = {key: h for key, h in _every_subtree(leaves).items() if key[0] > 0 and key[0] % STRIDE == 0}
    assert {key[0] for key in wanted} == {4, 8}
    assert _rows(audit_engine) == wanted
    root, proofs, consistency = _answers(log, size)
    assert root == tree_hash(leaves)
    sample = [0, 1, 15, 16, 17, 255, 256, 257, size - 2, size - 1]
    assert proofs == [inclusion_proof(leaves, seq) for seq in sample]
    assert consistency == [consistency_proof(leaves, old) for old in (1, 16, 17, 256, 300, size - 1)]
    assert all(log.inclusion_proof(seq, size) == inclusion_proof(leaves, seq) for seq in range(size))
    assert log.verify(log.signer.verifier).ok  # type: ignore[union-attr]


def _unguarded(engine: Engine, sql: str, params: dict) -> None:
    """Change audit_nodes as the tables' owner could: the append-only guard lifted, then put back."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("ALTER TABLE audit_nodes DISABLE TRIGGER USER"))
            conn.execute(text(sql), params)
            conn.execute(text("ALTER TABLE audit_nodes ENABLE TRIGGER USER"))
        else:
            conn.execute(text("DROP TRIGGER audit_nodes_no_update"))
            conn.execute(text("DROP TRIGGER audit_nodes_no_delete"))
            conn.execute(text(sql), params)


@pytest.mark.parametrize(
    ("sql", "first", "problem"),
    [
        ("UPDATE audit_nodes SET hash = :h WHERE level = 8 AND idx = 0", 0, "altered"),
        ("UPDATE audit_nodes SET hash = :h WHERE level = 4 AND idx = 17", 272, "altered"),
        ("DELETE FROM audit_nodes WHERE level = 4 AND idx = 3 AND hash <> :h", 48, "missing"),
        ("INSERT INTO audit_nodes (level, idx, hash) VALUES (2, 5, :h)", 20, "not one the log keeps"),
        ("INSERT INTO audit_nodes (level, idx, hash) VALUES (4, 40, :h)", 640, "beyond the log"),
    ],
)
def test_a_changed_missing_or_extra_stored_subtree_is_found(
    audit_engine: Engine, sql: str, first: int, problem: str
) -> None:
    log, _ = _filled(audit_engine)
    assert log.verify(log.signer.verifier).ok  # type: ignore[union-attr]
    _unguarded(audit_engine, sql, {"h": "ab" * 32})
    result = log.verify(log.signer.verifier)  # type: ignore[union-attr]
    assert not result.ok and result.first_bad_seq == first and problem in (result.problem or ""), result


def test_a_log_written_with_every_level_stored_migrates_with_the_same_answers(audit_engine: Engine) -> None:
    log, leaves = _filled(audit_engine)
    size = len(leaves)
    before = _answers(log, size)
    verified = log.verify(log.signer.verifier)  # type: ignore[union-attr]
    _alembic(audit_engine, "downgrade", "a0002")  # the earlier layout: every complete subtree, leaves included
    assert _rows(audit_engine) == _every_subtree(leaves)
    _alembic(audit_engine, "upgrade", "head")
    assert {key[0] for key in _rows(audit_engine)} == {4, 8}
    assert _answers(log, size) == before
    assert log.verify(log.signer.verifier) == verified  # type: ignore[union-attr]
    log.append_many([{"kind": "money", "actor": "r", "subject": "bet:after", "payload": {}}] * 40)
    log.checkpoint()
    after = log.verify(log.signer.verifier)  # type: ignore[union-attr]
    assert after.ok and after.entries == size + 40 and after.checkpoints == len(BATCHES) + 1, after
