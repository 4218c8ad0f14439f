"""Reading entries back by kind, subject and time, for evidence ("a failover drill in the last 7 days").

Usage:

    drills = find_entries(engine, kind="attestation", subject_prefix="drill:", since=now - timedelta(days=7))
    seqs = [e.seq for e in find_entries(engine, subject="checklist-run:4f2a...")]
    older = find_entries(engine, before_seq=size, newest_first=True, limit=100, offset=100)  # page 2 of `size`
    dead = find_entries(engine, kind="system", type_="dead_letter")  # by the payload's "type"

Entries come back oldest first, with their payload parsed from the stored canonical JSON, so what a
reader sees is exactly what the hash chain covers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, Select, func, select

from audit.canonical import canonical_json
from audit.schema import entries


@dataclass(frozen=True)
class FoundEntry:
    seq: int
    time: datetime
    kind: str
    actor: str
    subject: str
    payload: dict[str, Any]
    event_id: str | None = None

    @property
    def type(self) -> str | None:
        kind = self.payload.get("type")
        return kind if isinstance(kind, str) else None

    def as_record(self) -> dict[str, Any]:
        """What `controlplane audit entries --format json` prints for this entry."""
        return {
            "seq": self.seq,
            "kind": self.kind,
            "type": self.type,
            "actor": self.actor,
            "at": self.time.isoformat().replace("+00:00", "Z"),
            "subject": self.subject,
            "event_id": self.event_id,
            "payload": self.payload,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "time": self.time.isoformat().replace("+00:00", "Z"),
            "kind": self.kind,
            "actor": self.actor,
            "subject": self.subject,
            "payload": self.payload,
        }


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _matching(
    query: Select[Any],
    *,
    kind: str | None,
    actor: str | None,
    subject: str | None,
    subject_prefix: str | None,
    since: datetime | None,
    until: datetime | None,
    before_seq: int | None,
    type_: str | None = None,
) -> Select[Any]:
    if type_ is not None:  # narrows to entries holding the member; the payload's own is checked after
        member = canonical_json({"type": type_})[1:-1]
        escaped = member.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(entries.c.entry.like("%" + escaped + "%", escape="\\"))
    if before_seq is not None:
        query = query.where(entries.c.seq < before_seq)
    if kind is not None:
        query = query.where(entries.c.kind == kind)
    if actor is not None:
        query = query.where(entries.c.actor == actor)
    if subject is not None:
        query = query.where(entries.c.subject == subject)
    if subject_prefix is not None:
        escaped = subject_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(entries.c.subject.like(escaped + "%", escape="\\"))
    if since is not None:
        query = query.where(entries.c.created_at >= _utc(since))
    if until is not None:
        query = query.where(entries.c.created_at < _utc(until))
    return query


def find_entries(
    engine: Engine,
    *,
    kind: str | None = None,
    type_: str | None = None,
    actor: str | None = None,
    subject: str | None = None,
    subject_prefix: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before_seq: int | None = None,
    limit: int | None = None,
    offset: int = 0,
    newest_first: bool = False,
) -> list[FoundEntry]:
    """Entries matching every filter given (`until` and `before_seq` are exclusive; `type_` is the
    payload's "type"), oldest first unless `newest_first`; `offset` skips that many matches first, so
    `limit` and `offset` page through them (with `before_seq` fixed, pages stay put while the log grows)."""
    if offset < 0 or (limit is not None and limit < 0):
        raise ValueError("offset and limit must not be negative")
    query = _matching(
        select(entries.c.seq, entries.c.event_id, entries.c.entry), kind=kind, actor=actor, subject=subject,
        subject_prefix=subject_prefix, since=since, until=until, before_seq=before_seq, type_=type_,
    )  # fmt: skip
    query = query.order_by(entries.c.seq.desc() if newest_first else entries.c.seq)
    if type_ is None:  # otherwise the SQL filter only narrows, and paging is done on exact matches below
        if limit is not None:
            query = query.limit(limit)
        if offset:
            query = query.offset(offset)
    found: list[FoundEntry] = []
    skip = offset if type_ is not None else 0
    with engine.connect() as conn:
        for seq, event_id, text in conn.execute(query).all():
            entry = _found(seq, event_id, text)
            if type_ is not None:
                if entry.type != type_:
                    continue
                if skip:
                    skip -= 1
                    continue
                if limit is not None and len(found) >= limit:
                    break
            found.append(entry)
    return found


def _found(seq: int, event_id: str | None, text: str) -> FoundEntry:
    document = json.loads(text)
    return FoundEntry(
        seq=seq,
        time=_utc(datetime.fromisoformat(document["time"].replace("Z", "+00:00"))),
        kind=document["kind"],
        actor=document["actor"],
        subject=document["subject"],
        payload=document["payload"],
        event_id=event_id,
    )


def count_entries(
    engine: Engine,
    *,
    kind: str | None = None,
    type_: str | None = None,
    actor: str | None = None,
    subject: str | None = None,
    subject_prefix: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before_seq: int | None = None,
) -> int:
    """How many entries `find_entries` with the same filters (and no limit) returns."""
    if type_ is not None:
        found = find_entries(
            engine, kind=kind, type_=type_, actor=actor, subject=subject, subject_prefix=subject_prefix,
            since=since, until=until, before_seq=before_seq,
        )  # fmt: skip
        return len(found)
    query = _matching(
        select(func.count()).select_from(entries), kind=kind, actor=actor, subject=subject,
        subject_prefix=subject_prefix, since=since, until=until, before_seq=before_seq,
    )  # fmt: skip
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())
