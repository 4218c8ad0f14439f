"""Reading entries back by kind, subject and time, for evidence ("a failover drill in the last 7 days").

Usage:

    drills = find_entries(engine, kind="attestation", subject_prefix="drill:", since=now - timedelta(days=7))
    seqs = [e.seq for e in find_entries(engine, subject="checklist-run:4f2a...")]

Entries come back oldest first, with their payload parsed from the stored canonical JSON, so what a
reader sees is exactly what the hash chain covers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, select

from audit.schema import entries


@dataclass(frozen=True)
class FoundEntry:
    seq: int
    time: datetime
    kind: str
    actor: str
    subject: str
    payload: dict[str, Any]

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


def find_entries(
    engine: Engine,
    *,
    kind: str | None = None,
    actor: str | None = None,
    subject: str | None = None,
    subject_prefix: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int | None = None,
    newest_first: bool = False,
) -> list[FoundEntry]:
    """Entries matching every filter given (`until` is exclusive), oldest first unless `newest_first`."""
    query = select(entries.c.seq, entries.c.entry)
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
    query = query.order_by(entries.c.seq.desc() if newest_first else entries.c.seq)
    if limit is not None:
        query = query.limit(limit)
    found = []
    with engine.connect() as conn:
        for seq, text in conn.execute(query):
            document = json.loads(text)
            found.append(
                FoundEntry(
                    seq=seq,
                    time=_utc(datetime.fromisoformat(document["time"].replace("Z", "+00:00"))),
                    kind=document["kind"],
                    actor=document["actor"],
                    subject=document["subject"],
                    payload=document["payload"],
                )
            )
    return found
