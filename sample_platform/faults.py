"""Game-day fault injection: each fault has a TTL, expires by itself, and every change is an outbox event.

    faults = FaultRegistry(engine)
    faults.add(Fault.new("latency", ttl_seconds=60, route="POST /v1/bets", latency_ms=200, jitter_ms=50))

Kinds: `latency` and `error_rate` act on one route (a route template such as "POST /v1/bets", a
template for every method, or "*"), `db_latency` slows every database statement, `cache_off` turns
the risk engine's feature cache off, `broker_slow` delays each outbox delivery, and `lock_wait`
holds a database lock (SQLite: the write lock; PostgreSQL: an EXCLUSIVE lock on `ledger_accounts`)
so that writers time out. The fault routes themselves and /metrics are never faulted, so a game day
can always be ended.

Replicas on one database share their faults through the outbox: every fault set, cleared or expired
is an outbox event (and so one audit entry, written by the replica that took the change), and each
replica reads the fault events it has not seen yet, in commit order, once a second (`sync`): a fault
set on one replica acts on all of them within about a second, and any replica can clear it. Only the
replica that set a fault records its expiry; a `lock_wait` lock is held by that replica alone (one
database lock stops every replica's writers). A `synthetic_only`
fault (latency and error_rate only) acts on synthetic requests alone: a readiness probe can prove an
alert or a timeout fires without a single player feeling it.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Engine, select, text

from sample_platform.clock import utcnow
from sample_platform.models import OutboxEvent, table
from sample_platform.outbox import write_event
from sample_platform.problems import Problem

log = logging.getLogger(__name__)
KINDS = ("latency", "error_rate", "db_latency", "cache_off", "broker_slow", "lock_wait")
ROUTE_KINDS = ("latency", "error_rate")  # the kinds that act on one request, so can pick synthetic ones
UNFAULTED_PREFIXES = ("/v1/admin/faults", "/metrics")


@dataclass
class Fault:
    id: str
    kind: str
    expires_at: datetime
    created_at: datetime
    route: str = "*"
    latency_ms: int = 0
    jitter_ms: int = 0
    error_rate: float = 0.0
    error_status: int = 503
    actor: str = "admin"
    reason: str | None = None
    synthetic_only: bool = False
    _deadline: float = field(default=0.0, repr=False)

    @classmethod
    def new(cls, kind: str, *, ttl_seconds: float, **options: object) -> Fault:
        now = utcnow()
        fault = cls(
            id=uuid.uuid4().hex[:12],
            kind=kind,
            created_at=now,
            expires_at=now + timedelta(seconds=ttl_seconds),
            **options,  # type: ignore[arg-type]
        )
        fault._deadline = time.monotonic() + ttl_seconds
        return fault

    @property
    def expired(self) -> bool:
        return time.monotonic() >= self._deadline

    def matches(self, method: str, route: str, *, synthetic: bool = False) -> bool:
        if self.synthetic_only and not synthetic:
            return False
        if self.route == "*":
            return True
        want_method, _, want_route = self.route.partition(" ") if " " in self.route else ("", "", self.route)
        return want_route == route and (not want_method or want_method.upper() == method)

    def to_dict(self) -> dict:
        data = {k: v for k, v in asdict(self).items() if not k.startswith("_")}
        data["created_at"] = self.created_at.isoformat()
        data["expires_at"] = self.expires_at.isoformat()
        data["ttl_remaining_seconds"] = max(0.0, round(self._deadline - time.monotonic(), 3))
        return data


def _from_event(data: dict) -> Fault | None:
    """A fault as another replica recorded it (`Fault.to_dict`), its deadline from its expiry time."""
    try:
        expires_at = datetime.fromisoformat(data["expires_at"])
        fields = {k: data[k] for k in Fault.__dataclass_fields__ if k in data and not k.startswith("_")}
        fields["expires_at"] = expires_at
        fields["created_at"] = datetime.fromisoformat(data["created_at"])
        fault = Fault(**fields)
    except (KeyError, TypeError, ValueError):
        log.warning("a fault event could not be read; ignored")
        return None
    fault._deadline = time.monotonic() + (expires_at - utcnow()).total_seconds()
    return fault


def _synthetic_only_refused(kind: str) -> Problem:
    why = (
        f"a {kind} fault acts on the whole platform, not on single requests; "
        f"synthetic_only is for {' and '.join(ROUTE_KINDS)} faults only"
    )
    return Problem(
        422,
        "validation",
        "Request is not valid",
        f"synthetic_only: {why}",
        errors=[{"field": "synthetic_only", "message": why}],
    )


class FaultRegistry:
    """The faults in force, with cheap look-ups for the hot paths (no database access)."""

    def __init__(self, engine: Engine, *, rng: random.Random | None = None, max_ttl_seconds: float = 3600) -> None:
        self.engine = engine
        self.max_ttl_seconds = max_ttl_seconds
        self.rng = rng or random.Random()
        self._faults: dict[str, Fault] = {}
        self._lock = threading.Lock()
        self._holder: _LockHolder | None = None
        self._own: set[str] = set()  # set through this replica (it records their expiry, holds their lock)
        self._seen_seq: int | None = None  # the last fault event read by `sync`, in commit order

    # -- changes (each one an outbox `change` event) ------------------------------------------
    def add(self, fault: Fault) -> Fault:
        if fault.kind not in KINDS:
            raise Problem(422, "unknown-fault", "Unknown fault kind", f"kind must be one of {', '.join(KINDS)}")
        if fault.synthetic_only and fault.kind not in ROUTE_KINDS:
            raise _synthetic_only_refused(fault.kind)
        with self._lock:
            self._own.add(fault.id)  # before the event can be read back by `sync`
        try:
            self._record("change.fault_set", fault)
        except BaseException:
            with self._lock:
                self._own.discard(fault.id)
            raise
        with self._lock:
            self._faults[fault.id] = fault
        if fault.kind == "lock_wait":
            self._hold_lock()
        return fault

    def clear(self, *, kind: str | None = None, fault_id: str | None = None, actor: str = "admin") -> list[Fault]:
        with self._lock:
            gone = [f for f in self._faults.values() if (kind is None or f.kind == kind) and fault_id in (None, f.id)]
        self._retire(gone, "change.fault_cleared", actor)
        return gone

    def expire(self) -> list[Fault]:
        """Retire faults past their TTL (called by the housekeeping loop; they stopped acting already)."""
        with self._lock:
            gone = [f for f in self._faults.values() if f.expired]
            foreign = [f for f in gone if f.id not in self._own]
            for fault in foreign:  # its own replica records the expiry
                self._faults.pop(fault.id, None)
        self._retire([f for f in gone if f.id in self._own], "change.fault_expired", "system")
        return gone

    def _retire(self, gone: list[Fault], event_type: str, actor: str) -> None:
        """Record each retirement, then forget the fault: a failed write leaves it listed, to retry."""
        if not gone:
            return
        if not self._own_locks() - {f.id for f in gone}:
            self._release_lock()  # first: on SQLite the event below could not be written under it
        for fault in gone:
            self._record(event_type, fault, actor=actor)
            with self._lock:
                self._faults.pop(fault.id, None)
                self._own.discard(fault.id)

    def sync(self) -> int:
        """Take in the fault events other replicas committed since the last call; returns how many."""
        events = table(OutboxEvent)
        query = select(events.c.commit_seq, events.c.event_type, events.c.payload).where(
            events.c.aggregate_type == "fault", events.c.commit_seq.is_not(None)
        )
        if self._seen_seq is None:  # at start: the faults that may still be in force
            query = query.where(events.c.created_at >= utcnow() - timedelta(seconds=self.max_ttl_seconds))
        else:
            query = query.where(events.c.commit_seq > self._seen_seq)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(events.c.commit_seq)).all()
        release = False
        for commit_seq, event_type, payload in rows:
            self._seen_seq = commit_seq
            data = json.loads(payload).get("fault") or {}
            fault_id = data.get("id")
            with self._lock:
                if event_type == "change.fault_set" and fault_id not in self._faults and fault_id not in self._own:
                    fault = _from_event(data)
                    if fault is not None and not fault.expired:
                        self._faults[fault.id] = fault
                elif event_type in ("change.fault_cleared", "change.fault_expired") and fault_id in self._faults:
                    gone = self._faults.pop(fault_id)
                    self._own.discard(fault_id)
                    release |= gone.kind == "lock_wait"
        if self._seen_seq is None:
            self._seen_seq = 0
        if release and not self._own_locks():
            self._release_lock()  # cleared through another replica
        return len(rows)

    def _own_locks(self) -> set[str]:
        with self._lock:
            return {f.id for f in self._faults.values() if f.kind == "lock_wait" and f.id in self._own}

    def active(self) -> list[Fault]:
        with self._lock:
            return [f for f in self._faults.values() if not f.expired]

    def _record(self, event_type: str, fault: Fault, *, actor: str | None = None) -> None:
        with self.engine.begin() as conn:
            write_event(
                conn,
                aggregate_type="fault",
                aggregate_id=fault.id,
                event_type=event_type,
                payload={"fault": fault.to_dict(), "actor": actor or fault.actor, "reason": fault.reason},
            )

    # -- hot-path look-ups --------------------------------------------------------------------
    def _live(self, kind: str) -> list[Fault]:
        if not self._faults:
            return []
        return [f for f in list(self._faults.values()) if f.kind == kind and not f.expired]

    def route_delay(self, method: str, route: str, *, synthetic: bool = False) -> float:
        if route.startswith(UNFAULTED_PREFIXES):
            return 0.0
        return sum(self._jittered(f) for f in self._live("latency") if f.matches(method, route, synthetic=synthetic))

    def route_error(self, method: str, route: str, *, synthetic: bool = False) -> int | None:
        if route.startswith(UNFAULTED_PREFIXES):
            return None
        for fault in self._live("error_rate"):
            if fault.matches(method, route, synthetic=synthetic) and self.rng.random() < fault.error_rate:
                return fault.error_status
        return None

    def db_delay(self) -> float:
        return sum(self._jittered(f) for f in self._live("db_latency"))

    def broker_delay(self) -> float:
        return sum(self._jittered(f) for f in self._live("broker_slow"))

    @property
    def cache_off(self) -> bool:
        return bool(self._live("cache_off"))

    def _jittered(self, fault: Fault) -> float:
        jitter = self.rng.uniform(-fault.jitter_ms, fault.jitter_ms) if fault.jitter_ms else 0.0
        return max(0.0, fault.latency_ms + jitter) / 1000

    # -- the held database lock ---------------------------------------------------------------
    def _hold_lock(self) -> None:
        with self._lock:
            if self._holder is not None:
                return
            self._holder = _LockHolder(self.engine)
        self._holder.start_and_wait()

    def _release_lock(self) -> None:
        with self._lock:
            holder, self._holder = self._holder, None
        if holder is not None:
            holder.release()

    def close(self) -> None:
        """Release a held lock at shutdown (faults do not outlive the process)."""
        with self._lock:
            holder, self._holder = self._holder, None
            self._faults.clear()
        if holder is not None:
            holder.release()


class _LockHolder:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._acquired = threading.Event()
        self._release = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="fault-lock-wait", daemon=True)

    def start_and_wait(self) -> None:
        self._thread.start()
        if not self._acquired.wait(30) or self._error is not None:
            self.release()
            raise Problem(
                503,
                "fault-lock-unavailable",
                "Could not take the lock",
                f"the lock_wait fault could not take its database lock ({self._error}); retry",
                headers={"Retry-After": "1"},
            )

    def _run(self) -> None:
        try:
            with self.engine.connect() as conn:
                conn.begin()  # SQLite: BEGIN IMMEDIATE takes the write lock
                if conn.dialect.name == "postgresql":
                    conn.execute(text("SET LOCAL lock_timeout = '10s'"))
                    conn.execute(text("LOCK TABLE ledger_accounts IN EXCLUSIVE MODE"))
                self._acquired.set()
                self._release.wait()
                conn.rollback()
        except Exception as exc:  # reported to the caller of start_and_wait
            log.warning("lock_wait fault could not hold its lock: %s", exc)
            self._error = exc
            self._acquired.set()

    def release(self) -> None:
        self._release.set()
        self._thread.join(timeout=30)
