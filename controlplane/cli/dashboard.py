"""`controlplane dashboard`: serve the Streamlit dashboard (`streamlit_app.py`)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from controlplane.cli.common import fail

APP = Path(__file__).resolve().parents[2] / "streamlit_app.py"


def dashboard(
    port: Annotated[int, typer.Option(help="TCP port of the dashboard.", min=1, max=65535)] = 8501,
    host: Annotated[str, typer.Option(help="Address to bind; 0.0.0.0 to accept remote browsers.")] = "127.0.0.1",
    secrets: Annotated[
        Path | None,
        typer.Option(
            "--secrets",
            help="Streamlit secrets file; an [auth] section there turns on single sign-on (OIDC, st.login).",
        ),
    ] = None,
) -> None:
    """Serve the dashboard in a browser-facing Streamlit server until interrupted."""
    if not APP.exists():
        raise fail(f"{APP} is missing; run the dashboard from a checkout of the project")
    if secrets is not None and not secrets.is_file():
        raise fail(f"--secrets: {secrets} is not a readable file; give the TOML file with the [auth] section")
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP),
        "--server.port",
        str(port),
        "--server.address",
        host,
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--server.fileWatcherType",
        "none",
        *(["--secrets.files", str(secrets.resolve())] if secrets is not None else []),
    ]
    typer.echo(f"dashboard on http://{host}:{port}", err=True)
    # Become the Streamlit server, so a signal to this process (Ctrl-C, SIGTERM) reaches the server itself.
    os.execv(sys.executable, command)
