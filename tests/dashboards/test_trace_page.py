"""The trace page (`/trace?id=...`): a kept trace as a waterfall with its spans' attributes and log lines,
the traces linked both ways, and the change the audit log recorded just before its minute; a malformed
or unknown id is a message, never an exception."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

import audit.log
from controlplane.traces.store import Keep, keep
from tests.controlplane.incidents.conftest import append_change
from tests.dashboards.test_pages import _assert_clean, _open, _signed_in, dashboard_store

PLACED, SETTLED = "a1" * 16, "b2" * 16


def _span(trace_id: str, span_id: str, name: str, start_ms: float, ms: float, **extra: object) -> dict:
    start = int(MINUTE.timestamp() * 1e9 + start_ms * 1e6)
    return {
        "trace_id": trace_id, "span_id": span_id, "parent_span_id": extra.pop("parent", ""), "name": name,
        "service": "sample-platform", "kind": extra.pop("kind", "internal"), "start_unix_nano": start,
        "end_unix_nano": start + int(ms * 1e6), "status_code": extra.pop("status", 0), "status_message": "",
        "attributes": json.dumps(extra.pop("attributes", {})), "events": "[]",
        "links": json.dumps(extra.pop("links", [])),
    }  # fmt: skip


MINUTE = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=20)


@pytest.fixture
def kept(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    with dashboard_store(database_url, tmp_path, monkeypatch, "audit.test/traces", {"ana": "oncall"}) as engine:
        spans = [
            _span(PLACED, "0000000000000001", "POST /v1/bets", 0, 310, kind="server", status=2,
                  attributes={"http.response.status_code": 503, "bet.outcome": "refused"}),
            _span(PLACED, "0000000000000002", "ledger commit", 5, 300, parent="0000000000000001", status=2),
            _span(SETTLED, "0000000000000003", "settlement batch", 0, 40,
                  links=[{"trace_id": PLACED, "span_id": "0000000000000001", "attributes": {}}]),
        ]  # fmt: skip
        log_line = {
            "trace_id": PLACED, "span_id": "0000000000000001", "time_unix_nano": spans[0]["end_unix_nano"],
            "severity": "WARNING", "service": "sample-platform", "body": "request refused: database busy",
            "attributes": json.dumps({"problem.type": "database-busy"}),
        }  # fmt: skip
        keep(
            engine,
            [Keep(PLACED, "bet-placement", MINUTE, "bad", 0.31), Keep(SETTLED, "settlement", MINUTE, "slow", 0.04)],
            spans=spans,
            logs=[log_line],
        )
        log = audit.log.AuditLog(engine, origin="audit.test/traces")
        append_change(
            monkeypatch, log, MINUTE - timedelta(minutes=2), kind="change", actor="riley.gameday", subject="fault:f1",
            payload={"type": "fault_set", "fault": {"kind": "lock_wait", "route": "*"}, "reason": "game day"},
        )  # fmt: skip
        yield engine


def _trace_page(trace_id: str | None):  # type: ignore[no-untyped-def]
    at = _open(_signed_in("ana"), "trace")
    if trace_id is not None:
        at.query_params["id"] = trace_id
    return at.run()


def test_a_kept_trace_shows_its_spans_log_lines_links_and_changes(kept: Engine) -> None:
    at = _trace_page(PLACED)
    _assert_clean(at)
    text = "\n".join(m.value for m in at.markdown)
    assert "Kept as a **bad** event of **bet-placement**" in text and "2 spans · 1 log lines · 2 with an error" in text
    assert len(at.get("plotly_chart")) == 1
    labels = [e.label for e in at.expander]
    assert labels[0].startswith("1. POST /v1/bets · 310.0 ms · ERROR · 1 log lines")
    assert labels[1].startswith("2. ↳ ledger commit")
    assert any("request refused: database busy problem.type=database-busy" in c.value for c in at.code)
    assert f"[`{SETTLED}`](trace?id={SETTLED}) (settlement batch) links to span `0000000000000001` here" in text
    changes = at.dataframe[-1].value
    assert changes.iloc[0]["By"] == "riley.gameday" and "lock_wait" in changes.iloc[0]["What"]


def test_the_settlement_links_to_the_placement(kept: Engine) -> None:
    at = _trace_page(SETTLED)
    _assert_clean(at)
    text = "\n".join(m.value for m in at.markdown)
    assert f"links to [`{PLACED}`](trace?id={PLACED}), span `0000000000000001`" in text


@pytest.mark.parametrize(
    ("trace_id", "says"),
    [("not-a-trace", "is not a trace id"), ("cd" * 16, "was not kept"), (None, "Open a trace from a worst minute")],
)
def test_a_bad_or_unknown_id_is_a_message(kept: Engine, trace_id: str | None, says: str) -> None:
    at = _trace_page(trace_id)
    _assert_clean(at)
    shown = [e.value for e in at.error] + [w.value for w in at.warning] + [i.value for i in at.info]
    assert any(says in message for message in shown), shown
