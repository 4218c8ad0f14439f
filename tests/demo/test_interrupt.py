"""Ctrl-C during the demo's derby night: the faults are cleared, the load stops, every child process
ends, the demo says what it kept and exits 130."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest

from tests.support import CONTROLPLANE, wait_until

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def _processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line or environment (the children's settings) name `text`."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            mentions = text.encode() in (proc / "cmdline").read_bytes() + (proc / "environ").read_bytes()
            if mentions and (proc / "stat").read_text().split()[2] != "Z":
                found.append(int(proc.name))
        except OSError:
            continue
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
def test_ctrl_c_stops_every_child_and_says_what_was_kept(tmp_path: Path) -> None:
    work = tmp_path / "demo"
    log = tmp_path / "stderr.txt"
    with log.open("w") as err:
        demo = subprocess.Popen([CONTROLPLANE, "demo", "--no-dashboard", "--workdir", str(work)], cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=err, text=True)  # fmt: skip
        try:
            wait_until(lambda: "derby night: kickoff at" in log.read_text(), "the load to start", timeout=180)
            children = [pid for pid in _processes_mentioning(str(work)) if pid != demo.pid]
            assert children, "the platform, the collector and the scheduler run with the work directory"
            demo.send_signal(signal.SIGINT)
            assert demo.wait(timeout=180) == 130, log.read_text()
        finally:
            if demo.poll() is None:
                demo.kill()
                demo.wait(timeout=60)
    said = log.read_text()
    assert "interrupted: stopping the demo's processes" in said and "kept: " in said, said
    assert "Traceback" not in said
    wait_until(lambda: not _processes_mentioning(str(work)), "every child process to end", timeout=60)
    assert (work / "logs").is_dir() and not (work / "store.db").exists(), "an interrupted run keeps its logs only"


def test_ctrl_c_inside_a_transaction_is_still_ctrl_c(tmp_path: Path) -> None:
    """A Ctrl-C that lands inside a database transaction comes out of it as the error of the rollback it cut
    short; the demo (and every command) must still take it for Ctrl-C: exit 130, not "the demo failed"."""
    from sqlalchemy import text
    from sqlalchemy.exc import PendingRollbackError

    from controlplane.cli.common import cut_short_by_ctrl_c
    from controlplane.storage import make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'ctrl-c.db'}")
    execute = engine.dialect.do_execute

    def interrupted(cursor, statement, parameters, context=None):  # type: ignore[no-untyped-def]
        if statement.startswith("SELECT 2"):
            raise KeyboardInterrupt  # as the signal handler raises it mid-statement
        return execute(cursor, statement, parameters, context)

    engine.dialect.do_execute = interrupted  # type: ignore[method-assign]
    with pytest.raises(BaseException) as raised, engine.begin() as conn:
        conn.execute(text("SELECT 1"))
        conn.execute(text("SELECT 2"))
    assert isinstance(raised.value, (KeyboardInterrupt, PendingRollbackError)), raised.value
    assert cut_short_by_ctrl_c(raised.value)
    assert not cut_short_by_ctrl_c(RuntimeError("a bug"))
    engine.dispose()
