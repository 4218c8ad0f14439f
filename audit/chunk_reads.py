"""How the hash-speed verification (`audit.fast_verify`) reads the log: a power-of-two chunk of seqs at
a time, by a thread of its own, ahead of the hashing.

    for chunk in chunks(conn, 2048, is_stored_level):   # a Chunk: its entries, leaf hashes, subtrees
        leaves = chunk.leaves()

Per chunk, one statement sums up the rows in [lo, lo + size): how many there are, how many are odd (a
leaf hash that is not 64 characters, since two neighbours' hashes could otherwise trade digits and still
join into one string; a NULL; on SQLite, which keeps any type in any column, a value of another type),
their leaf hashes joined into one hex string, their entries' UTF-8 bytes joined into one, each behind a
0x00 byte, and for each such part its length and its row's seq; a second reads the stored subtrees whose
last leaf lies in the chunk. A part is exactly a leaf's input (RFC 9162: 0x00, then the entry), so leaves
are hashed from views of the joined bytes, copying nothing.

The database walks and joins the rows while this process hashes the chunk before: SQLite does it without
Python's lock, in the reading thread; PostgreSQL in its own process. PostgreSQL joins the rows of a chunk
in groups of `GROUP`: a row per entry costs the client as much again as its hashing, one row per chunk
costs the server more than the groups do.

Why joined entries are as good as rows: the parts are cut by their lengths as the database counts them,
never at a separator, so an entry may hold any byte; and each part carries its seq, so `fast_verify` sees
the order the database joined them in, whatever plan it chose: seqs lo, lo + 1, ... or the chunk is
refused. All statements of a pass must read one state of the log (`fast_verify` sees to it): they read
ahead of the hashing, and appends go on.
"""

from __future__ import annotations

import hashlib
import queue
import sqlite3
import struct
import threading
from collections.abc import Callable, Generator, Iterator, Sequence
from itertools import accumulate, islice
from typing import Any, NamedTuple, TypeVar

from sqlalchemy import Connection

T = TypeVar("T")
GROUP = 16  # PostgreSQL: entries joined into one row (about 8 KiB)

# A chunk's summary: rows found, odd rows, leaf hashes joined (hex), entries joined (each behind 0x00),
# and each part's length and seq, in the order joined.
Summary = tuple[int, int, bytes, bytes, Sequence[int], Sequence[int]]


class Chunk(NamedTuple):
    found: int  # rows in the chunk's range of seqs
    odd: int  # rows with a leaf hash that is not 64 characters, a NULL, or (SQLite) a value of another type
    parts: int  # entries read: `found` again, unless the entries do not add up to the rows
    seqs: tuple[int, ...]  # the seq of each part, in the order joined
    joined: bytes  # each entry's UTF-8 bytes behind a 0x00 byte, in seq order: the leaves' inputs
    ends: list[int]  # part i of `joined` is joined[ends[i]:ends[i + 1]]
    leaf_hashes: bytes  # their stored leaf hashes, 64 hex digits each, joined in seq order
    inner: dict[tuple[int, int], str]  # stored subtrees (level, idx) -> hash whose last leaf is in the chunk

    def leaves(self) -> list[bytes]:
        """The leaf hash of each entry (RFC 9162: SHA-256 of 0x00 and the entry), in seq order."""
        sha256 = hashlib.sha256
        views, ends = memoryview(self.joined), self.ends
        return [sha256(views[a:b]).digest() for a, b in zip(ends, islice(ends, 1, None), strict=False)]

    def entry(self, i: int) -> bytes:
        return self.joined[self.ends[i] + 1 : self.ends[i + 1]]


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
    """The statements that read a chunk, in the driver's own parameter style."""

    def __init__(self, postgres: bool, is_stored_level: Callable[[int], bool]) -> None:
        self.mark = m = "%s" if postgres else "?"
        self.is_stored_level = is_stored_level
        rows = f"FROM audit_entries WHERE seq >= {m} AND seq < {m}"
        if postgres:  # text comes as its bytes (the cursor's loader), never decoded
            # The subquery converts each entry once (its bytes and their length), and its order spares the
            # server a sort when the groups are joined.
            ordered = f"SELECT seq, convert_to(entry, 'UTF8') AS bytes, leaf_hash {rows} ORDER BY seq"
            summary = (
                "count(*), count(*) FILTER (WHERE octet_length(leaf_hash) <> 64 OR bytes IS NULL),"
                " string_agg(leaf_hash, ''), '\\x00'::bytea || string_agg(bytes, '\\x00'::bytea),"
                " string_agg(int4send(octet_length(bytes) + 1) || int8send(seq), ''::bytea)"
            )
            self.summary = f"SELECT {summary} FROM ({ordered}) AS chunk GROUP BY seq / {GROUP} ORDER BY seq / {GROUP}"
        else:
            summary = (
                "count(*), total(typeof(entry) <> 'text' OR typeof(leaf_hash) <> 'text' OR length(leaf_hash) <> 64"
                " OR typeof(seq) <> 'integer'), CAST(group_concat(leaf_hash, '') AS BLOB),"
                " CAST(char(0) || group_concat(entry, char(0)) AS BLOB),"
                " group_concat(length(CAST(entry AS BLOB)) + 1), group_concat(seq)"
            )
            self.summary = f"SELECT {summary} {rows}"
        self.after = f"SELECT min(seq) FROM audit_entries WHERE seq >= {m}"

    def nodes(self, lo: int, size: int) -> tuple[str, list[int]] | None:
        ranges = [(lv, a, b) for lv, a, b in node_ranges(lo, lo + size - 1) if self.is_stored_level(lv)]
        if not ranges:
            return None
        m = self.mark  # one range scan of the primary key each, whatever plans the database may use
        one = f"SELECT level, idx, hash FROM audit_nodes WHERE level = {m} AND idx BETWEEN {m} AND {m}"
        return " UNION ALL ".join([one] * len(ranges)), [v for r in ranges for v in r]


def _chunk(summary: Summary, inner: dict[tuple[int, int], str]) -> Chunk:
    found, odd, hashes, joined, sizes, seqs = summary
    ends = list(accumulate(sizes, initial=0))
    read = len(sizes) if ends[-1] == len(joined) else -1  # parts missing (a NULL entry) or not adding up
    return Chunk(found, int(odd or 0), read, tuple(seqs), joined, ends, hashes, inner)


def _from_sqlite(row: Any) -> Summary:
    """SQLite's one row of a chunk, its lengths and seqs as decimal lists."""
    found, odd, hashes, joined, sizes, seqs = row
    try:
        sizes, seqs = (tuple(map(int, sizes.split(","))), tuple(map(int, seqs.split(",")))) if found else ((), ())
    except (AttributeError, ValueError):  # a list missing or unreadable: the chunk is refused
        sizes = seqs = ()
    return found, odd, bytes(hashes or b""), bytes(joined or b""), sizes, seqs


def _from_postgres(groups: list[Any]) -> Summary:
    """PostgreSQL's rows of a chunk, one per group of entries, each part's length and seq as 4 and 8 bytes."""
    found = sum(g[0] for g in groups)
    parts = b"".join(g[4] or b"" for g in groups)
    try:
        pairs = struct.unpack(">" + "Iq" * found, parts)
    except struct.error:  # parts missing (a NULL entry): the chunk is refused
        pairs = ()
    joined = b"".join(g[3] or b"" for g in groups)
    return found, sum(g[1] for g in groups), b"".join(g[2] or b"" for g in groups), joined, pairs[0::2], pairs[1::2]


def chunks(conn: Connection, size: int, is_stored_level: Callable[[int], bool]) -> Generator[Chunk, None, None]:
    """The log's chunks of `size` seqs from seq 0, until one is empty with no entry after it. Read through
    the driver's own cursor (at hash speed SQLAlchemy's row wrapping would cost more than the hashing), by
    primary-key range (a plan no table statistics can spoil), in a thread of its own where the connection
    may be used from one (a SQLite connection made with check_same_thread is read in this thread)."""
    raw: Any = conn.connection.dbapi_connection
    postgres = conn.dialect.name == "postgresql"
    reads = _Reads(postgres, is_stored_level)
    read = _summaries(raw, size, reads, postgres)
    if postgres or _usable_from_another_thread(raw):
        read = _read_ahead(read)
    try:
        for summary, inner in read:
            yield _chunk(summary if postgres else _from_sqlite(summary), inner)
    finally:
        read.close()


def _summaries(raw: Any, size: int, reads: _Reads, postgres: bool) -> Generator[tuple[Any, dict], None, None]:
    """Each chunk's summary (SQLite's row as read; PostgreSQL's groups as a `Summary`) and its stored subtrees."""
    if not postgres:
        cursor = raw.cursor()
    else:
        import psycopg
        from psycopg.types.string import ByteaBinaryLoader

        cursor = raw.cursor(binary=True)
        cursor.adapters.register_loader("text", ByteaBinaryLoader)  # the text's own bytes, not decoded
        if raw.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS:
            # Rows in seq order come from the primary key's index as they are, where a bitmap scan (the
            # plan for a range the statistics think small) would sort them again; every statement here
            # is a range scan of a primary key.
            cursor.execute("SET LOCAL enable_bitmapscan = off")
    options = {"prepare": True} if postgres else {}
    try:
        lo = 0
        while True:
            rows = cursor.execute(reads.summary, (lo, lo + size), **options).fetchall()
            summary = _from_postgres(rows) if postgres else rows[0]
            if not summary[0] and cursor.execute(reads.after, (lo,)).fetchone()[0] is None:
                return  # nothing at or after lo: the end
            nodes_read = reads.nodes(lo, size)
            inner = {}
            if nodes_read:
                inner = {(lv, i): h for lv, i, h in cursor.execute(*nodes_read, **options).fetchall()}
            yield summary, inner
            lo += size
    finally:
        cursor.close()


def _usable_from_another_thread(raw: Any) -> bool:
    outcome: list[bool] = []

    def probe() -> None:
        try:
            raw.execute("SELECT 1").fetchone()
            outcome.append(True)
        except sqlite3.ProgrammingError:
            outcome.append(False)

    thread = threading.Thread(target=probe, name="audit-verify-probe")
    thread.start()
    thread.join()
    return outcome == [True]


_END = object()


def _read_ahead(source: Iterator[T], depth: int = 2) -> Generator[T, None, None]:
    """The items of `source`, taken by a thread of its own up to `depth` ahead of the caller. When the
    caller stops early, the thread stops after the item in hand, before this returns: the connection the
    source reads is never left in use."""
    handed: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def hand(item: Any) -> bool:
        while not stop.is_set():
            try:
                handed.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for item in source:
                if not hand(item):
                    return
            hand(_END)
        except BaseException as exc:  # handed to the caller, raised there
            hand(exc)
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=run, name="audit-verify-reader", daemon=True)
    thread.start()
    try:
        while True:
            item = handed.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        interrupted: BaseException | None = None
        while thread.is_alive():  # an interrupt while waiting must not leave the connection in use
            try:
                thread.join()
            except BaseException as exc:
                interrupted = exc
        if interrupted is not None:
            raise interrupted
