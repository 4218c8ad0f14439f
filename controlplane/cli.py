"""The `controlplane` command: `controlplane <group> <verb>`. Thin: it calls the domain packages.

Exit codes for checks meant for cron: 0 ok, 1 warning, 2 critical, 3 unknown or usage error.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from pydantic import ValidationError

from controlplane.settings import Settings
from controlplane.storage import StorageConfigError
from sample_platform.settings import PlatformSettings

SettingsT = TypeVar("SettingsT", Settings, PlatformSettings)

EXIT_OK, EXIT_WARNING, EXIT_CRITICAL, EXIT_UNKNOWN = 0, 1, 2, 3

app = typer.Typer(
    help="SRE observability and compliance control plane for betting platforms.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
platform_app = typer.Typer(help="Run and manage the bundled sample betting platform.", no_args_is_help=True)
app.add_typer(platform_app, name="platform")


def fail(message: str, code: int = EXIT_UNKNOWN) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def load_settings(**overrides: object) -> Settings:
    """The control plane's settings (`CONTROLPLANE_*`), with the flags a verb was given."""
    return _settings(Settings, "CONTROLPLANE_", overrides)


def load_platform_settings(**overrides: object) -> PlatformSettings:
    """The sample platform's settings (`PLATFORM_*`), with the flags a verb was given."""
    return _settings(PlatformSettings, "PLATFORM_", overrides)


def _settings(model: type[SettingsT], prefix: str, overrides: dict[str, object]) -> SettingsT:
    try:
        return model(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(
            f"{prefix}{'_'.join(str(p) for p in e['loc']).upper() or 'SETTINGS'}: {e['msg']}" for e in exc.errors()
        )
        raise fail(f"invalid settings: {problems}") from None


DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="Platform database URL (sqlite:///path or postgresql+psycopg://user@host/db). "
        "Default: $PLATFORM_DATABASE_URL, else sqlite:///./var/platform.db.",
    ),
]


@platform_app.command("migrate")
def platform_migrate(database_url: DatabaseUrl = None) -> None:
    """Create or upgrade the platform's database schema (Alembic) to the newest revision."""
    from sample_platform.db import migrate

    settings = load_platform_settings(database_url=database_url)
    engine = _engine(settings)
    migrate(engine)
    typer.echo(f"schema is up to date in {engine.url.render_as_string(hide_password=True)}")


@platform_app.command("serve")
def platform_serve(
    port: Annotated[int, typer.Option(help="TCP port to listen on.", min=0, max=65535)] = 8080,
    host: Annotated[str, typer.Option(help="Address to bind; 0.0.0.0 to accept remote clients.")] = "127.0.0.1",
    database_url: DatabaseUrl = None,
    migrate_first: Annotated[
        bool, typer.Option("--migrate/--no-migrate", help="Upgrade the schema before serving.")
    ] = True,
) -> None:
    """Serve the sample platform's HTTP API (docs at /docs)."""
    import uvicorn

    from sample_platform.api import create_app
    from sample_platform.db import migrate
    from sample_platform.telemetry import setup_telemetry

    settings = load_platform_settings(database_url=database_url)
    engine = _engine(settings)
    if migrate_first:
        migrate(engine)
    sink = _outbox_sink(load_settings())
    setup_telemetry(settings)
    # Open odds streams never end by themselves: give them a few seconds, then close them.
    uvicorn.run(
        create_app(settings, engine=engine, outbox_sink=sink),
        host=host,
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=5,
    )


def _outbox_sink(settings: Settings):  # type: ignore[no-untyped-def]
    """The platform's relay delivers to its own JSON-lines file unless CONTROLPLANE_OUTBOX_SINK=audit."""
    if settings.outbox_sink != "audit":
        return None
    from audit.log import AuditLog
    from audit.schema import migrate_audit
    from audit.sink import OutboxAuditSink, SubjectKeys
    from controlplane.storage import make_engine

    try:
        audit_engine = make_engine(settings.audit_url, **settings.engine_options())
    except StorageConfigError as exc:
        raise fail(str(exc)) from None
    migrate_audit(audit_engine)
    return OutboxAuditSink(AuditLog(audit_engine, origin=settings.audit_origin), SubjectKeys(audit_engine))


Target = Annotated[str, typer.Option("--target", help="Base URL of the platform.", envvar="CONTROLPLANE_PLATFORM_URL")]
AdminToken = Annotated[
    str | None,
    typer.Option(
        "--admin-token",
        help="The platform's admin token (default: $CONTROLPLANE_PLATFORM_ADMIN_TOKEN).",
        envvar="CONTROLPLANE_PLATFORM_ADMIN_TOKEN",
        show_default=False,
    ),
]
Format = Annotated[str, typer.Option("--format", help="table for people, json for scripts.")]


def _check_format(fmt: str) -> None:
    if fmt not in ("table", "json"):
        raise fail(f"--format must be table or json, not {fmt!r}")


@platform_app.command("load")
def platform_load(
    profile: Annotated[str, typer.Option(help="derby-night, steady or spike.")] = "derby-night",
    duration: Annotated[float, typer.Option(help="Seconds of arrivals.")] = 60.0,
    rate: Annotated[float, typer.Option(help="Baseline arrivals per second, all routes together.")] = 10.0,
    target: Target = "http://127.0.0.1:8080",
    admin_token: AdminToken = None,
    players: Annotated[int, typer.Option(help="Player accounts to create (with --admin-token).")] = 20,
    markets: Annotated[int, typer.Option(help="Markets to create (with --admin-token).")] = 4,
    sse_subscribers: Annotated[int, typer.Option(help="Odds stream subscribers held open.")] = 5,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed sends the same mix.")] = 1,
    fmt: Format = "table",
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Progress bar on stderr.")] = True,
) -> None:
    """Drive open-model load (derby-night: baseline, 15x within 10 s, then decay) and report per route.

    Requests are sent on schedule, not when earlier ones return, so latency includes any queueing
    (no coordinated omission). With --admin-token it creates its own players and markets, retries
    bets with the same Idempotency-Key, and settles its markets at full time."""
    from sample_platform.loadgen import LoadConfig, LoadSetupError, render_table, run_load

    _check_format(fmt)
    try:
        config = LoadConfig(
            target=target.rstrip("/"),
            profile=profile,
            duration=duration,
            rate=rate,
            admin_token=admin_token,
            players=players,
            markets=markets,
            sse_subscribers=sse_subscribers,
            seed=seed,
        )
        report = run_load(config, show_progress=progress and fmt == "table")
    except (ValueError, LoadSetupError) as exc:
        raise fail(str(exc)) from None
    typer.echo(json.dumps(report.to_dict(), indent=2) if fmt == "json" else render_table(report))


faults_app = typer.Typer(help="Game-day faults on a running platform (each expires by itself).", no_args_is_help=True)
platform_app.add_typer(faults_app, name="faults")


def _faults_client(target: str, admin_token: str | None):  # type: ignore[no-untyped-def]
    import httpx

    if not admin_token:
        raise fail("faults need the admin token: pass --admin-token or set CONTROLPLANE_PLATFORM_ADMIN_TOKEN")
    return httpx.Client(base_url=target.rstrip("/"), headers={"Authorization": f"Bearer {admin_token}"}, timeout=30)


def _call(send) -> dict:  # type: ignore[no-untyped-def]
    import httpx

    try:
        response = send()
    except httpx.HTTPError as exc:
        raise fail(f"cannot reach the platform: {exc}") from None
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        raise fail(f"{response.status_code}: {detail}")
    return response.json()


def _print_faults(faults: list[dict], fmt: str, empty: str) -> None:
    if fmt == "json":
        typer.echo(json.dumps(faults, indent=2))
        return
    if not faults:
        typer.echo(empty)
        return
    typer.echo(f"{'id':<13} {'kind':<12} {'route':<28} {'settings':<34} {'ttl left':>9}")
    for f in faults:
        knobs = {
            "latency": f"{f['latency_ms']}ms ±{f['jitter_ms']}ms",
            "db_latency": f"{f['latency_ms']}ms ±{f['jitter_ms']}ms per statement",
            "broker_slow": f"{f['latency_ms']}ms per event",
            "error_rate": f"{f['error_rate']:.0%} -> {f['error_status']}",
        }.get(f["kind"], "")
        typer.echo(f"{f['id']:<13} {f['kind']:<12} {f['route']:<28} {knobs:<34} {f['ttl_remaining_seconds']:>8.0f}s")


@faults_app.command("set")
def faults_set(
    kind: Annotated[str, typer.Argument(help="latency, error_rate, db_latency, cache_off, broker_slow or lock_wait.")],
    ttl: Annotated[float, typer.Option("--ttl", help="Seconds until the fault ends by itself.")] = 300,
    route: Annotated[str, typer.Option(help='Route for latency/error_rate: "POST /v1/bets", "/v1/bets" or "*".')] = "*",
    latency_ms: Annotated[int, typer.Option(help="Added delay in ms (latency, db_latency, broker_slow).")] = 0,
    jitter_ms: Annotated[int, typer.Option(help="Jitter around the delay, ms.")] = 0,
    error_rate: Annotated[float, typer.Option(help="Share of requests failed, 0..1 (error_rate).")] = 0.0,
    error_status: Annotated[int, typer.Option(help="HTTP status of injected errors.")] = 503,
    reason: Annotated[str | None, typer.Option(help="Why: recorded in the audit trail.")] = None,
    actor: Annotated[str, typer.Option(help="Who: recorded in the audit trail.", envvar="USER")] = "admin",
    target: Target = "http://127.0.0.1:8080",
    admin_token: AdminToken = None,
    fmt: Format = "table",
) -> None:
    """Inject a fault into a running platform."""
    _check_format(fmt)
    body = {
        "kind": kind,
        "ttl_seconds": ttl,
        "route": route,
        "latency_ms": latency_ms,
        "jitter_ms": jitter_ms,
        "error_rate": error_rate,
        "error_status": error_status,
        "actor": actor,
        "reason": reason,
    }
    with _faults_client(target, admin_token) as http:
        fault = _call(lambda: http.post("/v1/admin/faults", json=body))
    _print_faults([fault], fmt, "")


@faults_app.command("list")
def faults_list(
    target: Target = "http://127.0.0.1:8080", admin_token: AdminToken = None, fmt: Format = "table"
) -> None:
    """List the faults in force."""
    _check_format(fmt)
    with _faults_client(target, admin_token) as http:
        faults = _call(lambda: http.get("/v1/admin/faults"))["faults"]
    _print_faults(faults, fmt, "no faults in force")


@faults_app.command("clear")
def faults_clear(
    kind: Annotated[str | None, typer.Option(help="Only faults of this kind.")] = None,
    fault_id: Annotated[str | None, typer.Option("--id", help="Only the fault with this id.")] = None,
    actor: Annotated[str, typer.Option(help="Who: recorded in the audit trail.", envvar="USER")] = "admin",
    target: Target = "http://127.0.0.1:8080",
    admin_token: AdminToken = None,
    fmt: Format = "table",
) -> None:
    """End faults now (all of them unless --kind or --id)."""
    _check_format(fmt)
    params = {k: v for k, v in {"kind": kind, "id": fault_id, "actor": actor}.items() if v}
    with _faults_client(target, admin_token) as http:
        cleared = _call(lambda: http.delete("/v1/admin/faults", params=params))["cleared"]
    _print_faults(cleared, fmt, "no faults were in force")


collector_app = typer.Typer(
    help="Receive OTLP telemetry and scrape Prometheus metrics into SLIs.", no_args_is_help=True
)
app.add_typer(collector_app, name="collector")
sli_app = typer.Typer(help="Per-slice SLI buckets (events, bad events, latency) from the store.", no_args_is_help=True)
app.add_typer(sli_app, name="sli")
StoreUrl = Annotated[
    str | None,
    typer.Option(
        "--store-url",
        help="The control plane's store (default: $CONTROLPLANE_STORE_URL, else sqlite:///./var/controlplane.db).",
    ),
]


def _store_engine(settings: Settings):  # type: ignore[no-untyped-def]
    from controlplane.storage import make_engine
    from controlplane.store import migrate_store

    try:
        engine = make_engine(settings.store_url, **settings.engine_options())
    except StorageConfigError as exc:
        raise fail(str(exc)) from None
    migrate_store(engine)
    return engine


def _slices(settings: Settings):  # type: ignore[no-untyped-def]
    from collectors.slices import SliceConfigError, load_slices

    try:
        return load_slices(settings.slices_path)
    except SliceConfigError as exc:
        raise fail(str(exc)) from None


@collector_app.command("serve")
def collector_serve(
    port: Annotated[int, typer.Option(help="TCP port (OTLP/HTTP's usual is 4318).", min=0, max=65535)] = 4318,
    host: Annotated[str, typer.Option(help="Address to bind; 0.0.0.0 to accept remote exporters.")] = "127.0.0.1",
    store_url: StoreUrl = None,
    slices: Annotated[Path | None, typer.Option(help="Slices file (default: $CONTROLPLANE_SLICES_PATH).")] = None,
    scrape: Annotated[
        str | None,
        typer.Option(help="Comma-separated /metrics URLs to scrape (default: $CONTROLPLANE_SCRAPE_TARGETS)."),
    ] = None,
) -> None:
    """Serve the OTLP/HTTP receiver (/v1/traces, /v1/metrics; /metrics for Prometheus) and the scraper."""
    import uvicorn

    from collectors.service import create_collector_app

    settings = load_settings(store_url=store_url, slices_path=slices, scrape_targets=scrape)
    config = _slices(settings)
    slo_specs = load_slo_specs(settings) if Path(settings.slos_path).exists() else None
    engine = _store_engine(settings)
    app = create_collector_app(settings, engine=engine, slices=config, slos=slo_specs)
    uvicorn.run(app, host=host, port=port, log_level="warning")


@sli_app.command("show")
def sli_show(
    slice_name: Annotated[str | None, typer.Option("--slice", help="Only this slice.")] = None,
    since: Annotated[str, typer.Option(help="How far back: 90m, 2h, 1d, or an ISO 8601 time.")] = "2h",
    store_url: StoreUrl = None,
    fmt: Format = "table",
) -> None:
    """Per-minute buckets: events, bad events, bad ratio and latency quantiles per slice."""
    from collectors.sli import sli_rows
    from controlplane.clock import parse_since

    _check_format(fmt)
    settings = load_settings(store_url=store_url)
    try:
        start = parse_since(since)
    except ValueError as exc:
        raise fail(str(exc)) from None
    rows = sli_rows(_store_engine(settings), since=start, slice_name=slice_name)
    if fmt == "json":
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo(f"no SLI data since {start.isoformat()}" + (f" for slice {slice_name}" if slice_name else ""))
        return
    typer.echo(f"{'slice':<16} {'minute (UTC)':<20} {'total':>8} {'bad':>6} {'bad %':>7}  exemplar (bad)")
    for row in rows:
        ratio = f"{100 * row['bad'] / row['total']:.2f}" if row["total"] else "-"
        exemplar = row["exemplars"]["bad"][0] if row["exemplars"]["bad"] else ""
        typer.echo(
            f"{row['slice']:<16} {row['minute'][:16]:<20} {row['total']:>8} {row['bad']:>6} {ratio:>7}  {exemplar}"
        )


slo_app = typer.Typer(help="Service level objectives: status, error budgets, burn-rate alerts.", no_args_is_help=True)
app.add_typer(slo_app, name="slo")


def load_slo_specs(settings: Settings):  # type: ignore[no-untyped-def]
    from controlplane.slo_spec import SloConfigError, load_events, load_slos

    try:
        events = load_events(settings.events_path)
        return load_slos(settings.slos_path, events=events), events
    except SloConfigError as exc:
        raise fail(str(exc)) from None


@slo_app.command("status")
def slo_status(
    at: Annotated[
        str | None, typer.Option(help="Evaluate as of this instant (ISO 8601 or 2h for two hours ago), to replay.")
    ] = None,
    store_url: StoreUrl = None,
    slos: Annotated[Path | None, typer.Option(help="SLO file (default: $CONTROLPLANE_SLOS_PATH).")] = None,
    fmt: Format = "table",
) -> None:
    """Each SLO: SLI, error budget left, burn rates, alerts. Exit 0 healthy, 1 ticket, 2 page, 3 unknown."""
    from controlplane.clock import parse_since, utcnow
    from controlplane.slo import evaluate_all
    from controlplane.slo_spec import SloConfigError

    _check_format(fmt)
    settings = load_settings(store_url=store_url, slos_path=slos)
    specs, events = load_slo_specs(settings)
    slices = _slices(settings)
    try:
        when = parse_since(at) if at else utcnow()
    except ValueError as exc:
        raise fail(str(exc)) from None
    try:
        report = evaluate_all(_store_engine(settings), specs, events=events, boundaries=slices.boundaries, at=when)
    except SloConfigError as exc:
        raise fail(str(exc)) from None
    except Exception as exc:  # the store unreachable or broken: "could not evaluate" for cron
        raise fail(f"could not evaluate the SLOs: {type(exc).__name__}: {exc}") from None
    if fmt == "json":
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        typer.echo(f"SLOs as of {report.to_dict()['at']}")
        typer.echo(
            f"{'slo':<28} {'objective':>9} {'sli':>9} {'budget left':>11} {'burn 1h':>8} {'burn 6h':>8} "
            f"{'alert':<7} policy"
        )
        for s in report.slos:
            alert = "PAGE" if s["alerts"]["page"] else ("ticket" if s["alerts"]["ticket"] else "-")
            sli = "no data" if s["no_data"] else f"{100 * s['sli']:.3f}%"
            typer.echo(
                f"{s['name']:<28} {100 * s['objective']:>8.2f}% {sli:>9} {100 * s['budget_remaining']:>10.1f}% "
                f"{s['burn_rates']['1h']:>8.2f} {s['burn_rates']['6h']:>8.2f} {alert:<7} {s['policy']}"
            )
    raise typer.Exit(report.exit_code)


@slo_app.command("rules")
def slo_rules(
    out: Annotated[Path, typer.Option("--out", help="Where to write the Prometheus rules file.")] = Path(
        "slo-rules.yml"
    ),
    slos: Annotated[Path | None, typer.Option(help="SLO file (default: $CONTROLPLANE_SLOS_PATH).")] = None,
) -> None:
    """Write Prometheus recording and alerting rules for the SLOs (check them with `promtool check rules`)."""
    from controlplane.slo_rules import render_rules
    from controlplane.slo_spec import SloConfigError

    settings = load_settings(slos_path=slos)
    specs, events = load_slo_specs(settings)
    try:
        text = render_rules(specs, _slices(settings), events=events)
    except SloConfigError as exc:
        raise fail(str(exc)) from None
    out.write_text(text)
    rules = sum(1 for line in text.splitlines() if line.lstrip().startswith(("- record", "- alert")))
    typer.echo(f"wrote {rules} rules to {out}")


@slo_app.command("export")
def slo_export(
    fmt: Annotated[str, typer.Option("--format", help="openslo (OpenSLO v1 YAML).")] = "openslo",
    out: Annotated[Path | None, typer.Option("--out", help="Write to this file instead of standard output.")] = None,
    slos: Annotated[Path | None, typer.Option(help="SLO file (default: $CONTROLPLANE_SLOS_PATH).")] = None,
) -> None:
    """Export the SLOs as OpenSLO v1 documents (event windows have no OpenSLO form and are refused)."""
    from controlplane.openslo import export_openslo
    from controlplane.slo_spec import SloConfigError

    if fmt != "openslo":
        raise fail(f"--format must be openslo, not {fmt!r}")
    specs, _events = load_slo_specs(load_settings(slos_path=slos))
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
    from controlplane.openslo import import_openslo
    from controlplane.slo_spec import SloConfigError, apply_slo_changes, load_events, spec_document

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
    typer.echo(
        f"{len(changes)} SLO(s) changed in {settings.slos_path}" + "".join(f"\n  {c['subject']}" for c in changes)
    )


audit_app = typer.Typer(
    help="The tamper-evident audit log: append, checkpoint, prove, export, verify.", no_args_is_help=True
)
app.add_typer(audit_app, name="audit")
AuditUrl = Annotated[
    str | None,
    typer.Option(
        "--audit-url",
        help="The audit log's database (default: $CONTROLPLANE_AUDIT_URL, else sqlite:///./var/audit.db).",
    ),
]


def _audit(settings: Settings, *, signing: bool = True):  # type: ignore[no-untyped-def]
    """The log, its key ring, and (when signing) the current signer."""
    from audit.keys import AuditKeyError, KeyRing
    from audit.log import AuditLog
    from audit.schema import migrate_audit
    from controlplane.storage import make_engine

    try:
        engine = make_engine(settings.audit_url, **settings.engine_options())
    except StorageConfigError as exc:
        raise fail(str(exc)) from None
    migrate_audit(engine)
    passphrase = settings.audit_key_passphrase.get_secret_value().encode() if settings.audit_key_passphrase else None
    ring = KeyRing(
        settings.audit_key_dir,
        name=settings.audit_origin,
        passphrase=passphrase,
        development=settings.environment != "production",
    )
    try:
        signer = ring.signer() if signing else None
    except AuditKeyError as exc:
        raise fail(str(exc)) from None
    return AuditLog(engine, origin=settings.audit_origin, signer=signer), ring


@audit_app.command("append")
def audit_append(
    kind: Annotated[str, typer.Option(help="change, money, checklist, attestation, access or system.")],
    actor: Annotated[str, typer.Option(help="Who did it.")],
    subject: Annotated[str, typer.Option(help="What it is about, e.g. bet:42 or slo:bet-placement.")],
    payload: Annotated[str, typer.Option(help="A JSON object (integers for money; no floats).")],
    audit_url: AuditUrl = None,
) -> None:
    """Append one entry; prints its sequence number and leaf hash."""
    from audit.canonical import NotCanonical
    from audit.log import AuditError

    try:
        document = json.loads(payload)
    except ValueError as exc:
        raise fail(f"--payload is not JSON ({exc}); give an object such as '{{\"amount_minor\": 500}}'") from None
    if not isinstance(document, dict):
        raise fail("--payload must be a JSON object")
    log, _ring = _audit(load_settings(audit_url=audit_url), signing=False)
    try:
        appended = log.append(kind=kind, actor=actor, subject=subject, payload=document)
    except (AuditError, NotCanonical) as exc:
        raise fail(str(exc)) from None
    typer.echo(json.dumps({"seq": appended.seq, "leaf_hash": appended.leaf_hash}))


@audit_app.command("checkpoint")
def audit_checkpoint(
    every: Annotated[
        float | None, typer.Option("--every", help="Keep signing every this many seconds, until interrupted.", min=1)
    ] = None,
    audit_url: AuditUrl = None,
) -> None:
    """Sign the current tree head (C2SP checkpoint); never signs one inconsistent with the last."""
    import time

    from audit.log import AuditError

    log, _ring = _audit(load_settings(audit_url=audit_url))
    while True:
        try:
            typer.echo(log.checkpoint(), nl=False)
        except AuditError as exc:
            raise fail(str(exc), EXIT_CRITICAL) from None
        if every is None:
            return
        time.sleep(every)


@audit_app.command("verifier-key")
def audit_verifier_key(
    all_keys: Annotated[bool, typer.Option("--all", help="Every key ever used, with dates.")] = False,
    audit_url: AuditUrl = None,
) -> None:
    """Print the signed-note verifier key (name+keyid+base64) to give to whoever verifies the log."""
    _log, ring = _audit(load_settings(audit_url=audit_url))
    if all_keys:
        typer.echo(json.dumps(ring.verifier_keys(), indent=2))
    else:
        typer.echo(ring.signer().verifier_key())


@audit_app.command("rotate-key")
def audit_rotate_key(audit_url: AuditUrl = None) -> None:
    """Start signing with a new key; the old ones stay verifiers of the checkpoints they signed."""
    _log, ring = _audit(load_settings(audit_url=audit_url))
    typer.echo(ring.rotate().verifier_key())


@audit_app.command("verify")
def audit_verify(audit_url: AuditUrl = None) -> None:
    """Check chain, leaves, tree and every checkpoint. Exit 0 intact; 2 names the first bad entry."""
    log, ring = _audit(load_settings(audit_url=audit_url), signing=False)
    result = log.verify(*ring.verifiers())
    if result.ok:
        typer.echo(f"OK: {result.entries} entries, {result.checkpoints} checkpoints verified")
        return
    typer.echo(f"FAILED at seq {result.first_bad_seq}: {result.problem}", err=True)
    raise typer.Exit(EXIT_CRITICAL)


@audit_app.command("check-money")
def audit_check_money(audit_url: AuditUrl = None) -> None:
    """Money invariants from the log alone: every settlement has its placement, payouts are stake x
    bound odds. Exit 0 when they hold, 2 listing what does not."""
    from audit.sink import check_money

    log, _ring = _audit(load_settings(audit_url=audit_url), signing=False)
    result = check_money(log)
    if result.ok:
        typer.echo(f"OK: {result.bets} bets, every settlement placed and paid as bound")
        return
    for problem in result.problems[:50]:
        typer.echo(problem, err=True)
    raise typer.Exit(EXIT_CRITICAL)


@audit_app.command("prove")
def audit_prove(
    seq: Annotated[int, typer.Option("--seq", help="The entry to prove.", min=0)],
    audit_url: AuditUrl = None,
) -> None:
    """An inclusion proof of one entry against the latest signed checkpoint (JSON)."""
    from audit.log import AuditError

    log, ring = _audit(load_settings(audit_url=audit_url))
    try:
        bundle = log.export([seq], verifier_key=ring.signer().verifier_key())
    except (AuditError, KeyError) as exc:
        raise fail(str(exc)) from None
    typer.echo(json.dumps(bundle, indent=2))


@audit_app.command("export")
def audit_export(
    out: Annotated[Path, typer.Option("--out", help="Where to write the bundle (JSON).")],
    from_seq: Annotated[int | None, typer.Option("--from-seq", min=0)] = None,
    to_seq: Annotated[int | None, typer.Option("--to-seq", min=0)] = None,
    bet: Annotated[int | None, typer.Option("--bet", help="Every entry about this bet.")] = None,
    audit_url: AuditUrl = None,
) -> None:
    """A proof bundle that verifies offline: `python -m audit.verify bundle.json --key VKEY`."""
    from sqlalchemy import select

    from audit.log import AuditError
    from audit.schema import entries

    if (bet is None) == (from_seq is None or to_seq is None):
        raise fail("give either --from-seq A --to-seq B, or --bet ID")
    log, ring = _audit(load_settings(audit_url=audit_url))
    if bet is not None:
        with log.engine.connect() as conn:
            seqs = list(conn.execute(select(entries.c.seq).where(entries.c.subject == f"bet:{bet}")).scalars())
    else:
        if to_seq < from_seq:  # type: ignore[operator]
            raise fail("--to-seq must not be below --from-seq")
        seqs = list(range(from_seq, to_seq + 1))  # type: ignore[arg-type,operator]
    try:
        bundle = log.export(seqs, verifier_key=ring.signer().verifier_key())
    except (AuditError, KeyError) as exc:
        raise fail(str(exc)) from None
    out.write_text(json.dumps(bundle, indent=2))
    typer.echo(f"wrote {len(bundle['entries'])} entries, proven against tree size {bundle['tree_size']}, to {out}")


@app.command("demo")
def demo(
    bets: Annotated[int, typer.Option(help="How many bets to place.", min=1, max=100_000)] = 300,
    database_url: DatabaseUrl = None,
) -> None:
    """Run the platform on SQLite, place a few hundred bets with retries and price moves, settle, summarise."""
    from controlplane.demo import run_demo

    # The demo starts from a clean slate, so it keeps its own database and sink apart from `serve`'s.
    platform = load_platform_settings(
        database_url=database_url or "sqlite:///./var/demo.db",
        outbox_sink_path=None if "PLATFORM_OUTBOX_SINK_PATH" in os.environ else "var/demo-outbox.jsonl",
    )
    settings = load_settings(
        store_url=None if "CONTROLPLANE_STORE_URL" in os.environ else "sqlite:///./var/demo-store.db",
    )
    summary = run_demo(settings, platform, bets=bets, out=typer.echo)
    raise typer.Exit(EXIT_OK if summary.ledger_ok else EXIT_CRITICAL)


def _engine(settings: PlatformSettings):  # type: ignore[no-untyped-def]
    from sample_platform.db import DatabaseConfigError, make_engine

    try:
        return make_engine(settings.database_url, **settings.engine_options())
    except DatabaseConfigError as exc:
        raise fail(str(exc)) from None


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
