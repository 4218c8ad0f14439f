"""The dashboard in a real browser (Debian's chromium, driven by Playwright) against `controlplane
dashboard`, with data from a short platform + collector + scheduler run: every role signs in, visits
each of its pages without a Streamlit exception (screenshots in var/screenshots/), a forbidden URL shows
none of its data, and a proof bundle downloaded from the audit page verifies offline."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from controlplane.storage import make_engine
from controlplane.store import SliBucket, table
from sample_platform.client import PlatformClient
from tests.conftest import ADMIN_TOKEN, SLICES_PATH, bet_body
from tests.support import CONTROLPLANE, PlatformProcess, ServiceProcess, free_port, wait_until

pytestmark = pytest.mark.slow
CHROMIUM = Path("/usr/bin/chromium")
REQUIRE_BROWSER = os.environ.get("CONTROLPLANE_TEST_REQUIRE_BROWSER") == "1"
ROOT = Path(__file__).parents[2]
SCREENSHOTS = ROOT / "var" / "screenshots"
PASSWORD = "correct horse battery staple"
ROLES = {
    "ana": ("oncall", ["On-call", "Incidents", "Readiness", "Cost per settled bet"]),
    "cleo": ("compliance", ["Incidents", "Readiness", "Audit log"]),
    "ada": ("admin", ["On-call", "Incidents", "Readiness", "Cost per settled bet", "Audit log", "Users"]),
}
URLS = {
    "On-call": "oncall",
    "Incidents": "incidents",
    "Readiness": "readiness",
    "Cost per settled bet": "cost",
    "Audit log": "audit",
    "Users": "users",
}
CHECKLIST = """checks:
  - {id: slo-coverage, title: An SLO per slice, severity: warning, owner: sre, runbook: r,
     evaluator: {type: slo_coverage}}
"""


@pytest.fixture
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        if REQUIRE_BROWSER:
            pytest.fail(f"{CHROMIUM} is missing; .ci/run installs Debian's chromium")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield launched
        launched.close()


def _cli(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    done = subprocess.run([CONTROLPLANE, *args], env=env, input=stdin, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "Traceback" not in done.stderr, (args, done.stderr)
    return done


def _platform_run(database_url: str, tmp_path: Path, env: dict[str, str]) -> tuple[int, datetime]:
    """Players bet, a game-day fault fails bets for a moment, a market settles; telemetry reaches the
    collector and money the audit log; the scheduler's jobs then evaluate, roll up and sign. Returns a
    settled bet's id and the minute just after the incident (to pin the on-call page at)."""
    platform_port = free_port()
    collector = ServiceProcess(
        "collector",
        {"CONTROLPLANE_STORE_URL": database_url, "CONTROLPLANE_SLICES_PATH": str(SLICES_PATH),
         "CONTROLPLANE_SCRAPE_TARGETS": f"http://127.0.0.1:{platform_port}/metrics",
         "CONTROLPLANE_SCRAPE_INTERVAL_SECONDS": "0.5"},
        tmp_path / "collector.log",
        "/healthz",
    )  # fmt: skip
    platform = PlatformProcess(
        database_url, tmp_path / "outbox.jsonl", port=platform_port, PLATFORM_OTLP_ENDPOINT=collector.url,
        PLATFORM_OTLP_METRIC_INTERVAL_SECONDS="1", CONTROLPLANE_OUTBOX_SINK="audit", CONTROLPLANE_AUDIT_URL=database_url,
        CONTROLPLANE_AUDIT_ORIGIN=env["CONTROLPLANE_AUDIT_ORIGIN"],
    )  # fmt: skip
    store = make_engine(database_url)
    try:
        with PlatformClient(platform.url, admin_token=ADMIN_TOKEN) as client:
            player = client.create_account(f"b-{uuid.uuid4().hex[:8]}")
            client.deposit(player["id"], 100_000)
            market = client.create_market("Derby", [("Home", "2.00"), ("Away", "2.00")])
            bets = [client.place_bet(player["token"], bet_body(market, selection=i % 2, stake=100)) for i in range(10)]
            assert all(b.status_code == 201 for b in bets)
            # The incident: a game-day fault fails every bet for a moment, set and cleared over the admin API.
            admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
            fault = {"kind": "error_rate", "route": "POST /v1/bets", "error_rate": 1.0, "ttl_seconds": 300,
                     "actor": "riley.gameday", "reason": "game day: bets fail"}  # fmt: skip
            assert httpx.post(f"{platform.url}/v1/admin/faults", json=fault, headers=admin).status_code == 201
            failed = [client.place_bet(player["token"], bet_body(market, stake=100)) for _ in range(10)]
            assert all(b.status_code == 503 for b in failed), [b.status_code for b in failed]
            cleared = httpx.delete(f"{platform.url}/v1/admin/faults", params={"actor": "riley.gameday"}, headers=admin)
            assert cleared.status_code in (200, 204), cleared.text
            incident = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
            client.result(market["id"], winner_selection_id=market["selections"][0]["id"])

        def counted() -> bool:
            with store.connect() as conn:
                return bool(conn.execute(select(func.sum(table(SliBucket).c.bad))).scalar())

        wait_until(counted, "the failed bets counted from the platform's telemetry", timeout=120)
    finally:
        platform.stop()
        collector.stop()
        store.dispose()
    for job in ("rollups", "slo-evaluation", "checkpoint"):
        _cli(env, "scheduler", "--once", job)
    _cli(env, "checklist", "run")
    for name, (role, _pages) in ROLES.items():
        _cli(env, "users", "add", name, "--role", role, "--by", "test", stdin=PASSWORD + "\n")
    wait_until(lambda: datetime.now(UTC) >= incident, "the incident's minute to be complete", timeout=120)
    return int(bets[0].json()["id"]), incident


@pytest.fixture
def dashboard(database_url: str, tmp_path: Path) -> Iterator[tuple[str, dict[str, str], int, datetime]]:
    (tmp_path / "checklist.yaml").write_text(CHECKLIST)
    env = os.environ | {
        "CONTROLPLANE_STORE_URL": database_url,
        "CONTROLPLANE_AUDIT_URL": database_url,
        "CONTROLPLANE_AUDIT_KEY_DIR": str(tmp_path / "keys"),
        "CONTROLPLANE_AUDIT_ORIGIN": "audit.test/browser",
        "CONTROLPLANE_CHECKLIST_PATH": str(tmp_path / "checklist.yaml"),
        "CONTROLPLANE_SLICES_PATH": str(SLICES_PATH),
    }
    bet_id, incident = _platform_run(database_url, tmp_path, env)
    with serving_dashboard(env, tmp_path / "dashboard.log") as url:
        yield url, env, bet_id, incident


@contextmanager
def serving_dashboard(env: dict[str, str], log_path: Path) -> Iterator[str]:
    """`controlplane dashboard` on a free port with `env`, until the block ends; yields its URL."""
    port = free_port()
    log = log_path.open("wb")
    server = subprocess.Popen([CONTROLPLANE, "dashboard", "--port", str(port)], env=env, cwd=ROOT, stdout=log,
                              stderr=subprocess.STDOUT)  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        assert server.poll() is None, log_path.read_text()
        try:
            return httpx.get(f"{url}/_stcore/health", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(healthy, "the dashboard to serve", timeout=120)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def _settled(page: Any) -> None:
    """Wait until the script has run (Streamlit marks the app), then look for exceptions."""
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=120_000)
    exceptions = page.locator('[data-testid="stException"]')
    assert exceptions.count() == 0, exceptions.all_inner_texts()


def _sign_in(browser: Any, url: str, name: str, password: str = PASSWORD) -> Any:
    context = browser.new_context(viewport={"width": 1440, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.goto(url)
    page.get_by_role("textbox", name="Username").fill(name)
    page.get_by_role("textbox", name="Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.get_by_text(f"Signed in as {name}").wait_for(timeout=60_000)
    # The session cookie is set by the server once signed in (HttpOnly); a reload or a link needs it.
    wait_until(lambda: any(c["name"] == "controlplane_session" for c in context.cookies()), "the session cookie")
    return page


def test_every_role_in_a_real_browser(browser: Any, dashboard: tuple[str, dict[str, str], int], tmp_path: Path) -> None:
    url, env, bet_id, incident = dashboard
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    pinned = f"?at={incident:%Y-%m-%dT%H:%MZ}&range=1h"  # the on-call page as of just after the incident
    for name, (role, titles) in ROLES.items():
        page = _sign_in(browser, url, name)
        for title in titles:
            # By URL: the session cookie keeps the sign-in.
            page.goto(f"{url}/{URLS[title]}" + (pinned if title == "On-call" else ""))
            page.get_by_role("heading", name=title, exact=True).wait_for(timeout=60_000)
            _settled(page)
            assert page.get_by_role("dialog").count() == 0, page.get_by_role("dialog").all_inner_texts()
            shown = page.locator('[data-testid="stMain"]').inner_text()
            below = [n for n in NEGATIVE_PERCENT.findall(shown) if float(n.replace(",", "")) > 100]
            assert not below, (title, below)
            if title == "On-call":
                _incident_first(page)
            page.screenshot(path=str(SCREENSHOTS / f"{role}-{URLS[title]}.png"))
        for title, path in URLS.items():
            if title in titles:
                continue
            page.goto(f"{url}/{path}")
            _settled(page)
            assert page.get_by_role("heading", name=title, exact=True).count() == 0, f"{role} reached {path}"
        if role == "compliance":
            _bundle_verifies_offline(page, url, env, bet_id, tmp_path)
        page.context.close()


NEGATIVE_PERCENT = re.compile(r"-(\d[\d,]*(?:\.\d+)?)%")


def _incident_first(page: Any) -> None:
    """At 1440x900, without scrolling: the red banner naming the paging SLO, and its tile saying its budget
    is exhausted, in words."""
    banner = page.locator('[data-testid="stAlert"]').filter(has_text="PAGE: bet-placement-availability").first
    box = banner.bounding_box()
    assert box is not None and box["y"] + box["height"] <= 900, ("the paging banner is below the fold", box)
    tile = page.locator('[data-testid="stAlert"]').filter(has_text=re.compile(r"^bet-placement-availability · PAGE"))
    assert "exhausted" in tile.first.inner_text(), tile.first.inner_text()
    tile_box = tile.first.bounding_box()
    assert tile_box is not None and tile_box["y"] + tile_box["height"] <= 900, ("the tile is below the fold", tile_box)


def prepare_bundle(page: Any, bet_id: int) -> Any:
    """On the audit page: ask for a bet's proof bundle; the link the page then offers to it."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page.get_by_role("textbox", name="Bet id").fill(str(bet_id))
    page.get_by_role("textbox", name="Bet id").press("Enter")
    _settled(page)
    link = page.get_by_role("link", name="Download bundle (JSON)")
    # On a busy machine a click can land while the field's own rerun redraws the button, and be lost;
    # preparing again is harmless, so click until the link is there (three minutes in all at most).
    for _ in range(6):
        page.get_by_role("button", name="Prepare bundle").click()
        try:
            link.wait_for(timeout=30_000)
            return link
        except PlaywrightTimeout:
            _settled(page)
    raise AssertionError("the audit page offered no bundle link after six clicks of Prepare bundle")


def _bundle_verifies_offline(page: Any, url: str, env: dict[str, str], bet_id: int, workdir: Path) -> None:
    page.goto(f"{url}/audit")
    _settled(page)
    link = prepare_bundle(page, bet_id)
    fetched = page.context.request.get(f"{url}{link.get_attribute('href')}")  # with this browser's session
    assert fetched.status == 200, fetched.text()
    saved = workdir / "bundle.json"
    saved.write_bytes(fetched.body())
    bundle = json.loads(saved.read_text())
    assert {json.loads(e["entry"])["subject"] for e in bundle["entries"]} == {f"bet:{bet_id}"}
    key = _cli(env, "audit", "verifier-key").stdout.strip()
    verified = subprocess.run(
        [sys.executable, "-m", "audit.verify", str(saved), "--key", key], capture_output=True, text=True, timeout=120
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
