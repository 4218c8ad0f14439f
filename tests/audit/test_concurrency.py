"""Concurrent appenders across processes never fork the chain; a killed appender loses nothing it confirmed."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from audit.log import AuditLog
from audit.note import NoteSigner
from audit.schema import entries, migrate_audit
from controlplane.storage import make_engine

APPENDER = str(Path(__file__).with_name("appender.py"))
ROOT = str(Path(__file__).parents[2])


def _env() -> dict:
    return os.environ | {"PYTHONPATH": ROOT}


@pytest.mark.slow
def test_eight_processes_append_one_unbroken_chain(database_url) -> None:
    engine = make_engine(database_url)
    migrate_audit(engine)
    each = 250  # appends per process: enough for the eight to interleave all the way through
    procs = [
        subprocess.Popen(
            [sys.executable, APPENDER, database_url, str(each), str(w)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_env(),
        )
        for w in range(8)
    ]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err.decode()[-500:] for _, err in outputs]
    confirmed = sorted(int(line) for out, _ in outputs for line in out.split())
    assert confirmed == list(range(8 * each))
    with engine.connect() as conn:
        actors = list(conn.execute(select(entries.c.actor).order_by(entries.c.seq)).scalars())
    # The eight appended at once, not one after another (that would pass the chain on 7 times).
    switches = sum(a != b for a, b in itertools.pairwise(actors))
    assert switches > 7, switches
    signer = NoteSigner.generate("audit.test/concurrent")
    log = AuditLog(engine, origin="audit.test/concurrent", signer=signer)
    log.checkpoint()
    result = log.verify(signer.verifier)
    assert result.ok and result.entries == 8 * each, result.problem
    engine.dispose()


@pytest.mark.slow
def test_killed_appender_loses_no_confirmed_append(database_url) -> None:
    engine = make_engine(database_url)
    migrate_audit(engine)
    confirmed: list[int] = []
    for round_ in range(4):
        proc = subprocess.Popen(
            [sys.executable, APPENDER, database_url, "100000", str(round_)], stdout=subprocess.PIPE, env=_env()
        )
        assert proc.stdout is not None
        # Killed mid-run, at a different point each round: once it has confirmed some appends (however
        # long it took to start), not after a fixed time.
        for _ in range(1 + 37 * round_):
            line = proc.stdout.readline()
            assert line, "the appender ended before confirming an append"
            confirmed.append(int(line))
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate(timeout=30)
        confirmed += [int(line) for line in out.split()]
    signer = NoteSigner.generate("audit.test/concurrent")
    log = AuditLog(engine, origin="audit.test/concurrent", signer=signer)
    result = log.verify(signer.verifier)
    assert result.ok, result.problem
    with engine.connect() as conn:
        stored = set(conn.execute(select(entries.c.seq)).scalars())
        count = conn.execute(select(func.count()).select_from(entries)).scalar_one()
    assert set(confirmed) <= stored and len(confirmed) > 0
    assert stored == set(range(count))
    engine.dispose()
