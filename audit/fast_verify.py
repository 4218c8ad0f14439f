"""Verification of the whole log at hash speed: the stored bytes of every entry are hashed as they are,
never parsed and re-serialised, in one pass that also rebuilds every complete subtree and compares it
with the stored one (`audit.stored_tree`), and checks each signed checkpoint where the pass reaches its size.

    result = fast_verify(conn, origin, verifiers)       # a Verification; ok or not
    if not result.ok: ... the exact pass (AuditLog.verify) names the first bad entry

Entries are read a power-of-two chunk at a time by primary-key range (`audit.chunk_reads`: the database
reads ahead while the chunk before is hashed, all in one state of the log), so that each full chunk is one
complete, aligned subtree: its leaves are hashed in one list, then each level from the one
below, with the stored leaves and levels compared as whole strings and lists; the chunk's root then joins
the subtrees before it as a leaf would. Per entry that leaves the two hashes and little else for the
interpreter to do.

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
from binascii import hexlify
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, func, select

from audit.canonical import canonical_json
from audit.chunk_reads import chunks
from audit.merkle import node_hash
from audit.note import NoteError, Verifier, open_note, parse_checkpoint
from audit.schema import checkpoints, entries, nodes
from audit.stored_tree import STRIDE, aligned_ranges, is_stored_level, push_leaf

GENESIS = "0" * 64
CHUNK = 2048  # entries read per statement, a power of two: small enough to stay in the CPU's caches
HEX = 64  # hex digits of a leaf hash
STEP = HEX + 1  # a leaf hash and the comma after it


@dataclass(frozen=True)
class Verification:
    ok: bool
    entries: int
    checkpoints: int
    first_bad_seq: int | None = None
    problem: str | None = None


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
            isinstance(document, dict)
            and canonical_json(document).encode("utf-8") == entry
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


def _read_one_state(conn: Connection) -> None:
    """Every statement of the pass must read the same state of the log, as appends go on: a chunk is read
    ahead of the hashing, in more than one statement. SQLite's transaction is one snapshot already;
    PostgreSQL's is at REPEATABLE READ, asked for here when the connection has not begun."""
    if conn.dialect.name != "postgresql":
        return
    if not conn.in_transaction():
        conn.execution_options(isolation_level="REPEATABLE READ")
    elif conn.get_isolation_level() not in ("REPEATABLE READ", "SERIALIZABLE"):
        raise ValueError(
            "fast_verify reads one state of the log: pass a connection that has not begun, or one begun at"
            " REPEATABLE READ (PostgreSQL reads committed rows anew at each statement otherwise)"
        )


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
    _read_one_state(conn)
    heads = {
        r.tree_size: (r.root_hash, r.note)
        for r in conn.execute(select(checkpoints.c.tree_size, checkpoints.c.root_hash, checkpoints.c.note))
    }
    sizes = sorted(heads)
    signed_upto = max(heads, default=0)  # entries below this size are covered by a checkpoint
    bad = Verification(False, 0, 0)
    top = chunk.bit_length() - 1  # a full chunk's root is at this level
    stack: list[bytes] = []  # hashes of the complete subtrees of the chunks so far, left to right
    expected, prev, checked = 0, GENESIS, 0
    read = chunks(conn, chunk, is_stored_level)
    try:
        for part in read:
            lo, k, hashes = expected, part.found, part.leaf_hashes
            # One entry read for each row, joined in the order lo, lo + 1, ..., none missing.
            if not k or part.odd or part.parts != k or (part.first, part.last) != (lo, lo + k - 1):
                return bad
            leaves = part.leaves()
            if hexlify(b"".join(leaves), b",", HEX // 2) != hashes:
                return bad
            for i in range(max(signed_upto - lo, 0), k):  # not yet signed: parsed, in its place, linked
                before = hashes[(i - 1) * STEP : (i - 1) * STEP + HEX].decode() if i else prev
                if not _canonical_at(part.entry(i), lo + i, before):
                    return bad
            levels = _levels(leaves)
            for level in range(STRIDE, len(levels), STRIDE):
                base = lo >> level
                if [part.inner.get((level, base + i)) for i in range(len(levels[level]))] != [
                    h.hex() for h in levels[level]
                ]:
                    return bad
            expected, prev = lo + k, hashes[-HEX:].decode()
            for at in sizes[bisect_right(sizes, lo) : bisect_right(sizes, expected)]:
                if head_problem(origin, at, stack + _stack_at(levels, lo, at), heads[at], verifiers):
                    return bad
                checked += 1
            if k < chunk:
                stack += _stack_at(levels, lo, expected)  # the last chunk: nothing after it to merge with
            else:
                # The chunk's root joins the subtrees before it as a leaf would, a level `top` higher.
                for level, idx, value in push_leaf(stack, lo >> top, levels[top][0], top):
                    if part.inner.get((level, idx)) != value.hex():
                        return bad
            if progress is not None:
                for done in range(-(-lo // progress_every) * progress_every, expected, progress_every):
                    if done:
                        progress(done)
    finally:
        read.close()
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
