"""`controlplane demo` end to end on SQLite (on PostgreSQL: test_cluster_demo.py): a short derby night whose report
shows the page alert firing during the lock-wait fault and not before the first fault, a balanced
ledger, a verified audit log, two bundles verified offline, the checklist run before kickoff and in
the audit log, and a positive cost per settled bet. On SQLite the kept data is then served by the
dashboard and every page is visited in a real browser as the demo's admin (the README's screenshots
come from here: var/screenshots/demo-*.png)."""

from __future__ import annotations

import json
import os
import re
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
    if not database_url.startswith("sqlite"):
        # One derby night per database keeps the suite's serial chain short: on PostgreSQL it is the
        # cluster's (test_cluster_demo.py), which checks the same game day with `check_game_day`.
        pytest.skip("on PostgreSQL the derby night runs as the cluster: test_derby_night_on_a_cluster")
    work = tmp_path / "demo"
    # Half the default rate: the assertions are about the game day, and the rest of the suite runs beside
    # this test, so the spike must stay within what a busy machine can serve without failing bets.
    args = ["demo", "--duration", "60", "--rate", "2", "--no-dashboard", "--format", "json", "--workdir", str(work),
            "--keep"]  # fmt: skip
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
    check_game_day(report, work)

    pages = [a for a in report["alerts"] if a["slo"] == "bet-placement-availability" and a["severity"] == "page"]
    _every_page_in_a_browser(work, datetime.fromisoformat(pages[0]["at"].replace("Z", "+00:00")))


def check_game_day(report: dict, work: Path) -> None:
    """What every derby night's report shows, on one process of each kind or on the cluster."""
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
    assert len(audit["bundles"]) == 3 and all(b["verified"] for b in audit["bundles"]), audit["bundles"]
    assert audit["by_kind"]["money"] > 0 and audit["by_kind"]["checklist"] >= 1

    # The game day as an incident: opened by the page and detected at it, after an impact that started
    # during the run; a change recorded near its start; the slice frozen; its bundle proved offline.
    incident = report["incident"]
    assert incident["opened"] and incident["slice"] == "bet-placement", incident
    # Detected at the slice's first page, whichever of its SLOs paged first (latency may, on a busy machine).
    slice_pages = [
        a for a in report["alerts"]
        if a["slo"].startswith("bet-placement-") and a["severity"] == "page" and a["state"] == "firing"
    ]  # fmt: skip
    assert incident["detected_at"] == min(a["at"] for a in slice_pages)
    assert 0 <= incident["time_to_detect_s"] <= 300 and incident["user_impact_minutes"] >= 1
    assert 0 <= incident["impact_started_s"] <= incident["detected_s"], incident
    assert incident["top_change"] is not None and abs(incident["top_change"]["offset_s"]) <= 120
    assert incident["policy"]["bet-placement"]["state"] == "freeze"
    assert any(b["what"] == f"incident {incident['id']}" for b in audit["bundles"])

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


PAGES = {"oncall": "bet-placement-availability", "incidents": "What changed", "readiness": "History", "cost": "Cost per settled bet",
         "audit": "checkpoint", "users": "Add a user"}  # fmt: skip
# The on-call page pinned at the minute the page alert fired; the cost page over the derby's window.
VIEWS = {"oncall": "?at={at}&range=1h", "cost": "?window=event:%20derby"}
NEGATIVE_PERCENT = re.compile(r"-(\d[\d,]*(?:\.\d+)?)%")


def _every_page_in_a_browser(work: Path, paged: datetime) -> None:
    """Each page's first screen at 1440x900, the on-call page pinned at the minute the page alert fired:
    the paging banner is on screen without scrolling, and no page shows a percentage below -100%. Served as
    `source var/demo/env.sh; controlplane dashboard`, signed in with the demo's admin login."""
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
        page.set_viewport_size({"width": 1440, "height": 900})
        for path, text in PAGES.items():
            page.goto(f"{url}/{path}" + VIEWS.get(path, "").format(at=f"{paged:%Y-%m-%dT%H:%MZ}"))
            # A page just opened may still report the previous script's state: wait for its own text first.
            page.get_by_text(text).first.wait_for(timeout=120_000)
            settled(page)
            tables = page.locator("table")  # st.table paints its rows after the script has run (some folded away)
            for index in range(tables.count()):
                tables.nth(index).locator("td").first.wait_for(state="attached", timeout=60_000)
            charts = page.locator('[data-testid="stPlotlyChart"]')
            for index in range(charts.count()):  # plotly draws after the script has run
                charts.nth(index).locator(".main-svg").first.wait_for(timeout=60_000)
            shown = page.locator('[data-testid="stMain"]').inner_text()
            assert not [n for n in NEGATIVE_PERCENT.findall(shown) if float(n.replace(",", "")) > 100], (path, shown)
            if path == "oncall":
                banner = page.locator('[data-testid="stAlert"]').filter(has_text="PAGE: bet-placement-availability")
                box = banner.first.bounding_box()
                assert box is not None and box["y"] + box["height"] <= 900, ("the paging banner is below the fold", box)
            page.screenshot(path=str(SCREENSHOTS / f"demo-{path}.png"))  # the first screen, as a person sees it
        browser.close()
