"""`controlplane demo --topology cluster`: the derby night on several processes of each kind.

The demo starts its own `nats-server -js` (a free port, its store under the work directory), then on
one PostgreSQL: 2 collectors sharing the store (replicas and ingesters split between them, for OTLP
and for scraping), 3 platform replicas publishing their outbox to JetStream and their odds on
`odds.<market_id>`, 2 `controlplane audit ingest` processes in one consumer group and the scheduler
(reading the group's lag and dead letters for the checklist). The load generator spreads its requests
over the replicas. Besides the single topology's game day, the cluster has its own faults:

- after the off, an ingester is SIGKILLed and restarted (its unacked events go to the other member);
- at the peak, the nats-server is SIGKILLed and restarted (the outboxes hold the events meanwhile);
- while the markets are being settled, a replica is SIGKILLed (its settlement is taken over by the
  load generator's retry on another replica) and restarted.

At full time the demo waits until every outbox event is in the audit log, and the report adds each
replica's bets, the stream's commit-to-audit lag and its dead letters.

    running = start_cluster(options, urls, say)      # then run_demo(options, running, ...) as usual
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select

from audit.schema import entries
from controlplane.clock import as_utc, utcnow
from controlplane.demo.plan import DemoPlan
from controlplane.demo.run import (
    DemoOptions,
    Running,
    controlplane_settings,
    platform_settings,
    seed_store,
)
from controlplane.demo.seed import point_costs_at, write_config
from controlplane.demo.stack import Child, DemoError, Stack, answers, child_env, free_port
from controlplane.settings import Settings
from controlplane.storage import make_engine
from sample_platform.models import OutboxEvent, table

REPLICAS, COLLECTORS, INGESTERS = 3, 2, 2
DURABLE = "audit-ingest"
NATS_READY = "Server is ready"
INGEST_READY = "ingesting PLATFORM_EVENTS"
STREAM_TIMEOUT = 180.0  # seconds at full time for every outbox event to reach the audit log


def nats_command() -> list[str]:
    path = shutil.which("nats-server")
    if path is None:
        raise DemoError("--topology cluster starts a nats-server of its own: install it (apt-get install nats-server)")
    return [path]


@dataclass
class Action:
    """One of the cluster's own faults: what was killed, when, and when it was back."""

    what: str
    process: str
    at: datetime
    back_at: datetime | None = None

    def to_dict(self, start: datetime) -> dict[str, Any]:
        return {
            "fault": self.what,
            "process": self.process,
            "at_s": round((self.at - start).total_seconds(), 1),
            "back_after_s": None if self.back_at is None else round((self.back_at - self.at).total_seconds(), 1),
        }


@dataclass
class Cluster:
    """The cluster's processes and its game day, driven by the demo's clock (`act` on every tick)."""

    stack: Stack
    nats_url: str
    nats: Child
    replicas: list[Child]
    ingesters: list[Child]
    collectors: list[Child]
    actions: list[Action] = field(default_factory=list)
    _done: set[str] = field(default_factory=set)

    def act(self, plan: DemoPlan, phase: str, say: Callable[[str], None]) -> None:
        """The cluster's faults, each once, at its moment of the plan (or of the load's phase)."""
        now = utcnow()
        steps: list[tuple[str, bool, Callable[[], None]]] = [
            ("ingester", now >= plan.kickoff + timedelta(seconds=3), lambda: self._ingester(say)),
            ("nats", now >= plan.kickoff + timedelta(seconds=14), lambda: self._nats(say)),
            ("replica", phase in ("settling", "done"), lambda: self._replica(phase, say)),
        ]
        for name, due, step in steps:
            if due and name not in self._done:
                self._done.add(name)
                step()

    def full_time(
        self, load: dict[str, Any], platform_url: str, audit_url: str, since: datetime, tick: Callable[[], None],
        say: Callable[[str], None],
    ) -> dict[str, Any]:  # fmt: skip
        """Once every outbox event since `since` is in the audit log (or after STREAM_TIMEOUT), the
        cluster's section of the report."""
        outbox, audit = make_engine(platform_url), make_engine(audit_url)
        try:
            lags, counts = wait_for_stream(outbox, audit, since, tick)
        finally:
            outbox.dispose()
            audit.dispose()
        section = cluster_section(self, load, lags, counts, since)
        stream = section["stream"]
        say(
            f"the stream: {stream['audited_once']} of {stream['outbox_events']} outbox events in the audit log once, "
            f"{stream['missing']} missing, {stream['doubled']} doubled; lag p99 {stream['lag_p99_s']} s; "
            f"dead letters {stream['dead_letters']}"
        )
        return section

    def _kill(self, child: Child, what: str, say: Callable[[str], None]) -> Action:
        self.stack.kill(child)
        action = Action(what, child.name, utcnow())
        self.actions.append(action)
        say(f"cluster fault: {child.name} SIGKILLed ({what})")
        return action

    def _ingester(self, say: Callable[[str], None]) -> None:
        child = self.ingesters[-1]
        action = self._kill(child, "an ingester dies mid-stream", say)
        time.sleep(5)  # the other member carries the stream alone meanwhile
        self.ingesters[-1] = self._restart_logged(child, INGEST_READY)
        action.back_at = utcnow()
        say(f"{child.name} restarted: the consumer group has {INGESTERS} members again")

    def _nats(self, say: Callable[[str], None]) -> None:
        action = self._kill(self.nats, "the broker dies at the peak", say)
        time.sleep(4)  # the replicas' outboxes hold the events; bets are still taken
        self.nats = self._restart_logged(self.nats, NATS_READY)
        action.back_at = utcnow()
        say("nats-server restarted on its store: the relays and ingesters reconnect")

    def _replica(self, phase: str, say: Callable[[str], None]) -> None:
        child = self.replicas[-1]
        what = "a replica dies while the markets are settled" if phase == "settling" else "a replica dies at full time"
        action = self._kill(child, what, say)
        health = f"{child.url}/v1/health"
        self.replicas[-1] = self.stack.restart(child, lambda c: answers(health), f"answer on {health}")
        action.back_at = utcnow()
        say(f"{child.name} restarted on {child.url}")

    def _restart_logged(self, child: Child, ready: str) -> Child:
        size = child.log.stat().st_size if child.log.exists() else 0
        return self.stack.restart(
            child, lambda c: ready.encode() in c.log.read_bytes()[size:], f"say '{ready}' after a restart"
        )


def start_cluster(options: DemoOptions, urls: dict[str, str], say: Callable[[str], None]) -> Running:
    """The nats-server, 2 collectors, 3 platform replicas, 2 ingesters and the scheduler."""
    work = options.workdir.resolve()
    files = write_config(work / "config", source=options.config_dir)
    admin_token, collector_token = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    stack = Stack(work / "logs")
    try:
        nats_port = free_port()
        (work / "nats").mkdir(parents=True, exist_ok=True)
        nats_args = ["-js", "-a", "127.0.0.1", "-p", str(nats_port), "-sd", str(work / "nats")]
        nats = stack.start("nats-server", nats_args, child_env({}, {}), ready=NATS_READY, command=nats_command())
        nats_url = f"nats://127.0.0.1:{nats_port}"
        say(f"nats-server (JetStream) on {nats_url}, its store in {work / 'nats'}")
        replica_urls = [f"http://127.0.0.1:{free_port()}" for _ in range(REPLICAS)]
        ingest_ports = [free_port() for _ in range(INGESTERS)]
        point_costs_at(files, [f"{url}/metrics" for url in replica_urls])
        cp = controlplane_settings(work, urls, files, collector_token, admin_token, replica_urls[0])
        cp |= {"outbox_sink": "jsonl", "nats_url": nats_url}
        collectors = []
        for n in range(COLLECTORS):
            scraped = [f"{url}/metrics" for url in replica_urls[n::COLLECTORS]]
            scraped += [f"http://127.0.0.1:{port}/metrics" for port in ingest_ports[n::COLLECTORS]]
            env = child_env(cp | {"scrape_targets": ",".join(scraped)}, {})
            collectors.append(stack.start_http(f"collector-{n + 1}", ["collector", "serve"], env, health="/healthz"))
        say(f"collectors (OTLP/HTTP, scrapers) on {', '.join(c.url for c in collectors)}, one store")
        replicas = []
        for n, url in enumerate(replica_urls):
            platform = platform_settings(work, urls, admin_token, collector_token, collectors[n % COLLECTORS].url)
            platform |= {"outbox_sink": "nats", "nats_url": nats_url, "odds_bus": "nats"}
            if n == REPLICAS - 1:  # the replica killed in settlement settles a bet per transaction
                platform["settlement_batch_size"] = 1
            port = int(url.rsplit(":", 1)[1])
            env = child_env(cp, platform)
            name = f"platform-{n + 1}"
            replicas.append(
                stack.start_http(name, ["platform", "serve"], env, health="/v1/health", port=port, fallback=False)
            )
        say(f"platform replicas on {', '.join(replica_urls)}, outbox to JetStream, odds on odds.<market_id>")
        ingesters = []
        for n, port in enumerate(ingest_ports):
            export = {
                "otlp_endpoint": collectors[n % COLLECTORS].url,
                "otlp_headers": f"Authorization=Bearer%20{collector_token}",
            }
            args = ["audit", "ingest", "--nats-url", nats_url, "--durable", DURABLE, "--metrics-port", str(port),
                    "--log-format", "text"]  # fmt: skip
            ingesters.append(stack.start(f"audit-ingest-{n + 1}", args, child_env(cp | export, {}), ready=INGEST_READY))
        say(f"{INGESTERS} audit ingesters in the consumer group {DURABLE}")
        settings = Settings(**cp)
        logins = seed_store(settings)
        env = child_env(cp, {})
        stack.start("scheduler", ["scheduler"], env, ready="scheduler started")
        say("scheduler running (one: it holds the scheduler lock), reading the consumer group for the checklist")
    except BaseException:
        stack.stop()
        raise
    cluster = Cluster(stack, nats_url, nats, replicas, ingesters, collectors)
    return Running(stack, settings, files, env, logins, replica_urls[0], urls["platform"], tuple(replica_urls), cluster)


def commit_to_audit_lags(outbox: Engine, audit: Engine, since: datetime) -> tuple[list[float], Counter[str]]:
    """Seconds from each outbox event committed since `since` to its audit entry, sorted, and how many
    audit entries each of those events has (exactly one each, when nothing was lost or doubled)."""
    events = table(OutboxEvent)
    with outbox.connect() as conn:
        query = select(events.c.event_id, events.c.created_at).where(events.c.created_at >= since)
        committed = {e: as_utc(t).timestamp() for e, t in conn.execute(query)}
    counts: Counter[str] = Counter({e: 0 for e in committed})
    lags = []
    with audit.connect() as conn:
        rows = conn.execute(select(entries.c.event_id, entries.c.created_at).where(entries.c.event_id.is_not(None)))
        for event_id, at in rows:
            if event_id in committed:
                counts[event_id] += 1
                lags.append(as_utc(at).timestamp() - committed[event_id])
    return sorted(lags), counts


def wait_for_stream(
    outbox: Engine, audit: Engine, since: datetime, tick: Callable[[], None], timeout: float = STREAM_TIMEOUT
) -> tuple[list[float], Counter[str]]:
    """Until every outbox event since `since` is in the audit log (or `timeout`)."""
    deadline = time.monotonic() + timeout
    while True:
        lags, counts = commit_to_audit_lags(outbox, audit, since)
        if all(counts.values()) or time.monotonic() > deadline:
            return lags, counts
        tick()
        time.sleep(1.0)


def dead_letters(nats_url: str) -> int | None:
    # local: the NATS client, for the cluster only
    from controlplane.streams.status import NoConsumerGroup, group_status

    try:
        return asyncio.run(group_status(nats_url, durable=DURABLE)).dead_letters
    except (NoConsumerGroup, OSError, TimeoutError):
        return None


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return values[min(len(values) - 1, max(0, round(q / 100 * len(values) + 0.5) - 1))]


def cluster_section(
    cluster: Cluster, load: dict[str, Any], lags: list[float], counts: Counter[str], start: datetime
) -> dict[str, Any]:
    """Per replica what the load generator got from it; the stream from commit to audit; the faults."""
    per_url = load.get("replicas", {})
    doubled = sum(1 for n in counts.values() if n > 1)
    return {
        "nats_url": cluster.nats_url,
        "replicas": [
            {"process": child.name, "url": child.url, **per_url.get(child.url, {})} for child in cluster.replicas
        ],
        "collectors": len(cluster.collectors),
        "ingesters": len(cluster.ingesters),
        "stream": {
            "outbox_events": len(counts),
            "audited_once": sum(1 for n in counts.values() if n == 1),
            "missing": sum(1 for n in counts.values() if n == 0),
            "doubled": doubled,
            "lag_p50_s": _round(_percentile(lags, 50)),
            "lag_p99_s": _round(_percentile(lags, 99)),
            "lag_max_s": _round(lags[-1] if lags else None),
            "dead_letters": dead_letters(cluster.nats_url),
        },
        "faults": [a.to_dict(start) for a in cluster.actions],
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
