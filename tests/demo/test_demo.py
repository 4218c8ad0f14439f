"""`controlplane demo` end to end, on SQLite and on PostgreSQL: a short derby night whose report
shows the page alert firing during the lock-wait fault and not before the first fault, a balanced
ledger, a verified audit log, two bundles verified offline, the checklist run before kickoff and in
the audit log, and a positive cost per settled bet. On SQLite the kept data is then served by the
dashboard and every page is visited in a real browser as the demo's admin (the README's screenshots
come from here: var/screenshots/demo-*.png)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest

from tests.dashboards.test_browser import CHROMIUM, REQUIRE_BROWSER, SCREENSHOTS, serving_dashboard
from tests.dashboards.test_browser import _settled as settled
from tests.dashboards.test_browser import _sign_in as sign_in
from tests.support import CONTROLPLANE

# One at a time (on one xdist worker, `--dist loadgroup`): two derby nights at once on a small machine
# would be a load test of the machine rather than of the platform.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900), pytest.mark.xdist_group("derby-night")]
ROOT = Path(__file__).resolve().parents[2]


def test_derby_night_in_one_command(database_url: str, tmp_path: Path) -> None:
    work = tmp_path / "demo"
    sqlite = database_url.startswith("sqlite")
    urls = [] if sqlite else [
        "--database-url", database_url, "--store-url", database_url, "--audit-url", database_url,
    ]  # fmt: skip
    keep = ["--keep"] if sqlite else []
    # Half the default rate: the assertions are about the game day, and the rest of the suite runs beside
    # this test, so the spike must stay within what a busy machine can serve without failing bets.
    args = ["demo", "--duration", "60", "--rate", "2", "--no-dashboard", "--format", "json", "--workdir", str(work),
            *keep, *urls]  # fmt: skip
    done = subprocess.run(
        [CONTROLPLANE, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=900,
    )
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    report = json.loads(done.stdout)
    assert report["ok"] is True

    faults = {f["kind"]: f for f in report["faults"]}
    assert list(faults) == ["cache_off", "broker_slow", "lock_wait"]
    assert all(f["cleared_at"] for f in faults.values()), "every fault was cleared"
    # The page of bet placement's availability: not before the first fault (the spike alone must not
    # page), and first during the lock wait. A transition's `at` is the end of the minutes it judged.
    first_fault = min(datetime.fromisoformat(f["set_at"]) for f in faults.values())
    pages = [a for a in report["alerts"] if a["slo"] == "bet-placement-availability" and a["severity"] == "page"]
    assert pages and pages[0]["state"] == "firing", report["alerts"]
    assert datetime.fromisoformat(pages[0]["at"].replace("Z", "+00:00")) > first_fault, pages
    assert pages[0]["when"] == "during lock_wait", pages
    assert faults["lock_wait"]["cleared_because"] == "the page alert fired"

    assert report["ledger"]["ok"] is True and report["ledger"]["transactions"] > 0
    audit = report["audit"]
    assert audit["verified"] is True and audit["money_problems"] == []
    assert len(audit["bundles"]) == 2 and all(b["verified"] for b in audit["bundles"]), audit["bundles"]
    assert audit["by_kind"]["money"] > 0 and audit["by_kind"]["checklist"] >= 1

    checklist = report["checklist"]
    assert checklist["ran"] and checklist["before_kickoff"], checklist
    assert checklist["audit_seq"] is not None
    assert checklist["decision"] in ("go", "go-with-warnings", "no-go")

    cost = report["cost"]
    assert cost["settled_bets"] > 0
    assert Decimal(cost["cost_per_settled_bet"]) > 0

    load = report["load"]
    assert load["bets_placed"] > 0 and load["markets_settled"] == 3
    slos = {s["slo"]: s for s in report["slos"]}
    assert slos["bet-placement-availability"]["bad_events"] > 0
    assert slos["bet-placement-availability"]["alert"] == "page"

    # The report and the bundles stay (without --keep, nothing else), and the bundles verify again offline.
    assert (work / "report.json").exists()
    assert (work / "keys").exists()  # kept with --keep, and always beside an audit log given by URL
    for bundle in audit["bundles"]:
        key = audit["verifier_key"]
        again = subprocess.run(
            [sys.executable, "-m", "audit.verify", bundle["path"], "--key", key],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        assert again.returncode == 0, again.stdout + again.stderr

    if sqlite:
        _every_page_in_a_browser(work)


PAGES = {"oncall": "bet-placement-availability", "readiness": "Evidence of each check", "cost": "cost", "audit": "checkpoint",
         "users": "Add a user"}  # fmt: skip


def _every_page_in_a_browser(work: Path) -> None:
    """`source var/demo/env.sh; controlplane dashboard`, signed in with the demo's admin login."""
    if not CHROMIUM.exists():
        if REQUIRE_BROWSER:
            pytest.fail(f"{CHROMIUM} is missing; .ci/run installs Debian's chromium")
        return
    from playwright.sync_api import sync_playwright

    env = dict(os.environ)
    for line in (work / "env.sh").read_text().splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        env[name] = shlex.split(value)[0]
    name, _role, password = next(
        row.split("\t") for row in (work / "logins.txt").read_text().splitlines() if "\tadmin\t" in row
    )
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with serving_dashboard(env, work / "dashboard.log") as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = sign_in(browser, url, name, password)
        page.set_viewport_size({"width": 1400, "height": 2400})  # the app scrolls inside: show the charts too
        for path, text in PAGES.items():
            page.goto(f"{url}/{path}")
            settled(page)
            assert page.get_by_text(text).count() > 0, f"{path} shows no {text!r}"
            charts = page.locator('[data-testid="stPlotlyChart"]')
            for index in range(charts.count()):  # plotly draws after the script has run
                charts.nth(index).locator(".main-svg").first.wait_for(timeout=60_000)
            page.screenshot(path=str(SCREENSHOTS / f"demo-{path}.png"), full_page=True)
        browser.close()
