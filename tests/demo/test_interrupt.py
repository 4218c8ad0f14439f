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
