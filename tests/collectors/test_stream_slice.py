"""The stream slice: an ingester's `audit.ingest.lag` histogram, sent by the real OTLP exporter to the
collector, becomes the `stream` slice's minutes (events, and latency buckets the `stream-lag` SLO
reads), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

from collectors.sli import sli_rows
from controlplane.clock import utcnow
from controlplane.slices import load_slices
from controlplane.slo.engine import evaluate_all
from controlplane.slo.spec import load_events, load_slos
from controlplane.streams.telemetry import lag_histogram
from tests.conftest import SLICES_PATH

CONFIG = SLICES_PATH.parent


def test_ingest_lag_is_the_stream_slice_and_its_slo(receiver, store) -> None:  # type: ignore[no-untyped-def]
    boundaries = load_slices(SLICES_PATH).boundaries
    histogram, provider = lag_histogram(receiver.url, "", boundaries=boundaries, interval_seconds=3600)
    ages = [0.02] * 90 + [0.8] * 7 + [7.5, 30.0, 12.0]  # 3 of 100 later than the SLO's 5 s
    for age in ages:
        histogram.record(age)
    provider.shutdown()  # flushes
    minutes = sli_rows(store, since=utcnow() - timedelta(hours=1), slice_name="stream")
    assert sum(m.total for m in minutes) == 100 and sum(m.bad for m in minutes) == 0
    within = sum(count for m in minutes for le, count in m.latency.items() if le != "+Inf" and float(le) <= 5.0)
    assert within == 97
    events = load_events(CONFIG / "events.yaml")
    spec = next(s for s in load_slos(CONFIG / "slos.yaml", events=events) if s.name == "stream-lag")
    report = evaluate_all(store, [spec], events=events, boundaries=boundaries, at=utcnow() + timedelta(minutes=1))
    assert not report.slos[0].no_data and abs(report.slos[0].sli - 0.97) < 1e-9
