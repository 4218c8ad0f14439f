"""`controlplane demo`: derby night in one command, then the dashboard."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Annotated, Literal

import typer

from controlplane.cli.common import EXIT_CRITICAL, EXIT_OK, EXIT_UNKNOWN, cut_short_by_ctrl_c, fail, format_option

EXIT_INTERRUPTED = 130
WorkDir = Annotated[
    Path, typer.Option("--workdir", help="Where the demo keeps its databases, keys, logs, bundles and report.")
]


def _say(line: str) -> None:
    typer.echo(line, err=True)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def demo(
    duration: Annotated[
        float,
        typer.Option(
            help="Seconds of the derby-night crowd curve (build-up, the 15x off, the race, the drift away); "
            "SLIs count whole minutes and the lock wait is held until the page fires, so the whole run "
            "takes 3 to 5 minutes.",
            min=30,
            max=1800,
        ),
    ] = 90.0,
    rate: Annotated[
        float, typer.Option(help="Baseline requests per second; the peak is 15 times this.", min=0.5, max=50)
    ] = 4.0,
    database_url: Annotated[
        str | None, typer.Option("--database-url", help="The platform's database (default: SQLite in --workdir).")
    ] = None,
    store_url: Annotated[
        str | None, typer.Option("--store-url", help="The control plane's store (default: SQLite in --workdir).")
    ] = None,
    audit_url: Annotated[
        str | None, typer.Option("--audit-url", help="The audit log (default: SQLite in --workdir).")
    ] = None,
    workdir: WorkDir = Path("var/demo"),
    topology: Annotated[
        Literal["single", "cluster"],
        typer.Option(
            help="single: one process of each kind (SQLite by default). cluster: its own nats-server -js, 3 platform "
            "replicas, 2 collectors, 2 audit ingesters and the scheduler on PostgreSQL (--database-url; the store and "
            "the audit log default to it), with an ingester, the broker and a replica SIGKILLed on the night."
        ),
    ] = "single",
    no_dashboard: Annotated[bool, typer.Option("--no-dashboard", help="Exit after the report.")] = False,
    dashboard_port: Annotated[
        int, typer.Option(help="The dashboard's port (a free one if it is taken).", min=1, max=65535)
    ] = 8501,
    keep: Annotated[bool, typer.Option("--keep", help="Leave the databases, keys and logins for exploration.")] = False,
    fmt: Annotated[Literal["table", "json"], format_option("table", "json")] = "table",
) -> None:
    """Derby night in one command: platform, collector and scheduler as child processes, a pre-kickoff
    checklist, the 15x spike, a game day (cache off, broker slow, lock wait), settlement, a signed
    checkpoint, proof bundles verified offline, a report; then the dashboard until Ctrl-C. With
    --topology cluster, several processes of each kind on PostgreSQL and NATS JetStream.

    Exit 0 when the ledger balances, the audit log verifies and both bundles verify offline (and, in a
    cluster, every outbox event is in the audit log exactly once); 2 when not;
    3 when the demo could not run; 130 when interrupted before the report."""
    # local: the demo (platform, load generator, stack) adds ~300 ms to every command's start
    from controlplane.demo.cluster import start_cluster
    from controlplane.demo.render import render_report
    from controlplane.demo.run import DemoOptions, Running, run_demo, start_dashboard, start_stack
    from controlplane.demo.stack import DemoError
    from controlplane.demo.workdir import clean_up, prepare, write_env, write_logins

    options = DemoOptions(
        workdir=workdir, duration=duration, rate=rate, database_url=database_url, store_url=store_url,
        audit_url=audit_url,
    )  # fmt: skip
    try:
        urls = prepare(
            workdir, database_url=database_url, store_url=store_url, audit_url=audit_url, cluster=topology == "cluster"
        )
    except DemoError as exc:
        raise fail(str(exc)) from None
    # A terminal closed or a `kill` ends the demo as Ctrl-C does: children stopped, then clean-up.
    handlers = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    stop = threading.Event()
    running: Running | None = None
    failed, code, reported = True, EXIT_CRITICAL, False
    try:
        running = (start_cluster if topology == "cluster" else start_stack)(options, urls, _say)
        write_env(workdir, running.env)
        if keep:
            write_logins(workdir, running.logins)
        report = run_demo(options, running, say=_say, stop=stop)
        data = report.to_dict()
        typer.echo(json.dumps(data, indent=2, default=str) if fmt == "json" else render_report(data))
        failed, code, reported = not report.ok, EXIT_OK if report.ok else EXIT_CRITICAL, True
        if not no_dashboard:
            dashboard = start_dashboard(running, dashboard_port)
            _say("")
            _say(f"dashboard: {dashboard.url}  (Ctrl-C stops it and every other process of the demo)")
            for name, (role, password) in running.logins.items():
                _say(f"  {role:<10} username {name:<16} password {password}")
            while dashboard.running():
                time.sleep(0.5)
            _say(f"the dashboard stopped (exit code {dashboard.proc.returncode}); its log is {dashboard.log}")
    except (KeyboardInterrupt, Exception) as exc:
        if isinstance(exc, KeyboardInterrupt) or cut_short_by_ctrl_c(exc):
            stop.set()
            if reported:  # Ctrl-C is how the dashboard is closed: the run's outcome stands
                _say("stopping the dashboard and the demo's processes")
            else:
                _say("interrupted: stopping the demo's processes")
                code = EXIT_INTERRUPTED
        elif isinstance(exc, DemoError):
            _say(f"error: {exc}")
            code = code if reported else EXIT_UNKNOWN  # a dashboard that cannot start leaves the report's code
        else:  # a bug or an environment problem: say what, point at the logs, no traceback
            _say(f"error: the demo failed: {type(exc).__name__}: {exc}; the processes' logs are in {workdir / 'logs'}")
            code = code if reported else EXIT_UNKNOWN
    finally:
        # A second Ctrl-C (or a kill) must not cut the clean-up short.
        previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        try:
            if running is not None:
                running.stack.stop()
            kept = clean_up(workdir, urls, keep=keep, failed=failed)
            if keep:
                _say(
                    f"kept everything under {workdir}/: `source {workdir}/env.sh` points controlplane commands at "
                    f"it (then `controlplane dashboard`, with the logins in {workdir}/logins.txt)"
                )
            else:
                _say(f"kept: {', '.join(kept)}; the demo's own databases were removed (--keep keeps them)")
        finally:
            for sig, handler in (previous | handlers).items():
                signal.signal(sig, handler)
    raise typer.Exit(code)
