"""Every server binds 127.0.0.1 unless told otherwise: the command line's --host options, the platform's
odds stream, and the Streamlit configuration a bare `streamlit run streamlit_app.py` reads."""

from __future__ import annotations

import importlib
import tomllib
from pathlib import Path
from typing import Any

import typer

from controlplane.cli import COMMANDS
from sample_platform.settings import PlatformSettings

ROOT = Path(__file__).parents[1]


def _commands() -> dict[str, Any]:
    """Every command and subcommand of `controlplane`, by its full name."""
    found: dict[str, Any] = {}

    def walk(name: str, command: Any) -> None:
        found[name] = command
        if isinstance(getattr(command, "commands", None), dict):  # a group, of click or of Typer's own
            for sub_name, sub in command.commands.items():
                walk(f"{name} {sub_name}", sub)

    for group, (module, attribute) in COMMANDS.items():
        target = getattr(importlib.import_module(module), attribute)
        walk(group, typer.main.get_command(target if isinstance(target, typer.Typer) else _single(target)))
    return found


def _single(function: object) -> typer.Typer:
    app = typer.Typer()
    app.command()(function)  # type: ignore[arg-type]
    return app


def test_every_host_option_defaults_to_loopback() -> None:
    hosts = {
        name: param.default
        for name, command in _commands().items()
        for param in command.params
        if param.name in {"host", "address", "bind"}
    }
    assert {"dashboard", "platform serve", "collector"} <= set(hosts), hosts  # the servers were found
    assert all(default == "127.0.0.1" for default in hosts.values()), hosts


def test_the_platform_and_streamlit_listen_on_loopback_by_default(monkeypatch) -> None:
    monkeypatch.delenv("PLATFORM_ODDS_STREAM_HOST", raising=False)
    assert PlatformSettings().odds_stream_host == "127.0.0.1"
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "127.0.0.1"
