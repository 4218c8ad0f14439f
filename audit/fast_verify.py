"""Verification of the whole log at hash speed: the stored bytes of every entry are hashed as they are,
never parsed and re-serialised, in one pass that also rebuilds every complete subtree and compares it
with the stored one (`audit.stored_tree`), and checks each signed checkpoint where the pass reaches its size.

    result = fast_verify(conn, origin, verifiers)       # a Verification; ok or not
    if not result.ok: ... the exact pass (AuditLog.verify) names the first bad entry

Why hashing the stored text is enough where the exact pass re-canonicalises it: an entry's leaf is the
hash of its stored UTF-8 bytes, the leaves and the stored subtrees must agree, and a checkpoint signs the
root over them; so any changed byte of an entry under a checkpoint changes a leaf, then the subtrees,
then the signed root (`tests/audit/test_fast_verify.py` changes every byte of an entry in turn). Only
`AuditLog.append` writes entries, always as canonical JSON, and only it holds the signing key: what a
valid signature covers was canonical when it was signed. Entries after the last checkpoint are signed by
nothing yet, so they are still parsed and re-canonicalised here. The place of every entry (its `seq`
and the `prev_hash` linking it to the entry before) is read from the canonical text's tail, whose
members follow `payload` in canonical order and cannot hold an unescaped quote.

Any failure is reported by the exact pass, so both give the same answer and the same first bad entry.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, select

from audit.canonical import canonical_json
from audit.merkle import leaf_hash, node_hash
from audit.note import NoteError, Verifier, open_note, parse_checkpoint
from audit.schema import checkpoints, entries, nodes
from audit.stored_tree import STRIDE, is_stored_level, push_leaf

GENESIS = "0" * 64
CHUNK = 20_000  # entries read per statement
_PREV = ',"prev_hash":"'


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


def _batches(conn: Connection, chunk: int) -> Iterator[tuple[Sequence[Any], dict[tuple[int, int], str]]]:
    """Entries in seq order, a chunk at a time, with the stored subtrees they complete. Read through the
    driver's own cursor: at hash speed the rows' wrapping would cost more than the hashing."""
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    cursor = conn.connection.cursor()
    try:
        last = -1
        while True:
            cursor.execute(
                f"SELECT seq, entry, leaf_hash FROM audit_entries WHERE seq > {mark} ORDER BY seq LIMIT {mark}",
                (last, chunk),
            )
            rows = cursor.fetchall()
            if not rows:
                return
            lo, hi = rows[0][0], rows[-1][0]
            inner: dict[tuple[int, int], str] = {}
            ranges = [(lv, a, b) for lv, a, b in node_ranges(lo, hi) if is_stored_level(lv)]
            if ranges:
                where = " OR ".join(f"(level = {mark} AND idx BETWEEN {mark} AND {mark})" for _ in ranges)
                cursor.execute(
                    f"SELECT level, idx, hash FROM audit_nodes WHERE {where}", [v for r in ranges for v in r]
                )
                inner = {(level, idx): value for level, idx, value in cursor.fetchall()}
            yield rows, inner
            last = hi
    finally:
        cursor.close()


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


def _canonical_at(entry: str, seq: int, prev: str) -> bool:
    try:
        document = json.loads(entry)
        return canonical_json(document) == entry and document.get("seq") == seq and document.get("prev_hash") == prev
    except (ValueError, TypeError):
        return False


def fast_verify(
    conn: Connection,
    origin: str,
    verifiers: tuple[Verifier, ...],
    *,
    progress: Callable[[int], None] | None = None,
    progress_every: int = 5000,
    chunk: int = CHUNK,
) -> Verification:
    """Ok, or not ok without saying where (the exact pass says where)."""
    heads = {
        r.tree_size: (r.root_hash, r.note)
        for r in conn.execute(select(checkpoints.c.tree_size, checkpoints.c.root_hash, checkpoints.c.note))
    }
    signed_upto = max(heads, default=0)  # entries below this size are covered by a checkpoint
    bad = Verification(False, 0, 0)
    stack: list[bytes] = []  # hashes of the complete subtrees so far, left to right (largest first)
    expected, prev, checked = 0, GENESIS, 0
    for rows, inner in _batches(conn, chunk):
        for seq, entry, leaf_hex in rows:
            if progress is not None and seq and seq % progress_every == 0:
                progress(seq)
            if seq != expected:
                return bad
            leaf = leaf_hash(entry.encode("utf-8"))
            hx = leaf.hex()
            if hx != leaf_hex:
                return bad
            if seq < signed_upto:
                at = entry.rfind(_PREV)
                if at < 0 or not entry.startswith(f'{_PREV}{prev}","seq":{seq},"subject":"', at):
                    return bad
            elif not _canonical_at(entry, seq, prev):
                return bad
            for level, idx, value in push_leaf(stack, seq, leaf):
                if inner.get((level, idx)) != value.hex():
                    return bad
            size = seq + 1
            if size in heads:
                if head_problem(origin, size, stack, heads[size], verifiers):
                    return bad
                checked += 1
            prev, expected = hx, size
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
