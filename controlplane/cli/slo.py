"""`controlplane slo`: SLO status with cron exit codes, Prometheus rules, OpenSLO export and import."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

import typer

from controlplane.cli.common import (
    SlosPath,
    StoreUrl,
    TableOrJson,
    config_or_exit,
    fail,
    format_option,
    load_settings,
    store_engine,
)
from controlplane.clock import parse_since, utcnow
from controlplane.policy.evaluate import policy_states
from controlplane.policy.spec import BudgetPolicyError
from controlplane.slo.curves import ran_out_at
from controlplane.slo.openslo import export_openslo, import_openslo
from controlplane.slo.results import render_slo_table
from controlplane.slo.rolled import evaluate_all_from_rollups
from controlplane.slo.rules import OutboxThresholds, alert_duration, render_rules
from controlplane.slo.spec import SloConfigError, apply_slo_changes, load_events, spec_document

slo_app = typer.Typer(help="Service level objectives: status, error budgets, burn-rate alerts.", no_args_is_help=True)


@slo_app.command("status")
def slo_status(
    at: Annotated[
        str | None, typer.Option(help="Evaluate as of this instant (ISO 8601 or 2h for two hours ago), to replay.")
    ] = None,
    store_url: StoreUrl = None,
    slos: SlosPath = None,
    fmt: TableOrJson = "table",
) -> None:
    """Each SLO: SLI, error budget left, burn rates, alerts, its error budget policy state. Exit 0 healthy,
    1 ticket, 2 page, 3 unknown."""

    settings = load_settings(store_url=store_url, slos_path=slos)
    config = config_or_exit(settings)
    try:
        when = parse_since(at) if at else utcnow()
    except ValueError as exc:
        raise fail(str(exc)) from None
    try:
        report = evaluate_all_from_rollups(
            store_engine(settings), config.specs, events=config.events, boundaries=config.boundaries, at=when
        )
    except SloConfigError as exc:
        raise fail(str(exc)) from None
    except Exception as exc:  # the store unreachable or broken: "could not evaluate" for cron
        raise fail(f"could not evaluate the SLOs: {type(exc).__name__}: {exc}") from None
    try:
        states = {p.slo: p.state for sl in policy_states(config.budget_policy(), report).slices for p in sl.slos}
    except BudgetPolicyError as exc:
        raise fail(str(exc)) from None
    if fmt == "json":
        body = report.to_dict()
        for slo in body["slos"]:
            slo["policy"] = states[slo["name"]]
        typer.echo(json.dumps(body, indent=2))
    else:
        spent = {s.name for s in report.slos if s.budget_remaining <= 0 and not s.no_data}
        ran_out = {
            spec.name: ran_out_at(store_engine(settings), spec, events=config.events, boundaries=config.boundaries,
                                  at=report.at)
            for spec in config.specs if spec.name in spent
        }  # fmt: skip
        typer.echo(render_slo_table(report, ran_out, states))
    raise typer.Exit(report.exit_code)


def _duration_flag(value: str) -> str:
    """A duration the outbox alerts can use (30s, 5m, ...); anything else is a usage error naming the flag."""

    try:
        alert_duration(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    return value


@slo_app.command("rules")
def slo_rules(
    out: Annotated[Path, typer.Option("--out", help="Where to write the Prometheus rules file.")] = Path(
        "slo-rules.yml"
    ),
    slos: SlosPath = None,
    outbox_alerts: Annotated[
        bool,
        typer.Option(
            "--outbox-alerts/--no-outbox-alerts",
            help="Add the platform-outbox group (queue depth, relay lag, metrics absent); "
            "--no-outbox-alerts for a platform without a transactional outbox.",
        ),
    ] = True,
    depth_threshold: Annotated[
        int,
        typer.Option(
            "--outbox-depth-threshold",
            min=1,
            help="OutboxQueueDepthHigh (ticket) fires when platform_outbox_depth stays above this many events.",
        ),
    ] = 1000,
    lag_threshold: Annotated[
        str,
        typer.Option(
            "--relay-lag-threshold",
            callback=_duration_flag,
            help="OutboxRelayLagHigh (page) fires when platform_outbox_relay_lag_seconds stays above this "
            "(30s, 2m, ...).",
        ),
    ] = "30s",
    hold: Annotated[
        str,
        typer.Option(
            "--for",
            callback=_duration_flag,
            help="How long each outbox condition must hold before its alert fires (Prometheus `for:`), "
            "and how long the metrics may be missing before OutboxMetricsAbsent (page).",
        ),
    ] = "5m",
) -> None:
    """Write Prometheus recording and alerting rules for the SLOs and the outbox (check with `promtool check rules`)."""

    settings = load_settings(slos_path=slos)
    config = config_or_exit(settings)
    outbox = (
        OutboxThresholds(
            depth=depth_threshold, relay_lag=alert_duration(lag_threshold), for_duration=alert_duration(hold)
        )
        if outbox_alerts
        else None
    )
    try:
        text = render_rules(config.specs, config.slices, events=config.events, outbox=outbox)
    except SloConfigError as exc:
        raise fail(str(exc)) from None
    out.write_text(text)
    rules = sum(1 for line in text.splitlines() if line.lstrip().startswith(("- record", "- alert")))
    typer.echo(f"wrote {rules} rules to {out}")


@slo_app.command("export")
def slo_export(
    fmt: Annotated[Literal["openslo"], format_option("openslo")] = "openslo",
    out: Annotated[Path | None, typer.Option("--out", help="Write to this file instead of standard output.")] = None,
    slos: SlosPath = None,
) -> None:
    """Export the SLOs as OpenSLO v1 documents (event windows have no OpenSLO form and are refused)."""

    specs = config_or_exit(load_settings(slos_path=slos)).specs
    try:
        text = export_openslo(specs)
    except SloConfigError as exc:
        raise fail(str(exc)) from None
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text)
        typer.echo(f"wrote {len(specs)} SLOs to {out}")


@slo_app.command("import")
def slo_import(
    file: Annotated[Path, typer.Argument(help="OpenSLO v1 YAML (one or more `kind: SLO` documents).")],
    actor: Annotated[str, typer.Option(help="Who makes the change (recorded).", envvar="USER")] = "admin",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check and show, change nothing.")] = False,
    slos: Annotated[Path | None, typer.Option(help="SLO file to update (default: $CONTROLPLANE_SLOS_PATH).")] = None,
) -> None:
    """Import OpenSLO SLOs into the SLO file (merged by name); what does not map is refused with the reason."""

    settings = load_settings(slos_path=slos)
    try:
        specs = import_openslo(file.read_text(), source=str(file))
        events = load_events(settings.events_path)
        if dry_run:
            typer.echo(json.dumps([spec_document(s) for s in specs], indent=2))
            return
        changes = apply_slo_changes(settings, specs, actor=actor, events=events)
    except FileNotFoundError:
        raise fail(f"{file}: file not found") from None
    except SloConfigError as exc:
        raise fail(str(exc)) from None
    typer.echo(f"{len(changes)} SLO(s) changed in {settings.slos_path}" + "".join(f"\n  {c.subject}" for c in changes))
