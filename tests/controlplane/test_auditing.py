"""One way into the audit log per process: concurrent appenders share one migrated engine and never
fork the chain; a log that cannot be reached is a message naming it, never a traceback or a password."""

from __future__ import annotations

import threading

import pytest

from audit.log import AuditLog
from controlplane.auditing import AuditUnavailable, audit_append, audit_engine, close_audit_engines
from controlplane.settings import Settings


def test_concurrent_appenders_share_one_engine_and_one_chain(database_url: str, tmp_path) -> None:
    settings = Settings(audit_url=database_url, audit_key_dir=tmp_path / "keys")
    seqs: list[int] = []
    engines = []
    failures: list[BaseException] = []
    start = threading.Barrier(8)

    def append(i: int) -> None:
        try:
            start.wait(timeout=60)
            engines.append(audit_engine(settings))
            seqs.append(audit_append(settings, kind="access", actor=f"user{i}", subject=f"user:user{i}", payload={}))
        except BaseException as exc:  # reported below, with the thread's own error
            failures.append(exc)

    threads = [threading.Thread(target=append, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert failures == []
    assert sorted(seqs) == list(range(8)), "every append got its own place in the log"
    assert len({id(e) for e in engines}) == 1, "one engine for the process, migrated once"
    assert AuditLog(engines[0], origin=settings.audit_origin).verify().ok


@pytest.mark.parametrize(
    ("url", "opened", "written"),
    [
        ("postgresql+psycopg://auditor:s3cret@127.0.0.1:1/audit", "cannot be opened", "cannot be written"),
        ("mysql://auditor:s3cret@127.0.0.1/audit", "CONTROLPLANE_AUDIT_URL", "CONTROLPLANE_AUDIT_URL"),
    ],
)
def test_an_unreachable_log_is_a_message_without_its_password(url: str, opened: str, written: str) -> None:
    settings = Settings(audit_url=url, db_lock_timeout_ms=500)
    with pytest.raises(AuditUnavailable, match=opened) as reading:
        audit_engine(settings)
    with pytest.raises(AuditUnavailable, match=written) as writing:
        audit_append(settings, kind="access", actor="ana", subject="user:ana", payload={})
    assert "s3cret" not in str(reading.value) + str(writing.value)


def test_closing_forgets_every_engine(tmp_path) -> None:
    settings = Settings(audit_url=f"sqlite:///{tmp_path / 'audit.db'}")
    first = audit_engine(settings)
    assert audit_engine(settings) is first
    close_audit_engines()
    assert audit_engine(settings) is not first
