"""The OTLP/HTTP receiver: encodings, replays, limits and malformed input."""

from __future__ import annotations

import gzip
import json

import httpx
import pytest
from google.rpc import status_pb2
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from sqlalchemy import func, select

from collectors import otlp
from collectors.ingest import aggregate_spans
from controlplane.slices import load_slices
from controlplane.storage import reader
from controlplane.store import IngestedBatch, SliBucket, SliLatencyBucket
from tests.collectors.conftest import SLICES
from tests.collectors.otlp_samples import metric_request, to_otlp_json, trace_request

PB = {"Content-Type": otlp.PROTOBUF}
JS = {"Content-Type": otlp.JSON}


def snapshot(store) -> tuple[list, list]:  # type: ignore[no-untyped-def]
    b, lat = SliBucket.__table__, SliLatencyBucket.__table__
    with reader(store).connect() as conn:
        buckets = [
            tuple(r)
            for r in conn.execute(select(b.c.slice, b.c.minute, b.c.total, b.c.bad).order_by(b.c.slice, b.c.minute))
        ]
        latency = [tuple(r) for r in conn.execute(select(lat).order_by(lat.c.slice, lat.c.minute, lat.c.le))]
    return buckets, latency


def test_json_and_protobuf_give_identical_aggregates() -> None:
    config = load_slices(SLICES)
    request = trace_request(spans=300, seed=1)
    from_pb = otlp.decode_request(
        request.SerializeToString(), content_type=otlp.PROTOBUF, encoding=None, kind=otlp.TRACES, max_bytes=2**24
    )
    from_json = otlp.decode_request(
        to_otlp_json(request), content_type=otlp.JSON, encoding=None, kind=otlp.TRACES, max_bytes=2**24
    )
    assert from_pb == from_json == request
    assert aggregate_spans(from_pb, config).buckets == aggregate_spans(from_json, config).buckets


def test_replays_in_either_encoding_do_not_count_twice(receiver, store) -> None:
    request = trace_request(spans=200, seed=2)
    with httpx.Client(base_url=receiver.url) as http:
        first = http.post("/v1/traces", content=to_otlp_json(request), headers=JS)
        assert first.status_code == 200 and first.headers["content-type"] == otlp.JSON
        assert first.json() == {}
        counted = snapshot(store)
        assert sum(row[2] for row in counted[0]) == sum(
            1 for s in request.resource_spans[0].scope_spans[0].spans if s.name in ("POST /v1/bets", "POST /v1/login")
        )
        for body, headers in (
            (request.SerializeToString(), PB),
            (gzip.compress(request.SerializeToString()), PB | {"Content-Encoding": "gzip"}),
            (to_otlp_json(request), JS),
        ):
            again = http.post("/v1/traces", content=body, headers=headers)
            assert again.status_code == 200
            assert again.headers["content-type"] == headers["Content-Type"]
        assert snapshot(store) == counted


METRIC_SLICES = """
slices:
  - name: bets-by-metrics
    signal: metrics
    metric: http.server.request.duration
    routes: ["POST /v1/bets"]
"""


def test_cumulative_metric_points_count_their_growth_only(start_receiver, store, tmp_path) -> None:
    slices = tmp_path / "slices.yaml"
    slices.write_text(METRIC_SLICES)
    receiver = start_receiver(slices)
    with httpx.Client(base_url=receiver.url) as http:
        for step, total in enumerate((10, 10, 25, 25, 40)):
            request = metric_request(cumulative_total=total)
            request.resource_metrics[0].scope_metrics[0].metrics[0].histogram.data_points[0].time_unix_nano += step
            response = http.post("/v1/metrics", content=to_otlp_json(request), headers=JS)
            assert response.status_code == 200
    buckets, latency = snapshot(store)
    assert [(row[0], row[2], row[3]) for row in buckets] == [("bets-by-metrics", 40, 0)]
    assert sum(row[3] for row in latency) == 40


def test_partial_success_names_rejected_spans(receiver, store) -> None:
    request = trace_request(spans=5, seed=3, names=("POST /v1/bets",))
    broken = request.resource_spans[0].scope_spans[0].spans[0]
    broken.end_time_unix_nano = 0
    with httpx.Client(base_url=receiver.url) as http:
        response = http.post("/v1/traces", content=request.SerializeToString(), headers=PB)
    assert response.status_code == 200
    answer = trace_service_pb2.ExportTraceServiceResponse.FromString(response.content)
    assert answer.partial_success.rejected_spans == 1
    assert "end" in answer.partial_success.error_message
    assert sum(row[2] for row in snapshot(store)[0]) == 4


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        ({"Content-Type": "text/plain"}, b"hello", 415),
        ({}, b"hello", 415),
        (PB | {"Content-Encoding": "br"}, b"x", 415),
        (PB, b"\x0f\x01\x02", 400),
        (JS, b"{not json", 400),
        (JS, b"[]", 400),
        (JS, b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}', 400),
        (PB | {"Content-Encoding": "gzip"}, b"not gzip at all", 400),
        (PB | {"Content-Encoding": "gzip"}, gzip.compress(b"\x00" * 1000, mtime=0)[:-8], 400),
    ],
)
def test_bad_requests_get_a_status_body(receiver, store, headers, body, status) -> None:
    with httpx.Client(base_url=receiver.url) as http:
        response = http.post("/v1/traces", content=body, headers=headers)
    assert response.status_code == status
    media = headers.get("Content-Type") if headers.get("Content-Type") in (otlp.PROTOBUF, otlp.JSON) else otlp.JSON
    assert response.headers["content-type"] == media
    if media == otlp.PROTOBUF:
        assert status_pb2.Status.FromString(response.content).message
    else:
        assert response.json()["message"]
    assert snapshot(store) == ([], [])


def test_size_limit_applies_after_decompression(start_receiver, store) -> None:
    receiver = start_receiver(collector_max_body_bytes=64 * 1024)
    bomb = gzip.compress(b"\x00" * (50 * 2**20))  # 50 MiB of zeros in about 50 KiB
    with httpx.Client(base_url=receiver.url) as http:
        inflated = http.post("/v1/traces", content=bomb, headers=PB | {"Content-Encoding": "gzip"})
        plain = http.post("/v1/traces", content=b"\x00" * (65 * 1024), headers=PB)
    assert inflated.status_code == 413 and plain.status_code == 413


def test_busy_store_answers_503_with_retry_after(start_receiver) -> None:
    receiver = start_receiver(collector_max_pending_writes=1)
    app = receiver.app
    import threading

    release = threading.Event()
    original = app.state.slices.for_span

    def slow_for_span(**kwargs):  # type: ignore[no-untyped-def]
        release.wait(5)
        return original(**kwargs)

    app.state.slices.for_span = slow_for_span
    body = trace_request(spans=1, seed=4).SerializeToString()
    with httpx.Client(base_url=receiver.url, timeout=10) as http:
        holder = threading.Thread(target=lambda: http.post("/v1/traces", content=body, headers=PB))
        holder.start()
        import time

        time.sleep(0.3)
        busy = http.post("/v1/traces", content=trace_request(spans=1, seed=5).SerializeToString(), headers=PB)
        release.set()
        holder.join()
    assert busy.status_code == 503 and busy.headers["Retry-After"] == "1"


VALID = trace_request(spans=3, seed=6).SerializeToString()


def _truncated() -> st.SearchStrategy[bytes]:
    # Cut inside the first top-level field: the declared length runs past the end.
    return st.integers(min_value=1, max_value=len(VALID) - 1).map(lambda k: VALID[:k])


malformed = st.one_of(
    st.tuples(st.just(PB), st.binary(max_size=200).map(lambda b: b"\x0f" + b)),  # wire type 7 does not exist
    st.tuples(st.just(PB), _truncated()),
    st.tuples(st.just(JS), st.text(max_size=100).filter(lambda t: not t.strip().startswith("{")).map(str.encode)),
    st.tuples(
        st.just(JS),
        st.one_of(
            st.integers(), st.text(max_size=10), st.lists(st.integers(), min_size=1, max_size=3), st.booleans()
        ).map(lambda v: json.dumps({"resourceSpans": v}).encode()),
    ),
    st.tuples(
        st.just(JS),
        st.text(alphabet="ghijkxyz!?", min_size=1, max_size=40).map(
            lambda bad: json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": bad}]}]}]}).encode()
        ),
    ),
    st.tuples(
        st.just(PB | {"Content-Encoding": "gzip"}),
        st.binary(max_size=100).filter(lambda b: not b.startswith(b"\x1f\x8b")),
    ),
    st.tuples(
        st.sampled_from([{"Content-Type": "text/plain"}, {"Content-Type": "application/xml"}, {}]),
        st.binary(max_size=50),
    ),
)


def test_ten_thousand_malformed_bodies_only_get_4xx(receiver, store) -> None:
    seen: dict[int, int] = {}
    with httpx.Client(base_url=receiver.url, timeout=10) as http:

        @hsettings(max_examples=10_000, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=malformed)
        def check(case) -> None:  # type: ignore[no-untyped-def]
            headers, body = case
            response = http.post("/v1/traces", content=body, headers=headers)
            seen[response.status_code] = seen.get(response.status_code, 0) + 1
            assert 400 <= response.status_code < 500, (headers, body[:80], response.text[:200])

        check()
        assert http.get("/healthz").status_code == 200  # still up
    assert sum(seen.values()) >= 10_000
    with reader(store).connect() as conn:
        assert conn.execute(select(func.count()).select_from(IngestedBatch.__table__)).scalar_one() == 0
    assert snapshot(store) == ([], [])
