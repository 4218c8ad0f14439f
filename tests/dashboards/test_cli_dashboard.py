"""`controlplane dashboard` refuses a secrets file it cannot use for single sign-on, with the reason."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support import CONTROLPLANE


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot be read"),
        ("[auth\nredirect_uri =", "is not TOML"),
        ('[auth]\nredirect_uri = "http://x/oauth2callback"\n', "needs an [auth] section with cookie_secret, client_id"),
        ("[other]\nx = 1\n", "needs an [auth] section with redirect_uri"),
    ],
)
def test_a_secrets_file_without_what_sign_on_needs_is_refused(
    tmp_path: Path, content: str | None, message: str
) -> None:
    secrets = tmp_path / "secrets.toml"
    if content is not None:
        secrets.write_text(content)
    done = subprocess.run(
        [CONTROLPLANE, "dashboard", "--port", "1", "--secrets", str(secrets)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 3 and message in done.stderr and "Traceback" not in done.stderr
