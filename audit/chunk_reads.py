"""How the hash-speed verification (`audit.fast_verify`) reads the log: a power-of-two chunk of seqs at
a time, the database reading ahead of the hashing.

    for chunk in chunks(conn, 2048, is_stored_level):   # a Chunk: its entries, leaf hashes, subtrees
        leaves = chunk.leaves()

A chunk sums up the rows in [lo, lo + size): how many there are, their first and last seq, on SQLite
(which keeps any type in any column) how many hold a value of another type, their leaf hashes joined
with commas (so that two neighbours' hashes cannot trade digits and still join into one string), their
entries' UTF-8 bytes joined with 0x00 bytes, and each entry's length and one; with it come the stored
subtrees whose last leaf lies in the chunk. A 0x00 byte and the entry after it are exactly that entry's
leaf input (RFC 9162), so leaves are hashed from views of the joined bytes, copying nothing but the
first entry.

The database walks and joins the rows while this process hashes the chunk before. SQLite does it
without Python's lock, in the reading thread, one statement per chunk. PostgreSQL does it in its own
process, in one statement per `SPAN` entries whose rows (one per `GROUP` entries, joined by a range
scan of the primary key each) stream in as the server makes them: the server never waits for this
process to ask for the next chunk, and the groups are large enough that a row costs this process
little.

Why joined entries are as good as rows: the parts are cut by their lengths as the database counts them,
never at a separator, so an entry may hold any byte. The seqs are the primary key, so a chunk of
`found` rows from `first` to `last` with last - first + 1 = found holds every seq between them. Within
it the rows are joined in the primary key's order; were a plan ever to join them in another, the leaves
would not make the stored subtrees and the signed root (nor, after the last checkpoint, would each
entry carry its place and link), so the pass would fail and hand over to the exact one: slower, never
wrong. All statements of a pass must read one state of the log (`fast_verify` sees to it): they read
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
from operator import itemgetter
from typing import Any, NamedTuple, TypeVar

from sqlalchemy import Connection

T = TypeVar("T")
GROUP = 128  # PostgreSQL: entries joined into one row (about 64 KiB)
SPAN = 65536  # PostgreSQL: entries read by one statement, streamed (about 32 MiB)

# A chunk's summary: rows found, odd rows, first and last seq, leaf hashes joined (hex, with commas),
# entries joined (with 0x00), and each entry's length and one, in the order joined.
Summary = tuple[int, int, int | None, int | None, bytes, bytes, Sequence[int]]
_NONE: Summary = (0, 0, None, None, b"", b"", ())  # a chunk with no entry


class Chunk(NamedTuple):
    found: int  # rows in the chunk's range of seqs
    odd: int  # (SQLite) rows holding a value of another type
    parts: int  # entries read: `found` again, unless the entries do not add up to the rows
    first: int | None  # the lowest seq found (None: none found)
    last: int | None  # the highest
    joined: bytes  # the entries' UTF-8 bytes, in seq order, with a 0x00 byte between each two
    ends: list[int]  # from -1: entry i's leaf input is joined[ends[i]:ends[i + 1]] (i > 0: 0x00, the entry)
    leaf_hashes: bytes  # their stored leaf hashes, 64 hex digits each, joined with commas in seq order
    inner: dict[tuple[int, int], str]  # stored subtrees (level, idx) -> hash whose last leaf is in the chunk

    def leaves(self) -> list[bytes]:
        """The leaf hash of each entry (RFC 9162: SHA-256 of 0x00 and the entry), in seq order."""
        sha256, ends = hashlib.sha256, self.ends
        if len(ends) < 2:
            return []
        views = memoryview(self.joined)
        leaves = [sha256(b"\x00" + self.joined[: ends[1]]).digest()]  # the first has no 0x00 before it
        pairs = zip(islice(ends, 1, None), islice(ends, 2, None), strict=False)
        leaves += [sha256(views[a:b]).digest() for a, b in pairs]
        return leaves

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
    """The statements that read chunks, in the driver's own parameter style."""

    def __init__(self, postgres: bool, is_stored_level: Callable[[int], bool], entry_bytes: str = "") -> None:
        self.mark = m = "%s" if postgres else "?"
        self.is_stored_level = is_stored_level
        if postgres:  # text comes as its bytes (the cursor's loader), never decoded
            # One row per group of entries from lo to hi, in groups of (step) seqs: each group is one
            # range scan of the primary key (no sort, whatever the range), its entries' bytes made once.
            rows = (
                f"SELECT seq, {entry_bytes} AS bytes, leaf_hash FROM audit_entries"
                f" WHERE seq >= g.lo AND seq < g.lo + {m}"
            )
            summary = (
                "count(*), min(seq), max(seq), string_agg(leaf_hash, ','), string_agg(bytes, '\\x00'::bytea),"
                " string_agg(int4send(octet_length(bytes) + 1), ''::bytea)"
            )
            self.summary = (
                f"SELECT g.lo, a.* FROM generate_series({m}::bigint, {m}::bigint - 1, {m}::bigint) AS g(lo),"
                f" LATERAL (SELECT {summary} FROM ({rows}) AS e) AS a"
            )
        else:
            summary = (
                "count(*), total(typeof(entry) <> 'text' OR typeof(leaf_hash) <> 'text' OR typeof(seq) <> 'integer'),"
                " min(seq), max(seq), CAST(group_concat(leaf_hash, ',') AS BLOB),"
                " CAST(group_concat(entry, char(0)) AS BLOB), group_concat(length(CAST(entry AS BLOB)) + 1)"
            )
            self.summary = f"SELECT {summary} FROM audit_entries WHERE seq >= {m} AND seq < {m}"
        self.after = f"SELECT min(seq) FROM audit_entries WHERE seq >= {m}"

    def nodes(self, lo: int, size: int) -> tuple[str, list[int]] | None:
        """The statement and parameters that read, as one row, the stored subtrees whose last leaf is in
        [lo, lo + size): one value "level:idx:hash,..." (one step of the statement, so a reading thread
        waits for Python's lock once, not once a row)."""
        ranges = [(lv, a, b) for lv, a, b in node_ranges(lo, lo + size - 1) if self.is_stored_level(lv)]
        if not ranges:
            return None
        m = self.mark  # one range scan of the primary key each, whatever plans the database may use
        one = f"SELECT level, idx, hash FROM audit_nodes WHERE level = {m} AND idx BETWEEN {m} AND {m}"
        rows = " UNION ALL ".join([one] * len(ranges))
        joined = "string_agg" if self.mark == "%s" else "group_concat"
        return f"SELECT {joined}(level || ':' || idx || ':' || hash, ',') FROM ({rows}) AS n", [
            v for r in ranges for v in r
        ]

    def inner(self, cursor: Any, lo: int, size: int, **options: Any) -> str | bytes | None:
        """The stored subtrees whose last leaf is in [lo, lo + size), as read (`subtrees` makes them a dict)."""
        read = self.nodes(lo, size)
        return None if read is None else cursor.execute(*read, **options).fetchone()[0]

    def ended(self, cursor: Any, lo: int) -> bool:
        """Whether the log holds nothing at or after seq `lo`."""
        return cursor.execute(self.after, (lo,)).fetchone()[0] is None


def subtrees(joined: str | bytes | None) -> dict[tuple[int, int], str]:
    """(level, idx) -> hash of the stored subtrees read as "level:idx:hash,...". One that does not read so
    leaves them all out, so that the chunk is refused."""
    if not joined:
        return {}
    try:
        items = (item.split(":") for item in (joined.decode() if isinstance(joined, bytes) else joined).split(","))
        return {(int(level), int(idx)): value for level, idx, value in items}
    except ValueError:
        return {}


def _chunk(summary: Summary, inner: dict[tuple[int, int], str]) -> Chunk:
    found, odd, first, last, hashes, joined, sizes = summary
    ends = list(accumulate(sizes, initial=-1))
    read = len(sizes) if ends[-1] == len(joined) else -1  # lengths missing (a NULL entry) or not adding up
    return Chunk(found, int(odd or 0), read, first, last, joined, ends, hashes, inner)


def _from_sqlite(row: Any) -> Summary:
    """SQLite's one row of a chunk, its lengths as a decimal list."""
    found, odd, first, last, hashes, joined, sizes = row
    try:
        sizes = tuple(map(int, sizes.split(","))) if found else ()
    except (AttributeError, ValueError):  # the list missing or unreadable: the chunk is refused
        sizes = ()
    return found, odd, first, last, bytes(hashes or b""), bytes(joined or b""), sizes


def _from_postgres(groups: list[Any]) -> Summary:
    """PostgreSQL's rows of a chunk, one per group of entries (its first seq leading), each entry's length
    and one as 4 bytes."""
    groups = sorted((g for g in groups if g[1]), key=itemgetter(0))
    found = sum(g[1] for g in groups)
    try:
        sizes = struct.unpack(f">{found}I", b"".join(g[6] or b"" for g in groups))
    except struct.error:  # lengths missing (a NULL entry): the chunk is refused
        sizes = ()
    return (
        found,
        0,
        min((g[2] for g in groups), default=None),
        max((g[3] for g in groups), default=None),
        b",".join(g[4] or b"" for g in groups),
        b"\x00".join(g[5] or b"" for g in groups),
        sizes,
    )


def chunks(conn: Connection, size: int, is_stored_level: Callable[[int], bool]) -> Generator[Chunk, None, None]:
    """The log's chunks of `size` seqs from seq 0, until one is empty with no entry after it. Read through
    the driver's own cursor (at hash speed SQLAlchemy's row wrapping would cost more than the hashing), by
    primary-key range (a plan no table statistics can spoil). SQLite is read in a thread of its own where
    the connection may be used from one (one made with check_same_thread is read in this thread)."""
    raw: Any = conn.connection.dbapi_connection
    if conn.dialect.name == "postgresql":
        read = _postgres_summaries(raw, size, is_stored_level)
        try:
            for summary, inner in read:
                yield _chunk(summary, inner)
        finally:
            read.close()
        return
    rows = _sqlite_rows(raw, size, _Reads(False, is_stored_level))
    if _usable_from_another_thread(raw):
        rows = _read_ahead(rows)
    try:
        for row, joined in rows:  # parsed here: the reading thread takes Python's lock as little as it can
            yield _chunk(_from_sqlite(row), subtrees(joined))
    finally:
        rows.close()


def _sqlite_rows(raw: Any, size: int, reads: _Reads) -> Generator[tuple[Any, Any], None, None]:
    """Each chunk's row and its stored subtrees as read, one statement each."""
    cursor = raw.cursor()
    try:
        lo = 0
        while True:
            row = cursor.execute(reads.summary, (lo, lo + size)).fetchone()
            if not row[0] and reads.ended(cursor, lo):
                return
            yield row, reads.inner(cursor, lo, size)
            lo += size
    finally:
        cursor.close()


def _postgres_summaries(
    raw: Any, size: int, is_stored_level: Callable[[int], bool]
) -> Generator[tuple[Summary, dict], None, None]:
    """Each chunk's summary and the stored subtrees of its span: a span's subtrees in one statement, then
    its entries in another, streamed group by group."""
    import psycopg
    from psycopg.types.string import ByteaBinaryLoader

    # The entries' UTF-8 bytes: as the server sends text to a UTF-8 client (no check, no copy made when
    # the database is UTF-8 too), else converted.
    entry_bytes = "textsend(entry)" if raw.info.encoding == "utf-8" else "convert_to(entry, 'UTF8')"
    reads = _Reads(True, is_stored_level, entry_bytes)
    cursor = raw.cursor(binary=True)
    cursor.adapters.register_loader("text", ByteaBinaryLoader)  # the text's own bytes, not decoded
    if raw.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS:
        # Rows in seq order come from the primary key's index as they are, where a bitmap scan (the
        # plan for a range the statistics think small) would sort them again.
        cursor.execute("SET LOCAL enable_bitmapscan = off")
    group = min(GROUP, size)
    span = size * max(SPAN // size, 1)
    try:
        lo = 0
        while True:
            inner = subtrees(reads.inner(cursor, lo, span, prepare=True))
            streamed = _streamed_chunks(cursor, reads.summary, (lo, lo + span, group, group), size // group)
            at = lo  # the chunk in hand
            try:
                for groups in streamed:
                    summary = _from_postgres(groups)
                    if not summary[0]:
                        break
                    yield summary, inner
                    at += size
                else:
                    lo += span
                    continue
            finally:
                streamed.close()
            # A chunk with no entry: the log's end, or seqs missing before more entries (refused).
            if not reads.ended(cursor, at):
                yield _NONE, {}
            return
    finally:
        cursor.close()


def _streamed_chunks(cursor: Any, statement: str, params: tuple, per_chunk: int) -> Generator[list[Any], None, None]:
    """The rows of a streamed statement, `per_chunk` at a time. When the caller stops early, the rest is
    read and dropped: closing a stream cancels its statement, which would abort the transaction the
    caller may still use."""
    stream = cursor.stream(statement, params)
    rows: list[Any] = []
    try:
        for row in stream:
            rows.append(row)
            if len(rows) == per_chunk:
                yield rows
                rows = []
        if rows:  # a span is whole chunks; should the statement give fewer rows, they go on as a chunk
            yield rows
    except GeneratorExit:
        for _ in stream:
            pass
        raise


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
