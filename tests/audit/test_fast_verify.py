"""The one-pass verification that hashes stored entries as they are (`audit.fast_verify`): it accepts
exactly the logs the exact pass accepts, on SQLite and PostgreSQL. Every byte of an entry under a
checkpoint changed in turn is caught; so is an owner's rewrite that recomputes every hash, a
non-canonical entry after the last checkpoint, a stored subtree too many, and a chunk boundary
anywhere."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine, text

from audit.canonical import canonical_json
from audit.fast_verify import fast_verify, node_ranges
from audit.log import AuditLog
from audit.merkle import leaf_hash, node_hash
from audit.note import NoteSigner
from audit.schema import migrate_audit
from controlplane.storage import make_engine

ORIGIN = "audit.test/fast"


@pytest.fixture
def signer() -> NoteSigner:
    return NoteSigner.generate(ORIGIN)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    migrate_audit(engine)
    with engine.begin() as conn:  # tampering needs the append-only guards out of the way, as an owner could
        for table in ("audit_entries", "audit_nodes"):
            if conn.dialect.name == "postgresql":
                conn.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
            else:
                for action in ("update", "delete"):
                    conn.execute(text(f"DROP TRIGGER IF EXISTS {table}_no_{action}"))
    yield engine
    engine.dispose()


def _log(engine: Engine, signer: NoteSigner, signed: int, tail: int) -> AuditLog:
    log = AuditLog(engine, origin=ORIGIN, signer=signer)
    for i in range(signed + tail):
        payload = {"stake_minor": 100 + i, "note": 'a "quoted",\\"prev_hash\\":"x', "nested": {"prev_hash": "0" * 64}}
        log.append(kind="money", actor="relay", subject=f"bet:{i}", payload=payload)
        if i + 1 in (signed // 2, signed):
            log.checkpoint()
    return log


def _fast(log: AuditLog, signer: NoteSigner, chunk: int = 4096):  # type: ignore[no-untyped-def]
    with log.engine.connect() as conn:
        return fast_verify(conn, ORIGIN, (signer.verifier,), chunk=chunk)


def _entry(engine: Engine, seq: int) -> str:
    with engine.connect() as conn:
        return conn.execute(text("SELECT entry FROM audit_entries WHERE seq = :s"), {"s": seq}).scalar_one()


def _rewrite(engine: Engine, seq: int, entry: str, *, rehash: bool) -> None:
    """Replace an entry; with `rehash`, also its leaf hash and every stored subtree above it (what an owner
    of the database could do; only the signed checkpoints are out of reach)."""
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_entries SET entry = :e WHERE seq = :s"), {"e": entry, "s": seq})
        if not rehash:
            return
        leaf = leaf_hash(entry.encode("utf-8"))
        conn.execute(text("UPDATE audit_entries SET leaf_hash = :h WHERE seq = :s"), {"h": leaf.hex(), "s": seq})
        level = [bytes.fromhex(h) for (h,) in conn.execute(text("SELECT leaf_hash FROM audit_entries ORDER BY seq"))]
        depth = 0
        while len(level) > 1:  # every complete subtree's hash from the leaves up; the stored ones rewritten
            level = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
            depth += 1
            for idx, value in enumerate(level):
                conn.execute(
                    text("UPDATE audit_nodes SET hash = :h WHERE level = :l AND idx = :i"),
                    {"h": value.hex(), "l": depth, "i": idx},
                )


def test_a_sound_log_passes_the_fast_pass_itself(engine: Engine, signer: NoteSigner) -> None:
    log = _log(engine, signer, signed=37, tail=6)
    for chunk in (1, 2, 4, 16, 4096):  # chunk boundaries everywhere
        fast = _fast(log, signer, chunk)
        assert fast.ok and (fast.entries, fast.checkpoints) == (43, 2), (chunk, fast)
    exact = log.verify_exact(signer.verifier)
    assert (exact.ok, exact.entries, exact.checkpoints) == (True, 43, 2)


def test_every_changed_byte_of_a_signed_entry_is_caught(engine: Engine, signer: NoteSigner) -> None:
    log = _log(engine, signer, signed=12, tail=0)
    seq = 7
    original = _entry(engine, seq)
    raw = original.encode("utf-8")
    for position in range(len(raw)):
        changed = bytearray(raw)
        changed[position] = ord("#") if raw[position] != ord("#") else ord("$")
        _rewrite(engine, seq, changed.decode("utf-8"), rehash=False)
        assert not _fast(log, signer).ok, position
        result = log.verify(signer.verifier)
        assert not result.ok and result.first_bad_seq == seq, (position, result)
    _rewrite(engine, seq, original, rehash=False)
    assert log.verify(signer.verifier).ok


def test_a_rewrite_with_every_hash_recomputed_breaks_the_signed_root(engine: Engine, signer: NoteSigner) -> None:
    log = _log(engine, signer, signed=16, tail=0)
    # The last signed entry, still canonical and in its place: only the signature over the root can tell.
    document = json.loads(_entry(engine, 15))
    _rewrite(engine, 15, canonical_json(document | {"actor": "mallory"}), rehash=True)
    assert not _fast(log, signer).ok
    result = log.verify(signer.verifier)
    assert not result.ok and result.first_bad_seq == 15 and "root" in (result.problem or ""), result
    # One in the middle: the next entry no longer links to it.
    document = json.loads(_entry(engine, 5))
    _rewrite(engine, 5, canonical_json(document | {"actor": "mallory"}), rehash=True)
    assert not _fast(log, signer).ok
    assert log.verify(signer.verifier).first_bad_seq == 6


def test_a_non_canonical_entry_after_the_last_checkpoint_is_caught(engine: Engine, signer: NoteSigner) -> None:
    log = _log(engine, signer, signed=8, tail=4)
    seq = 10
    text_ = _entry(engine, seq)
    spaced = text_.replace('"kind":', ' "kind":', 1)  # the same document, not its canonical form
    assert json.loads(spaced) == json.loads(text_)
    _rewrite(engine, seq, spaced, rehash=True)
    assert not _fast(log, signer).ok
    result = log.verify(signer.verifier)
    assert not result.ok and result.first_bad_seq == seq and "canonical" in (result.problem or "")


def test_a_stored_subtree_too_many_is_caught(engine: Engine, signer: NoteSigner) -> None:
    log = _log(engine, signer, signed=6, tail=1)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO audit_nodes (level, idx, hash) VALUES (1, 3, :h)"), {"h": "ab" * 32})
    assert not _fast(log, signer).ok
    assert not log.verify(signer.verifier).ok


@given(lo=st.integers(0, 300), width=st.integers(0, 300))
def test_node_ranges_cover_each_complete_subtree_once(lo: int, width: int) -> None:
    hi = lo + width
    listed = {(lv, i) for lv, a, b in node_ranges(lo, hi) for i in range(a, b + 1)}
    ending_here = {(lv, i) for lv in range(12) for i in range(0, (hi + 1) >> lv) if lo <= ((i + 1) << lv) - 1 <= hi}
    assert listed == ending_here


def test_appends_while_the_pass_runs_do_not_fail_it(engine: Engine, signer: NoteSigner) -> None:
    log = _log(engine, signer, signed=20, tail=3)
    more = [{"kind": "money", "actor": "relay", "subject": "bet:more", "payload": {"i": i}} for i in range(9)]

    def append_meanwhile(seq: int) -> None:  # another process appends once as the verifier reads
        if seq == 8:
            log.append_many(more)

    # Read as AuditLog reads (a plain BEGIN on SQLite: a reader holds no write lock), in small chunks so
    # that the entries appended meanwhile are read too.
    with engine.execution_options(sqlite_begin="BEGIN").connect() as conn:
        result = fast_verify(conn, ORIGIN, (signer.verifier,), chunk=4, progress=append_meanwhile, progress_every=8)
    # SQLite reads one snapshot (the 23 there at the start); PostgreSQL reads committed rows (all 32).
    assert result.ok and result.entries in (23, 23 + 9), result
    # Through the log itself (an append at seq 30 of the pass; entries = 32 on SQLite, read as a snapshot).
    more_again = log.verify(signer.verifier, progress=lambda seq: log.append_many(more[:2]), progress_every=30)
    assert more_again.ok and more_again.entries in (32, 34), more_again
    assert log.size() == 34


@pytest.mark.parametrize(
    "tamper",
    [
        "DELETE FROM audit_entries WHERE seq BETWEEN 12 AND 19",  # whole chunks' ranges empty, entries after them
        "UPDATE audit_entries SET seq = 1000 WHERE seq = 5",  # a signed entry moved far past the end
        "UPDATE audit_entries SET seq = 40 WHERE seq = 7",  # the last signed entry moved behind the tail
    ],
)
def test_entries_missing_from_a_range_or_moved_are_caught(engine: Engine, signer: NoteSigner, tamper: str) -> None:
    log = _log(engine, signer, signed=8, tail=20)
    assert _fast(log, signer, chunk=4).ok
    with engine.begin() as conn:
        conn.execute(text(tamper))
    for chunk in (4, 8, 4096):
        assert not _fast(log, signer, chunk).ok, chunk
    assert not log.verify(signer.verifier).ok
