"""One scheduler per store: a leader lock that a second scheduler cannot take while the first lives.

Usage:

    lock = LeaderLock(store_engine, holder="host:pid")
    lock.acquire()          # raises NotLeader naming the current holder
    ...
    lock.release()

PostgreSQL: a session-level advisory lock on a connection held for the scheduler's lifetime; when
the process dies its connection closes and the lock is free at once. SQLite: a lease row renewed
by a heartbeat thread every `lease_seconds / 3`; a dead leader's lease runs out after at most
`lease_seconds`, and then another scheduler can take over.
"""

from __future__ import annotations

import os
import socket
import threading
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, Engine, delete, insert, select, text, update

from controlplane.clock import as_utc, utcnow
from controlplane.scheduler.tables import lease_t

LOCK_KEY = 0x5343484544  # 'SCHED'
LEASE = "scheduler"


class NotLeader(RuntimeError):
    """Another scheduler holds the store; the message names it and when its lease ends."""


def default_holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class LeaderLock:
    def __init__(self, engine: Engine, *, holder: str | None = None, lease_seconds: float = 30.0) -> None:
        self.engine = engine
        self.holder = holder or default_holder()
        self.lease = timedelta(seconds=lease_seconds)
        self._conn: Connection | None = None
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None
        self.lost = threading.Event()  # set if the lease could not be renewed: stop scheduling

    @property
    def postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    def acquire(self) -> None:
        if self.postgres:
            self._acquire_advisory()
        else:
            self._acquire_lease()
            self._heartbeat = threading.Thread(target=self._renew, name="scheduler-lease", daemon=True)
            self._heartbeat.start()

    def _acquire_advisory(self) -> None:
        conn = self.engine.connect()
        try:
            got = conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": LOCK_KEY}).scalar()
            conn.commit()
        except BaseException:
            conn.close()
            raise
        if not got:
            holder = conn.execute(
                text(
                    "SELECT a.client_addr, a.pid, a.backend_start FROM pg_locks l JOIN pg_stat_activity a "
                    "ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.objid = :key AND l.granted"
                ),
                {"key": LOCK_KEY & 0xFFFFFFFF},
            ).first()
            conn.close()
            who = f" (server backend {holder.pid}, since {holder.backend_start:%Y-%m-%d %H:%M:%S})" if holder else ""
            raise NotLeader(
                f"another scheduler already runs on this store{who}; one scheduler per store. Stop it first, or "
                "let this one take over when it exits"
            )
        self._conn = conn

    def _acquire_lease(self) -> None:
        now = utcnow()
        with self.engine.begin() as conn:  # SQLite: BEGIN IMMEDIATE, so two starters cannot both win
            row = conn.execute(select(lease_t).where(lease_t.c.name == LEASE)).first()
            if row is not None and as_utc(row.expires_at) > now and row.holder != self.holder:
                raise NotLeader(
                    f"another scheduler ({row.holder}) holds this store until {as_utc(row.expires_at):%H:%M:%S} UTC "
                    f"and renews its lease every {self.lease.total_seconds() / 3:g} s; one scheduler per store. "
                    f"If it has died, this one can start once the lease ends (at most {self.lease.total_seconds():g} s)"
                )
            values: dict[str, Any] = {"holder": self.holder, "acquired_at": now, "expires_at": now + self.lease}
            if row is None:
                conn.execute(insert(lease_t).values(name=LEASE, **values))
            else:
                conn.execute(update(lease_t).where(lease_t.c.name == LEASE).values(**values))

    def _renew(self) -> None:
        while not self._stop.wait(self.lease.total_seconds() / 3):
            try:
                with self.engine.begin() as conn:
                    renewed = conn.execute(
                        update(lease_t)
                        .where(lease_t.c.name == LEASE, lease_t.c.holder == self.holder)
                        .values(expires_at=utcnow() + self.lease)
                    ).rowcount
            except Exception:  # a busy database: try again at the next beat, the lease still has time
                continue
            if not renewed:
                self.lost.set()
                return

    def release(self) -> None:
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join(timeout=10)
            with self.engine.begin() as conn:
                conn.execute(delete(lease_t).where(lease_t.c.name == LEASE, lease_t.c.holder == self.holder))
        if self._conn is not None:
            try:
                self._conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": LOCK_KEY})
                self._conn.commit()
            finally:
                self._conn.close()
                self._conn = None
