"""The one-pass verification that hashes stored entries as they are (`audit.fast_verify`): it accepts
exactly the logs the exact pass accepts, on SQLite and PostgreSQL. Every byte of an entry under a
checkpoint changed in turn is caught; so is an owner's rewrite that recomputes every hash, a
non-canonical entry after the last checkpoint, a stored subtree too many, and a chunk boundary
anywhere."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import DBAPIError

from audit import chunk_reads
from audit.canonical import canonical_json
from audit.chunk_reads import node_ranges
from audit.fast_verify import fast_verify
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


@pytest.mark.parametrize(("group", "span"), [(2, 8), (1, 4), (4, 16)])
@pytest.mark.parametrize(
    "tamper",
    [
        "UPDATE audit_entries SET seq = seq + 100 WHERE seq = 16",  # the first of a span gone, entries after it
        "DELETE FROM audit_entries WHERE seq = 20",  # the first of a group gone, inside a span
    ],
)
def test_a_log_read_in_many_statements_and_groups_is_read_whole(
    engine: Engine, signer: NoteSigner, monkeypatch: pytest.MonkeyPatch, group: int, span: int, tamper: str
) -> None:
    """PostgreSQL reads a span of entries per statement and joins them in groups: with both made small,
    a log is read in many spans of many groups. SQLite reads a chunk per statement either way."""
    monkeypatch.setattr(chunk_reads, "GROUP", group)
    monkeypatch.setattr(chunk_reads, "SPAN", span)
    log = _log(engine, signer, signed=37, tail=6)
    for chunk in (1, 2, 4, 8):
        fast = _fast(log, signer, chunk)
        assert fast.ok and (fast.entries, fast.checkpoints) == (43, 2), (chunk, fast)
    with engine.begin() as conn:
        conn.execute(text(tamper))
    for chunk in (2, 8):
        assert not _fast(log, signer, chunk).ok, chunk
    assert not log.verify(signer.verifier).ok
    with engine.connect() as conn:  # a pass stopped by a bad chunk leaves its connection usable
        assert not fast_verify(conn, ORIGIN, (signer.verifier,), chunk=2).ok
        assert conn.execute(text("SELECT count(*) FROM audit_entries")).scalar_one() in (42, 43)


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
    # One state of the log is read, on both databases (the chunks are read ahead): the 23 there at the start.
    assert result.ok and result.entries == 23, result
    # Through the log itself (an append at seq 30 of the pass): the 32 there when it began.
    more_again = log.verify(signer.verifier, progress=lambda seq: log.append_many(more[:2]), progress_every=30)
    assert more_again.ok and more_again.entries == 32, more_again
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


def test_leaf_hashes_shifted_between_neighbours_are_caught(engine: Engine, signer: NoteSigner) -> None:
    """Two stored leaf hashes that still join into the same string (one two digits longer, the next two
    shorter) are wrong hashes for both entries; proofs built from them would fail. PostgreSQL's column
    refuses the longer one outright."""
    log = _log(engine, signer, signed=8, tail=2)
    with engine.connect() as conn:
        first, second = (
            conn.execute(text("SELECT leaf_hash FROM audit_entries WHERE seq = :s"), {"s": s}).scalar_one()
            for s in (3, 4)
        )
    try:
        with engine.begin() as conn:
            for seq, value in ((3, first + second[:2]), (4, second[2:])):
                conn.execute(text("UPDATE audit_entries SET leaf_hash = :h WHERE seq = :s"), {"h": value, "s": seq})
    except DBAPIError:
        assert engine.dialect.name == "postgresql"  # varchar(64): the database keeps the hashes whole
        return
    assert not _fast(log, signer).ok
    result = log.verify(signer.verifier)
    assert not result.ok and result.first_bad_seq == 3, result


def test_an_entry_holding_any_byte_is_read_whole(engine: Engine, signer: NoteSigner) -> None:
    """Entries are cut from a chunk by their lengths, never at a separator: an unsigned entry holding a NUL
    or a record separator is one entry (refused here as not canonical, where the exact pass names it)."""
    log = _log(engine, signer, signed=8, tail=3)
    for odd in ("\x1e", "\x00"):
        original = _entry(engine, 9)
        try:
            _rewrite(engine, 9, original.replace('"kind":', f'"k{odd}":', 1), rehash=True)
        except DBAPIError:
            assert engine.dialect.name == "postgresql" and odd == "\x00"  # text holds no NUL there
            continue
        assert not _fast(log, signer).ok, repr(odd)
        result = log.verify(signer.verifier)
        assert not result.ok and result.first_bad_seq == 9 and "canonical" in (result.problem or ""), result
        _rewrite(engine, 9, original, rehash=True)
        assert _fast(log, signer).ok


def test_a_pass_that_stops_early_leaves_no_reader_behind(engine: Engine, signer: NoteSigner) -> None:
    _log(engine, signer, signed=40, tail=0)
    document = json.loads(_entry(engine, 1))
    _rewrite(engine, 1, canonical_json(document | {"actor": "mallory"}), rehash=False)
    with engine.connect() as conn:
        assert not fast_verify(conn, ORIGIN, (signer.verifier,), chunk=4).ok  # bad in the first chunk of ten
        assert not [t for t in threading.enumerate() if t.name == "audit-verify-reader"]
        assert conn.execute(text("SELECT count(*) FROM audit_entries")).scalar_one() == 40  # the connection is free


def test_a_connection_bound_to_its_thread_is_read_in_that_thread(tmp_path, signer: NoteSigner) -> None:
    """An engine made without controlplane.storage keeps sqlite3's check_same_thread: no reader thread."""
    engine = create_engine(f"sqlite:///{tmp_path / 'plain.db'}")
    migrate_audit(engine)
    log = _log(engine, signer, signed=9, tail=2)
    assert _fast(log, signer, chunk=4).ok
    assert log.verify(signer.verifier).ok
    engine.dispose()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_postgresql_reads_one_state_or_refuses(engine: Engine, signer: NoteSigner) -> None:
    log = _log(engine, signer, signed=4, tail=1)
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))  # begun at READ COMMITTED: every statement would read anew
        with pytest.raises(ValueError, match="REPEATABLE READ"):
            fast_verify(conn, ORIGIN, (signer.verifier,))
    with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn:
        conn.execute(text("SELECT 1"))
        assert fast_verify(conn, ORIGIN, (signer.verifier,)).ok
    assert log.verify(signer.verifier).ok


@pytest.mark.parametrize("entry", ["1", "[]", '"seq"', "null"])
def test_an_unsigned_entry_that_is_not_an_object_is_named(engine: Engine, signer: NoteSigner, entry: str) -> None:
    log = _log(engine, signer, signed=4, tail=2)
    _rewrite(engine, 5, entry, rehash=True)
    assert not _fast(log, signer).ok
    result = log.verify(signer.verifier)
    assert not result.ok and result.first_bad_seq == 5 and "canonical" in (result.problem or ""), result


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_null_entry_is_named_not_a_crash(engine: Engine, signer: NoteSigner) -> None:
    log = _log(engine, signer, signed=4, tail=2)
    with engine.begin() as conn:  # an owner may drop the constraint too
        conn.execute(text("ALTER TABLE audit_entries ALTER COLUMN entry DROP NOT NULL"))
        conn.execute(text("UPDATE audit_entries SET entry = NULL WHERE seq = 5"))
    assert not _fast(log, signer).ok
    result = log.verify(signer.verifier)
    assert not result.ok and result.first_bad_seq == 5 and "canonical" in (result.problem or ""), result


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # PostgreSQL's columns hold their own type
@pytest.mark.parametrize(
    "tamper",
    [
        "UPDATE audit_entries SET leaf_hash = CAST(leaf_hash AS BLOB) WHERE seq = 5",  # the same digits, as bytes
        "UPDATE audit_entries SET entry = CAST(entry AS BLOB) WHERE seq = 5",  # a signed entry's bytes, as a blob
        "UPDATE audit_entries SET entry = CAST(entry AS BLOB) WHERE seq = 45",  # and one after the checkpoint
        "UPDATE audit_entries SET seq = 4.5 WHERE seq = 5",  # a seq that is no integer, still in its place
    ],
)
def test_sqlite_values_of_another_type_are_caught(engine: Engine, signer: NoteSigner, tamper: str) -> None:
    """SQLite keeps any type in any column: what the exact pass refuses, the fast pass must refuse too."""
    log = _log(engine, signer, signed=40, tail=10)
    assert _fast(log, signer, chunk=16).ok
    with engine.begin() as conn:
        conn.execute(text(tamper))
    for chunk in (16, 4096):
        assert not _fast(log, signer, chunk).ok, chunk
    assert not log.verify(signer.verifier).ok
