"""`controlplane cost report`: windows from flags and events, and every bad flag or file a message with
exit 3, never a traceback."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest

from tests.conftest import SLICES_PATH
from tests.support import CONTROLPLANE

EVENTS = """
events:
  - {name: cup-final, kickoff: "2026-06-05T15:00:00Z", settlement_expected: "2026-06-05T17:30:00Z"}
  - {name: far-final, kickoff: "2099-06-05T15:00:00Z", settlement_expected: "2099-06-05T17:30:00Z"}
"""
MODEL = """
currency: EUR
components:
  - {name: database, rate: {per_hour: "1.00"}, allocation: direct}
  - {name: api, rate: {per_hour: "2.00"}, allocation: {by_cpu_seconds: {targets: [http://x/metrics], cores: "1"}}}
"""


def _cost(tmp_path: Path, *args: str, model: str = MODEL) -> subprocess.CompletedProcess:
    (tmp_path / "costs.yaml").write_text(model)
    (tmp_path / "events.yaml").write_text(EVENTS)
    env = os.environ | {
        "CONTROLPLANE_STORE_URL": f"sqlite:///{tmp_path / 'store.db'}",
        "CONTROLPLANE_AUDIT_URL": f"sqlite:///{tmp_path / 'audit.db'}",
        "CONTROLPLANE_COSTS_PATH": str(tmp_path / "costs.yaml"),
        "CONTROLPLANE_EVENTS_PATH": str(tmp_path / "events.yaml"),
        "CONTROLPLANE_SLICES_PATH": str(SLICES_PATH),
    }
    return subprocess.run([CONTROLPLANE, "cost", "report", *args], capture_output=True, text=True, env=env, timeout=120)


def test_an_event_window_runs_from_an_hour_before_kickoff_to_an_hour_after_settlement(tmp_path: Path) -> None:
    done = _cost(tmp_path, "--event", "cup-final", "--format", "json", "--by", "hour")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["window"] == {
        "start": "2026-06-05T14:00:00Z",
        "end": "2026-06-05T18:30:00Z",
        "complete": True,
        "event": "cup-final",
        "by": "hour",
    }
    assert report["total_cost"] == "13.500000"  # 4.5 h of 1.00 + 2.00 an hour
    assert report["event"]["headroom_cost"] == "9.000000"  # the API's capacity, all idle (no CPU scraped)
    assert [b["start"] for b in report["buckets"]][-1] == "2026-06-05T18:00:00Z" and len(report["buckets"]) == 5
    assert (
        len(report["warnings"]) == 1
        and "no process_cpu_seconds_total scraped from http://x/metrics" in (report["warnings"][0])
    )


def test_csv_opens_as_a_table_with_a_header_row(tmp_path: Path) -> None:
    done = _cost(tmp_path, "--from", "2026-06-01T00:00:00Z", "--to", "2026-06-01T02:00:00Z", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert [r["component"] for r in rows] == ["database", "api", "total"]
    assert rows[-1]["cost"] == "6.000000" and rows[0]["currency"] == "EUR" and rows[0]["cost_per_settled_bet"] == ""
    by_hour = list(csv.DictReader(io.StringIO(_cost(tmp_path, "--from", "2026-06-01T00:00:00Z", "--to",
                                                        "2026-06-01T02:00:00Z", "--format", "csv", "--by", "hour").stdout)))  # fmt: skip
    assert [r["bucket_start"] for r in by_hour] == ["2026-06-01T00:00:00Z", "2026-06-01T01:00:00Z"]


def test_the_table_names_what_it_shows(tmp_path: Path) -> None:
    done = _cost(tmp_path, "--from", "2026-06-01T00:00:00Z", "--to", "2026-06-01T02:00:00Z")
    assert done.returncode == 0
    assert "Cost per settled bet: none (no bet was settled" in done.stdout
    assert "database" in done.stdout and "by_cpu_seconds of 1 cores" in done.stdout


def test_minute_buckets_split_the_hours_without_changing_the_figures(tmp_path: Path) -> None:
    reports = {
        by: json.loads(_cost(tmp_path, "--event", "cup-final", "--format", "json", "--by", by).stdout)
        for by in ("minute", "hour")
    }
    minutes, hours = reports["minute"].pop("buckets"), reports["hour"].pop("buckets")
    assert len(minutes) == 270 and [m["start"] for m in minutes[:2]] == ["2026-06-05T14:00:00Z", "2026-06-05T14:01:00Z"]
    assert minutes[0]["total_cost"] == "0.050000"  # a minute of 1.00 + 2.00 an hour
    assert reports["minute"]["window"].pop("by") == "minute" and reports["hour"]["window"].pop("by") == "hour"
    assert reports["minute"] == reports["hour"]  # the allocation is decided per hour, whatever the buckets
    for hour in hours:
        inside = [m for m in minutes if m["start"][:13] == hour["start"][:13]]
        for key in ("total_cost", "allocated_cost"):
            assert abs(sum(Decimal(m[key]) for m in inside) - Decimal(hour[key])) <= Decimal("0.000001") * len(inside)


def test_at_ends_a_window_and_cuts_an_event_not_over_by_then(tmp_path: Path) -> None:
    cut = json.loads(_cost(tmp_path, "--event", "cup-final", "--at", "2026-06-05T16:00:00Z", "--format", "json").stdout)
    assert (cut["window"]["end"], cut["window"]["complete"], cut["total_cost"]) == (
        "2026-06-05T16:00:00Z", False, "6.000000",
    )  # fmt: skip
    window = json.loads(_cost(tmp_path, "--window", "2h", "--at", "2026-06-05T16:00:00Z", "--format", "json").stdout)
    fixed = json.loads(
        _cost(tmp_path, "--from", "2026-06-05T14:00:00Z", "--to", "2026-06-05T16:00:00Z", "--format", "json").stdout
    )
    assert window == fixed and window["window"]["complete"] is True


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--window", "2x"), "--window: cannot read '2x'"),
        (("--window", "900d"), "--window: a report covers at most 400 days"),
        (("--from", "2020-01-01T00:00:00Z"), "--from: a report covers at most 400 days"),
        (("--from", "1000-01-01T00:00:00Z"), "is before 2000-01-01T00:00:00Z"),
        (("--from", "9999999d"), "--from/--to: "),
        (("--from", "0001-01-01T00:00:00Z", "--to", "0001-01-01T05:00:00Z"), "is before 2000-01-01T00:00:00Z"),
        (("--from", "2099-01-01T00:00:00Z"), "is after now: there is no cost to report yet"),
        (("--event", "far-final"), "event far-final starts at 2099-06-05T14:00:00Z, after now"),
        (("--window", "1h", "--event", "cup-final"), "give one of --window, --event or --from/--to"),
        (("--to", "2026-01-01T00:00:00Z"), "--to needs --from"),
        (("--from", "yesterday"), "--from/--to: cannot read 'yesterday'"),
        (("--from", "2026-06-02T00:00:00Z", "--to", "2026-06-01T00:00:00Z"), "--to must come after --from"),
        (("--event", "derby"), "--event: no event named 'derby'"),
        (("--by", "week"), "week"),
        (("--window", "7d", "--by", "minute"), "--by minute: minute buckets cover windows of up to 24 hours"),
        (("--at", "2099-01-01T00:00:00Z"), "--at: 2099-01-01T00:00:00Z is after now"),
        (("--at", "noon"), "--at: cannot read 'noon'"),
        (("--from", "2026-06-01T00:00:00Z", "--at", "2026-06-02T00:00:00Z"), "--at goes with --window or --event"),
        (("--event", "cup-final", "--at", "2026-06-05T13:00:00Z"), "starts at 2026-06-05T14:00:00Z, after --at"),
        (("--format", "xml"), "xml"),
    ],
)
def test_bad_flags_are_messages(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    done = _cost(tmp_path, *args)
    assert done.returncode == 3 and message in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("{currency: EUR, components: [{name: db, allocation: direct}]}", "component 'db': give one cost source"),
        ('{currency: EUR, components: [{name: db, rate: {per_hour: "1"}, allocation: {by_requests: {slices: [bets]}}}]}',
         "allocation.by_requests.slices: no slice bets in"),
    ],
)  # fmt: skip
def test_a_bad_cost_model_is_a_message(tmp_path: Path, model: str, message: str) -> None:
    done = _cost(tmp_path, "--window", "1h", model=model)
    assert done.returncode == 3 and message in done.stderr
    assert "Traceback" not in done.stderr
