"""Single sign-on: `controlplane dashboard --secrets FILE` with an `[auth]` section signs people in through
an OpenID Connect provider (a local mock, as Streamlit tests its own st.login); the role comes from a
claim, a user without one gets no page, and each sign-in is an `access` entry in the audit log."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from audit.schema import entries
from controlplane.storage import make_engine
from tests.dashboards.test_browser import CHROMIUM, REQUIRE_BROWSER, ROOT, _settled
from tests.support import CONTROLPLANE, free_port, wait_until

pytestmark = [
    pytest.mark.slow,
    # The mock provider (in this process) runs on authlib APIs that authlib now marks deprecated.
    pytest.mark.filterwarnings("ignore::DeprecationWarning:authlib.*"),
    pytest.mark.filterwarnings("ignore:authlib.jose module is deprecated"),
]


@pytest.fixture
def sso(tmp_path: Path) -> Iterator[tuple[str, str]]:
    if not CHROMIUM.exists():
        if REQUIRE_BROWSER:
            pytest.fail(f"{CHROMIUM} is missing; .ci/run installs Debian's chromium")
        pytest.skip("Debian's chromium is not installed")
    from oidc_provider_mock import User, run_server_in_thread

    users = [
        User(sub="olga", claims={"email": "olga@example.test", "roles": ["oncall"]}),
        User(sub="nemo", claims={"email": "nemo@example.test", "roles": ["viewer"]}),
    ]
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    with run_server_in_thread(user_claims=users) as provider:
        port = free_port()
        (tmp_path / "secrets.toml").write_text(
            "[auth]\n"
            f'redirect_uri = "http://localhost:{port}/oauth2callback"\n'
            f'cookie_secret = "{secrets.token_hex(16)}"\n'
            'client_id = "controlplane"\n'
            'client_secret = "unused"\n'
            f'server_metadata_url = "http://localhost:{provider.server_port}/.well-known/openid-configuration"\n'
        )
        env = os.environ | {
            "CONTROLPLANE_STORE_URL": store_url,
            "CONTROLPLANE_AUDIT_URL": store_url,
            "CONTROLPLANE_AUDIT_KEY_DIR": str(tmp_path / "keys"),
        }
        log = (tmp_path / "dashboard.log").open("wb")
        server = subprocess.Popen(
            [CONTROLPLANE, "dashboard", "--port", str(port), "--secrets", str(tmp_path / "secrets.toml")],
            env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip

        def healthy() -> bool:
            assert server.poll() is None, (tmp_path / "dashboard.log").read_text()
            try:
                return httpx.get(f"http://localhost:{port}/_stcore/health", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        try:
            wait_until(healthy, "the dashboard to serve", timeout=120)
            yield f"http://localhost:{port}", store_url
        finally:
            server.terminate()
            server.wait(timeout=30)
            log.close()


def _through_provider(browser: Any, url: str, sub: str) -> Any:
    page = browser.new_page()
    page.goto(url)
    page.get_by_role("button", name="Log in with single sign-on").click()
    page.get_by_role("button", name=sub, exact=True).click()  # the mock's one-click user
    page.wait_for_url(f"{url}/**", timeout=60_000)
    _settled(page)
    return page


def test_single_sign_on_takes_the_role_from_the_claim(sso: tuple[str, str]) -> None:
    from playwright.sync_api import sync_playwright

    url, store_url = sso
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            page = _through_provider(browser, url, "olga")
            page.get_by_role("heading", name="On-call", exact=True).wait_for(timeout=60_000)
            assert page.get_by_text("Signed in as olga@example.test").count() == 1
            page.goto(f"{url}/audit")
            _settled(page)
            assert page.get_by_role("heading", name="Audit log", exact=True).count() == 0
            page.close()
            stranger = _through_provider(browser, url, "nemo")
            stranger.get_by_text("gave no dashboard role").wait_for(timeout=60_000)
            assert stranger.get_by_role("heading", name="On-call", exact=True).count() == 0
        finally:
            browser.close()
    engine = make_engine(store_url)
    with engine.connect() as conn:
        docs = [
            json.loads(t) for t in conn.execute(select(entries.c.entry).where(entries.c.kind == "access")).scalars()
        ]
    engine.dispose()
    outcomes = [(d["actor"], d["payload"]["source"], d["payload"]["outcome"]) for d in docs]
    assert outcomes == [("olga@example.test", "oidc", "success"), ("nemo@example.test", "oidc", "failure")]
