"""Actual bills in the FinOps FOCUS format: import a CSV (idempotently, audited) and read back the
charges of each cost-model component in a window.

Usage:

    result = import_focus(store_engine, Path("bill.csv"), by="ana", record=append_to_audit)  # FocusImport
    charges, unmapped = charges_by_component(store_engine, model, start, end)

A file is FOCUS when its header has the columns of REQUIRED_COLUMNS; each row is checked (decimal
costs, ISO 4217 currency, UTC ChargePeriodStart before ChargePeriodEnd, Tags a JSON object) and a file
with any bad row is refused whole, with the line and column of each problem. A row's identity is its
content and which repeat of that content in its file it is, so importing a file again adds nothing.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from controlplane.clock import as_utc, utcnow
from controlplane.cost.compute import Charge, seconds
from controlplane.cost.model import CostModel, FocusMatch
from controlplane.cost.tables import billing_t, imports_t
from controlplane.storage import is_sqlite, reader

REQUIRED_COLUMNS = (
    "BilledCost",
    "EffectiveCost",
    "BillingCurrency",
    "ChargePeriodStart",
    "ChargePeriodEnd",
    "ChargeCategory",
    "ServiceName",
)
OPTIONAL_COLUMNS = ("ResourceId", "Tags")  # ResourceID, as FOCUS 1.0 validators spell it, too
CHARGE_CATEGORIES = ("Usage", "Purchase", "Tax", "Credit", "Adjustment")
UTC_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?Z$")
MAX_AMOUNT = Decimal("1e15")  # larger than any bill line; keeps sums exact in 28 digits
MAX_PLACES = 10
MAX_PROBLEMS = 20
MAX_FIELD = 500
COLUMN_LIMITS = {"ServiceName": 200, "ChargeCategory": 32, "Tags": 10_000}  # as the store keeps them
BATCH = 1000


class FocusError(ValueError):
    """The file is not a FOCUS CSV we can import; the message names the file, lines, columns and fix."""


class CostDataError(ValueError):
    """Stored billing rows do not fit the cost model (e.g. another currency)."""


@dataclass(frozen=True)
class FocusImport:
    file: str
    file_sha256: str
    rows: int
    new_rows: int
    audit_seq: int | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "file_sha256": self.file_sha256,
            "rows": self.rows,
            "new_rows": self.new_rows,
            "audit_seq": self.audit_seq,
        }


def _decimal(value: str) -> Decimal:
    amount = Decimal(value.strip())
    if not amount.is_finite() or abs(amount) >= MAX_AMOUNT or amount.as_tuple().exponent < -MAX_PLACES:  # type: ignore[operator]
        raise InvalidOperation
    return amount


def _time(value: str) -> datetime:
    if not UTC_TIME.match(value.strip()):
        raise ValueError
    return as_utc(datetime.fromisoformat(value.strip().replace("Z", "+00:00")))


def _row(line: int, raw: dict[str, str | None], problems: list[str]) -> dict[str, Any] | None:
    def bad(column: str, message: str) -> None:
        problems.append(f"line {line}: {column}: {message}")

    before = len(problems)
    values = {k: (v or "") for k, v in raw.items() if k is not None}
    if None in raw:
        bad("(row)", "more fields than the header has columns")
        return None
    for column, value in values.items():
        limit = COLUMN_LIMITS.get(column, MAX_FIELD)
        if len(value) > limit:
            bad(column, f"longer than {limit} characters")
        if "\x00" in value:
            bad(column, "holds a NUL character")
    row: dict[str, Any] = {}
    for column in ("BilledCost", "EffectiveCost"):
        try:
            row[column] = _decimal(values[column])
        except (InvalidOperation, ValueError):
            bad(
                column,
                f"{values[column]!r} is not a decimal number such as 12.50 (under 10^15, at most "
                f"{MAX_PLACES} decimal places)",
            )
    currency = values["BillingCurrency"].strip()
    if not re.fullmatch(r"[A-Z]{3}", currency):
        bad("BillingCurrency", f"{currency!r} is not an ISO 4217 code such as EUR")
    for column in ("ChargePeriodStart", "ChargePeriodEnd"):
        try:
            row[column] = _time(values[column])
        except ValueError:
            bad(column, f"{values[column]!r} is not a UTC time such as 2026-11-01T00:00:00Z")
    if "ChargePeriodStart" in row and "ChargePeriodEnd" in row and row["ChargePeriodEnd"] <= row["ChargePeriodStart"]:
        bad("ChargePeriodEnd", "must be after ChargePeriodStart")
    category = values["ChargeCategory"].strip()
    if category not in CHARGE_CATEGORIES:
        bad("ChargeCategory", f"{category!r} is not one of {', '.join(CHARGE_CATEGORIES)}")
    tags: Any = {}
    if values.get("Tags", "").strip():
        try:
            tags = json.loads(values["Tags"])
        except ValueError:
            tags = None
        if not isinstance(tags, dict) or any(isinstance(v, dict | list) for v in tags.values()):
            bad("Tags", 'must be a JSON object of keys and plain values, e.g. {"component": "database"}')
            tags = {}
    if len(problems) > before:
        return None
    return {
        "charge_period_start": row["ChargePeriodStart"],
        "charge_period_end": row["ChargePeriodEnd"],
        "billed_cost": str(row["BilledCost"]),
        "effective_cost": str(row["EffectiveCost"]),
        "billing_currency": currency,
        "service_name": values["ServiceName"].strip(),
        "resource_id": (values.get("ResourceId") or values.get("ResourceID") or "").strip(),
        "tags": json.dumps({str(k): tag_text(v) for k, v in tags.items()}, sort_keys=True, separators=(",", ":")),
        "charge_category": category,
    }


def tag_text(value: Any) -> str:
    """A tag value as the cost model compares it: strings as they are, others as JSON (true, 3, null)."""
    return value if isinstance(value, str) else json.dumps(value)


def _identity(row: dict[str, Any]) -> str:
    """What a charge is, whatever the export's spelling: parsed amounts and times, trimmed text."""
    fields = [
        row["charge_period_start"].isoformat(),
        row["charge_period_end"].isoformat(),
        str(Decimal(row["billed_cost"]).normalize()),
        str(Decimal(row["effective_cost"]).normalize()),
        row["billing_currency"],
        row["service_name"],
        row["resource_id"],
        row["charge_category"],
        row["tags"],
    ]
    return json.dumps(fields, separators=(",", ":"))


def read_focus(path: Path) -> tuple[str, list[dict[str, Any]]]:
    """(the file's SHA-256, its checked rows); FocusError names every problem (up to 20)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise FocusError(f"{path}: cannot be read ({exc.strerror or type(exc).__name__})") from None
    digest = hashlib.sha256(data).hexdigest()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise FocusError(f"{path}: not UTF-8 text; export the FOCUS file as UTF-8 CSV") from None
    reader_ = csv.DictReader(io.StringIO(text, newline=""))
    try:
        header = reader_.fieldnames or []
    except csv.Error as exc:
        raise FocusError(f"{path}: not a CSV file ({exc})") from None
    repeated = sorted({c for c in header if header.count(c) > 1})
    if repeated:
        raise FocusError(f"{path}: header repeats {', '.join(repeated)}; give each column once")
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise FocusError(
            f"{path}: not a FOCUS file: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
            f"(a FOCUS 1.x CSV has {', '.join(REQUIRED_COLUMNS)} among its columns)"
        )
    problems: list[str] = []
    rows: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    try:
        for number, raw in enumerate(reader_, start=2):
            row = _row(number, raw, problems)
            if len(problems) >= MAX_PROBLEMS:
                break
            if row is None:
                continue
            content = _identity(row)
            repeat = seen.get(content, 0)
            seen[content] = repeat + 1
            row["row_hash"] = hashlib.sha256(f"{content}#{repeat}".encode()).hexdigest()
            row["file_sha256"] = digest
            rows.append(row)
    except csv.Error as exc:
        problems.append(f"line {reader_.line_num}: not valid CSV ({exc})")
    if problems:
        more = " (and more; first 20 shown)" if len(problems) >= MAX_PROBLEMS else ""
        raise FocusError(f"{path}: {len(problems)} problem(s){more}, nothing imported: " + "; ".join(problems))
    return digest, rows


def import_focus(
    engine: Engine, path: Path, *, by: str, record: Callable[[dict[str, Any]], int] | None = None
) -> FocusImport:
    """Store the file's rows; rows already stored are skipped. When it adds rows, `record(payload)`
    appends the import to the audit log; if that fails the new rows are taken out again, so rows and
    audit entry are kept both or neither (a repeat import changes nothing and records nothing)."""
    digest, rows = read_focus(path)
    insert = sqlite_insert if is_sqlite(engine) else pg_insert
    added: list[str] = []
    with engine.begin() as conn:
        for i in range(0, len(rows), BATCH):
            batch = rows[i : i + BATCH]
            statement = insert(billing_t).values(batch).on_conflict_do_nothing().returning(billing_t.c.row_hash)
            added += conn.execute(statement).scalars().all()
        first_time = (
            conn.execute(select(imports_t.c.file_sha256).where(imports_t.c.file_sha256 == digest)).first() is None
        )
        if first_time:
            conn.execute(
                imports_t.insert().values(
                    file_sha256=digest,
                    file_name=Path(path).name[:500],
                    rows=len(rows),
                    new_rows=len(added),
                    imported_at=utcnow(),
                    imported_by=by[:200],
                )
            )
    seq = None
    if added and record is not None:
        try:
            seq = record(_import_payload(path, digest, rows, len(added)))
        except BaseException:
            with engine.begin() as conn:
                for i in range(0, len(added), BATCH):
                    conn.execute(delete(billing_t).where(billing_t.c.row_hash.in_(added[i : i + BATCH])))
                if first_time:
                    conn.execute(delete(imports_t).where(imports_t.c.file_sha256 == digest))
            raise
    return FocusImport(Path(path).name, digest, len(rows), len(added), seq)


def _import_payload(path: Path, digest: str, rows: list[dict[str, Any]], new_rows: int) -> dict[str, Any]:
    totals: dict[str, Decimal] = {}
    for row in rows:
        currency = row["billing_currency"]
        totals[currency] = totals.get(currency, Decimal(0)) + Decimal(row["effective_cost"])
    return {
        "type": "cost_import",
        "file": Path(path).name,
        "file_sha256": digest,
        "rows": len(rows),
        "new_rows": new_rows,
        "effective_cost": {currency: str(total) for currency, total in sorted(totals.items())},
    }


def _matches(match: FocusMatch, row: Any) -> bool:
    if match.service is not None:
        return bool(row.service_name == match.service)
    if match.resource_id is not None:
        return bool(row.resource_id == match.resource_id)
    assert match.tag is not None
    ((key, value),) = match.tag.items()
    return bool(json.loads(row.tags).get(key) == value)  # stored as tag_text


def charges_by_component(
    engine: Engine, model: CostModel, start: datetime, end: datetime
) -> tuple[dict[str, list[Charge]], dict[str, Decimal]]:
    """Each FOCUS-sourced component's charges overlapping [start, end) (a row goes to the first
    component that matches it), and by currency the EffectiveCost in the window of rows no component
    matches."""
    matchers = [(c.name, c.focus) for c in model.components if c.focus is not None]
    charges: dict[str, list[Charge]] = {name: [] for name, _ in matchers}
    unmapped: dict[str, Decimal] = {}
    start, end = as_utc(start), as_utc(end)
    query = select(billing_t).where(billing_t.c.charge_period_start < end, billing_t.c.charge_period_end > start)
    with reader(engine).connect() as conn:
        for row in conn.execute(query):
            row_start, row_end = as_utc(row.charge_period_start), as_utc(row.charge_period_end)
            owner = next(((name, m) for name, m in matchers if _matches(m, row)), None)
            if owner is None:
                overlap = seconds(max(start, row_start), min(end, row_end)) / seconds(row_start, row_end)
                currency = row.billing_currency
                unmapped[currency] = unmapped.get(currency, Decimal(0)) + Decimal(row.effective_cost) * overlap
                continue
            name, match = owner
            if row.billing_currency != model.currency:
                raise CostDataError(
                    f"billing rows for component '{name}' are in {row.billing_currency}, but the cost model is "
                    f"in {model.currency}; convert the bill or change `currency` in {model.path or 'the cost model'}"
                )
            amount = Decimal(row.effective_cost if match.cost_column == "EffectiveCost" else row.billed_cost)
            charges[name].append(Charge(row_start, row_end, amount))
    return charges, unmapped
