"""One scheduler per store: a second one refuses to start; when the leader is killed, another takes
over within the lease (SQLite) or at once (PostgreSQL: the advisory lock dies with its connection)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from controlplane.scheduler.leader import LeaderLock, NotLeader
from tests.conftest import SLICES_PATH

CONTROLPLANE = str(Path(sys.executable).with_name("controlplane"))
LEASE_SECONDS = 3


def test_a_second_lock_is_refused_until_the_first_is_released(store) -> None:
    first = LeaderLock(store, holder="a", lease_seconds=LEASE_SECONDS)
    first.acquire()
    second = LeaderLock(store, holder="b", lease_seconds=LEASE_SECONDS)
    try:
        with pytest.raises(NotLeader, match="one scheduler per store"):
            second.acquire()
    finally:
        first.release()
    second.acquire()
    second.release()


def _start(env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("wb") as out:
        return subprocess.Popen([CONTROLPLANE, "scheduler"], env=env, stdout=out, stderr=subprocess.STDOUT)


def _wait_started(proc: subprocess.Popen, log: Path, deadline_s: float) -> float:
    started = time.monotonic()
    while "scheduler started" not in log.read_text():
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() - started < deadline_s, log.read_text()
        time.sleep(0.1)
    return time.monotonic() - started


def test_a_second_scheduler_refuses_and_takes_over_after_a_kill(database_url: str, tmp_path: Path) -> None:
    config = tmp_path / "scheduler.yaml"
    # Jobs far apart: this test is about leadership, not work.
    config.write_text(f"lease_seconds: {LEASE_SECONDS}\njobs: {{slo-evaluation: {{cron: '0 0 1 1 *'}}}}\n")
    env = os.environ | {
        "CONTROLPLANE_STORE_URL": database_url,
        "CONTROLPLANE_SCHEDULER_PATH": str(config),
        "CONTROLPLANE_SLICES_PATH": str(SLICES_PATH),
        "CONTROLPLANE_AUDIT_URL": database_url,
        "CONTROLPLANE_AUDIT_KEY_DIR": str(tmp_path / "keys"),
    }
    leader = _start(env, tmp_path / "leader.log")
    try:
        _wait_started(leader, tmp_path / "leader.log", 60)
        second = subprocess.run([CONTROLPLANE, "scheduler"], env=env, capture_output=True, text=True, timeout=120)
        assert second.returncode == 3, second.stdout + second.stderr
        assert "another scheduler" in second.stderr and "Traceback" not in second.stderr
        leader.send_signal(signal.SIGKILL)
        leader.wait(timeout=30)
        # The documented bound: the lease (SQLite) after the leader's last renewal; PostgreSQL at once.
        successor = None
        deadline = time.monotonic() + LEASE_SECONDS + 60
        while successor is None:
            attempt = _start(env, tmp_path / "successor.log")
            try:
                _wait_started(attempt, tmp_path / "successor.log", 60)
                successor = attempt
            except AssertionError:
                attempt.wait(timeout=30)
                assert "another scheduler" in (tmp_path / "successor.log").read_text()
                assert time.monotonic() < deadline, "no successor took over within the lease"
                time.sleep(0.5)
        successor.send_signal(signal.SIGTERM)
        assert successor.wait(timeout=60) == 0
    finally:
        for proc in (leader,):
            if proc.poll() is None:
                proc.kill()
