"""Slow strangers beside bettors, through the real exporter to the collector: 64 connections that send
their bodies a byte at a time (32 without a token to /v1/login, 32 with one player's token to
/v1/bets) hold no place a bettor needs. Every bettor's bet is accepted, and the bet-placement SLI
counts exactly the bettors' bets, none bad: the strangers' 408s and 429s are counted apart."""

from __future__ import annotations

import re
import socket
import threading
import uuid

import httpx

from sample_platform.client import PlatformClient
from tests.collectors.test_otlp_sdk import totals
from tests.conftest import ADMIN_TOKEN, bet_body
from tests.support import PlatformProcess, wait_until

BETTORS = 10
BETS_EACH = 8
SLOW_LOGINS = 32
SLOW_BETS = 32
CLIENT_MAX_IN_FLIGHT = 16


def _slow(url: str, path: str, token: str | None) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    conn = socket.create_connection((host, int(port)), timeout=120)
    auth = f"Authorization: Bearer {token}\r\n".encode() if token else b""
    conn.sendall(
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 300\r\n".encode()
        + auth
        + f"Idempotency-Key: {uuid.uuid4()}\r\n\r\n{{".encode()
    )
    return conn


def _metric(text: str, name: str, labels: str) -> float:
    found = re.search(rf"^{name}\{{{re.escape(labels)}\}} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def test_slow_strangers_hold_no_place_a_bettor_needs(receiver, store, tmp_path, database_url) -> None:
    platform = PlatformProcess(
        database_url,
        tmp_path / "outbox.jsonl",
        PLATFORM_OTLP_ENDPOINT=receiver.url,
        PLATFORM_OTLP_METRIC_INTERVAL_SECONDS="1",
        PLATFORM_BODY_READ_TIMEOUT_SECONDS="10",
        PLATFORM_CLIENT_MAX_IN_FLIGHT=str(CLIENT_MAX_IN_FLIGHT),
    )
    slow: list[socket.socket] = []
    try:
        admin = PlatformClient(platform.url, admin_token=ADMIN_TOKEN)
        bettors = [admin.create_account(f"b{uuid.uuid4().hex[:8]}") for _ in range(BETTORS)]
        stranger = admin.create_account(f"s{uuid.uuid4().hex[:8]}")
        for bettor in bettors:
            admin.deposit(bettor["id"], 1_000_000)
        market = admin.create_market("Slowloris cup", [("A", "2.00"), ("B", "2.00")])
        slow += [_slow(platform.url, "/v1/login", None) for _ in range(SLOW_LOGINS)]
        slow += [_slow(platform.url, "/v1/bets", stranger["token"]) for _ in range(SLOW_BETS)]
        with httpx.Client(base_url=platform.url, timeout=60) as http:
            # The stranger's bets past its in-flight cap were refused at once: the rest are held.
            wait_until(
                lambda: (
                    _metric(http.get("/metrics").text, "platform_rate_limited_total", 'limit="client_in_flight"')
                    == SLOW_BETS - CLIENT_MAX_IN_FLIGHT
                ),
                "the stranger's bets past its cap were refused",
            )
        statuses: list[int] = []
        lock = threading.Lock()

        def bet(token: str) -> None:
            with PlatformClient(platform.url) as client:
                for _ in range(BETS_EACH):
                    code = client.place_bet(token, bet_body(market, stake=100)).status_code
                    with lock:
                        statuses.append(code)

        threads = [threading.Thread(target=bet, args=(b["token"],)) for b in bettors]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert statuses == [201] * (BETTORS * BETS_EACH)
        with httpx.Client(base_url=platform.url, timeout=60) as http:
            text = http.get("/metrics").text
        held = SLOW_LOGINS + CLIENT_MAX_IN_FLIGHT
        assert _metric(text, "platform_shed_requests_total", 'route="POST /v1/bets"') == 0
        answers = []
        for conn in slow:
            conn.settimeout(120)
            answers.append(conn.recv(64).split(b"\r\n", 1)[0])
        assert answers.count(b"HTTP/1.1 408 Request Timeout") == held
        assert answers.count(b"HTTP/1.1 429 Too Many Requests") == SLOW_BETS - CLIENT_MAX_IN_FLIGHT
        admin.close()
    finally:
        for conn in slow:
            conn.close()
        platform.stop()  # SIGTERM: the exporters flush on the way out
    counted = totals(store)
    assert counted["bet-placement"] == (BETTORS * BETS_EACH, 0)
    assert "login" not in counted  # the strangers' logins never came whole: no event of the slice
    registry = receiver.app.state.metrics.registry
    refused = registry.get_sample_value(
        "collector_client_refusals_total", {"signal": "traces", "slice": "bet-placement"}
    )
    assert refused == SLOW_BETS
    logins = registry.get_sample_value("collector_client_refusals_total", {"signal": "traces", "slice": "login"})
    assert logins == SLOW_LOGINS
