"""`controlplane demo`: the platform on SQLite under a few hundred bets with retries and price moves.

Starts the platform in-process, creates players and markets through its API, places bets from
several client threads (some retried with the same Idempotency-Key, as a client would after a lost
response), moves prices while they do, settles every market, waits for the outbox relay, and
checks the ledger.
"""

from __future__ import annotations

import random
import secrets
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from pydantic import SecretStr
from sqlalchemy.engine import make_url

from collectors.service import create_collector_app
from collectors.sli import sli_rows
from controlplane.clock import utcnow
from controlplane.serving import ThreadedServer
from controlplane.settings import Settings
from controlplane.slices import load_slices
from controlplane.storage import make_engine
from controlplane.store import migrate_store
from sample_platform import db as platform_db
from sample_platform.client import PlatformClient
from sample_platform.ledger import check_ledger
from sample_platform.outbox import OutboxRelay, read_jsonl_events
from sample_platform.server import PlatformServer
from sample_platform.settings import PlatformSettings
from sample_platform.telemetry import setup_telemetry, shutdown_telemetry

PLAYERS = 20
MARKETS = (
    ("Derby: winner", ("Northern Star", "Gallant Fox", "Sea Breeze", "Dark Horse")),
    ("Cup final: match result", ("Home", "Draw", "Away")),
    ("Cup final: over 2.5 goals", ("Over", "Under")),
    ("Title race: champion", ("Rovers", "United", "City")),
)


@dataclass
class DemoSummary:
    bets_requested: int = 0
    accepted: int = 0
    replays: int = 0
    rejections: Counter = field(default_factory=Counter)
    price_moves: int = 0
    settled: Counter = field(default_factory=Counter)
    outbox_events: int = 0
    delivered_events: int = 0
    ledger_ok: bool = False
    ledger_problems: list[str] = field(default_factory=list)
    seconds: float = 0.0


def run_demo(
    settings: Settings,
    platform: PlatformSettings,
    *,
    bets: int = 300,
    out: Callable[[str], None] = print,
    seed: int = 7,
    fresh: bool = True,
) -> DemoSummary:
    """The platform (with `platform` settings) watched by a collector writing to the store of `settings`."""
    rng = random.Random(seed)
    started_at = utcnow()
    url = make_url(platform.database_url)
    if fresh and url.get_backend_name() == "sqlite" and url.database:
        for suffix in ("", "-wal", "-shm"):
            Path(url.database + suffix).unlink(missing_ok=True)
    sink_path = Path(platform.outbox_sink_path)
    if fresh:
        sink_path.unlink(missing_ok=True)
    engine = platform_db.make_engine(platform.database_url, **platform.engine_options())
    platform_db.migrate(engine)
    summary = DemoSummary(bets_requested=bets)
    started = time.monotonic()
    out(f"platform database: {engine.url.render_as_string(hide_password=True)}")
    # The collector takes telemetry only with a token, as it should anywhere but a trusted network.
    token = settings.collector_tokens or SecretStr(secrets.token_urlsafe(24))
    settings = settings.model_copy(update={"collector_tokens": token})
    first_token = token.get_secret_value().split(",")[0].strip()
    store, collector = _start_collector(settings, fresh=fresh)
    with ExitStack() as running:
        running.enter_context(collector)
        platform = platform.model_copy(
            update={
                "otlp_endpoint": collector.url,
                "otlp_headers": SecretStr(f"Authorization=Bearer%20{first_token}"),
            }
        )
        exporting = setup_telemetry(platform)
        out(f"collector (OTLP/HTTP) on {collector.url}, store {store.url.render_as_string(hide_password=True)}")
        server = running.enter_context(PlatformServer(platform, engine))
        out(f"platform listening on {server.url}")
        client = PlatformClient(server.url, admin_token=platform.admin_token.get_secret_value())
        players = []
        for i in range(PLAYERS):
            account = client.create_account(f"demo-{uuid.uuid4().hex[:8]}-{i}")
            client.deposit(account["id"], rng.choice((20_000, 50_000, 100_000)))
            players.append(account)
        markets = [
            client.create_market(name, [(s, f"{rng.uniform(1.5, 6):.2f}") for s in sels]) for name, sels in MARKETS
        ]
        out(f"created {len(players)} players and {len(markets)} markets")

        lock = threading.Lock()
        stop_moves = threading.Event()

        def move_prices() -> None:
            mover = random.Random(seed + 1)
            while not stop_moves.wait(0.05):
                market = mover.choice(markets)
                selection = mover.choice(market["selections"])
                client.change_odds(market["id"], selection["id"], f"{mover.uniform(1.5, 6):.2f}")
                with lock:
                    summary.price_moves += 1

        def place(i: int) -> None:
            prng = random.Random(seed * 1000 + i)
            player = prng.choice(players)
            market = client.market(prng.choice(markets)["id"])
            selection = prng.choice(market["selections"])
            body = {
                "market_id": market["id"],
                "selection_id": selection["id"],
                "stake_minor": prng.choice((100, 250, 500, 1000, 2500)),
                "odds": selection["odds"],
                "price_version": market["price_version"],
                "accept_price_change": prng.choice(("none", "none", "better", "any")),
            }
            key = str(uuid.uuid4())
            attempts = 2 if prng.random() < 0.15 else 1  # a client retrying after a lost response
            for _ in range(attempts):
                response = client.place_bet(player["token"], body, key=key)
                with lock:
                    if response.headers.get("Idempotent-Replayed") == "true":
                        summary.replays += 1
                    elif response.status_code == 201:
                        summary.accepted += 1
                    else:
                        summary.rejections[
                            response.json().get("type", str(response.status_code)).rsplit("/", 1)[-1]
                        ] += 1

        mover = threading.Thread(target=move_prices, daemon=True)
        mover.start()
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(place, range(bets)))
        stop_moves.set()
        mover.join()
        out(f"placed {summary.accepted} bets ({summary.replays} replays, {summary.price_moves} price moves)")

        for index, market in enumerate(markets):
            if index == len(markets) - 1:
                report = client.result(market["id"], void=True)["settlement"]
            else:
                report = client.result(market["id"], winner_selection_id=market["selections"][0]["id"])["settlement"]
            for outcome in ("won", "lost", "void"):
                summary.settled[outcome] += report[outcome]
        client.close()
        if exporting:
            shutdown_telemetry()  # export everything now, while the collector is still listening

    relay_target = OutboxRelay(engine, _NullSink())  # counts only; delivery is the server relay's job
    summary.outbox_events = relay_target.pending() + relay_target.position()
    _wait_for_relay(platform, engine)
    summary.delivered_events = len(read_jsonl_events(sink_path))
    with platform_db.reader(engine).begin() as conn:
        check = check_ledger(conn)
    summary.ledger_ok = check.ok and summary.delivered_events == summary.outbox_events
    summary.ledger_problems = check.problems[:10]
    summary.seconds = time.monotonic() - started
    _print_summary(summary, out, check.transactions)
    _print_slis(store, out, since=started_at)
    _print_slos(settings, store, out)
    engine.dispose()
    store.dispose()
    return summary


def _start_collector(settings: Settings, *, fresh: bool):
    """The collector beside the platform, writing SLI buckets to the demo's own store."""
    store_url = make_url(settings.store_url)
    if fresh and store_url.get_backend_name() == "sqlite" and store_url.database:
        for suffix in ("", "-wal", "-shm"):
            Path(store_url.database + suffix).unlink(missing_ok=True)
    store = make_engine(settings.store_url, **settings.engine_options())
    migrate_store(store)
    app = create_collector_app(settings, engine=store, slices=load_slices(settings.slices_path))
    return store, ThreadedServer(app)


def _print_slos(settings: Settings, store, out: Callable[[str], None]) -> None:
    from controlplane.slo import evaluate_all, floor_minute
    from controlplane.slo_spec import SloConfigError, load_events, load_slos

    try:
        events = load_events(settings.events_path)
        specs = load_slos(settings.slos_path, events=events)
        # The demo's events are all in the current minute: evaluate as of its end to include them.
        at = floor_minute(utcnow()) + timedelta(minutes=1)
        report = evaluate_all(
            store, specs, events=events, boundaries=load_slices(settings.slices_path).boundaries, at=at
        )
    except (SloConfigError, OSError) as exc:
        out(f"  (SLOs not evaluated: {exc})")
        return
    out("")
    out("SLOs (controlplane slo status)")
    for s in report.slos:
        alert = "PAGE" if s.alerts.page else ("ticket" if s.alerts.ticket else "-")
        sli = "no data" if s.no_data else f"{100 * s.sli:.3f}%"
        out(
            f"  {s.name:<28} objective {100 * s.objective:.2f}%  sli {sli:>9}  budget left "
            f"{100 * s.budget_remaining:6.1f}%  alert {alert}"
        )


def _print_slis(store, out: Callable[[str], None], *, since) -> None:
    totals: dict[str, list[int]] = {}
    for row in sli_rows(store, since=since - timedelta(minutes=1)):
        entry = totals.setdefault(row["slice"], [0, 0, 0])
        entry[0] += row["total"]
        entry[1] += row["bad"]
        entry[2] += 1
    out("")
    out("per-slice SLIs (from the platform's OpenTelemetry, through the collector)")
    if not totals:
        out("  no telemetry reached the collector")
    for name, (total, bad, minutes) in sorted(totals.items()):
        good = 100 * (total - bad) / total if total else 100.0
        out(f"  {name:<15} events {total:>6}  bad {bad:>5}  good {good:6.2f}%  over {minutes} minute(s)")


class _NullSink:
    def deliver(self, messages: list) -> None:  # pragma: no cover - never called
        pass


def _wait_for_relay(settings: PlatformSettings, engine) -> None:
    """The server's relay stopped with the server; deliver whatever it had not reached yet."""
    from sample_platform.outbox import JsonlSink

    OutboxRelay(engine, JsonlSink(settings.outbox_sink_path)).drain()


def _print_summary(s: DemoSummary, out: Callable[[str], None], transactions: int) -> None:
    out("")
    out("summary")
    out(f"  bets requested        {s.bets_requested}")
    out(f"  bets accepted         {s.accepted}")
    out(f"  idempotent replays    {s.replays}")
    for reason, count in sorted(s.rejections.items()):
        out(f"  rejected: {reason:<11} {count}")
    out(f"  price moves           {s.price_moves}")
    out(f"  settled               won {s.settled['won']}, lost {s.settled['lost']}, void {s.settled['void']}")
    out(f"  ledger transactions   {transactions}")
    out(f"  outbox events         {s.outbox_events} written, {s.delivered_events} delivered")
    verdict = "OK (balanced, no negative wallet, every bet resolved once)" if s.ledger_ok else "FAILED"
    out(f"  ledger check          {verdict}")
    for problem in s.ledger_problems:
        out(f"    - {problem}")
    out(f"  took                  {s.seconds:.1f}s")
