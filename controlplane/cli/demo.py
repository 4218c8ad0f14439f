"""`controlplane demo`: derby night in one command, then the dashboard."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path
from typing import Annotated, Literal

import typer

from controlplane.cli.common import EXIT_CRITICAL, EXIT_OK, fail, format_option

EXIT_INTERRUPTED = 130
WorkDir = Annotated[
    Path, typer.Option("--workdir", help="Where the demo keeps its databases, keys, logs, bundles and report.")
]


def _say(line: str) -> None:
    typer.echo(line, err=True)


def _cleanup(workdir: Path, urls: dict[str, str], *, keep: bool, failed: bool) -> None:
    """Without --keep, the demo's own SQLite files, keys and config go; the report and bundles stay."""
    from controlplane.demo.run import is_own_file, remove_sqlite

    kept = [str(workdir / "report.json"), str(workdir / "bundles")]
    if keep:
        _say(
            f"kept everything under {workdir}/: `source {workdir}/env.sh` points controlplane commands at it "
            f"(then `controlplane dashboard`; the logins are in {workdir}/logins.txt)"
        )
    else:
        for url in urls.values():
            if is_own_file(url, workdir):
                remove_sqlite(url)
        for name in ("keys", "config"):
            shutil.rmtree(workdir / name, ignore_errors=True)
        for name in ("env.sh", "logins.txt", "outbox.jsonl", "changes.jsonl"):
            (workdir / name).unlink(missing_ok=True)
        if failed:
            kept.append(str(workdir / "logs"))
        else:
            shutil.rmtree(workdir / "logs", ignore_errors=True)
        _say(f"kept {', '.join(k for k in kept if Path(k).exists())}; the databases were removed (--keep keeps them)")
    if any(not is_own_file(url, workdir) for url in urls.values()):
        _say("databases given by URL are left as they are")


def _write_logins(path: Path, logins: dict[str, tuple[str, str]]) -> None:
    """The dashboard users' passwords, readable by this user alone, for exploring the kept data later."""
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text("".join(f"{name}\t{role}\t{password}\n" for name, (role, password) in logins.items()))


def demo(
    duration: Annotated[
        float,
        typer.Option(
            help="Seconds of the derby-night crowd curve (build-up, the 15x off, the race, the drift away); "
            "the lock-wait fault is held until the page fires, so the whole run takes a minute or two more.",
            min=30,
            max=1800,
        ),
    ] = 90.0,
    rate: Annotated[
        float, typer.Option(help="Baseline requests per second; the peak is 15 times this.", min=0.5, max=50)
    ] = 3.0,
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
    no_dashboard: Annotated[bool, typer.Option("--no-dashboard", help="Exit after the report.")] = False,
    dashboard_port: Annotated[int, typer.Option(help="The dashboard's port.", min=1, max=65535)] = 8501,
    keep: Annotated[bool, typer.Option("--keep", help="Leave the databases and keys for exploration.")] = False,
    fmt: Annotated[Literal["table", "json"], format_option("table", "json")] = "table",
) -> None:
    """Derby night in one command: platform, collector and scheduler as child processes, a pre-kickoff
    checklist, the 15x spike, a game day (cache off, broker slow, lock wait), settlement, a signed
    checkpoint, proof bundles verified offline, a report; then the dashboard.

    Exit 0 when the ledger balances, the audit log verifies and both bundles verify offline; 2 when not;
    3 when the demo could not run; 130 when interrupted."""
    from controlplane.demo.render import render_report
    from controlplane.demo.run import DemoOptions, Running, prepare_workdir, run_demo, start_dashboard, start_stack
    from controlplane.demo.stack import DemoError

    options = DemoOptions(
        workdir=workdir,
        duration=duration,
        rate=rate,
        database_url=database_url,
        store_url=store_url,
        audit_url=audit_url,
    )
    stop = threading.Event()
    running: Running | None = None
    failed, code = True, EXIT_CRITICAL
    try:
        urls = prepare_workdir(options)
    except DemoError as exc:
        raise fail(str(exc)) from None
    try:
        running = start_stack(options, urls, _say)
        report = run_demo(options, running, say=_say, stop=stop)
        data = report.to_dict()
        typer.echo(json.dumps(data, indent=2, default=str) if fmt == "json" else render_report(data))
        failed, code = not report.ok, EXIT_OK if report.ok else EXIT_CRITICAL
        if keep:
            _write_logins(workdir / "logins.txt", running.logins)
        if not no_dashboard:
            dashboard = start_dashboard(running, dashboard_port)
            _say("")
            _say(f"dashboard: {dashboard.url}  (Ctrl-C stops it and every other process of the demo)")
            for name, (role, password) in running.logins.items():
                _say(f"  {role:<10} username {name:<16} password {password}")
            while dashboard.running():
                time.sleep(0.5)
    except KeyboardInterrupt:
        stop.set()
        _say("interrupted: stopping the demo's processes")
        code = EXIT_INTERRUPTED
    except DemoError as exc:
        _say(f"error: {exc}")
        code = 3
    except Exception as exc:  # a bug or an environment problem: say what, point at the logs, no traceback
        _say(f"error: the demo failed: {type(exc).__name__}: {exc}; the processes' logs are in {workdir / 'logs'}")
        code = 3
    finally:
        if running is not None:
            running.stack.stop()
        _cleanup(workdir, urls, keep=keep, failed=failed)
    raise typer.Exit(code)
