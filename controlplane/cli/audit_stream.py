"""`controlplane audit ingest` and `controlplane audit dead-letters`: the audit log fed from the platform's
event stream on NATS JetStream, by as many ingester processes as the stream needs."""

from __future__ import annotations

import asyncio
import signal
from typing import Annotated

import typer

from controlplane.cli.common import (
    LogFormatOption,
    TableOrJson,
    audit_outbox_sink,
    fail,
    load_settings,
    log_export,
    slices_or_exit,
)

NatsUrl = Annotated[
    str | None,
    typer.Option(
        "--nats-url",
        help="The NATS server with JetStream (default: $CONTROLPLANE_NATS_URL, else nats://127.0.0.1:4222).",
    ),
]
DEFAULT_NATS = "nats://127.0.0.1:4222"


def ingest(
    nats_url: NatsUrl = None,
    durable: Annotated[
        str, typer.Option(help="The consumer group: every process with this name shares the stream's events.")
    ] = "audit-ingest",
    batch: Annotated[int, typer.Option(help="Events pulled and appended at once.", min=1, max=1000)] = 100,
    max_deliver: Annotated[
        int, typer.Option(help="Deliveries of an event before it becomes a dead letter.", min=1, max=100)
    ] = 5,
    metrics_port: Annotated[
        int, typer.Option(help="Serve /metrics (pending, lag, dead letters) on this port; 0: none.", min=0, max=65535)
    ] = 0,
    log_format: LogFormatOption = "json",
) -> None:
    """Append the platform's outbox events from the stream PLATFORM_EVENTS to the audit log, each once,
    acking after the commit, until SIGTERM; a poison event goes to platform.dead.<event_type>."""
    # local: the NATS client and the audit sink are needed by this verb only
    from prometheus_client import start_http_server

    from controlplane.logs import setup_logging
    from controlplane.streams.ingester import Ingester, IngestMetrics

    settings = load_settings()
    nats_url = nats_url or settings.nats_url or DEFAULT_NATS
    setup_logging(log_format, **log_export(settings, "controlplane-ingest"))
    sink = audit_outbox_sink(settings)
    metrics = IngestMetrics()
    provider = None
    if settings.otlp_endpoint:  # the stream slice's events, to the collector
        from controlplane.streams.telemetry import lag_histogram

        export = log_export(settings, "controlplane-ingest")
        metrics.otlp_lag, provider = lag_histogram(
            export["otlp_endpoint"], export["otlp_headers"], boundaries=slices_or_exit(settings).boundaries
        )
    if metrics_port:
        start_http_server(metrics_port, addr="127.0.0.1", registry=metrics.registry)
    ingester = Ingester(
        nats_url, sink, sink.log, durable=durable, batch=batch, max_deliver=max_deliver, metrics=metrics
    )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await ingester.run(stop)

    try:
        asyncio.run(main())
    except (OSError, TimeoutError) as exc:
        raise fail(f"cannot reach the NATS server at {nats_url}: {exc}") from None
    except Exception as exc:
        if type(exc).__module__.startswith("nats"):
            raise fail(f"NATS at {nats_url}: {type(exc).__name__}: {exc}") from None
        raise
    finally:
        if provider is not None:
            provider.shutdown()  # the last lag points go out


def dead_letters(
    nats_url: NatsUrl = None,
    replay: Annotated[
        int | None, typer.Option(help="Publish this dead letter (its seq) again, then remove it.")
    ] = None,
    by: Annotated[str | None, typer.Option(help="Who replays (required with --replay; audited).")] = None,
    fmt: TableOrJson = "table",
) -> None:
    """List the stream's dead letters (why each failed), or replay one once its cause is fixed."""
    # local: as above
    from controlplane.auditing import audit_append
    from controlplane.streams.dead_letters import (
        DeadLetterError,
        as_json,
        list_dead_letters,
        replay_dead_letter,
    )

    settings = load_settings()
    nats_url = nats_url or settings.nats_url or DEFAULT_NATS
    try:
        if replay is not None:
            if not by:
                raise fail("--replay needs --by NAME: a replay is audited")
            letter = asyncio.run(replay_dead_letter(nats_url, seq=replay))
            audit_append(
                settings, kind="system", actor=by, subject=f"event:{letter.event_id or letter.original_seq}",
                payload={"type": "dead_letter_replayed", "dead_letter_seq": letter.seq, "event_id": letter.event_id,
                         "event_type": letter.event_type, "reason": letter.reason},
            )  # fmt: skip
            typer.echo(f"replayed dead letter {letter.seq} ({letter.event_type}, event {letter.event_id})")
            return
        letters = asyncio.run(list_dead_letters(nats_url))
    except DeadLetterError as exc:
        raise fail(str(exc), 1) from None
    except (OSError, TimeoutError) as exc:
        raise fail(f"cannot reach the NATS server at {nats_url}: {exc}") from None
    except Exception as exc:
        if type(exc).__module__.startswith("nats"):
            raise fail(f"NATS at {nats_url}: {type(exc).__name__}: {exc}") from None
        raise
    if fmt == "json":
        typer.echo(as_json(letters))
        return
    if not letters:
        typer.echo("no dead letters")
        return
    typer.echo(f"{'seq':>5}  {'event type':<22} {'event id':<36}  why")
    for letter in letters:
        typer.echo(f"{letter.seq:>5}  {letter.event_type:<22} {letter.event_id or '-':<36}  {letter.reason}")
