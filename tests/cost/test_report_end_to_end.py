"""Unit cost from a real platform run: bets placed, settled, resettled and voided on the platform, their
money events relayed into the audit log, requests per slice in the SLI store, CPU seconds scraped, a
bill imported in FOCUS format; every figure of `controlplane cost report --format json` equals the
same arithmetic done by hand here in Decimal."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from audit.schema import entries
from controlplane.cost.tables import billing_t
from controlplane.storage import make_engine
from controlplane.store import ScrapedSample, SliBucket, migrate_store, table
from sample_platform.client import PlatformClient
from tests.conftest import ADMIN_TOKEN, SLICES_PATH, bet_body
from tests.support import CONTROLPLANE, PlatformProcess, wait_until

pytestmark = pytest.mark.slow
Q = Decimal("0.000001")
CPU_TARGET = "http://cpu.test/metrics"
REQUESTS = {"bet-placement": 300, "settlement": 100, "login": 80, "odds-feed": 20}
MODEL = f"""
currency: EUR
unallocated: separate
components:
  - {{name: database, rate: {{per_hour: "0.62"}}, allocation: by_requests}}
  - {{name: platform-api, rate: {{per_hour: "0.34"}}, allocation: {{by_cpu_seconds: {{targets: ["{CPU_TARGET}"], cores: "2"}}}}}}
  - {{name: collector, rate: {{per_hour: "0.08"}}, allocation: direct}}
  - {{name: payments, rate: {{per_hour: "1.50"}}, allocation: {{fixed_share: "0.6"}}}}
  - {{name: cache, focus: {{tag: {{component: cache}}}}, allocation: direct}}
"""
FOCUS_HEADER = "BilledCost,EffectiveCost,BillingCurrency,ChargePeriodStart,ChargePeriodEnd,ChargeCategory,ServiceName,ResourceId,Tags"


def r(value: Decimal) -> str:
    return str(value.quantize(Q, rounding=ROUND_HALF_EVEN))


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CONTROLPLANE, *args], capture_output=True, text=True, env=os.environ | env, timeout=120)


def _settlements(engine) -> int:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        docs = [json.loads(t) for t in conn.execute(select(entries.c.entry).where(entries.c.kind == "money")).scalars()]
    return sum(d["payload"]["type"] in ("payout", "bet_lost", "void") for d in docs)


def test_every_figure_equals_the_hand_computation(database_url: str, tmp_path: Path) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    t0 = now.replace(minute=0, second=0) - timedelta(hours=1)
    env = {
        "CONTROLPLANE_STORE_URL": database_url,
        "CONTROLPLANE_AUDIT_URL": database_url,
        "CONTROLPLANE_AUDIT_ORIGIN": "audit.test/cost",
        "CONTROLPLANE_AUDIT_KEY_DIR": str(tmp_path / "keys"),
        "CONTROLPLANE_SLICES_PATH": str(SLICES_PATH),
        "CONTROLPLANE_SLOS_PATH": str(Path("config/slos.yaml").resolve()),
        "CONTROLPLANE_EVENTS_PATH": str(tmp_path / "no-events.yaml"),
        "CONTROLPLANE_COSTS_PATH": str(tmp_path / "costs.yaml"),
    }
    (tmp_path / "costs.yaml").write_text(MODEL)
    store = make_engine(database_url)
    migrate_store(store)
    # Requests per slice: all in the first hour of the window, so later hours of `database` are idle.
    with store.begin() as conn:
        for name, count in REQUESTS.items():
            conn.execute(
                table(SliBucket).insert(),
                [
                    {"slice": name, "minute": t0 + timedelta(minutes=m), "total": count // 4, "bad": 0}
                    for m in (5, 6, 7, 8)
                ],
            )
        # CPU: 1,800 s of the 7,200 core-seconds of the first hour; nothing scraped after it.
        conn.execute(
            table(ScrapedSample).insert(),
            [{"target": CPU_TARGET, "name": "process_cpu_seconds_total", "labels": "{}", "value": v, "scraped_at": t}
             for t, v in ((t0, 50.0), (t0 + timedelta(hours=1), 1850.0))],
        )  # fmt: skip
    bill = tmp_path / "bill.csv"
    bill.write_text(
        FOCUS_HEADER
        + "\n"
        + f'4.80,4.80,EUR,{iso(t0)},{iso(t0 + timedelta(days=1))},Usage,Managed Redis,cache-1,"{{""component"": ""cache""}}"\n'
        + f'9.99,9.99,EUR,{iso(t0)},{iso(t0 + timedelta(days=1))},Usage,Other,x-1,"{{""component"": ""other""}}"\n'
    )
    imported = _cli(env, "cost", "import", "--focus", str(bill), "--by", "finance", "--format", "json")
    assert imported.returncode == 0, imported.stderr
    assert json.loads(imported.stdout)["new_rows"] == 2

    platform = PlatformProcess(
        database_url,
        tmp_path / "outbox.jsonl",
        CONTROLPLANE_OUTBOX_SINK="audit",
        CONTROLPLANE_AUDIT_URL=database_url,
        CONTROLPLANE_AUDIT_ORIGIN="audit.test/cost",
    )
    try:
        with PlatformClient(platform.url, admin_token=ADMIN_TOKEN) as client:
            players = [client.create_account(f"c-{uuid.uuid4().hex[:8]}") for _ in range(2)]
            for player in players:
                client.deposit(player["id"], 100_000)
            probe = client.http.post(
                "/v1/accounts",
                json={"username": f"probe-{uuid.uuid4().hex[:8]}", "password": uuid.uuid4().hex, "synthetic": True},
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            ).json()
            client.deposit(probe["id"], 100_000)
            race = client.create_market("Race", [("A", "2.00"), ("B", "3.00")])
            washout = client.create_market("Washout", [("H", "1.50"), ("V", "2.50")])
            for i in range(6):
                response = client.place_bet(players[i % 2]["token"], bet_body(race, selection=i % 2, stake=100))
                assert response.status_code == 201, response.text
            for i in range(2):
                assert client.place_bet(players[i]["token"], bet_body(washout, stake=100)).status_code == 201
            assert client.place_bet(probe["token"], bet_body(race, stake=100)).status_code == 201
            client.result(race["id"], winner_selection_id=race["selections"][0]["id"])
            client.result(race["id"], winner_selection_id=race["selections"][1]["id"])  # resettles all 7
            client.result(washout["id"], void=True)
        audit = make_engine(database_url)
        # 7 race bets settled twice (a resettlement each) and 2 voided.
        wait_until(lambda: _settlements(audit) == 7 * 2 + 2, "every settlement entry in the audit log", timeout=60)
        audit.dispose()
    finally:
        platform.stop()

    t1 = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    wait_until(lambda: datetime.now(UTC) >= t1, "the window's end to pass", timeout=5)
    result = _cli(env, "cost", "report", "--from", iso(t0), "--to", iso(t1), "--by", "hour", "--format", "json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)

    seconds = Decimal((t1 - t0).total_seconds())
    hours = seconds / 3600
    rest = hours - 1  # the hours after the first one
    database = Decimal("0.62") * hours
    database_alloc = Decimal("0.62")  # the first hour only: the rest had no request
    api = Decimal("0.34") * hours
    api_alloc = Decimal("0.34") * Decimal(1800) / Decimal(7200)
    collector = Decimal("0.08") * hours
    payments = Decimal("1.50") * hours
    payments_alloc = payments * Decimal("0.6")
    cache = Decimal("4.80") * seconds / Decimal(86400)
    total = database + api + collector + payments + cache
    allocated = database_alloc + api_alloc + collector + payments_alloc + cache
    settled = 6  # the probe's bet left out; resettlement counted once
    assert rest > 0
    assert report["window"] == {"start": iso(t0), "end": iso(t1), "complete": True, "event": None, "by": "hour"}
    assert report["currency"] == "EUR"
    assert (report["settled_bets"], report["voided_bets"]) == (settled, 2)
    assert (report["probe_bets_excluded"], report["resettled_bets"]) == (1, 6)
    assert report["total_cost"] == r(total)
    assert report["allocated_cost"] == r(allocated)
    assert report["unallocated_cost"] == r(total - allocated)
    assert report["cost_per_settled_bet"] == r(total / settled)  # all of the cost, idle and others' shares too
    assert report["allocated_cost_per_settled_bet"] == r(allocated / settled)  # the part the product used
    assert report["cost_per_settled_bet_reason"] is None
    assert report["unmapped_billing_cost"] == r(Decimal("9.99") * seconds / Decimal(86400))
    expected = {
        "database": (database, database_alloc, "rate 0.62 per hour", "by_requests"),
        "platform-api": (api, api_alloc, "rate 0.34 per hour", "by_cpu_seconds of 2 cores"),
        "collector": (collector, collector, "rate 0.08 per hour", "direct"),
        "payments": (payments, payments_alloc, "rate 1.50 per hour", "fixed_share 0.6"),
        "cache": (cache, cache, "focus Tags.component=cache (EffectiveCost)", "direct"),
    }
    assert [c["name"] for c in report["components"]] == list(expected)
    for component in report["components"]:
        cost, alloc, source, rule = expected[component["name"]]
        assert component == {
            "name": component["name"],
            "cost": r(cost),
            "allocated": r(alloc),
            "unallocated": r(cost - alloc),
            "share": r(cost / total),
            "cost_per_settled_bet": r(cost / settled),
            "allocated_cost_per_settled_bet": r(alloc / settled),
            "source": source,
            "allocation": rule,
        }
    first_hour = report["buckets"][0]
    assert first_hour["start"] == iso(t0) and first_hour["end"] == iso(t0 + timedelta(hours=1))
    assert first_hour["total_cost"] == r(
        Decimal("0.62") + Decimal("0.34") + Decimal("0.08") + Decimal("1.50") + Decimal("0.2")
    )
    assert sum(b["settled_bets"] for b in report["buckets"]) == settled
    assert sum(Decimal(b["total_cost"]) for b in report["buckets"]) - total < Decimal("0.00001") * len(
        report["buckets"]
    )
    slices = {s["slice"]: s for s in report["slos"]}
    whole = sum(REQUESTS.values())
    for name, count in REQUESTS.items():
        assert slices[name]["requests"] == count
        assert slices[name]["slice_cost"] == r(Decimal("0.62") * count / whole)
        assert slices[name]["alert_state"] in ("ok", "ticket", "page")

    table_out = _cli(env, "cost", "report", "--from", iso(t0), "--to", iso(t1), "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(table_out.stdout)))
    assert [row["component"] for row in rows] == [*expected, "total"]
    assert rows[-1]["cost_per_settled_bet"] == r(total / settled)
    assert rows[-1]["allocated_cost_per_settled_bet"] == r(allocated / settled)
    with store.connect() as conn:
        assert len(conn.execute(select(billing_t)).all()) == 2
    store.dispose()
