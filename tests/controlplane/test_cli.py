"""The `controlplane` CLI: exit codes and messages, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from controlplane.cli import app

runner = CliRunner()
CONTROLPLANE = str(Path(sys.executable).with_name("controlplane"))


@pytest.mark.parametrize(
    "args", [["--help"], ["platform", "--help"], ["platform", "serve", "--help"], ["demo", "--help"]]
)
def test_every_verb_has_help(args: list[str]) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


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


def test_migrate_then_demo(tmp_path) -> None:
    db = tmp_path / "demo.db"
    migrated = subprocess.run(
        [CONTROLPLANE, "platform", "migrate", "--database-url", f"sqlite:///{db}"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert migrated.returncode == 0, migrated.stderr
    env = os.environ | {
        "PLATFORM_OUTBOX_SINK_PATH": str(tmp_path / "demo-outbox.jsonl"),
        "CONTROLPLANE_STORE_URL": f"sqlite:///{tmp_path / 'store.db'}",
        "CONTROLPLANE_SLICES_PATH": str(Path(__file__).parents[2] / "config" / "slices.yaml"),
    }
    # A process of its own: the demo installs OpenTelemetry exporters for its whole process.
    result = subprocess.run(
        [CONTROLPLANE, "demo", "--bets", "60", "--database-url", f"sqlite:///{db}"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ledger check          OK" in result.stdout
    assert "bets accepted" in result.stdout
    assert "bet-placement   events" in result.stdout
