"""Driving the load around a game day: an extension keeps arrivals going past the profile's shape, and a
stop signal (or Ctrl-C) ends them early while the run still drains, re-sends unanswered bets and settles."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import threading
import time
from collections.abc import Callable

import httpx
import pytest

from sample_platform.loadgen import (
    HEALTH,
    LoadConfig,
    LoadReport,
    arrival_offsets,
    rate_at,
    render_table,
    run_load,
    run_load_async,
)
from tests.sample_platform.test_loadgen import FakePlatform
from tests.sample_platform.test_loadgen_bounds import HangingBets
from tests.support import wait_until


def offsets(config: LoadConfig) -> list[float]:
    """The arrival times a run of `config` schedules (the same seed gives the same arrivals)."""
    rng = random.Random(f"arrivals-{config.seed}")
    return list(arrival_offsets(config.profile, config.duration, config.rate, rng, extend=config.extend_seconds))


def run_in_loop(
    config: LoadConfig,
    handler: Callable,
    *,
    stop: threading.Event | None = None,
    progress: Callable[[float, dict], None] | None = None,
) -> LoadReport:
    return asyncio.run(run_load_async(config, transport=httpx.MockTransport(handler), stop=stop, progress=progress))


def stop_when(condition: Callable[[], object], stop: threading.Event, what: str) -> threading.Event:
    """Set `stop` from another thread, as a game-day script would, once `condition()` holds. Returns an
    event set if it held; if it never did, `stop` is set anyway so that the failing test ends."""
    came = threading.Event()

    def watch() -> None:
        try:
            wait_until(condition, what, timeout=120)
            came.set()
        except AssertionError:
            pass
        finally:
            stop.set()

    threading.Thread(target=watch, daemon=True).start()
    return came


# ---------------------------------------------------------------------------------------- extension


@pytest.mark.parametrize("profile", ["derby-night", "steady", "spike"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_an_extension_adds_arrivals_at_the_rate_the_curve_has_reached(profile: str, seed: int) -> None:
    d, e, b = 30.0, 20.0, 50.0
    times = list(arrival_offsets(profile, d, b, random.Random(seed), extend=e))
    within = [t for t in times if t < d]
    beyond = [t for t in times if t >= d]
    expected = sum(rate_at(profile, d + (i + 0.5) * 0.01, d, b) * 0.01 for i in range(int(e / 0.01)))
    assert expected > 0.9 * e * b  # past the shape the rate is about the baseline, not zero
    assert len(beyond) == pytest.approx(expected, rel=0.1)
    assert times == sorted(times) and times[-1] < d + e
    # The profile's own arrivals are the same with or without the extension.
    assert within == list(arrival_offsets(profile, d, b, random.Random(seed)))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_lead_in_comes_at_the_baseline_and_shifts_the_curve(seed: int) -> None:
    d, lead, b = 40.0, 15.0, 30.0
    times = list(arrival_offsets("derby-night", d, b, random.Random(seed), lead_in=lead))
    before = [t for t in times if t < lead]
    assert len(before) == pytest.approx(lead * b, rel=0.15)  # the baseline, not the curve's peak
    # The 15x peak comes where the curve puts it, `lead` seconds later: 0.25 d + ramp .. 0.45 d + ramp.
    peak = [t for t in times if lead + 0.25 * d + 4 <= t < lead + 0.45 * d + 4]
    assert len(peak) == pytest.approx(sum(rate_at("derby-night", lead + 0.25 * d + 4 + i * 0.01 - lead, d, b) * 0.01
                                          for i in range(int(0.2 * d / 0.01))), rel=0.1)  # fmt: skip
    assert times[-1] < lead + d
    config = LoadConfig("http://fake", "derby-night", d, b, None, lead_in_seconds=lead)
    assert config.arrival_seconds == lead + d
    assert config.offered_rate(lead / 2) == b
    assert config.offered_rate(lead + 0.4 * d) == rate_at("derby-night", 0.4 * d, d, b) == 15 * b
    with pytest.raises(ValueError, match="lead_in_seconds must be 0 or a positive number"):
        LoadConfig("http://fake", "derby-night", d, b, None, lead_in_seconds=-1)


def test_a_curve_anchored_on_the_wall_clock_starts_then_whatever_setup_took() -> None:
    answered: list[float] = []

    def slow_setup(request: httpx.Request) -> httpx.Response:
        if not answered:
            time.sleep(0.3)  # a slow first answer (setup): the lead-in shrinks by the time it took
        answered.append(time.monotonic())
        return httpx.Response(200, json={"status": "ok"})

    anchor = time.time() + 1.5
    config = LoadConfig("http://fake", "steady", 0.5, 20.0, None, mix="health", sse_subscribers=0, curve_at=anchor)
    report = run_in_loop(config, slow_setup)
    assert report.config.curve_at is None
    assert 0 < report.config.lead_in_seconds < 1.5
    late = LoadConfig("http://fake", "steady", 0.5, 20.0, None, mix="health", sse_subscribers=0, curve_at=1.0)
    answered.clear()
    assert run_in_loop(late, slow_setup).config.lead_in_seconds == 0  # an anchor in the past: no lead-in
    with pytest.raises(ValueError, match="curve_at must be a time"):
        LoadConfig("http://fake", "steady", 0.5, 20.0, None, curve_at=float("nan"))


def test_an_extended_run_sends_the_extended_arrivals_and_no_more() -> None:
    started: list[float] = []

    def health(request: httpx.Request) -> httpx.Response:
        started.append(time.monotonic())
        return httpx.Response(200, json={"status": "ok"})

    config = LoadConfig(
        "http://fake", "steady", 0.5, 40.0, None, mix="health", sse_subscribers=0, extend_seconds=1.5, seed=4
    )
    planned = offsets(config)
    shape_only = [t for t in planned if t < config.duration]
    report = run_in_loop(config, health)
    out = report.to_dict()
    assert len(planned) > len(shape_only) + 20  # about 60 arrivals in the 1.5 s extension
    assert out["arrivals"] == len(planned) == len(started) == out["routes"][HEALTH]["ok"]
    assert started[-1] - started[0] > config.duration  # requests went on past the profile's shape
    assert out["offered_rate"] == pytest.approx(len(planned) / 2.0, abs=0.01)
    assert out["stopped_at_s"] is None and not any("stopped early" in note for note in out["notes"])
    assert "0.5 s + 1.5 s extended" in render_table(report)


class ShedsEveryFirstTry(FakePlatform):
    """The first try of every bet is shed (503, Retry-After 0); notes when each bet was first tried."""

    def __init__(self) -> None:
        super().__init__()
        self.first_tried: dict[str, float] = {}
        self.load_started: float | None = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if self.load_started is None and not path.startswith(("/v1/admin", "/v1/accounts")):
            self.load_started = time.monotonic()  # the first arrival: the load phase has begun
        return super().__call__(request)

    def bet(self, request: httpx.Request, body: dict) -> httpx.Response:
        key = request.headers["idempotency-key"]
        if key not in self.first_tried:
            self.first_tried[key] = time.monotonic()
            return httpx.Response(
                503,
                headers={"Retry-After": "0", "content-type": "application/problem+json"},
                content=b'{"type": "/problems/overloaded", "status": 503}',
            )
        return super().bet(request, body)


def test_bets_in_the_extension_are_retried_during_the_load_not_left_for_after_it() -> None:
    fake = ShedsEveryFirstTry()
    config = LoadConfig(
        "http://fake", "steady", 0.5, 30.0, "admin", players=2, markets=1, sse_subscribers=0, extend_seconds=3.0
    )
    out = run_in_loop(config, fake).to_dict()
    assert fake.load_started is not None
    after_the_shape = [key for key, t in fake.first_tried.items() if t > fake.load_started + config.duration]
    assert len(after_the_shape) > 10
    # Retries run until the extension ends: only bets shed in its last moments wait for the after-load re-send.
    assert out["bets_resent_after_load"] < len(after_the_shape) / 2
    assert out["bets_unknown"] == 0 and out["bets_accepted"] == len(fake.bets)
    assert out["settlement"]["all_settled"]


# ---------------------------------------------------------------------------------------- stop


def test_a_stop_ends_the_arrivals_and_the_run_still_settles_every_bet_and_market() -> None:
    fake = FakePlatform()
    config = LoadConfig("http://fake", "steady", 120.0, 20.0, "admin", players=3, markets=1, sse_subscribers=1)
    stop = threading.Event()
    came = stop_when(lambda: fake.bet_requests >= 5, stop, "five bets")
    report = run_in_loop(config, fake, stop=stop)
    out = report.to_dict()

    assert came.is_set(), "no bets were sent"
    assert report.stopped_at is not None and out["stopped_at_s"] == pytest.approx(report.stopped_at, abs=0.001)
    # Nothing scheduled after the stop was launched: the arrivals are a prefix of the planned ones.
    assert 0 < out["arrivals"] <= len([t for t in offsets(config) if t <= report.stopped_at])
    assert out["arrivals"] < len(offsets(config)) / 2
    assert out["offered_rate"] == pytest.approx(out["arrivals"] / report.stopped_at, abs=0.01)
    assert any(f"stopped early, {report.stopped_at:.1f} s into the 120 s planned" in n for n in out["notes"])
    assert "the arrivals were stopped early" in render_table(report)
    # The rest of the run is as after a normal end.
    assert out["bets_unknown"] == 0 and out["bets_accepted"] == len(fake.bets) >= 1
    assert out["settlement"]["all_settled"] and out["settlement"]["settled"] == len(fake.bets)
    assert out["generator_errors"] == {}


def test_a_stop_is_seen_while_the_next_arrival_is_far_away() -> None:
    fake, seen = FakePlatform(), []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return fake(request)

    # At 0.005 arrivals/s this seed's first arrival is due ~180 s in: the schedule is asleep when the stop comes.
    config = LoadConfig("http://fake", "steady", 240.0, 0.005, "admin", players=1, markets=1, sse_subscribers=0, seed=5)
    assert offsets(config)[0] > 150
    stop, loading = threading.Event(), threading.Event()
    came = stop_when(loading.is_set, stop, "the load phase")

    def progress(elapsed: float, snapshot: dict) -> None:
        if snapshot["phase"] == "load":
            loading.set()

    report = run_in_loop(config, handler, stop=stop, progress=progress)
    assert came.is_set()
    assert report.arrivals == 0
    assert report.stopped_at is not None and report.stopped_at < offsets(config)[0]
    assert report.to_dict()["settlement"]["all_settled"]
    assert not any(path.startswith(("/v1/bets", "/v1/wallet", "/v1/markets/")) for path in seen)


def test_a_stop_set_before_the_run_sends_no_arrivals_and_still_settles() -> None:
    fake = FakePlatform()
    config = LoadConfig("http://fake", "derby-night", 60.0, 20.0, "admin", players=2, markets=2, sse_subscribers=0)
    stop = threading.Event()
    stop.set()
    out = run_in_loop(config, fake, stop=stop).to_dict()
    assert out["arrivals"] == 0 and out["stopped_at_s"] == 0.0 and fake.bet_requests == 0
    assert len(out["settlement"]["markets"]) == 2 and out["settlement"]["all_settled"]


class StopAtThirdBet(HangingBets):
    """Hanging bets, and the stop set by the third bet's arrival, in the run's own loop: the stop is seen
    at the schedule's next poll (0.25 s), before any first attempt can time out (1 s) and be retried."""

    def __init__(self, stop: threading.Event) -> None:
        super().__init__()
        self.stop = stop

    async def __call__(self, request: httpx.Request) -> httpx.Response:  # type: ignore[override]
        if (request.method, request.url.path) == ("POST", "/v1/bets") and len(self.bets) >= 2:
            self.stop.set()
        return await super().__call__(request)


def test_after_a_stop_no_retry_starts_and_the_drain_cuts_nothing() -> None:
    stop = threading.Event()
    fake = StopAtThirdBet(stop)
    config = LoadConfig(
        "http://fake", "steady", 120.0, 20.0, "admin", players=2, markets=1, sse_subscribers=0,
        request_timeout=1.0, settle_timeout=3.0,
    )  # fmt: skip
    report = run_in_loop(config, fake, stop=stop)
    assert report.stopped_at is not None and report.arrivals >= 3
    # The bets in flight at the stop ended by their own deadline, and none was tried again under the
    # retries it would still have had before the 120 s: the drain had nothing left to cut.
    assert report.bet_retries == 0
    assert report.cancelled_at_end == 0
    assert report.bets_unknown > 0  # said honestly
    assert report.to_dict()["settlement"]["markets"]


class RefusedFirstTries(FakePlatform):
    """Each bet's first try is refused 503 with Retry-After: 1 (nothing committed) and any later try
    commits; the stop is set by the third bet's first try, while the first two wait out their backoff."""

    def __init__(self, stop: threading.Event) -> None:
        super().__init__()
        self.stop = stop

    def bet(self, request: httpx.Request, body: dict) -> httpx.Response:
        key = request.headers["idempotency-key"]
        sent = self.attempts.setdefault(key, [])
        sent.append(request.content.decode())
        if len(sent) > 1:
            self.bets.setdefault(key, (self.new_id(), sent[0]))
            return httpx.Response(201, json={"id": self.bets[key][0], "status": "open"})
        if len(self.attempts) >= 3:
            self.stop.set()
        problem = b'{"type": "/problems/database-busy", "status": 503, "retryable": true}'
        return httpx.Response(
            503, headers={"Retry-After": "1", "content-type": "application/problem+json"}, content=problem
        )


def test_a_retry_waiting_out_its_backoff_at_the_stop_is_not_sent() -> None:
    stop = threading.Event()
    fake = RefusedFirstTries(stop)
    config = LoadConfig("http://fake", "steady", 120.0, 20.0, "admin", players=2, markets=1, sse_subscribers=0)
    report = run_in_loop(config, fake, stop=stop)
    assert report.stopped_at is not None and len(fake.attempts) >= 3
    # Every bet's backoff (at least the 1 s asked) outlasted the stop: each bet was left for the
    # re-send after the load, with its key, and committed then; none was retried during the drain.
    assert report.bet_retries == 0
    assert report.bets_resent_after_load == len(fake.attempts)
    assert all(len(sent) == 2 for sent in fake.attempts.values()), fake.attempts
    assert report.bets_accepted == len(fake.attempts) == len(fake.bets) and report.bets_unknown == 0
    assert report.to_dict()["settlement"]["all_settled"]


def test_the_first_ctrl_c_stops_the_arrivals_and_the_report_still_comes_back() -> None:
    if threading.current_thread() is not threading.main_thread() or (
        signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        pytest.skip("Ctrl-C is only handled from the main thread with the default SIGINT handler")
    fake = FakePlatform()
    config = LoadConfig("http://fake", "steady", 120.0, 20.0, "admin", players=2, markets=1, sse_subscribers=0)
    stop, stopped_by_ctrl_c = threading.Event(), threading.Event()

    def interrupt() -> None:
        try:
            wait_until(lambda: fake.bet_requests >= 3, "three bets", timeout=120)
            os.kill(os.getpid(), signal.SIGINT)
            wait_until(stop.is_set, "the stop after Ctrl-C", timeout=60)
            stopped_by_ctrl_c.set()
        except AssertionError:
            pass
        finally:
            stop.set()  # so a failing test ends instead of hanging

    interrupter = threading.Thread(target=interrupt, daemon=True)
    interrupter.start()
    try:
        report = run_load(config, show_progress=False, stop=stop, transport=httpx.MockTransport(fake))
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C interrupted the run instead of stopping its arrivals")
    interrupter.join()
    assert stopped_by_ctrl_c.is_set() and report.stopped_at is not None
    assert report.to_dict()["settlement"]["all_settled"] and report.bets_unknown == 0
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Ctrl-C means Ctrl-C again
