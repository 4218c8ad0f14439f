"""Benchmark: does `POST /v1/login` tell a known username from an unknown one by its answers or its time?

    .venv/bin/python -m bench.login_timing                   # SQLite + PostgreSQL, 40 attempts per name
    .venv/bin/python -m bench.login_timing --quick           # 12 attempts per name
    .venv/bin/python -m bench.login_timing --skip-postgres --format json > result.json

The platform runs as `controlplane platform serve` in its own process with the default scrypt cost
(PLATFORM_PASSWORD_SCRYPT_LOG2_N) and the rate limits raised out of the way, so that every attempt
reaches the password check and the lockout. For each database: one account; then, alternating so that
both see the same machine, --attempts wrong passwords for its name and as many for a name no account
has. The first PLATFORM_LOGIN_MAX_FAILURES of each are refused with 401 and the rest with 429 (the
name is locked, whether an account has it or not). Printed: both status sequences (they must be
equal), the median and p95 answer time of each name for 401 and for 429, and the unknown name's median
over the known name's ("unknown/known", the baseline measured in the same run; 1.00 means no gap), and
the locked answers' median over the 401s' (a lockout that skipped the password check would answer
several times faster).
"""

from __future__ import annotations

import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench.postgres import on_each_database
from bench.support import BenchmarkParser, PlatformServer, emit, log, percentile, setup_logging

QUICK = {"attempts": 12}
SETTINGS = {
    "PLATFORM_LOGIN_ATTEMPTS_PER_MINUTE_ACCOUNT": "100000",
    "PLATFORM_LOGIN_ATTEMPTS_PER_MINUTE_ADDRESS": "100000",
    "PLATFORM_PRICE_MOVER_INTERVAL_SECONDS": "0",
}


def attempts(server: PlatformServer, count: int) -> dict[str, Any]:
    admin = {"Authorization": f"Bearer {server.admin_token}"}
    known = f"known-{uuid.uuid4().hex[:8]}"
    unknown = f"nobody-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=server.url, timeout=60) as http:
        created = http.post("/v1/accounts", json={"username": known, "password": "the right password"}, headers=admin)
        created.raise_for_status()
        times: dict[str, list[tuple[int, float]]] = {"known": [], "unknown": []}
        for _ in range(count):
            for name, username in (("known", known), ("unknown", unknown)):
                t0 = time.perf_counter()
                answer = http.post("/v1/login", json={"username": username, "password": "a wrong password"})
                times[name].append((answer.status_code, time.perf_counter() - t0))
    out: dict[str, Any] = {"statuses": {name: [s for s, _ in seen] for name, seen in times.items()}}
    for name, seen in times.items():
        for status in (401, 429):
            ms = sorted(t * 1e3 for s, t in seen if s == status)
            out[f"{name}_{status}"] = {
                "n": len(ms),
                "median_ms": round(statistics.median(ms), 2) if ms else None,
                "p95_ms": round(p, 2) if (p := percentile(ms, 95)) is not None else None,
            }
    for status in (401, 429):
        known_ms, unknown_ms = out[f"known_{status}"]["median_ms"], out[f"unknown_{status}"]["median_ms"]
        out[f"unknown_over_known_{status}"] = round(unknown_ms / known_ms, 3) if known_ms and unknown_ms else None
    k401, k429 = out["known_401"]["median_ms"], out["known_429"]["median_ms"]
    out["locked_over_refused"] = round(k429 / k401, 3) if k401 and k429 else None
    out["same_answers"] = out["statuses"]["known"] == out["statuses"]["unknown"]
    return out


def run_database(label: str, url: str, workdir: Path, count: int) -> dict[str, Any]:
    log.info(f"[{label}] {count} wrong passwords for a known name and as many for an unknown one ...")
    with PlatformServer(url, workdir, SETTINGS) as server:
        return {"database": label, **attempts(server, count)}


def render_text(report: dict[str, Any]) -> str:
    lines = [f"Login answers and times, known name vs unknown name ({report['attempts']} wrong passwords each)"]
    for db in report["databases"]:
        if "skipped" in db or "failed" in db:
            lines.append(f"{db['database']}: {db.get('skipped') or db.get('failed')}")
            continue
        lines.append(f"{db['database']}: same status sequence: {'yes' if db['same_answers'] else 'NO'}")
        lines.append(f"  known:   {' '.join(map(str, db['statuses']['known']))}")
        lines.append(f"  unknown: {' '.join(map(str, db['statuses']['unknown']))}")
        for status in (401, 429):
            k, u = db[f"known_{status}"], db[f"unknown_{status}"]
            lines.append(
                f"  {status}: known median {k['median_ms']} ms (p95 {k['p95_ms']}), unknown median {u['median_ms']} ms "
                f"(p95 {u['p95_ms']}): unknown/known = {db[f'unknown_over_known_{status}']}x"
            )
        lines.append(f"  locked (429) over refused (401), known name: {db['locked_over_refused']}x")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = BenchmarkParser("bench.login_timing", __doc__, QUICK)
    parser.add_argument("--attempts", type=int, default=40, help="wrong passwords per name (40)")
    args = parser.parse(argv)
    if args.attempts < 6:
        parser.error("--attempts must be at least 6, past the lockout")
    setup_logging()
    started = time.monotonic()
    report: dict[str, Any] = {"attempts": args.attempts, "databases": []}
    with tempfile.TemporaryDirectory(prefix="bench-login-") as tmp:
        workdir = Path(tmp)
        report["databases"] = on_each_database(
            args, workdir, "bench_login", lambda label, url: run_database(label, url, workdir, args.attempts)
        )
    emit(report, args.format, render_text, started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
