"""The benchmarks run as `python -m bench.NAME`, `make bench` runs each of them, and one runs end to end.

Benchmarks are not timed tests: these check that they start, take their options and report their
ratio figures, never how fast anything is.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).parents[1]
BENCHMARKS = sorted(
    path.stem for path in (REPO / "bench").glob("*.py") if 'if __name__ == "__main__":' in path.read_text()
)
POSTGRES_URL = os.environ.get("CONTROLPLANE_TEST_POSTGRES_URL", "")
REQUIRE_POSTGRES = os.environ.get("CONTROLPLANE_TEST_REQUIRE_POSTGRES") == "1"


def run_benchmark(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", f"bench.{name}", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_every_benchmark_is_found() -> None:
    assert {"audit_log", "bet_placement", "odds_fanout", "otlp_ingest", "slo_eval"} <= set(BENCHMARKS)


@pytest.mark.parametrize("name", BENCHMARKS)
def test_benchmark_help(name: str) -> None:
    result = run_benchmark(name, "--help")
    assert result.returncode == 0, result.stderr
    assert f"python -m bench.{name}" in result.stdout
    for option in ("--quick", "--format", "--skip-postgres", "--postgres-url"):
        assert option in result.stdout


def test_make_bench_runs_every_benchmark_quick() -> None:
    makefile = (REPO / "Makefile").read_text()
    target = makefile.split("\nbench:", 1)[1].split("\n\n", 1)[0]
    runs = re.findall(r"\$\(BIN\)/python -m bench\.(\w+) --quick \$\(BENCH_ARGS\)", target)
    assert sorted(runs) == BENCHMARKS


def test_slo_eval_reports_its_ratios_end_to_end() -> None:
    database = ["--postgres-url", POSTGRES_URL] if POSTGRES_URL else ["--skip-postgres"]
    result = run_benchmark("slo_eval", "--quick", "--days", "1,2", "--repeats", "1", "--format", "json", *database)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["config"]["days"] == [1, 2]
    ran = [db for db in report["databases"] if not db.get("skipped")]
    assert [db["database"] for db in ran][:1] == ["SQLite"]
    if POSTGRES_URL and REQUIRE_POSTGRES:
        assert [db["database"] for db in ran] == ["SQLite", "PostgreSQL"], report["databases"]
    for db in ran:
        assert [run["days"] for run in db["runs"]] == [1, 2]
        for run in db["runs"]:
            assert run["rows_read"] > 0
            assert run["eval_over_read"] > 0
            assert run["evaluate_growth"] > 0 and run["rows_growth"] > 0
            assert set(run["alerts"]) == {"page", "ticket"}
    # The store's size beside Prometheus's TSDB of the same counts (promtool's backfill), when promtool is here.
    tsdb = report["prometheus"]
    if shutil.which("promtool") is None:
        assert os.environ.get("CONTROLPLANE_TEST_REQUIRE_PROMTOOL") != "1", "promtool is required in CI"
        assert "promtool" in tsdb["skipped"]
        return
    assert tsdb["days"] == 2 and tsdb["series"] == 24 and tsdb["samples"] == 2 * 1440 * 24, tsdb
    assert tsdb["blocks"] >= 24 and tsdb["tsdb_bytes"] > 0
    for db in ran:
        sizes, versus = db["sizes"], db["vs_prometheus"]
        assert versus["store_bytes"] == sizes["minute_tables_bytes"] + sizes["rollup_tables_bytes"]
        assert versus["x_tsdb"] == round(versus["store_bytes"] / tsdb["tsdb_bytes"], 2)
