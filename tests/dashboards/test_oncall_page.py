"""The on-call page at 2 a.m., in Streamlit's AppTest on SQLite and PostgreSQL: a seeded incident (a burst
of failed bets, a fault set and cleared) puts a red banner naming the paging SLO first; a spent budget
reads "exhausted", never a percentage below -100%; the numbers at `?slo=S&at=T` are those of `controlplane
slo status --at T --format json`; a 1h range is charted per minute on a log burn-rate axis with the fault
marked; and a signed-out deep link comes back after sign-in."""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from audit.schema import migrate_audit
from controlplane.auditing import audit_append
from controlplane.formatting import burn, percent
from controlplane.settings import Settings
from controlplane.storage import make_engine
from controlplane.store import SliBucket, migrate_store, table
from controlplane.traces.store import Keep, keep
from controlplane.users import add_user
from tests.dashboards.test_pages import APP, PASSWORD, _assert_clean, _open, _signed_in
from tests.support import CONTROLPLANE

BURST = range(1, 5)  # minutes ago with failed bets
FAILING = "fa" * 16  # a kept trace of a failed bet, two minutes ago


@pytest.fixture
def incident(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[datetime]:
    """Bets for the last 90 minutes, 60 of every 100 failing in the last four; a lock_wait fault set and
    cleared by riley.gameday. Yields the minute the page is pinned at."""
    env = {
        "CONTROLPLANE_STORE_URL": database_url,
        "CONTROLPLANE_AUDIT_URL": database_url,
        "CONTROLPLANE_AUDIT_KEY_DIR": str(tmp_path / "keys"),
        "CONTROLPLANE_AUDIT_ORIGIN": "audit.test/oncall",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    st.cache_data.clear()
    st.cache_resource.clear()
    engine = make_engine(database_url)
    migrate_store(engine)
    migrate_audit(engine)
    for name, role in {"ana": "oncall", "cleo": "compliance"}.items():
        add_user(engine, name, role=role, password=PASSWORD, by="test")
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    with engine.begin() as conn:
        conn.execute(
            table(SliBucket).insert(),
            [{"slice": "bet-placement", "minute": now - timedelta(minutes=m), "total": 100,
              "bad": 60 if m in BURST else 0} for m in range(1, 91)],
        )  # fmt: skip
    keep(engine, [Keep(FAILING, "bet-placement", now - timedelta(minutes=2), "bad", 0.5)])
    settings = Settings()
    fault = {"kind": "lock_wait", "route": "/bets"}
    for kind in ("fault_set", "fault_cleared"):
        audit_append(settings, kind="change", actor="riley.gameday", subject="fault:f1",
                     payload={"type": kind, "fault": fault, "actor": "riley.gameday", "reason": "game day"})  # fmt: skip
    # Pinned at the minute the fault entries were stamped in (the page's changes run to the pinned minute's end).
    yield datetime.now(UTC).replace(second=0, microsecond=0)
    from dashboards import shell

    shell.store().dispose()
    shell.audit_store().dispose()
    st.cache_resource.clear()
    engine.dispose()


def _oncall(page: AppTest, **params: str) -> AppTest:
    for name, value in params.items():
        page.query_params[name] = value
    _open(page, "oncall").run()
    _assert_clean(page)
    return page


def _texts(at: AppTest) -> list[str]:
    kinds = ("markdown", "caption", "error", "warning", "success", "info", "metric", "subheader")
    texts = []
    for kind in kinds:
        for element in at.get(kind):
            texts.append(str(getattr(element, "value", "")))
    for frame in at.dataframe:
        texts.append(frame.value.to_csv())
    return texts


def _figures(at: AppTest) -> dict[str, dict[str, Any]]:
    """The plotly figures on the page by their title, read from what the page sends the browser."""
    figures = {}
    for element in at.get("plotly_chart"):
        figure = json.loads(element.proto.spec)
        figures[figure["layout"]["title"]["text"]] = figure
    return figures


def test_the_incident_comes_first_and_a_spent_budget_reads_exhausted(incident: datetime) -> None:
    at = _oncall(_signed_in("ana"), at=incident.isoformat())
    banner = at.error[0].value
    assert banner.startswith("**PAGE: bet-placement-availability**"), banner
    assert "[Runbook]" in banner or "runbook" not in banner.lower()
    assert f"[A failing request](trace?id={FAILING})" in banner
    tile = next(e.value for e in at.error if e.value.startswith("**bet-placement-availability**"))
    assert "exhausted" in tile and re.search(r"exhausted \d\d:\d\dZ, [\d,.]+x", tile), tile
    # The worst SLO is the one shown in depth, without the link naming it.
    assert at.selectbox[0].value == "bet-placement-availability"
    for text in _texts(at):
        for number in re.findall(r"(-\d[\d,]*(?:\.\d+)?)%", text):
            assert float(number.replace(",", "")) >= -100, text


def test_the_numbers_on_the_page_are_those_of_slo_status(incident: datetime, database_url: str) -> None:
    at_text = incident.strftime("%Y-%m-%dT%H:%M:%SZ")
    done = subprocess.run(
        [CONTROLPLANE, "slo", "status", "--at", at_text, "--format", "json"],
        env=os.environ | {"CONTROLPLANE_STORE_URL": database_url},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr  # paging
    report = json.loads(done.stdout)
    page = _signed_in("ana")
    for slo in report["slos"]:
        page = _oncall(page, slo=slo["name"], at=at_text, range="1h")
        metrics = {m.label: m.value for m in page.metric}
        assert metrics["SLI"] == ("no data" if slo["no_data"] else percent(slo["sli"], 3)), slo["name"]
        rates = slo["burn_rates"]
        assert metrics["burn 1h / 5m"] == f"{burn(rates['1h'])} / {burn(rates['5m'])}", slo["name"]
        budget = next(m.value for m in page.markdown if m.value.startswith("**Budget left**"))
        if slo["no_data"]:
            assert budget.endswith("no data"), (slo["name"], budget)
        elif slo["budget_remaining"] > 0:
            assert budget.endswith(percent(slo["budget_remaining"])), (slo["name"], budget)
        else:
            assert "exhausted" in budget and burn(slo["budget_consumed"]) in budget, (slo["name"], budget)
        rules = page.dataframe[0].value
        assert f"{burn(rates['1h'])} over 1h" in set(rules["Burn over long window"])


def test_an_hour_is_charted_per_minute_with_the_fault_marked(incident: datetime) -> None:
    at = _oncall(_signed_in("ana"), slo="bet-placement-availability", range="1h", at=incident.isoformat())
    figures = _figures(at)
    ratio = next(f for title, f in figures.items() if title.startswith("Error ratio per minute"))
    assert len(ratio["data"][0]["x"]) == 60  # one point a minute
    burn_chart = next(f for title, f in figures.items() if title.startswith("Burn rate per minute"))
    assert burn_chart["layout"]["yaxis"]["type"] == "log"
    thresholds = [s for s in burn_chart["layout"]["shapes"] if s.get("line", {}).get("dash") == "dash"]
    assert len(thresholds) == 4  # one per rule: page 1h/5m and 6h/30m, ticket 1d/2h and 3d/6h
    for title, figure in figures.items():
        changes = [t for t in figure["data"] if t.get("name") == "changes (audit log)"]
        assert changes, f"no change markers on {title}"
        hover = " ".join(changes[0]["hovertext"])
        assert "lock_wait fault set" in hover and "riley.gameday" in hover and "lock_wait fault cleared" in hover


def test_a_signed_out_deep_link_survives_sign_in(incident: datetime) -> None:
    at = AppTest.from_file(APP, default_timeout=120)
    pinned = incident.strftime("%Y-%m-%dT%H:%M:%SZ")
    for name, value in {"slo": "login-availability", "range": "6h", "at": pinned}.items():
        at.query_params[name] = value
    at.run()
    assert [t.value for t in at.title] == ["Betting control plane"]  # signed out: the login page
    at.text_input[0].input("ana")
    at.text_input[1].input(PASSWORD)
    at = at.button[0].click().run()
    _assert_clean(at)
    assert at.title[0].value == "On-call"
    assert at.selectbox[0].value == "login-availability"
    assert at.query_params["range"] in ("6h", ["6h"]) and at.query_params["at"] in (pinned, [pinned])
    assert any("pinned by the link" in c.value for c in at.caption)


def test_a_bad_at_is_a_message_and_the_page_shows_now(incident: datetime) -> None:
    at = _oncall(_signed_in("ana"), at="yesterday-ish")
    assert any("cannot read 'yesterday-ish' as a time" in e.value for e in at.error)
    assert any(c.value.endswith("live. Refreshes every 30 s.") for c in at.caption)


@pytest.mark.parametrize("chosen", ["1h", "6h", "24h", "7d", "30d"])
def test_every_range_is_charted_at_its_resolution(incident: datetime, chosen: str) -> None:
    at = _oncall(_signed_in("ana"), slo="bet-placement-availability", range=chosen, at=incident.isoformat())
    figures = _figures(at)
    resolution = "per minute" if chosen in ("1h", "6h", "24h") else "per hour"
    ratio = next(f for title, f in figures.items() if title.startswith("Error ratio"))
    assert resolution in ratio["layout"]["title"]["text"]
    step = timedelta(minutes=1) if resolution == "per minute" else timedelta(hours=1)
    xs = [datetime.fromisoformat(x) for x in ratio["data"][0]["x"]]
    assert all(b - a == step for a, b in itertools.pairwise(xs)), chosen
    budget = next(f for title, f in figures.items() if title.startswith("Error budget left"))
    assert min(y for y in budget["data"][0]["y"] if y is not None) >= -1.0  # spent beyond it: drawn at -100%
