"""Benchmark: do slow strangers cost bettors anything? Bettors' bet times with and without 64 slow senders.

    .venv/bin/python -m bench.slow_clients                   # SQLite + PostgreSQL, 30 s per phase
    .venv/bin/python -m bench.slow_clients --quick           # 8 s per phase
    .venv/bin/python -m bench.slow_clients --skip-postgres --format json > result.json

The platform runs as `controlplane platform serve` in its own process with its defaults (the body
deadline PLATFORM_BODY_READ_TIMEOUT_SECONDS, the per-client limits), the business limit on bets per
minute raised out of the way. For each database, two phases of --seconds each, the same 10 bettors
(each with its own account and token) placing bets one after another with --pause between:

- baseline: the bettors alone;
- attack: beside --slow connections held open all the time (one reopened as soon as one is answered):
  half send `POST /v1/login` with no token, half `POST /v1/bets` with one player's valid token, each
  a byte of its body and no more.

Printed per phase: the bettors' bets and how many were accepted (201), their p50 and p99 answer
times, and attack over baseline for both (the baseline is measured in the same run); for the attack
phase, how the strangers were answered (408 after the body deadline, 429 past the per-client caps)
and whether the bet route answered any 5xx or shed anything.
"""

from __future__ import annotations

import asyncio
import re
import statistics
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from bench.postgres import on_each_database
from bench.support import BenchmarkParser, PlatformServer, emit, log, percentile, setup_logging

QUICK = {"seconds": 8.0}
BETTORS = 10
SETTINGS = {"PLATFORM_MAX_BETS_PER_MINUTE": "100000", "PLATFORM_PRICE_MOVER_INTERVAL_SECONDS": "0"}


def setup(server: PlatformServer) -> dict[str, Any]:
    admin = {"Authorization": f"Bearer {server.admin_token}"}
    with httpx.Client(base_url=server.url, timeout=60, headers=admin) as http:

        def account() -> dict[str, Any]:
            made = http.post("/v1/accounts", json={"username": f"b{uuid.uuid4().hex[:10]}"})
            made.raise_for_status()
            http.post("/v1/admin/deposit", json={"account_id": made.json()["id"], "amount_minor": 10**9})
            return made.json()

        bettors = [account()["token"] for _ in range(BETTORS)]
        stranger = account()["token"]
        market = http.post(
            "/v1/admin/markets", json={"name": "Bench cup", "selections": [{"name": n, "odds": "2.00"} for n in "AB"]}
        )
        market.raise_for_status()
    return {"bettors": bettors, "stranger": stranger, "market": market.json()}


async def bettor(url: str, token: str, market: dict[str, Any], until: float, pause: float) -> list[tuple[int, float]]:
    selection = market["selections"][0]["id"]
    seen: list[tuple[int, float]] = []
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        while time.monotonic() < until:
            body = {
                "market_id": market["id"],
                "selection_id": selection,
                "stake_minor": 100,
                "odds": "2.00",
                "price_version": market["price_version"],
                "accept_price_change": "none",
            }
            headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": str(uuid.uuid4())}
            t0 = time.perf_counter()
            answer = await http.post("/v1/bets", json=body, headers=headers)
            seen.append((answer.status_code, time.perf_counter() - t0))
            await asyncio.sleep(pause)
    return seen


async def stranger(url: str, path: str, token: str | None, until: float, answers: Counter[str]) -> None:
    host, port = url.removeprefix("http://").split(":")
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 500\r\n{auth}"
        f"Idempotency-Key: {uuid.uuid4()}\r\n\r\n{{"
    ).encode()
    while time.monotonic() < until:
        try:
            reader, writer = await asyncio.open_connection(host, int(port))
        except OSError as exc:
            answers[f"connect failed: {type(exc).__name__}"] += 1
            await asyncio.sleep(0.1)
            continue
        try:
            writer.write(head)
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), timeout=max(0.01, until - time.monotonic()))
            answers[line.decode("latin-1").strip() or "closed"] += 1
        except (TimeoutError, OSError):
            pass  # still held when the phase ended
        finally:
            writer.close()
        await asyncio.sleep(0.05)  # a refused stranger comes straight back, but not in a tight loop


def _bet_route_counts(url: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics", timeout=30).text
    out = {"5xx": 0.0, "shed": 0.0}
    for line in text.splitlines():
        if line.startswith("platform_http_requests_total{") and 'route="/v1/bets"' in line:
            if re.search(r'code="5\d\d"', line):
                out["5xx"] += float(line.rsplit(" ", 1)[1])
        elif line.startswith('platform_shed_requests_total{route="POST /v1/bets"}'):
            out["shed"] += float(line.rsplit(" ", 1)[1])
    return out


async def phase(server: PlatformServer, fixture: dict[str, Any], seconds: float, pause: float, slow: int):
    until = time.monotonic() + seconds
    answers: Counter[str] = Counter()
    strangers = [
        stranger(server.url, "/v1/login", None, until, answers)
        if i % 2
        else stranger(server.url, "/v1/bets", fixture["stranger"], until, answers)
        for i in range(slow)
    ]
    bettors = [bettor(server.url, t, fixture["market"], until, pause) for t in fixture["bettors"]]
    results = await asyncio.gather(*bettors, *strangers)
    seen = [s for r in results[: len(bettors)] for s in r]  # type: ignore[union-attr]
    ms = sorted(t * 1e3 for _, t in seen)
    statuses = Counter(s for s, _ in seen)
    return {
        "bets": len(seen),
        "accepted": statuses.get(201, 0),
        "statuses": dict(sorted(statuses.items())),
        "p50_ms": round(statistics.median(ms), 1) if ms else None,
        "p99_ms": round(p, 1) if (p := percentile(ms, 99)) is not None else None,
        "strangers": dict(answers.most_common()),
    }


def run_database(label: str, url: str, workdir: Path, seconds: float, pause: float, slow: int) -> dict[str, Any]:
    with PlatformServer(url, workdir, SETTINGS) as server:
        fixture = setup(server)
        log.info(f"[{label}] baseline: {BETTORS} bettors for {seconds:g} s ...")
        baseline = asyncio.run(phase(server, fixture, seconds, pause, 0))
        before = _bet_route_counts(server.url)
        log.info(f"[{label}] attack: the same bettors beside {slow} slow senders for {seconds:g} s ...")
        attack = asyncio.run(phase(server, fixture, seconds, pause, slow))
        after = _bet_route_counts(server.url)
    attack["bet_route_5xx"] = after["5xx"] - before["5xx"]
    attack["bet_route_shed"] = after["shed"] - before["shed"]
    out: dict[str, Any] = {"database": label, "baseline": baseline, "attack": attack}
    for key in ("p50_ms", "p99_ms"):
        base, under = baseline[key], attack[key]
        out[f"{key.removesuffix('_ms')}_attack_over_baseline"] = round(under / base, 2) if base and under else None
    return out


def render_text(report: dict[str, Any]) -> str:
    lines = [f"{BETTORS} bettors' bets alone, then beside {report['slow']} slow senders ({report['seconds']:g} s each)"]
    for db in report["databases"]:
        if "skipped" in db or "failed" in db:
            lines.append(f"{db['database']}: {db.get('skipped') or db.get('failed')}")
            continue
        lines.append(f"{db['database']}:")
        for name in ("baseline", "attack"):
            p = db[name]
            lines.append(
                f"  {name:<8} {p['accepted']}/{p['bets']} bets accepted, p50 {p['p50_ms']} ms, p99 {p['p99_ms']} ms"
                + ("" if p["accepted"] == p["bets"] else f"  statuses {p['statuses']}")
            )
        attack = db["attack"]
        lines.append(
            f"  attack/baseline: p50 {db['p50_attack_over_baseline']}x, p99 {db['p99_attack_over_baseline']}x; "
            f"bet route during the attack: {attack['bet_route_5xx']:g} 5xx, {attack['bet_route_shed']:g} shed"
        )
        answered = ", ".join(f"{n} x {line}" for line, n in attack["strangers"].items()) or "none answered"
        lines.append(f"  strangers answered: {answered}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = BenchmarkParser("bench.slow_clients", __doc__, QUICK)
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each phase (30)")
    parser.add_argument("--slow", type=int, default=64, help="slow connections held during the attack (64)")
    parser.add_argument("--pause", type=float, default=0.1, help="a bettor's pause between bets, seconds (0.1)")
    args = parser.parse(argv)
    if args.seconds <= 0 or args.slow < 0 or args.pause < 0:
        parser.error("--seconds must be positive, --slow and --pause not negative")
    setup_logging()
    started = time.monotonic()
    report: dict[str, Any] = {"seconds": args.seconds, "slow": args.slow, "databases": []}
    with tempfile.TemporaryDirectory(prefix="bench-slow-") as tmp:
        workdir = Path(tmp)
        report["databases"] = on_each_database(
            args,
            workdir,
            "bench_slow",
            lambda label, url: run_database(label, url, workdir, args.seconds, args.pause, args.slow),
        )
    emit(report, args.format, render_text, started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
