"""The cost page in Streamlit's AppTest, on SQLite and PostgreSQL, against `controlplane cost report` on the
same store: at `?at=T&window=W` it shows the cost per settled bet (total cost ÷ settled bets), the allocated
cost per settled bet, the total cost and the settled bets the command prints for that window; an event's
window is drawn by the minute; a lone bucket is a visible marker on sensible axes; every figure is shown
whole, under human headers, and the link's `at` and `window` stay in the URL."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from streamlit.testing.v1 import AppTest

import audit.log
from controlplane.formatting import count, money
from tests.dashboards.test_pages import _assert_clean, _open, _signed_in
from tests.dashboards.test_pages import dashboard as dashboard  # the fixture: store, audit log, users
from tests.support import CONTROLPLANE

AT = datetime(2026, 6, 4, tzinfo=UTC)
AT_TEXT = "2026-06-04T00:00:00Z"
EVENT = "event: cup-final"  # kickoff 20:30, settlement 22:45: its window is 19:30 .. 23:45
EVENTS = """
events:
  - {name: cup-final, kickoff: "2026-06-03T20:30:00Z", settlement_expected: "2026-06-03T22:45:00Z"}
"""
# Idle capacity (no CPU scraped for the API) and another user's share of the gateway: allocated < total.
MODEL = """
currency: EUR
components:
  - {name: database, rate: {per_hour: "0.62"}, allocation: direct}
  - {name: platform-api, rate: {per_hour: "0.34"}, allocation: {by_cpu_seconds: {targets: ["http://cpu.test/metrics"], cores: "2"}}}
  - {name: payments-gateway, rate: {per_month: "950.00"}, allocation: {fixed_share: "0.6"}}
"""
BETS = 20  # settled 21:00 .. 23:13 on 2026-06-03, one every 7 minutes; every fifth voided
SETTLED = BETS - BETS // 5
FIGURES = ("Cost per settled bet", "Allocated per settled bet", "Total cost", "Settled bets", "Voided bets")
WIDEST_TILE = 16  # characters a third of the page shows whole ("1,000,000.00 EUR")


@pytest.fixture
def cost_store(dashboard: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Engine:
    (tmp_path / "costs.yaml").write_text(MODEL)
    (tmp_path / "events.yaml").write_text(EVENTS)
    monkeypatch.setenv("CONTROLPLANE_COSTS_PATH", str(tmp_path / "costs.yaml"))
    monkeypatch.setenv("CONTROLPLANE_EVENTS_PATH", str(tmp_path / "events.yaml"))
    log = audit.log.AuditLog(dashboard, origin="audit.test/dashboard")
    real_now = audit.log._now
    for bet in range(BETS):
        when = AT - timedelta(hours=3) + timedelta(minutes=7 * bet)
        monkeypatch.setattr(audit.log, "_now", lambda when=when: when)
        kind = "void" if bet % 5 == 0 else "payout" if bet % 2 else "bet_lost"
        log.append(kind="money", actor="platform", subject=f"bet:{bet}", payload={"type": kind, "bet_id": bet})
    monkeypatch.setattr(audit.log, "_now", real_now)  # sign-ins and exports are appended at their own time
    return dashboard


def _cli(*args: str) -> dict[str, Any]:
    done = subprocess.run(
        [CONTROLPLANE, "cost", "report", "--format", "json", *args],
        capture_output=True, text=True, env=dict(os.environ), timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _page(query: dict[str, str]) -> AppTest:
    at = _signed_in("ana")
    for key, value in query.items():
        at.query_params[key] = value
    _open(at, "cost").run()
    _assert_clean(at)
    assert at.title[0].value == "Cost per settled bet"
    assert not at.error, [e.value for e in at.error]
    return at


def _tiles(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def _param(at: AppTest, key: str) -> str | None:
    value = at.query_params.get(key)
    return value[0] if isinstance(value, list) else value


def _figures(at: AppTest) -> list[dict[str, Any]]:
    """The page's plotly figures, as the JSON the browser draws."""
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def _expected_tiles(report: dict[str, Any]) -> dict[str, str]:
    def amount(key: str) -> str:
        return money(Decimal(report[key]), report["currency"]) if report[key] is not None else "none"

    return {
        "Cost per settled bet": amount("cost_per_settled_bet"),
        "Allocated per settled bet": amount("allocated_cost_per_settled_bet"),
        "Total cost": amount("total_cost"),
        "Settled bets": count(report["settled_bets"]),
        "Voided bets": count(report["voided_bets"]),
    }


@pytest.mark.parametrize(
    ("window", "command"),
    [
        ("24h", ["--from", "2026-06-03T00:00:00Z", "--to", AT_TEXT]),
        ("7d", ["--window", "7d", "--at", AT_TEXT]),
        (EVENT, ["--event", "cup-final", "--at", AT_TEXT]),
    ],
)
def test_the_page_shows_what_cost_report_prints(cost_store: Engine, window: str, command: list[str]) -> None:
    report = _cli(*command)
    total, allocated = Decimal(report["total_cost"]), Decimal(report["allocated_cost"])
    assert report["settled_bets"] == SETTLED and allocated < total  # the headline is not the allocated part
    assert Decimal(report["cost_per_settled_bet"]) == (total / SETTLED).quantize(Decimal("0.000001"))
    at = _page({"at": AT_TEXT, "window": window})
    tiles = _tiles(at)
    assert {label: tiles[label] for label in FIGURES} == _expected_tiles(report)
    assert any("Cost per settled bet = total cost ÷ settled bets" in c.value for c in at.caption)
    assert (_param(at, "at"), _param(at, "window")) == (AT_TEXT, window)  # the link stays what it was


def test_window_and_at_give_the_same_report_as_from_and_to(cost_store: Engine) -> None:
    assert _cli("--window", "24h", "--at", AT_TEXT, "--by", "hour") == _cli(
        "--from", "2026-06-03T00:00:00Z", "--to", AT_TEXT, "--by", "hour"
    )


def test_an_event_window_is_drawn_by_the_minute(cost_store: Engine) -> None:
    report = _cli("--event", "cup-final", "--at", AT_TEXT, "--by", "minute")
    assert len(report["buckets"]) == 4 * 60 + 15  # 19:30 .. 23:45
    assert sum(b["settled_bets"] for b in report["buckets"]) == SETTLED
    assert sum(Decimal(b["total_cost"]) for b in report["buckets"]) - Decimal(report["total_cost"]) < Decimal("0.0003")
    at = _page({"at": AT_TEXT, "window": EVENT})
    assert at.get("button_group")[0].value == "minute" and _param(at, "by") is None  # the fitting buckets
    per_bet = _figures(at)[0]
    assert "per minute" in per_bet["layout"]["title"]["text"]
    drawn = per_bet["data"][0]
    assert len(drawn["x"]) == len(report["buckets"])
    points = [y for y in drawn["y"] if y is not None]  # a minute without a settled bet is a gap
    assert len(points) == len([b for b in report["buckets"] if b["settled_bets"]]) == SETTLED
    rows = at.dataframe[1].value  # the expander's table: one row per minute, as the command's buckets
    assert len(rows) == len(report["buckets"]) and rows.columns[0] == "Minute"


def test_a_single_bucket_is_a_visible_marker_on_sensible_axes(cost_store: Engine) -> None:
    at = _page({"at": AT_TEXT, "window": "24h", "by": "day"})
    assert at.get("button_group")[0].value == "day" and _param(at, "by") == "day"
    per_bet = _figures(at)[0]
    (point,) = per_bet["data"][0]["y"]
    drawn = per_bet["data"][0]
    assert "markers" in drawn["mode"] and drawn["marker"]["size"] >= 8
    layout = per_bet["layout"]
    assert layout["yaxis"]["range"][0] == 0 and layout["yaxis"]["range"][1] > point > 0  # not -0.5 .. 1
    assert layout["yaxis"]["title"]["text"] == "EUR per settled bet"
    assert layout["title"]["text"] == "Cost per settled bet, per day, 2026-06-03 00:00Z to 2026-06-04 00:00Z"
    start, end = (datetime.fromisoformat(x.replace("Z", "+00:00")) for x in layout["xaxis"]["range"])
    assert (start.astimezone(UTC), end.astimezone(UTC)) == (AT - timedelta(days=1), AT)  # ticks at hours, not ms


def test_every_figure_is_shown_whole_under_human_headers(cost_store: Engine) -> None:
    report = _cli("--event", "cup-final", "--at", AT_TEXT)
    at = _page({"at": AT_TEXT, "window": EVENT})
    tiles = _tiles(at)
    assert tiles["Idle or others' cost"] == money(Decimal(report["unallocated_cost"]), "EUR")
    for label, text in tiles.items():
        assert len(text) <= WIDEST_TILE and "…" not in text, (label, text)
    assert tiles["Total cost"].endswith(" EUR") and len(tiles["Total cost"].split()[0].split(".")[1]) == 2
    for table in at.dataframe:
        for header in table.value.columns:
            assert "_" not in header and header[0].isupper(), header
    components = at.dataframe[0].value
    assert list(components.columns)[:4] == ["Component", "Cost", "Allocated", "Idle or others'"]
    by_name = {row["Component"]: row for _i, row in components.iterrows()}
    for c in report["components"]:
        assert by_name[c["name"]]["Cost"] == money(Decimal(c["cost"]), "EUR")
    assert not at.json  # no raw JSON on the page
    assert any(f"Idle headroom paid: **{money(Decimal(report['event']['headroom_cost']), 'EUR')}**" == m.value
               for m in at.markdown)  # fmt: skip


def test_an_event_not_over_at_the_links_instant_is_cut_there(cost_store: Engine) -> None:
    cut = "2026-06-03T22:00:00Z"
    report = _cli("--event", "cup-final", "--at", cut)
    assert report["window"]["end"] == cut and report["window"]["complete"] is False
    at = _page({"at": cut, "window": EVENT})
    assert {label: _tiles(at)[label] for label in FIGURES} == _expected_tiles(report)
    assert any("not over yet" in c.value for c in at.caption)
    assert any("pinned by the link" in c.value for c in at.caption)
