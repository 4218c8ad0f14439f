"""The log's Merkle tree as stored: leaf hashes beside the entries, inner subtree hashes every
`STRIDE` levels, read in one statement per proof.

A leaf's hash is `audit_entries.leaf_hash`; `audit_nodes` holds the hash of every complete, aligned
subtree whose level is a positive multiple of `STRIDE` (16, 256, 4096, ... leaves). A subtree between
two stored levels is hashed from at most 2**STRIDE stored ones below it, so an append writes one
node row per 15 entries instead of two per entry, and a proof reads a few short ranges.

A Merkle proof, a root or a checkpoint needs the hashes of a few ranges of leaves; each range is built
from the complete, aligned subtrees it splits into. `with_stored_nodes` runs a proof builder once to
learn which ranges it asks for (builders' steps do not depend on the hashes), reads every stored hash
those ranges need with one statement, then runs it again on them.

    proof = with_stored_nodes(conn, lambda subtree: inclusion_proof_from(subtree, seq, size))
    frontier = with_stored_nodes(conn, lambda subtree: [subtree(a, b) for a, b in aligned_ranges(0, size)])
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from sqlalchemy import Connection

from audit.merkle import EMPTY_ROOT, Subtree, node_hash, split_point

T = TypeVar("T")
STRIDE = 4  # inner subtree hashes are stored at levels 4, 8, 12, ...


class MissingNode(LookupError):
    """A subtree hash the log should hold is not stored."""


def is_stored_level(level: int) -> bool:
    return level > 0 and level % STRIDE == 0


def push_leaf(stack: list[bytes], idx: int, node: bytes, level: int = 0) -> list[tuple[int, int, bytes]]:
    """Add the complete subtree `idx` of `level` (0: leaf `idx`) at the tree's right edge. `stack` holds
    the hashes of the complete subtrees before it, left to right (largest first), each at least as high,
    and is updated in place; returned: the subtrees at stored levels this one completes, as
    (level, idx, hash)."""
    current, completed = node, []
    for up in range(1, (idx ^ (idx + 1)).bit_length()):  # one merge per trailing 1 bit of idx
        current = node_hash(stack.pop(), current)
        if (level + up) % STRIDE == 0:
            completed.append((level + up, idx >> up, current))
    stack.append(current)
    return completed


def aligned_ranges(start: int, end: int) -> Iterator[tuple[int, int]]:
    """The complete, aligned subtrees [a, b) whose hashes make up MTH(leaves[start:end]), left to right."""
    n = end - start
    if n <= 0:
        return
    if n & (n - 1) == 0 and start % n == 0:
        yield start, end
        return
    k = split_point(n)
    yield from aligned_ranges(start, start + k)
    yield from aligned_ranges(start + k, end)


def aligned_nodes(start: int, end: int) -> Iterator[tuple[int, int]]:
    """(level, idx) of the complete, aligned subtrees that make up MTH(leaves[start:end]), left to right."""
    for a, b in aligned_ranges(start, end):
        n = b - a
        yield n.bit_length() - 1, a // n


def stored_below(level: int, idx: int) -> tuple[int, int, int]:
    """(stored level, first idx, last idx) of the stored hashes subtree (level, idx) is hashed from
    (itself when its level is stored; level 0 is the entries' leaf hashes)."""
    base = level - level % STRIDE
    span = level - base
    return base, idx << span, ((idx + 1) << span) - 1


def _runs(keys: Iterable[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """Ranges (level, first, last) merged where they touch or overlap, per level."""
    runs: list[tuple[int, int, int]] = []
    for level, first, last in sorted(set(keys)):
        if runs and runs[-1][0] == level and first <= runs[-1][2] + 1:
            runs[-1] = (level, runs[-1][1], max(last, runs[-1][2]))
        else:
            runs.append((level, first, last))
    return runs


def stored_nodes(conn: Connection, keys: Iterable[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
    """The stored hashes subtrees (level, idx) are hashed from, in one statement: a range read on a
    primary key per run of them (absent ones are left out). Written as the driver's SQL: building the
    statement with SQLAlchemy would cost more than running it."""
    runs = _runs(stored_below(level, idx) for level, idx in keys)
    if not runs:
        return {}
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    parts, params = [], []
    for level, first, last in runs:
        if level == 0:
            parts.append(f"SELECT 0, seq, leaf_hash FROM audit_entries WHERE seq BETWEEN {mark} AND {mark}")
            params += [first, last]
        else:
            parts.append(
                f"SELECT level, idx, hash FROM audit_nodes WHERE level = {mark} AND idx BETWEEN {mark} AND {mark}"
            )
            params += [level, first, last]
    rows = conn.exec_driver_sql(" UNION ALL ".join(parts), tuple(params))
    return {(level, idx): bytes.fromhex(value) for level, idx, value in rows}


def subtree_of(found: dict[tuple[int, int], bytes]) -> Subtree:
    def aligned(level: int, idx: int) -> bytes:
        if level == 0 or is_stored_level(level):
            if (level, idx) not in found:
                raise MissingNode(f"subtree hash ({level}, {idx}) is missing from the log")
            return found[(level, idx)]
        return node_hash(aligned(level - 1, idx * 2), aligned(level - 1, idx * 2 + 1))

    def subtree(start: int, end: int) -> bytes:
        n = end - start
        if n == 0:
            return EMPTY_ROOT
        if n & (n - 1) == 0 and start % n == 0:
            return aligned(n.bit_length() - 1, start // n)
        k = split_point(n)
        return node_hash(subtree(start, start + k), subtree(start + k, end))

    return subtree


def with_stored_nodes(conn: Connection, build: Callable[[Subtree], T]) -> T:
    """`build(subtree)` over the stored hashes, read with one statement."""
    asked: list[tuple[int, int]] = []

    def record(start: int, end: int) -> bytes:
        asked.append((start, end))
        return EMPTY_ROOT

    build(record)
    return build(subtree_of(stored_nodes(conn, (key for a, b in asked for key in aligned_nodes(a, b)))))
