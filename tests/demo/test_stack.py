"""The demo's child processes: ready when they say so, stopped in reverse order, reported when they
die, and gone when the demo itself is killed without a chance to clean up (Linux PR_SET_PDEATHSIG)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from controlplane.demo import stack as stack_module
from controlplane.demo.stack import DemoError, Stack, child_env
from tests.support import wait_until

SLEEPER = "import sys, time; print('ready', flush=True); time.sleep(float(sys.argv[1]))"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@pytest.fixture
def sleepers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stack_module, "controlplane_command", lambda: [sys.executable, "-c", SLEEPER])


def test_children_start_and_stop_and_a_death_is_reported(sleepers: None, tmp_path: Path) -> None:
    with Stack(tmp_path / "logs") as stack:
        long = stack.start("sleeper", ["600"], dict(os.environ), ready="ready")
        short = stack.start("napper", ["0.2"], dict(os.environ), ready="ready")
        wait_until(lambda: not short.running(), "the napper to exit", timeout=60)
        with pytest.raises(DemoError, match="the napper exited with code 0; its log is"):
            stack.check()
        assert long.running()
    assert not long.running(), "leaving the stack stops every child"


def test_a_child_that_never_gets_ready_is_an_error_naming_its_log(monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path: Path) -> None:  # fmt: skip
    monkeypatch.setattr(stack_module, "controlplane_command", lambda: [sys.executable, "-c", "print('boom'); exit(4)"])
    with Stack(tmp_path / "logs") as stack, pytest.raises(DemoError, match="exited with code 4 before"):
        stack.start("broken", [], dict(os.environ), ready="ready")


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux's")
def test_children_die_with_a_demo_killed_outright(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import os, sys, time
        from pathlib import Path
        from controlplane.demo import stack
        stack.controlplane_command = lambda: [sys.executable, "-c", {SLEEPER!r}]
        s = stack.Stack(Path({str(tmp_path / "logs")!r}))
        child = s.start("sleeper", ["600"], dict(os.environ), ready="ready")
        print(child.proc.pid, flush=True)
        time.sleep(600)
    """)
    demo = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        child_pid = int(demo.stdout.readline())  # type: ignore[union-attr]
        assert _alive(child_pid)
        demo.send_signal(signal.SIGKILL)
        demo.wait(timeout=60)
        wait_until(lambda: not _alive(child_pid), "the orphaned child to be stopped", timeout=60)
    finally:
        demo.kill()
        demo.wait(timeout=60)
        demo.stdout.close()  # type: ignore[union-attr]


def test_a_child_sees_none_of_the_shells_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTROLPLANE_ALERTMANAGER_URL", "http://the-real-pager:9093")
    monkeypatch.setenv("PLATFORM_FAULT_MAX_TTL_SECONDS", "5")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://elsewhere:4318")
    env = child_env({"store_url": "sqlite:///x.db"}, {"admin_token": "t"})
    assert "CONTROLPLANE_ALERTMANAGER_URL" not in env and "PLATFORM_FAULT_MAX_TTL_SECONDS" not in env
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in env
    assert env["CONTROLPLANE_STORE_URL"] == "sqlite:///x.db" and env["PLATFORM_ADMIN_TOKEN"] == "t"
    assert env["PATH"] == os.environ["PATH"]
