"""The Prometheus scraper against real HTTP servers (prometheus-client's own exporter and a tiny
ThreadingHTTPServer), on SQLite and PostgreSQL: what is kept, how it is spelled, what a down target
leaves behind, the read API, retention and the loop."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from sqlalchemy import select

from collectors.scraper import Scraper, history, latest, target_status
from controlplane.demo.stack import free_port
from controlplane.storage import reader
from controlplane.store import ScrapedSample, ScrapeTarget

KEEP = ["platform_outbox_depth", "platform_shed_requests_total", "platform_faults_active"]
T0 = datetime(2025, 5, 17, 19, 45, tzinfo=UTC)


class FakeClock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class Exporter:
    url: str
    registry: CollectorRegistry
    depth: Gauge
    shed: Counter


@pytest.fixture
def exporter() -> Iterator[Exporter]:
    """prometheus-client's own /metrics server on a fresh registry and a free port."""
    registry = CollectorRegistry()
    depth = Gauge("platform_outbox_depth", "Outbox depth.", registry=registry)
    shed = Counter("platform_shed_requests", "Shed requests.", ["route"], registry=registry)
    faults = Gauge("platform_faults_active", "Active faults.", ["zone", "kind"], registry=registry)
    other = Gauge("platform_odds_subscribers", "Not selected.", registry=registry)
    depth.set(7)
    shed.labels(route="POST /v1/bets").inc(3)
    shed.labels(route="GET /v1/markets").inc()
    # A value the exposition must escape (label order is covered by a hand-written exposition below:
    # prometheus-client sorts label names itself).
    faults.labels(zone="eu-west", kind='lat"ency\\x').set(2)
    other.set(99)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        yield Exporter(f"http://127.0.0.1:{server.server_port}/metrics", registry, depth, shed)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class TextServer:
    """Serves whatever `routes[path] = (status, body)` says; `/slow` answers only when released."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, str]] = {}
        self.release = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/slow":
                    owner.release.wait(10)
                if self.path == "/trickle":
                    self.trickle()
                    return
                status, body = owner.routes.get(self.path, (404, "not found"))
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except OSError:
                    pass  # the scraper gave up on /slow already

            def trickle(self) -> None:
                """A valid exposition, one line every 0.1 s for 4 s: no single read waits long."""
                lines = [f'platform_outbox_depth{{n="{i}"}} {i}\n'.encode() for i in range(40)]
                self.send_response(200)
                self.send_header("Content-Length", str(sum(map(len, lines))))
                self.end_headers()
                try:
                    for line in lines:
                        self.wfile.write(line)
                        self.wfile.flush()
                        if owner.release.wait(0.1):
                            return
                except OSError:
                    pass  # the scraper gave up

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.base = f"http://127.0.0.1:{self.server.server_port}"

    def url(self, path: str) -> str:
        return self.base + path


@pytest.fixture
def text_server() -> Iterator[TextServer]:
    served = TextServer()
    served.thread.start()
    try:
        yield served
    finally:
        served.release.set()
        served.server.shutdown()
        served.server.server_close()
        served.thread.join(timeout=5)


@pytest.fixture
def refused_url() -> str:
    """A port that was free a moment ago: nothing listens, so connecting is refused."""
    return f"http://127.0.0.1:{free_port()}/metrics"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_scraper(store, clock):  # type: ignore[no-untyped-def]
    made: list[Scraper] = []

    def make(targets: list[str], metrics: list[str] = KEEP, **options: object) -> Scraper:
        scraper = Scraper(store, targets, metrics, clock=clock, timeout=options.pop("timeout", 2.0), **options)
        made.append(scraper)
        return scraper

    yield make
    for scraper in made:
        scraper.close()


def stored(store, target: str | None = None) -> set[tuple[str, str, float]]:  # type: ignore[no-untyped-def]
    t = ScrapedSample.__table__
    query = select(t.c.name, t.c.labels, t.c.value)
    if target is not None:
        query = query.where(t.c.target == target)
    with reader(store).connect() as conn:
        return {(r.name, r.labels, r.value) for r in conn.execute(query)}


def target_row(store, target: str):  # type: ignore[no-untyped-def]
    t = ScrapeTarget.__table__
    with reader(store).connect() as conn:
        return conn.execute(select(t).where(t.c.target == target)).one()


def test_selected_series_are_kept_with_canonical_labels(store, exporter, make_scraper, clock) -> None:
    [result] = make_scraper([exporter.url]).scrape_once()

    assert result.up and result.error is None and result.stored
    assert stored(store) == {
        ("up", "{}", 1.0),
        ("platform_outbox_depth", "{}", 7.0),
        ("platform_shed_requests_total", '{"route":"POST /v1/bets"}', 3.0),
        ("platform_shed_requests_total", '{"route":"GET /v1/markets"}', 1.0),
        # Keys sorted, no spaces, the escaped value read back as it was set.
        ("platform_faults_active", '{"kind":"lat\\"ency\\\\x","zone":"eu-west"}', 2.0),
    }  # platform_odds_subscribers and the counters' _created samples are not selected: dropped
    row = target_row(store, exporter.url)
    assert (row.up, row.last_error) == (1, None)
    assert row.last_scrape.replace(tzinfo=UTC) == T0
    assert 0 <= row.scrape_seconds < 2


def test_counters_follow_their_value_across_scrapes(store, exporter, make_scraper, clock) -> None:
    scraper = make_scraper([exporter.url])
    scraper.scrape_once()
    exporter.shed.labels(route="POST /v1/bets").inc(4)
    exporter.depth.set(0)
    clock.advance(seconds=15)
    scraper.scrape_once()

    points = history(store, "platform_shed_requests_total", T0, target=exporter.url)
    bets = [(p.time, p.value) for p in points if p.labels == {"route": "POST /v1/bets"}]
    assert bets == [(T0, 3.0), (T0 + timedelta(seconds=15), 7.0)]
    [depth] = latest(store, name="platform_outbox_depth")
    assert (depth.value, depth.time, depth.target) == (0.0, T0 + timedelta(seconds=15), exporter.url)


def test_refused_target_is_down_and_the_healthy_one_is_still_stored(store, exporter, refused_url, make_scraper) -> None:
    down, healthy = make_scraper([refused_url, exporter.url]).scrape_once()

    assert (down.target, down.up, down.stored) == (refused_url, False, True)
    assert "refused" in down.error.lower()
    assert down.samples == ()
    row = target_row(store, refused_url)
    assert row.up == 0 and "refused" in row.last_error.lower()
    assert stored(store, refused_url) == {("up", "{}", 0.0)}

    assert healthy.up and target_row(store, exporter.url).up == 1
    assert ("platform_outbox_depth", "{}", 7.0) in stored(store, exporter.url)
    assert ("up", "{}", 1.0) in stored(store, exporter.url)


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (503, "platform_outbox_depth 1\n", "HTTP 503"),
        (404, "", "HTTP 404"),
        (200, "<html><body>Service temporarily unavailable</body></html>\n", "unparseable exposition"),
        (200, 'platform_outbox_depth 1\nplatform_faults_active{zone="eu} 2\n', "unparseable exposition"),
    ],
)
def test_bad_answers_mark_the_target_down(store, text_server, make_scraper, status, body, error) -> None:
    text_server.routes["/metrics"] = (status, body)
    url = text_server.url("/metrics")
    [result] = make_scraper([url]).scrape_once()

    assert not result.up and error in result.error
    row = target_row(store, url)
    assert row.up == 0 and error in row.last_error
    # Nothing of a half-parsed exposition is kept, only the outage.
    assert stored(store, url) == {("up", "{}", 0.0)}


def test_a_target_that_hangs_times_out_without_holding_up_the_round(store, text_server, exporter, make_scraper) -> None:
    slow = text_server.url("/slow")
    started = time.monotonic()
    hung, healthy = make_scraper([slow, exporter.url], timeout=0.3).scrape_once()

    assert time.monotonic() - started < 3
    assert not hung.up and "timed out" in hung.error
    assert target_row(store, slow).up == 0
    assert healthy.up and target_row(store, exporter.url).up == 1


def test_a_target_that_trickles_its_body_times_out_as_a_whole(store, text_server, make_scraper) -> None:
    url = text_server.url("/trickle")
    started = time.monotonic()
    [result] = make_scraper([url], timeout=0.5).scrape_once()

    assert time.monotonic() - started < 2  # not the 4 s the body takes
    assert not result.up and "timed out" in result.error
    assert stored(store, url) == {("up", "{}", 0.0)}


def test_a_target_that_comes_back_clears_its_error(store, text_server, make_scraper, clock) -> None:
    url = text_server.url("/metrics")
    scraper = make_scraper([url])
    text_server.routes["/metrics"] = (500, "boom")
    scraper.scrape_once()
    assert target_row(store, url).last_error == "HTTP 500 Internal Server Error"

    text_server.routes["/metrics"] = (200, "# TYPE platform_outbox_depth gauge\nplatform_outbox_depth 4\n")
    clock.advance(seconds=15)
    scraper.scrape_once()

    row = target_row(store, url)
    assert (row.up, row.last_error) == (1, None)
    assert row.last_scrape.replace(tzinfo=UTC) == T0 + timedelta(seconds=15)
    assert [p.value for p in history(store, "up", T0, target=url)] == [0.0, 1.0]


def test_status_never_moves_back_in_time(store, text_server, make_scraper, clock) -> None:
    url = text_server.url("/metrics")
    text_server.routes["/metrics"] = (200, "platform_outbox_depth 4\n")
    scraper = make_scraper([url])
    clock.advance(seconds=30)
    scraper.scrape_once()
    text_server.routes["/metrics"] = (500, "boom")
    clock.advance(seconds=-15)  # a late write from another scraper sharing the store
    scraper.scrape_once()

    row = target_row(store, url)
    assert (row.up, row.last_error) == (1, None)
    assert row.last_scrape.replace(tzinfo=UTC) == T0 + timedelta(seconds=30)


def test_labels_are_stored_canonically_whatever_the_exposition_order(store, text_server, make_scraper) -> None:
    # prometheus-client sorts label names itself; other exporters need not, and spacing may vary.
    text_server.routes["/metrics"] = (
        200,
        'platform_faults_active{zone="eu-west", kind="café",a="1"} 2\n'
        'platform_faults_active{kind="x",zone="eu-west"} 3\n',
    )
    url = text_server.url("/metrics")
    make_scraper([url]).scrape_once()

    assert stored(store, url) == {
        ("up", "{}", 1.0),
        ("platform_faults_active", '{"a":"1","kind":"café","zone":"eu-west"}', 2.0),
        ("platform_faults_active", '{"kind":"x","zone":"eu-west"}', 3.0),
    }


def test_nan_samples_are_skipped_and_the_rest_stored(store, text_server, make_scraper) -> None:
    text_server.routes["/metrics"] = (200, "platform_outbox_depth NaN\nplatform_faults_active 2\n")
    url = text_server.url("/metrics")
    [result] = make_scraper([url]).scrape_once()

    assert result.up and result.stored
    assert stored(store, url) == {("up", "{}", 1.0), ("platform_faults_active", "{}", 2.0)}


def test_latest_and_history_return_what_was_stored(store, exporter, refused_url, make_scraper, clock) -> None:
    scraper = make_scraper([exporter.url, refused_url])
    scraper.scrape_once()
    exporter.depth.set(12)
    clock.advance(minutes=1)
    scraper.scrape_once()
    later = T0 + timedelta(minutes=1)

    newest = {(r.target, r.name, tuple(sorted(r.labels.items()))): (r.value, r.time) for r in latest(store)}
    assert newest == {
        (exporter.url, "up", ()): (1.0, later),
        (exporter.url, "platform_outbox_depth", ()): (12.0, later),
        (exporter.url, "platform_shed_requests_total", (("route", "POST /v1/bets"),)): (3.0, later),
        (exporter.url, "platform_shed_requests_total", (("route", "GET /v1/markets"),)): (1.0, later),
        (exporter.url, "platform_faults_active", (("kind", 'lat"ency\\x'), ("zone", "eu-west"))): (2.0, later),
        (refused_url, "up", ()): (0.0, later),
    }
    assert [(r.target, r.value) for r in latest(store, target=refused_url)] == [(refused_url, 0.0)]
    assert [r.value for r in latest(store, target=exporter.url, name="platform_outbox_depth")] == [12.0]
    assert latest(store, name="no_such_metric") == []

    depth = history(store, "platform_outbox_depth", T0)
    assert [(p.time, p.target, p.labels, p.value) for p in depth] == [
        (T0, exporter.url, {}, 7.0),
        (later, exporter.url, {}, 12.0),
    ]
    assert [p.value for p in history(store, "platform_outbox_depth", T0 + timedelta(seconds=1))] == [12.0]
    assert [p.value for p in history(store, "up", T0, target=refused_url)] == [0.0, 0.0]

    status = {s.target: s for s in target_status(store)}
    assert status[exporter.url].up is True and status[exporter.url].last_scrape == later
    assert status[refused_url].up is False and "refused" in status[refused_url].last_error.lower()


def test_prune_deletes_only_old_samples(store, exporter, make_scraper, clock) -> None:
    scraper = make_scraper([exporter.url])
    scraper.scrape_once()
    first_round = len(stored(store))
    clock.advance(hours=2)
    scraper.scrape_once()

    assert scraper.prune(timedelta(hours=3)) == 0
    assert scraper.prune(timedelta(hours=1)) == first_round == 5
    t = ScrapedSample.__table__
    with reader(store).connect() as conn:
        times = {r[0].replace(tzinfo=UTC) for r in conn.execute(select(t.c.scraped_at))}
    assert times == {T0 + timedelta(hours=2)}
    assert len(latest(store)) == 5


def test_run_scrapes_until_stopped_and_stops_promptly(store, exporter, make_scraper) -> None:
    scraper = make_scraper([exporter.url])
    stop = threading.Event()
    runner = threading.Thread(target=scraper.run, args=(stop, 60.0), daemon=True)
    runner.start()
    deadline = time.monotonic() + 10
    while not stored(store) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert ("platform_outbox_depth", "{}", 7.0) in stored(store)

    stop.set()
    runner.join(timeout=30)
    assert not runner.is_alive()  # it stopped on the event, well inside the 60 s interval


def test_run_logs_a_failing_round_and_tries_again(store, exporter, make_scraper, caplog) -> None:
    scraper = make_scraper([exporter.url])
    real, calls = scraper.scrape_once, []

    def flaky() -> list:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("store went away")
        return real()

    scraper.scrape_once = flaky  # type: ignore[method-assign]
    stop = threading.Event()
    runner = threading.Thread(target=scraper.run, args=(stop, 0.05), daemon=True)
    with caplog.at_level(logging.ERROR, logger="collectors.scraper"):
        runner.start()
        deadline = time.monotonic() + 10
        while not stored(store) and time.monotonic() < deadline:
            time.sleep(0.02)
        stop.set()
        runner.join(timeout=5)

    assert not runner.is_alive()
    assert len(calls) >= 2
    assert ("up", "{}", 1.0) in stored(store)
    assert any("scrape round failed" in r.getMessage() and r.exc_info for r in caplog.records)


def test_from_settings_reads_the_comma_separated_lists(store, store_settings) -> None:
    settings = store_settings.model_copy(
        update={
            "scrape_targets": " http://a/metrics, ,http://b/metrics,http://a/metrics",
            "scrape_metrics": "platform_outbox_depth, up",
            "scrape_interval_seconds": 3.0,
        }
    )
    with Scraper.from_settings(settings, engine=store) as scraper:
        assert scraper.targets == ["http://a/metrics", "http://b/metrics"]
        assert scraper.metrics == {"platform_outbox_depth"}
        assert scraper.timeout == 3.0
