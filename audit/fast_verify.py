"""Verification of the whole log at hash speed: the stored bytes of every entry are hashed as they are,
never parsed and re-serialised, in one pass that also rebuilds every complete subtree and compares it
with the stored one (`audit.stored_tree`), and checks each signed checkpoint where the pass reaches its size.

    result = fast_verify(conn, origin, verifiers)       # a Verification; ok or not
    if not result.ok: ... the exact pass (AuditLog.verify) names the first bad entry

Entries are read a power-of-two chunk at a time by primary-key range, so that each full chunk is one
complete, aligned subtree: its leaves are hashed in one list, then each level from the one below, with
the stored levels compared as whole lists; the chunk's root then joins the subtrees before it as a leaf
would. Per entry that leaves the two hashes and little else for the interpreter to do.

Why hashing the stored bytes is enough where the exact pass parses and re-checks them: an entry's leaf is
the hash of its stored UTF-8 bytes, the leaves in `seq` order and the stored subtrees must agree, and a
checkpoint signs the root over them; so any changed byte of an entry under a checkpoint changes a leaf,
then the subtrees, then the signed root (`tests/audit/test_fast_verify.py` changes every byte of an entry
in turn), and an entry moved, dropped or inserted changes the leaves' order. Only `AuditLog.append`
writes entries, always as canonical JSON carrying their own `seq` and the `prev_hash` of the entry before,
and only it holds the signing key: what a valid signature covers was canonical and linked when it was
signed (whoever holds the key could rewrite the whole log, chain included, so the chain adds nothing
under a signature). Entries after the last checkpoint are signed by nothing yet, so each is still parsed,
re-canonicalised and checked for its place and link here.

Any failure is reported by the exact pass, so both give the same answer and the same first bad entry.
"""

from __future__ import annotations

import hashlib
import json
from bisect import bisect_right
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, select

from audit.canonical import canonical_json
from audit.merkle import node_hash
from audit.note import NoteError, Verifier, open_note, parse_checkpoint
from audit.schema import checkpoints, entries, nodes
from audit.stored_tree import STRIDE, aligned_ranges, is_stored_level, push_leaf

GENESIS = "0" * 64
CHUNK = 2048  # entries read per statement, a power of two: small enough to stay in the CPU's caches

# (first seq, last seq, rows of (UTF-8 bytes, leaf hash hex), stored subtrees): a chunk's entries in seq
# order; no rows and no seqs when entries are missing here but there are more after.
Batch = tuple[int | None, int | None, Sequence[Any], dict[tuple[int, int], str]]


@dataclass(frozen=True)
class Verification:
    ok: bool
    entries: int
    checkpoints: int
    first_bad_seq: int | None = None
    problem: str | None = None


def node_ranges(lo: int, hi: int) -> list[tuple[int, int, int]]:
    """(level, first idx, last idx) of every complete subtree whose last leaf is in [lo, hi]."""
    out = []
    level = 0
    while (1 << level) <= hi + 1:
        first = -(-(lo + 1) >> level) - 1 if level else lo  # ceil((lo + 1) / 2**level) - 1
        first = max(first, 0)
        last = ((hi + 1) >> level) - 1
        if first <= last:
            out.append((level, first, last))
        level += 1
    return out


class _Reads:
    """The statements that read a chunk: its entries, the stored subtrees whose last leaf lies in it, and
    for a chunk that is not full, its first and last seq; each as (SQL, parameters) in the driver's own
    parameter style. A full chunk needs no seqs: seq is the primary key, so `chunk` rows read from
    [lo, lo + chunk) are exactly the seqs lo, lo + 1, ..., lo + chunk - 1."""

    def __init__(self, postgres: bool) -> None:
        self.mark = "%s" if postgres else "?"
        text = "entry" if postgres else "CAST(entry AS BLOB)"  # PostgreSQL: bytes by the loader
        self.entries = f"SELECT {text}, leaf_hash FROM audit_entries WHERE seq >= {self.mark}"

    def chunk(self, lo: int, size: int) -> tuple[str, tuple[int, int]]:
        return f"{self.entries} AND seq < {self.mark} ORDER BY seq", (lo, lo + size)

    def bounds(self, lo: int, size: int) -> tuple[str, tuple[int, int, int]]:
        """The first and last seq in [lo, lo + size), and the first at or after lo (a chunk came back short)."""
        m = self.mark
        return (
            f"SELECT (SELECT min(seq) FROM audit_entries WHERE seq >= {m}),"
            f" (SELECT max(seq) FROM audit_entries WHERE seq >= {m} AND seq < {m})",
            (lo, lo, lo + size),
        )

    def nodes(self, lo: int, size: int) -> tuple[str, list[int]] | None:
        ranges = [(lv, a, b) for lv, a, b in node_ranges(lo, lo + size - 1) if is_stored_level(lv)]
        if not ranges:
            return None
        m = self.mark
        where = " OR ".join(f"(level = {m} AND idx BETWEEN {m} AND {m})" for _ in ranges)
        return f"SELECT level, idx, hash FROM audit_nodes WHERE {where}", [v for r in ranges for v in r]


def _bounded(
    cursor: Any, reads: _Reads, rows: Sequence[Any], lo: int, chunk: int, inner: dict[tuple[int, int], str]
) -> Batch | None:
    """The batch of a chunk's rows: its seqs by construction when it is full; otherwise read (None at the end)."""
    if len(rows) == chunk:
        return lo, lo + chunk - 1, rows, inner
    first, last = cursor.execute(*reads.bounds(lo, chunk)).fetchone()
    if first is None:
        return None  # nothing at or after lo: the end
    if not rows:
        return None, None, rows, inner  # missing here, more after
    return first, last, rows, inner


def _batches(conn: Connection, chunk: int) -> Generator[Batch, None, None]:
    """Entries in seq order as `Batch`es (rows of UTF-8 bytes and leaf hash hex), a chunk of seqs at a
    time, with the stored subtrees whose last leaf lies in the chunk. Read through the driver's own cursor (at hash
    speed the rows' wrapping would cost more than the hashing), by primary-key range (a plan no table
    statistics can spoil), the text read as its bytes, never decoded."""
    raw: Any = conn.connection.dbapi_connection
    if conn.dialect.name == "postgresql":
        yield from _pipelined(raw, chunk)
        return
    reads = _Reads(postgres=False)
    cursor = raw.cursor()
    try:
        lo = 0
        while True:
            rows = cursor.execute(*reads.chunk(lo, chunk)).fetchall()
            nodes_read = reads.nodes(lo, chunk)
            inner = {(lv, i): h for lv, i, h in cursor.execute(*nodes_read).fetchall()} if nodes_read else {}
            batch = _bounded(cursor, reads, rows, lo, chunk, inner)
            if batch is None:
                return
            yield batch
            lo += chunk
    finally:
        cursor.close()


def _pipelined(raw: Any, chunk: int) -> Generator[Batch, None, None]:
    """`_batches` on PostgreSQL: the next chunk's statements are sent before this chunk is handed on, in
    one pipeline, so that the server reads and sends it while this process hashes."""
    from psycopg.types.string import ByteaBinaryLoader

    reads = _Reads(postgres=True)

    def cursor() -> Any:
        c = raw.cursor(binary=True)
        c.adapters.register_loader("text", ByteaBinaryLoader)  # the text's own bytes, not decoded
        return c

    def send(pair: tuple[Any, Any], lo: int) -> bool:
        pair[0].execute(*reads.chunk(lo, chunk))
        nodes_read = reads.nodes(lo, chunk)
        if nodes_read:
            pair[1].execute(*nodes_read)
        return nodes_read is not None

    pairs = ((cursor(), cursor()), (cursor(), cursor()))
    with raw.pipeline():
        lo, k = 0, 0
        has_nodes = send(pairs[0], lo)
        while True:
            now, ahead = pairs[k % 2], pairs[(k + 1) % 2]
            next_has_nodes = send(ahead, lo + chunk)
            rows = now[0].fetchall()
            inner = {(lv, i): h for lv, i, h in now[1].fetchall()} if has_nodes else {}
            batch = _bounded(now[0], reads, rows, lo, chunk, inner)
            if batch is None:
                return
            yield batch
            lo, k, has_nodes = lo + chunk, k + 1, next_has_nodes


def head_problem(
    origin: str, size: int, stack: list[bytes], head: tuple[str, str], verifiers: tuple[Verifier, ...]
) -> str | None:
    """What is wrong with the checkpoint at `size`, given the complete subtrees' hashes so far (left to
    right), or None: the root they make must be the one stored and signed, by a known key, for this log."""
    root = stack[-1]
    for h in reversed(stack[:-1]):
        root = node_hash(h, root)
    root_hex, note = head
    if root.hex() != root_hex:
        return f"the entries up to tree size {size} do not have the root its checkpoint signed"
    try:
        signed_origin, signed_size, signed_root = parse_checkpoint(open_note(note, *verifiers))
    except NoteError as exc:
        return f"checkpoint at tree size {size}: {exc}"
    if signed_size != size or signed_root != root or signed_origin != origin:
        return f"checkpoint at tree size {size} signs another tree"
    return None


def _canonical_at(entry: bytes, seq: int, prev: str) -> bool:
    try:
        document = json.loads(entry)
        return (
            canonical_json(document).encode("utf-8") == entry
            and document.get("seq") == seq
            and document.get("prev_hash") == prev
        )
    except (ValueError, TypeError):
        return False


def _levels(leaves: list[bytes]) -> list[list[bytes]]:
    """Every complete subtree of an aligned run of leaves, level by level: levels[L][i] covers leaves
    [i * 2**L, (i + 1) * 2**L) of the run."""
    sha256 = hashlib.sha256
    levels = [leaves]
    level = leaves
    while len(level) > 1:
        level = [sha256(b"\x01" + left + right).digest() for left, right in zip(level[::2], level[1::2], strict=False)]
        levels.append(level)
    return levels


def _stack_at(levels: list[list[bytes]], lo: int, size: int) -> list[bytes]:
    """The complete subtrees of leaves [lo, size) (lo aligned to the run's length), left to right."""
    out = []
    for a, b in aligned_ranges(lo, size):
        level = (b - a).bit_length() - 1
        out.append(levels[level][(a - lo) >> level])
    return out


def fast_verify(
    conn: Connection,
    origin: str,
    verifiers: tuple[Verifier, ...],
    *,
    progress: Callable[[int], None] | None = None,
    progress_every: int = 5000,
    chunk: int = CHUNK,
) -> Verification:
    """Ok, or not ok without saying where (the exact pass says where). Entries are read `chunk` (a power
    of two) at a time: each full chunk is a complete subtree, hashed level by level."""
    if chunk < 1 or chunk & (chunk - 1):
        raise ValueError(f"chunk must be a power of two, not {chunk}")
    heads = {
        r.tree_size: (r.root_hash, r.note)
        for r in conn.execute(select(checkpoints.c.tree_size, checkpoints.c.root_hash, checkpoints.c.note))
    }
    sizes = sorted(heads)
    signed_upto = max(heads, default=0)  # entries below this size are covered by a checkpoint
    bad = Verification(False, 0, 0)
    sha256 = hashlib.sha256
    top = chunk.bit_length() - 1  # a full chunk's root is at this level
    stack: list[bytes] = []  # hashes of the complete subtrees of the chunks so far, left to right
    expected, prev, checked = 0, GENESIS, 0
    batches = _batches(conn, chunk)
    try:
        for first, last, rows, inner in batches:
            lo, k = expected, len(rows)
            # seq is the primary key and the rows come sorted from [lo, lo + chunk): k unique seqs from lo
            # to lo + k - 1 are exactly the seqs lo, lo + 1, ..., with none missing.
            if not k or first != lo or last != lo + k - 1:
                return bad
            leaves = [sha256(b"\x00" + entry).digest() for entry, _ in rows]
            if b"".join(leaves).hex() != "".join([stored for _, stored in rows]):
                return bad
            for i in range(max(signed_upto - lo, 0), k):  # not yet signed: parsed, in its place, linked
                if not _canonical_at(rows[i][0], lo + i, rows[i - 1][1] if i else prev):
                    return bad
            levels = _levels(leaves)
            for level in range(STRIDE, len(levels), STRIDE):
                base = lo >> level
                if [inner.get((level, base + i)) for i in range(len(levels[level]))] != [
                    h.hex() for h in levels[level]
                ]:
                    return bad
            expected, prev = lo + k, rows[-1][1]
            for at in sizes[bisect_right(sizes, lo) : bisect_right(sizes, expected)]:
                if head_problem(origin, at, stack + _stack_at(levels, lo, at), heads[at], verifiers):
                    return bad
                checked += 1
            if k < chunk:
                stack += _stack_at(levels, lo, expected)  # the last chunk: nothing after it to merge with
            else:
                # The chunk's root joins the subtrees before it as a leaf would, a level `top` higher.
                for level, idx, value in push_leaf(stack, lo >> top, levels[top][0], top):
                    if inner.get((level, idx)) != value.hex():
                        return bad
            if progress is not None:
                for done in range(-(-lo // progress_every) * progress_every, expected, progress_every):
                    if done:
                        progress(done)
    finally:
        batches.close()
    if any(s > expected for s in heads):
        return bad
    # Every stored subtree is one the log accounts for: those within the entries checked are exactly
    # their complete subtrees, and none lies beyond the log as it is now (appends may go on meanwhile).
    end = (nodes.c.idx + 1).op("<<")(nodes.c.level)
    within = conn.execute(select(func.count()).select_from(nodes).where(end <= expected)).scalar_one()
    if within != sum(expected >> level for level in range(STRIDE, expected.bit_length(), STRIDE)):
        return bad
    size_now = select(func.coalesce(func.max(entries.c.seq), -1) + 1).scalar_subquery()
    if conn.execute(select(func.count()).select_from(nodes).where(end > size_now)).scalar_one():
        return bad
    return Verification(True, expected, checked)
