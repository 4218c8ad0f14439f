"""`controlplane dashboard`: serve the Streamlit dashboard (`streamlit_app.py`, with the routes of
`dashboards/webapp.py`: the server-set session cookie and recorded exports)."""

from __future__ import annotations

import os
import sys
import tomllib
from pathlib import Path
from typing import Annotated

import typer

from controlplane.cli.common import fail

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "dashboards" / "webapp.py"
PAGES = ROOT / "streamlit_app.py"


AUTH_KEYS = ("redirect_uri", "cookie_secret", "client_id", "client_secret", "server_metadata_url")


def _check_secrets(path: Path) -> None:
    """The secrets file must be TOML with an [auth] section holding what st.login needs."""

    try:
        document = tomllib.loads(path.read_text())
    except OSError as exc:
        raise fail(f"--secrets: {path} cannot be read ({exc.strerror or type(exc).__name__})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise fail(f"--secrets: {path} is not TOML ({exc})") from None
    auth = document.get("auth")
    missing = [k for k in AUTH_KEYS if not isinstance(auth, dict) or not auth.get(k)]
    if missing:
        raise fail(f"--secrets: {path} needs an [auth] section with {', '.join(missing)} (single sign-on, OIDC)")


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
    missing = [str(p) for p in (APP, PAGES) if not p.exists()]
    if missing:
        raise fail(f"{', '.join(missing)} missing; run the dashboard from a checkout of the project")
    if secrets is not None:
        _check_secrets(secrets)
    command = [
        sys.executable,
        "-m",
        "dashboards.server",
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
        "--client.toolbarMode",
        "minimal",  # no "Deploy" or developer options: the people using it are not its developers
        # Tables offer no CSV download or copy of their own: such an export would leave no `access` entry
        # in the audit log. The pages' exports go through the export route, which records each fetch.
        # .streamlit/config.toml says the same for `streamlit run streamlit_app.py`.
        "--client.disableDataExport",
        "true",
        *(["--secrets.files", str(secrets.resolve())] if secrets is not None else []),
    ]
    typer.echo(f"dashboard on http://{host}:{port}", err=True)
    # Become the Streamlit server, so a signal to this process (Ctrl-C, SIGTERM) reaches the server itself.
    os.execv(sys.executable, command)
