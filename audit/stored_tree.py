"""The log's stored subtree hashes, read in one statement per proof.

A Merkle proof, a root or a checkpoint needs the hashes of a few ranges of leaves; each range is built
from the complete, aligned subtrees it splits into (stored in `audit_nodes`). `with_stored_nodes` runs
a proof builder once to learn which ranges it asks for (builders' steps do not depend on the hashes),
reads every stored subtree those ranges need with one statement, then runs it again on them.

    proof = with_stored_nodes(conn, lambda subtree: inclusion_proof_from(subtree, seq, size))
    frontier = stored_nodes(conn, aligned_nodes(0, size))    # what the next append builds on
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from sqlalchemy import Connection, and_, or_, select

from audit.merkle import EMPTY_ROOT, Subtree, node_hash, split_point
from audit.schema import nodes

T = TypeVar("T")


class MissingNode(LookupError):
    """A subtree hash the log should hold is not stored."""


def aligned_nodes(start: int, end: int) -> Iterator[tuple[int, int]]:
    """(level, idx) of the stored subtrees whose hashes make up MTH(leaves[start:end]), left to right."""
    n = end - start
    if n <= 0:
        return
    if n & (n - 1) == 0 and start % n == 0:  # a complete, aligned subtree: stored as it is
        yield n.bit_length() - 1, start // n
        return
    k = split_point(n)
    yield from aligned_nodes(start, start + k)
    yield from aligned_nodes(start + k, end)


def stored_nodes(conn: Connection, keys: Iterable[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
    """The stored hashes of these (level, idx), in one statement (absent ones are left out)."""
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    # An OR of point lookups, each on the primary key: SQLite scans the whole table for a row-value IN.
    where = or_(*(and_(nodes.c.level == level, nodes.c.idx == idx) for level, idx in wanted))
    query = select(nodes.c.level, nodes.c.idx, nodes.c.hash).where(where)
    return {(level, idx): bytes.fromhex(value) for level, idx, value in conn.execute(query)}


def subtree_of(found: dict[tuple[int, int], bytes]) -> Subtree:
    def subtree(start: int, end: int) -> bytes:
        n = end - start
        if n == 0:
            return EMPTY_ROOT
        if n & (n - 1) == 0 and start % n == 0:
            key = (n.bit_length() - 1, start // n)
            if key not in found:
                raise MissingNode(f"subtree hash {key} is missing from the log")
            return found[key]
        k = split_point(n)
        return node_hash(subtree(start, start + k), subtree(start + k, end))

    return subtree


def with_stored_nodes(conn: Connection, build: Callable[[Subtree], T]) -> T:
    """`build(subtree)` over the stored subtrees, read with one statement."""
    asked: list[tuple[int, int]] = []

    def record(start: int, end: int) -> bytes:
        asked.append((start, end))
        return EMPTY_ROOT

    build(record)
    return build(subtree_of(stored_nodes(conn, (key for a, b in asked for key in aligned_nodes(a, b)))))
