"""The `controlplane` CLI: exit codes and messages, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from controlplane.cli import app
from controlplane.cli.reference import walk

runner = CliRunner()
CONTROLPLANE = str(Path(sys.executable).with_name("controlplane"))


VERBS = [verb.path for verb in walk()]


def test_the_walk_finds_every_command_group() -> None:
    groups = {path[0] for path in VERBS}
    assert {"platform", "collector", "sli", "slo", "audit", "alerts", "demo", "dashboard"} <= groups
    assert ("platform", "faults", "set") in VERBS


@pytest.mark.parametrize("path", [(), *VERBS], ids=lambda path: " ".join(path) or "controlplane")
def test_every_verb_has_help(path: tuple[str, ...]) -> None:
    result = runner.invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "args",
    [
        ("sli", "show", "--format", "xml"),
        ("slo", "status", "--no-such-flag"),
        ("audit", "prove", "--seq", "minus-one"),
        ("alerts", "history", "--format", "xml"),
        ("alerts", "history", "--limit", "0"),
        ("no-such-group",),
    ],
)
def test_usage_errors_exit_3_with_a_message(args: tuple[str, ...]) -> None:
    result = subprocess.run([CONTROLPLANE, *args], capture_output=True, text=True)
    assert result.returncode == 3, result.stderr
    assert "Error" in result.stderr and "Traceback" not in result.stderr + result.stdout


def test_bad_database_url_is_a_message_and_exit_3() -> None:
    result = subprocess.run(
        [CONTROLPLANE, "platform", "migrate", "--database-url", "mysql://x@y/z"], capture_output=True, text=True
    )
    assert result.returncode == 3
    assert "not supported" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_bad_setting_is_a_message_and_exit_3(tmp_path) -> None:
    result = subprocess.run(
        [CONTROLPLANE, "platform", "migrate"],
        capture_output=True,
        text=True,
        env={"PLATFORM_MAX_STAKE_MINOR": "lots", "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
    )
    assert result.returncode == 3
    assert "PLATFORM_MAX_STAKE_MINOR" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_command_loads_only_its_own_group() -> None:
    """`controlplane slo ...` from cron does not pay for the platform, the demo or the scheduler."""
    probe = (
        "import sys\n"
        "from controlplane.cli import main\n"
        "sys.argv = ['controlplane', 'slo', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = ['sample_platform.api', 'controlplane.demo.run', 'apscheduler', 'collectors.service', 'streamlit']\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
    listed = subprocess.run([CONTROLPLANE, "--help"], capture_output=True, text=True, timeout=120).stdout
    assert all(group in listed for group in ("platform", "slo", "checklist", "demo", "scheduler"))
