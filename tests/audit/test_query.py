"""Reading entries back (`audit.query`), on SQLite and PostgreSQL: filters, paging with limit and offset
from a fixed head (`before_seq`), and a count that agrees with what the pages hold."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from audit.log import AuditLog
from audit.query import count_entries, find_entries
from audit.schema import migrate_audit
from controlplane.storage import make_engine

ORIGIN = "audit.test/query"


@pytest.fixture
def log(database_url: str) -> Iterator[AuditLog]:
    engine: Engine = make_engine(database_url)
    migrate_audit(engine)
    log = AuditLog(engine, origin=ORIGIN)
    log.append_many(
        [
            {"kind": "money" if n % 3 else "change", "actor": "relay", "subject": f"bet:{n}", "payload": {"n": n}}
            for n in range(250)
        ]
        + [{"kind": "access", "actor": "cleo", "subject": "export:100%_done", "payload": {}}]
    )
    yield log
    engine.dispose()


def test_pages_of_newest_first_cover_every_entry_once(log: AuditLog) -> None:
    pages = [find_entries(log.engine, newest_first=True, limit=100, offset=offset) for offset in (0, 100, 200, 300)]
    assert [len(p) for p in pages] == [100, 100, 51, 0]
    assert [e.seq for p in pages for e in p] == list(range(250, -1, -1))
    assert count_entries(log.engine) == 251


def test_a_fixed_head_keeps_pages_in_place_while_the_log_grows(log: AuditLog) -> None:
    second = [e.seq for e in find_entries(log.engine, before_seq=251, newest_first=True, limit=100, offset=100)]
    log.append_many([{"kind": "system", "actor": "t", "subject": "later", "payload": {}} for _ in range(30)])
    again = [e.seq for e in find_entries(log.engine, before_seq=251, newest_first=True, limit=100, offset=100)]
    assert again == second == list(range(150, 50, -1))
    assert count_entries(log.engine, before_seq=251) == 251 and count_entries(log.engine) == 281
    moved = [e.seq for e in find_entries(log.engine, newest_first=True, limit=100, offset=100)]
    assert moved[0] == 180  # without a fixed head, the new entries push every page back


@pytest.mark.parametrize(
    "filters",
    [
        {"kind": "change"},
        {"kind": "money", "subject_prefix": "bet:1"},
        {"actor": "cleo"},
        {"subject_prefix": "export:100%_"},  # % and _ are literal, not wildcards
        {"subject_prefix": "export:1000"},
        {"subject": "bet:7", "before_seq": 7},
    ],
)
def test_the_count_agrees_with_the_entries_found(log: AuditLog, filters: dict[str, object]) -> None:
    found = find_entries(log.engine, **filters)  # type: ignore[arg-type]
    assert count_entries(log.engine, **filters) == len(found)  # type: ignore[arg-type]
    oldest_first = find_entries(log.engine, **filters, limit=5, offset=2)  # type: ignore[arg-type]
    assert oldest_first == found[2:7]


def test_the_filters_select_what_they_name(log: AuditLog) -> None:
    assert count_entries(log.engine, kind="change") == 84  # n % 3 == 0 for n in 0..249
    assert [e.subject for e in find_entries(log.engine, subject_prefix="export:100%_")] == ["export:100%_done"]
    assert find_entries(log.engine, subject_prefix="export:1000") == []
    assert find_entries(log.engine, subject="bet:7", before_seq=7) == []


@pytest.mark.parametrize("paging", [{"offset": -1}, {"limit": -5}])
def test_a_negative_offset_or_limit_is_refused(log: AuditLog, paging: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        find_entries(log.engine, **paging)  # type: ignore[arg-type]


def test_the_payload_type_is_matched_exactly_and_paged(log: AuditLog) -> None:
    log.append_many(
        [{"kind": "system", "actor": "t", "subject": f"s{n}", "payload": {"type": "dead_letter", "n": n}}
         for n in range(5)]
        + [{"kind": "system", "actor": "t", "subject": "nested", "payload": {"evidence": {"type": "dead_letter"}}},
           {"kind": "system", "actor": "t", "subject": "other", "payload": {"type": "dead_letter_replayed"}},
           {"kind": "change", "actor": "t", "subject": "odd", "payload": {"type": 'a"b%_\\'}}]
    )  # fmt: skip
    dead = find_entries(log.engine, type_="dead_letter")
    assert [e.payload["n"] for e in dead] == [0, 1, 2, 3, 4] and {e.type for e in dead} == {"dead_letter"}
    assert [e.payload["n"] for e in find_entries(log.engine, type_="dead_letter", limit=2, offset=2)] == [2, 3]
    assert [e.payload["n"] for e in find_entries(log.engine, type_="dead_letter", limit=2, newest_first=True)] == [4, 3]
    assert count_entries(log.engine, type_="dead_letter") == 5
    assert [e.subject for e in find_entries(log.engine, type_='a"b%_\\')] == ["odd"]
    assert find_entries(log.engine, kind="change", type_="dead_letter") == []
    record = dead[0].as_record()
    assert set(record) == {"seq", "kind", "type", "actor", "at", "subject", "event_id", "payload"}
    assert record["type"] == "dead_letter" and record["at"].endswith("Z") and record["event_id"] is None
