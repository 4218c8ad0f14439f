"""FOCUS bills: the sample is FOCUS 1.0 by FinOps' own validator, imports once (a repeat changes nothing
and records nothing), and anything that is not FOCUS, or has a bad row, is refused whole with the
columns and lines named."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from controlplane.cost.focus import FocusError, import_focus, read_focus
from controlplane.cost.tables import billing_t, imports_t
from tests.support import CONTROLPLANE

HERE = Path(__file__).parent
SAMPLE = HERE / "data" / "focus_sample.csv"
VALIDATOR = Path(sys.prefix) / "focus-validator" / "bin" / "python"
REQUIRE_VALIDATOR = os.environ.get("CONTROLPLANE_TEST_REQUIRE_FOCUS_VALIDATOR") == "1"


def _validate(path: Path) -> dict:
    if not VALIDATOR.exists():
        if REQUIRE_VALIDATOR:
            pytest.fail(f"{VALIDATOR} is missing; `make test` installs the FOCUS validator there")
        pytest.skip("the FOCUS validator is not installed (make .venv/focus-validator/.installed)")
    done = subprocess.run(
        [str(VALIDATOR), str(HERE / "focus_validate.py"), str(path)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _rows(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(billing_t)).scalar_one()


def _without(path: Path, out: Path, *columns: str) -> Path:
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    keep = [c for c in rows[0] if c not in columns]
    with out.open("w", newline="") as f:
        writer = csv.DictWriter(f, keep, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return out


def test_the_sample_bill_is_focus_by_finops_own_validator(tmp_path: Path) -> None:
    verdict = _validate(SAMPLE)
    assert verdict["checks"] > 100 and verdict["failed"] == []
    broken = _validate(_without(SAMPLE, tmp_path / "broken.csv", "BilledCost", "ChargePeriodStart"))
    assert {"BilledCost_Required", "ChargePeriodStart_Required"} <= set(broken["failed"])


def test_importing_the_same_bill_twice_changes_nothing(store: Engine) -> None:
    recorded: list[dict] = []

    def record(payload: dict) -> int:
        recorded.append(payload)
        return len(recorded)

    first = import_focus(store, SAMPLE, by="finance", record=record)
    again = import_focus(store, SAMPLE, by="finance", record=record)
    assert (first.rows, first.new_rows, first.audit_seq) == (8, 8, 1)
    assert (again.rows, again.new_rows, again.audit_seq) == (8, 0, None)
    assert _rows(store) == 8 and len(recorded) == 1
    assert recorded[0]["type"] == "cost_import" and recorded[0]["effective_cost"] == {"EUR": "38.2080"}
    with store.connect() as conn:
        assert conn.execute(select(imports_t.c.new_rows)).scalars().all() == [8]
        resources = set(conn.execute(select(billing_t.c.resource_id)).scalars())
    assert resources == {"db-pg-main", "vm-api-01", "cache-redis-01", "mq-bets-01"}


def test_a_failed_audit_append_stores_nothing(store: Engine) -> None:
    def broken(_payload: dict) -> int:
        raise RuntimeError("audit log unreachable")

    with pytest.raises(RuntimeError):
        import_focus(store, SAMPLE, by="finance", record=broken)
    assert _rows(store) == 0
    assert import_focus(store, SAMPLE, by="finance", record=lambda _p: 7).new_rows == 8


def test_a_csv_that_is_not_focus_is_refused_naming_the_missing_columns(tmp_path: Path) -> None:
    plain = tmp_path / "spend.csv"
    plain.write_text("date,service,amount\n2026-11-01,db,12.00\n")
    with pytest.raises(FocusError, match="not a FOCUS file: missing columns BilledCost, EffectiveCost") as caught:
        read_focus(plain)
    assert "ChargePeriodStart" in str(caught.value) and "ServiceName" in str(caught.value)
    partial = _without(SAMPLE, tmp_path / "partial.csv", "EffectiveCost")
    with pytest.raises(FocusError, match="missing column EffectiveCost"):
        read_focus(partial)


HEADER = "BilledCost,EffectiveCost,BillingCurrency,ChargePeriodStart,ChargePeriodEnd,ChargeCategory,ServiceName,Tags"
GOOD = '1.00,1.00,EUR,2026-11-01T00:00:00Z,2026-11-02T00:00:00Z,Usage,DB,"{""component"": ""db""}"'


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ("abc,1.00,EUR,2026-11-01T00:00:00Z,2026-11-02T00:00:00Z,Usage,DB,", "line 3: BilledCost: 'abc'"),
        ("NaN,1.00,EUR,2026-11-01T00:00:00Z,2026-11-02T00:00:00Z,Usage,DB,", "line 3: BilledCost: 'NaN'"),
        ("1e999999,1.00,EUR,2026-11-01T00:00:00Z,2026-11-02T00:00:00Z,Usage,DB,", "line 3: BilledCost: '1e999999'"),
        ("0.0000000000001,1,EUR,2026-11-01T00:00:00Z,2026-11-02T00:00:00Z,Usage,DB,", "line 3: BilledCost"),
        ("1.00,Infinity,EUR,2026-11-01T00:00:00Z,2026-11-02T00:00:00Z,Usage,DB,", "line 3: EffectiveCost"),
        ("1.00,1.00,euro,2026-11-01T00:00:00Z,2026-11-02T00:00:00Z,Usage,DB,", "line 3: BillingCurrency"),
        ("1.00,1.00,EUR,2026-11-01,2026-11-02T00:00:00Z,Usage,DB,", "line 3: ChargePeriodStart"),
        ("1.00,1.00,EUR,2026-11-01T00:00:00+02:00,2026-11-02T00:00:00Z,Usage,DB,", "line 3: ChargePeriodStart"),
        ("1.00,1.00,EUR,2026-11-02T00:00:00Z,2026-11-01T00:00:00Z,Usage,DB,", "line 3: ChargePeriodEnd: must be after"),
        ("1.00,1.00,EUR,2026-11-01T00:00:00Z,2026-11-02T00:00:00Z,Hourly,DB,", "line 3: ChargeCategory"),
        ('1.00,1.00,EUR,2026-11-01T00:00:00Z,2026-11-02T00:00:00Z,Usage,DB,"[1, 2]"', "line 3: Tags"),
        ("1.00,1.00,EUR,2026-11-01T00:00:00Z,2026-11-02T00:00:00Z,Usage,DB,{},extra", "line 3: (row): more fields"),
    ],
)
def test_a_bad_row_refuses_the_whole_file(store: Engine, tmp_path: Path, row: str, problem: str) -> None:
    bill = tmp_path / "bill.csv"
    bill.write_text(f"{HEADER}\n{GOOD}\n{row}\n")
    with pytest.raises(FocusError, match="nothing imported") as caught:
        import_focus(store, bill, by="finance")
    assert problem in str(caught.value)
    assert _rows(store) == 0


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = os.environ | {
        "CONTROLPLANE_STORE_URL": f"sqlite:///{tmp_path / 'store.db'}",
        "CONTROLPLANE_AUDIT_URL": f"sqlite:///{tmp_path / 'audit.db'}",
        "CONTROLPLANE_AUDIT_KEY_DIR": str(tmp_path / "keys"),
    }
    return subprocess.run([CONTROLPLANE, "cost", *args], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot be read"),
        (b"\xff\xfe\x00garbage", "not UTF-8"),
        (b"", "missing columns BilledCost"),
        (HEADER.encode() + b"\n" + GOOD.encode().replace(b"1.00,1.00", b"1e999999,1") + b"\n", "BilledCost"),
    ],
)
def test_cli_import_errors_are_messages(tmp_path: Path, content: bytes | None, message: str) -> None:
    bill = tmp_path / "bill.csv"
    if content is not None:
        bill.write_bytes(content)
    done = _cli(tmp_path, "import", "--focus", str(bill))
    assert done.returncode == 3 and message in done.stderr and "Traceback" not in done.stderr


def test_cli_import_then_again_in_json(tmp_path: Path) -> None:
    first = json.loads(_cli(tmp_path, "import", "--focus", str(SAMPLE), "--by", "ana", "--format", "json").stdout)
    again = _cli(tmp_path, "import", "--focus", str(SAMPLE), "--by", "ana")
    assert first["new_rows"] == 8 and first["audit_seq"] == 0
    assert again.returncode == 0 and "nothing new: all 8 rows" in again.stdout
    rows = list(csv.reader(io.StringIO(SAMPLE.read_text())))
    assert len(rows) == 9


def test_the_same_charge_spelt_differently_is_one_row(store: Engine, tmp_path: Path) -> None:
    one = tmp_path / "one.csv"
    one.write_text(f"{HEADER},ResourceId\n{GOOD},r-1\n")
    other = tmp_path / "other.csv"
    other.write_text(
        "ResourceID,Tags,ServiceName,ChargeCategory,ChargePeriodEnd,ChargePeriodStart,BillingCurrency,"
        "EffectiveCost,BilledCost,Extra\n"
        'r-1 ,"{""component"":""db""}", DB ,Usage,2026-11-02T00:00:00Z,2026-11-01T00:00:00.000Z,EUR,1,1.000,x\n'
    )
    assert import_focus(store, one, by="a").new_rows == 1
    assert import_focus(store, other, by="a").new_rows == 0 and _rows(store) == 1


def test_a_header_repeating_a_column_is_refused(tmp_path: Path) -> None:
    bill = tmp_path / "bill.csv"
    bill.write_text(f"{HEADER},EffectiveCost\n{GOOD},7\n")
    with pytest.raises(FocusError, match="header repeats EffectiveCost"):
        read_focus(bill)


def test_bills_in_other_currencies_are_kept_apart_and_tags_match_as_text(store: Engine, tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from controlplane.cost.focus import charges_by_component
    from controlplane.cost.model import CostModel

    bill = tmp_path / "bill.csv"
    bill.write_text(
        f"{HEADER}\n"
        '2.00,2.00,EUR,2026-11-01T00:00:00Z,2026-11-02T00:00:00Z,Usage,A,"{""shared"": true}"\n'
        "100,100,USD,2026-11-01T00:00:00Z,2026-11-02T00:00:00Z,Usage,B,\n"
        "3.00,3.00,EUR,2026-11-01T00:00:00Z,2026-11-02T00:00:00Z,Usage,C,\n"
    )
    import_focus(store, bill, by="a")
    model = CostModel.model_validate(
        {"currency": "EUR", "components": [{"name": "x", "focus": {"tag": {"shared": "true"}}, "allocation": "direct"}]}
    )
    charges, unmapped = charges_by_component(
        store, model, datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 2, tzinfo=UTC)
    )
    assert [c.amount for c in charges["x"]] == [2]
    assert unmapped == {"USD": 100, "EUR": 3}
