"""The append-only audit log: a hash chain whose entries are also the leaves of an RFC 9162 Merkle
tree, with stored subtree hashes (proofs in O(log n) lookups) and signed checkpoints.

Usage:

    log = AuditLog(engine, origin="audit.example/betting", signer=signer)
    log.append(kind="change", actor="ana", subject="slo:bets", payload={"objective": 999})
    note = log.checkpoint()

Appends are serialised by the database, not by this process: PostgreSQL takes a transaction-scoped
advisory lock, SQLite's write lock is taken by the first write. A conflicting append (two writers on
the same next seq) is retried, so concurrent appenders never fork the chain.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
from sqlalchemy import Connection, Engine, func, select
from sqlalchemy.exc import DBAPIError, IntegrityError

from audit.canonical import canonical_entry, canonical_json, is_plain
from audit.fast_verify import GENESIS, Verification, fast_verify, head_problem
from audit.merkle import (
    ProofError,
    Subtree,
    consistency_proof_from,
    inclusion_proof_from,
    leaf_hash,
    verify_consistency,
)
from audit.note import NoteSigner, Verifier, checkpoint_text, sign_note
from audit.schema import checkpoints, entries, nodes
from audit.stored_tree import MissingNode, aligned_ranges, push_leaf, with_stored_nodes

T = TypeVar("T")

APPEND_LOCK_KEY = 0x4155444954  # 'AUDIT'
_LOCK = "SELECT pg_advisory_xact_lock(%s)"  # PostgreSQL; SQLite's BEGIN IMMEDIATE is the lock there
_LAST = "SELECT seq, leaf_hash FROM audit_entries ORDER BY seq DESC LIMIT 1"
_HOLDING = "SELECT event_id, seq, leaf_hash FROM audit_entries WHERE event_id"
_HOLDING_SQLITE = f"{_HOLDING} IN (SELECT value FROM json_each(?))"
_HOLDING_POSTGRES = f"{_HOLDING} = ANY(ARRAY(SELECT json_array_elements_text(%s::json)))"
KINDS = ("change", "money", "checklist", "attestation", "access", "incident", "policy", "system")


class AuditError(ValueError):
    """An append or a proof the log refuses; the message says why."""


@dataclass(frozen=True)
class Appended:
    seq: int
    leaf_hash: str
    duplicate: bool = False


def _now() -> datetime:
    return datetime.now(UTC)


def canonical_payload(value: Any) -> str:
    """`canonical_json(value)`, through orjson when json's own key order is JCS order (`is_plain`):
    orjson escapes exactly as json does with ensure_ascii off, at a tenth of the cost."""
    if is_plain(value):
        try:
            return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode("utf-8")
        except orjson.JSONEncodeError:  # an integer beyond 64 bits, a lone surrogate, very deep nesting
            pass
    return canonical_json(value)


@dataclass(frozen=True)
class Frontier:
    """The log's right edge: its size, the last leaf hash (hex) and the hashes of its complete subtrees,
    left to right: all the next append needs."""

    size: int
    last: str
    stack: tuple[bytes, ...]


class AuditLog:
    def __init__(self, engine: Engine, *, origin: str, signer: NoteSigner | None = None) -> None:
        self.engine = engine
        self.origin = origin
        self.signer = signer
        self._frontier: Frontier | None = None  # the tree's right edge after this process's last append
        # Reads open a plain BEGIN where the engine opens writes with BEGIN IMMEDIATE (SQLite, as
        # controlplane.storage does): a long verification must not hold the write lock from appends.
        self._reader = engine.execution_options(sqlite_begin="BEGIN")
        # A proof or a root is one statement, consistent by itself: on PostgreSQL it needs no
        # transaction around it (two round trips fewer).
        self._one_read = (
            engine.execution_options(isolation_level="AUTOCOMMIT")
            if engine.dialect.name == "postgresql"
            else self._reader
        )

    # -- appending ----------------------------------------------------------------------------
    def append(self, *, kind: str, actor: str, subject: str, payload: dict, event_id: str | None = None) -> Appended:
        return self.append_many(
            [{"kind": kind, "actor": actor, "subject": subject, "payload": payload, "event_id": event_id}]
        )[0]

    def append_many(self, items: list[dict], *, attempts: int = 50) -> list[Appended]:
        """Append several entries in one transaction (group commit): one lock, one durable commit."""
        payloads = []
        for item in items:
            if item.get("kind") not in KINDS:
                raise AuditError(f"kind {item.get('kind')!r} is not one of {', '.join(KINDS)}")
            payloads.append(canonical_payload(item.get("payload")))  # refuses floats and the like, before any write
        for attempt in range(attempts):
            try:
                with self.engine.begin() as conn:
                    results, frontier = self._append_locked(conn, items, payloads)
                self._frontier = frontier  # committed: the next append may start from it
                return results
            except (IntegrityError, DBAPIError) as exc:
                # Another process took the same next seq (or held the write lock): try again.
                if attempt == attempts - 1:
                    raise AuditError(f"append failed after {attempts} attempts: {exc.orig}") from exc
                time.sleep(min(0.001 * 2**attempt, 0.05))
        raise AssertionError("unreachable")

    def _lock(self, conn: Connection) -> None:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(_LOCK, (APPEND_LOCK_KEY,))

    @staticmethod
    def _head(conn: Connection, event_ids: list[str]) -> tuple[Any, Sequence[Any]]:
        """Take the append lock (PostgreSQL; SQLite's BEGIN IMMEDIATE has taken it), then read the last
        entry's (seq, leaf_hash) and the (event_id, seq, leaf_hash) of entries holding any of these
        event ids. The ids go as one JSON text, unpacked by the database: one parameter whatever their
        number, a tenth of the driver's cost of an array of strings. On PostgreSQL the three statements
        go in one round trip, as a pipeline the server runs in order: both reads run after the lock."""
        ids = orjson.dumps(event_ids).decode("utf-8")
        if conn.dialect.name != "postgresql":
            last = conn.exec_driver_sql(_LAST).first()
            return last, conn.exec_driver_sql(_HOLDING_SQLITE, (ids,)).all() if event_ids else []
        import psycopg

        raw = conn.connection.dbapi_connection
        statement = _LOCK
        try:
            with raw.pipeline():  # type: ignore[union-attr]
                raw.cursor().execute(statement, (APPEND_LOCK_KEY,))  # type: ignore[union-attr]
                last_cursor = raw.cursor()  # type: ignore[union-attr]
                statement = _LAST
                last_cursor.execute(statement)
                known_cursor = raw.cursor()  # type: ignore[union-attr]
                if event_ids:
                    statement = _HOLDING_POSTGRES
                    known_cursor.execute(statement, (ids,))
            return last_cursor.fetchone(), known_cursor.fetchall() if event_ids else []
        except psycopg.Error as exc:  # as SQLAlchemy would raise it, for the caller's retries
            raise DBAPIError.instance(statement, None, exc, psycopg.Error) from exc

    def _append_locked(
        self, conn: Connection, items: list[dict], payloads: list[str]
    ) -> tuple[list[Appended], Frontier]:
        wanted = [item["event_id"] for item in items if item.get("event_id")]
        last, holding = self._head(conn, wanted)
        seq, prev = (last[0] + 1, last[1]) if last else (0, GENESIS)
        known = {event_id: Appended(at, leaf, duplicate=True) for event_id, at, leaf in holding}
        results: list[Appended] = []
        rows: list[dict] = []
        new_nodes: list[dict] = []
        # The hashes of the complete subtrees so far, left to right: all a new leaf can merge with. Kept
        # from this process's last append when nobody has appended since (the same last entry).
        frontier = self._frontier
        if frontier is not None and frontier.size == seq and frontier.last == prev:
            stack = list(frontier.stack)
        else:
            stack = self._with_nodes(conn, lambda subtree: [subtree(a, b) for a, b in aligned_ranges(0, seq)])
        created = _now()  # one transaction, one commit: the batch's entries are written at one time
        at = created.isoformat().replace("+00:00", "Z")
        for item, payload_json in zip(items, payloads, strict=True):
            event_id = item.get("event_id")
            if event_id and event_id in known:
                results.append(known[event_id])
                continue
            entry_text = canonical_entry(
                seq=seq, time=at, kind=item["kind"], actor=item["actor"],
                subject=item["subject"], payload_json=payload_json, prev_hash=prev, event_id=event_id or None,
            )  # fmt: skip
            leaf = leaf_hash(entry_text.encode("utf-8"))
            leaf_hex = leaf.hex()
            rows.append(
                {
                    "seq": seq,
                    "created_at": created,
                    "kind": item["kind"],
                    "actor": item["actor"],
                    "subject": item["subject"],
                    "event_id": event_id,
                    "entry": entry_text,
                    "leaf_hash": leaf_hex,
                }
            )
            for level, idx, value in push_leaf(stack, seq, leaf):
                new_nodes.append({"level": level, "idx": idx, "hash": value.hex()})
            results.append(Appended(seq, leaf_hex))
            if event_id:
                known[event_id] = Appended(seq, leaf_hex, duplicate=True)  # the same event twice in one batch
            prev, seq = leaf_hex, seq + 1
        if rows:
            conn.execute(entries.insert(), rows)  # one executemany, not a statement built per row
            if new_nodes:
                conn.execute(nodes.insert(), new_nodes)
        return results, Frontier(seq, prev, tuple(stack))

    # -- reading and proving ------------------------------------------------------------------
    def size(self, conn: Connection | None = None) -> int:
        if conn is None:
            with self._reader.connect() as c:
                return self.size(c)
        return conn.execute(select(func.count()).select_from(entries)).scalar_one()

    @staticmethod
    def _with_nodes(conn: Connection, build: Callable[[Subtree], T]) -> T:
        try:
            return with_stored_nodes(conn, build)
        except MissingNode as exc:
            raise AuditError(str(exc)) from None

    def root(self, size: int | None = None) -> bytes:
        with (self._reader if size is None else self._one_read).connect() as conn:
            n = self.size(conn) if size is None else size
            return self._with_nodes(conn, lambda subtree: subtree(0, n))

    def inclusion_proof(self, seq: int, size: int) -> list[bytes]:
        """The proof with one read of the stored subtrees it needs."""
        with self._one_read.connect() as conn:
            return self._with_nodes(conn, lambda subtree: inclusion_proof_from(subtree, seq, size))

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        with self._one_read.connect() as conn:
            return self._with_nodes(conn, lambda subtree: consistency_proof_from(subtree, old_size, new_size))

    def latest_checkpoint(self) -> tuple[int, str] | None:
        with self._reader.connect() as conn:
            row = conn.execute(
                select(checkpoints.c.tree_size, checkpoints.c.note).order_by(checkpoints.c.tree_size.desc()).limit(1)
            ).first()
        return (row.tree_size, row.note) if row else None

    # -- checkpoints --------------------------------------------------------------------------
    def checkpoint(self) -> str:
        """Sign the current tree head. Refuses to sign one inconsistent with the last signed head."""
        if self.signer is None:
            raise AuditError("this log has no signing key; give AuditLog a signer")
        with self.engine.begin() as conn:
            self._lock(conn)
            size = self.size(conn)
            last = conn.execute(
                select(checkpoints.c.tree_size, checkpoints.c.root_hash)
                .order_by(checkpoints.c.tree_size.desc())
                .limit(1)
            ).first()
            old = last.tree_size if last is not None and last.tree_size != size else None
            try:
                root, proof = self._with_nodes(
                    conn,
                    lambda subtree: (
                        subtree(0, size),
                        consistency_proof_from(subtree, old, size) if old is not None else [],
                    ),
                )
            except ProofError as exc:
                raise AuditError(f"refusing to sign: the log does not extend its last checkpoint ({exc})") from exc
            if last is not None:
                if last.tree_size == size:
                    if last.root_hash != root.hex():
                        raise AuditError(f"the tree of size {size} no longer has the root that was signed")
                    return conn.execute(select(checkpoints.c.note).where(checkpoints.c.tree_size == size)).scalar_one()
                try:
                    verify_consistency(last.tree_size, size, bytes.fromhex(last.root_hash), root, proof)
                except ProofError as exc:
                    raise AuditError(f"refusing to sign: the log does not extend its last checkpoint ({exc})") from exc
            note = sign_note(checkpoint_text(self.origin, size, root), self.signer)
            conn.execute(
                checkpoints.insert().values(
                    tree_size=size,
                    root_hash=root.hex(),
                    note=note,
                    key_id=self.signer.verifier.key_id.hex(),
                    created_at=_now(),
                )
            )
            return note

    # -- export -------------------------------------------------------------------------------
    def export(self, seqs: Iterable[int], *, verifier_key: str) -> dict:
        """A proof bundle for these entries against the latest checkpoint, checkable offline."""
        latest = self.latest_checkpoint()
        if latest is None:
            raise AuditError("no checkpoint yet; run `controlplane audit checkpoint` first")
        size, note = latest
        wanted = sorted(set(seqs))
        if not wanted:
            raise AuditError("nothing to export: no entries match")
        if wanted[-1] >= size:
            raise AuditError(
                f"entry {wanted[-1]} is not yet covered by the latest checkpoint (size {size}); checkpoint again"
            )
        with self._reader.connect() as conn:
            rows = {
                r.seq: r
                for r in conn.execute(
                    select(entries.c.seq, entries.c.entry, entries.c.leaf_hash).where(entries.c.seq.in_(wanted))
                )
            }
            proofs = self._with_nodes(
                conn, lambda subtree: [inclusion_proof_from(subtree, seq, size) for seq in wanted]
            )
            items = [
                {
                    "seq": seq,
                    "entry": rows[seq].entry,
                    "leaf_hash": rows[seq].leaf_hash,
                    "inclusion_proof": [p.hex() for p in proof],
                }
                for seq, proof in zip(wanted, proofs, strict=True)
            ]
        return {"checkpoint": note, "verifier_key": verifier_key, "tree_size": size, "entries": items}

    # -- verification -------------------------------------------------------------------------
    @staticmethod
    def _rows(conn: Connection, chunk: int = 5000) -> Iterator[Any]:
        """Entries in seq order, read a chunk at a time."""
        last = -1
        while True:
            batch = conn.execute(
                select(entries.c.seq, entries.c.entry, entries.c.leaf_hash)
                .where(entries.c.seq > last)
                .order_by(entries.c.seq)
                .limit(chunk)
            ).all()
            if not batch:
                return
            yield from batch
            last = batch[-1].seq

    def verify(
        self, *verifiers: Verifier, progress: Callable[[int], None] | None = None, progress_every: int = 5000
    ) -> Verification:
        """Chain, leaves, stored subtree hashes and every checkpoint; names the first bad seq.
        `progress(entries checked so far)` is called every `progress_every` entries, for long logs.

        One pass at hash speed (`audit.fast_verify`); only when it finds a problem, the exact pass that
        re-reads every entry as JSON says which entry is the first bad one and why."""
        with self._reader.connect() as conn:
            result = fast_verify(conn, self.origin, verifiers, progress=progress, progress_every=progress_every)
        if result.ok:
            return result
        return self.verify_exact(*verifiers, progress=progress, progress_every=progress_every)

    def verify_exact(
        self, *verifiers: Verifier, progress: Callable[[int], None] | None = None, progress_every: int = 5000
    ) -> Verification:
        """`verify` the slow way: every entry parsed and re-canonicalised, every stored node re-hashed."""
        with self._reader.connect() as conn:
            heads = {
                r.tree_size: (r.root_hash, r.note)
                for r in conn.execute(select(checkpoints.c.tree_size, checkpoints.c.root_hash, checkpoints.c.note))
            }
            stack: list[bytes] = []  # hashes of the complete subtrees so far, left to right
            computed: dict[tuple[int, int], bytes] = {}  # every subtree hash the log must store
            expected_seq, prev, prev_of_prev = 0, GENESIS, None
            checked = 0
            for row in self._rows(conn):
                seq = row.seq
                if progress is not None and seq and seq % progress_every == 0:
                    progress(seq)
                if seq != expected_seq:
                    return Verification(
                        False, expected_seq, checked, expected_seq, f"entry {expected_seq} is missing (next is {seq})"
                    )
                try:
                    document = json.loads(row.entry)
                    canonical = canonical_json(document) == row.entry
                except (ValueError, TypeError):
                    document, canonical = {}, False
                if not canonical or not isinstance(document, dict) or document.get("seq") != seq:
                    return Verification(
                        False, seq, checked, seq, f"entry {seq} is not the canonical entry for its place"
                    )
                leaf = leaf_hash(row.entry.encode("utf-8"))
                if leaf.hex() != row.leaf_hash:
                    return Verification(False, seq, checked, seq, f"entry {seq} does not match its leaf hash")
                if document.get("prev_hash") != prev:
                    if seq and document.get("prev_hash") == prev_of_prev:  # two entries follow the same one
                        before = f"entry {seq - 2}" if seq > 1 else "the start of the log"
                        return Verification(
                            False, seq - 1, checked, seq - 1,
                            f"entry {seq - 1} was inserted: it and entry {seq} both follow {before}",
                        )  # fmt: skip
                    return Verification(False, seq, checked, seq, f"entry {seq} does not link to entry {seq - 1}")
                prev_of_prev = prev
                for level, idx, value in push_leaf(stack, seq, leaf):
                    computed[(level, idx)] = value
                size_now = seq + 1
                if size_now in heads:
                    problem = head_problem(self.origin, size_now, stack, heads[size_now], verifiers)
                    if problem:
                        return Verification(False, seq, checked, seq, problem)
                    checked += 1
                prev, expected_seq = leaf.hex(), seq + 1
            beyond = [s for s in heads if s > expected_seq]
            if beyond:
                return Verification(
                    False,
                    expected_seq,
                    checked,
                    expected_seq,
                    f"a checkpoint signs tree size {min(beyond)} but the log ends at {expected_seq}: "
                    "entries were removed",
                )
            altered = self._altered_node(conn, computed, expected_seq)
            if altered is not None:
                return Verification(False, expected_seq, checked, altered[0], altered[1])
        return Verification(True, expected_seq, checked)

    @staticmethod
    def _altered_node(conn: Connection, computed: dict[tuple[int, int], bytes], size: int) -> tuple[int, str] | None:
        """Proofs are built from the stored subtree hashes: within the entries checked, exactly the
        complete subtrees at stored levels are stored, each with the hash of its entries."""
        end = (nodes.c.idx + 1).op("<<")(nodes.c.level)
        stored = {
            (r.level, r.idx): r.hash
            for r in conn.execute(select(nodes.c.level, nodes.c.idx, nodes.c.hash).where(end <= size))
        }
        for level, idx in sorted(stored.keys() | computed.keys(), key=lambda key: (key[1] << key[0], key[0])):
            first = idx << level
            span = f"entries {first}-{first + (1 << level) - 1}"
            value, wanted = stored.get((level, idx)), computed.get((level, idx))
            if value is None:
                return first, f"stored subtree hash over {span} is missing"
            if wanted is None:
                return first, f"a stored subtree hash over {span} is not one the log keeps"
            if wanted.hex() != value:
                return first, f"stored subtree hash over {span} was altered"
        size_now = select(func.coalesce(func.max(entries.c.seq), -1) + 1).scalar_subquery()
        beyond = conn.execute(
            select(nodes.c.level, nodes.c.idx).where(end > size_now).order_by(nodes.c.idx, nodes.c.level).limit(1)
        ).first()
        if beyond is not None:
            first = beyond.idx << beyond.level
            return (
                first,
                f"a stored subtree hash over entries {first}-{first + (1 << beyond.level) - 1} lies beyond the log",
            )
        return None
