"""The control plane's one way into the audit log: its database opened and migrated once per process,
its key ring, and appending one entry.

Usage:

    seq = audit_append(settings, kind="change", actor="ana", subject="slo:bets", payload={...})
    log, ring = open_audit(settings)              # to sign checkpoints, export or verify
    engine = audit_engine(settings)               # to read entries (cost, evidence, the dashboard)

A process keeps one engine per audit log URL (a few at most, the oldest disposed), so concurrent
appenders (dashboard sessions, scheduler jobs) share one migrated pool instead of each opening and
migrating a database of its own.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from audit.canonical import floats_as_strings
from audit.keys import KeyRing
from audit.log import AuditLog
from audit.schema import migrate_audit
from controlplane.settings import Settings
from controlplane.storage import StorageConfigError, make_engine

_KEEP = 4  # engines kept per process; more URLs than this only happen in test suites
_Key = tuple[str, tuple[tuple[str, int], ...]]
_engines: OrderedDict[_Key, Engine] = OrderedDict()
_opening: dict[_Key, threading.Lock] = {}  # one lock per URL: opening one log never waits for another
_lock = threading.Lock()  # guards the two dicts only, never held while a database is reached


class AuditUnavailable(ValueError):
    """The audit log cannot be opened or written; the message names the log (password hidden) and the fix."""


def _where(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL: say so without echoing it (it may hold a password)
        return "CONTROLPLANE_AUDIT_URL"


def audit_engine(settings: Settings) -> Engine:
    """The audit log's database at `settings.audit_url`, migrated to the newest schema on first use.
    Raises AuditUnavailable when it cannot be opened."""
    return _engine(settings, "opened")


def _engine(settings: Settings, doing: str) -> Engine:
    key: _Key = (settings.audit_url, tuple(sorted(settings.engine_options().items())))
    with _lock:
        engine = _engines.get(key)
        if engine is not None:
            _engines.move_to_end(key)
            return engine
        opening = _opening.setdefault(key, threading.Lock())
    with opening:  # one migration per URL at a time; the others wait for its engine
        with _lock:
            engine = _engines.get(key)
        if engine is not None:
            return engine
        try:
            engine = make_engine(settings.audit_url, **settings.engine_options())
        except StorageConfigError as exc:
            raise AuditUnavailable(f"CONTROLPLANE_AUDIT_URL: {exc}") from None
        try:
            migrate_audit(engine)
        except Exception as exc:  # unreachable, refused, or a schema this version does not know
            engine.dispose()
            raise AuditUnavailable(
                f"the audit log at {_where(settings.audit_url)} cannot be {doing}: {_first(exc)}"
            ) from None
        with _lock:
            _engines[key] = engine
            while len(_engines) > _KEEP:
                # Forgotten, not disposed: another thread may still be using it; its pool goes with it.
                _engines.popitem(last=False)
        return engine


def close_audit_engines() -> None:
    """Dispose every engine this process keeps (a test's database is about to go, or a file was removed)."""
    with _lock:
        while _engines:
            _engines.popitem()[1].dispose()


def _first(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


def key_ring(settings: Settings) -> KeyRing:
    passphrase = settings.audit_key_passphrase.get_secret_value().encode() if settings.audit_key_passphrase else None
    return KeyRing(
        settings.audit_key_dir,
        name=settings.audit_origin,
        passphrase=passphrase,
        development=settings.environment != "production",
    )


def open_audit(settings: Settings, *, signing: bool = True) -> tuple[AuditLog, KeyRing]:
    """The log, its key ring, and (when signing) the current signer. Raises AuditUnavailable for a log
    that cannot be opened and AuditKeyError for keys that cannot be."""
    engine = audit_engine(settings)
    ring = key_ring(settings)
    signer = ring.signer() if signing else None
    return AuditLog(engine, origin=settings.audit_origin, signer=signer), ring


def audit_append(settings: Settings, *, kind: str, actor: str, subject: str, payload: dict[str, Any]) -> int:
    """Append one entry (floats written as strings) and return its sequence number. Raises
    AuditUnavailable, naming the log, when it cannot be written."""
    engine = _engine(settings, "written")
    try:
        log = AuditLog(engine, origin=settings.audit_origin)
        return log.append(kind=kind, actor=actor, subject=subject, payload=floats_as_strings(payload)).seq
    except SQLAlchemyError as exc:
        raise AuditUnavailable(
            f"the audit log at {_where(settings.audit_url)} cannot be written: {_first(exc)}"
        ) from None
