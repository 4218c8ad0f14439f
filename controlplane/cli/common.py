"""What every command group shares: exit codes, errors as messages, settings, the `--format` option, the store.

Exit codes for checks meant for cron: 0 ok, 1 warning, 2 critical, 3 unknown or usage error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import typer
from pydantic import ValidationError
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from controlplane.auditing import AuditUnavailable, audit_engine
from controlplane.config import CONFIG_ERRORS, ControlPlaneConfig, load_config
from controlplane.logs import LogExport
from controlplane.settings import Settings
from controlplane.slices import SliceConfig, SliceConfigError, load_slices
from controlplane.storage import StorageConfigError, make_engine
from controlplane.store import migrate_store

EXIT_OK, EXIT_WARNING, EXIT_CRITICAL, EXIT_UNKNOWN = 0, 1, 2, 3
FORMAT_HELP = {
    "table": "a table for people",
    "json": "JSON for scripts",
    "csv": "CSV with a header row",
    "junit": "JUnit XML for CI servers",
    "openslo": "OpenSLO v1 YAML",
    "tree": "a span tree for people",
}
SettingsT = TypeVar("SettingsT")


def fail(message: str, code: int = EXIT_UNKNOWN) -> typer.Exit:
    """Print `error: message` on stderr; raise the returned exit (default 3, "could not run")."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def format_option(*choices: str) -> Any:
    """The shared `--format` option; the Literal type limits it to what a verb can write:
    `Fmt = Annotated[Literal["table", "json"], format_option("table", "json")]`.

    A value outside the choices is a usage error (exit 3) that lists them."""
    described = "; ".join(f"{choice}: {FORMAT_HELP.get(choice, choice)}" for choice in choices)
    return typer.Option("--format", help=f"Output: {described}.")


LogFormatOption = Annotated[
    Literal["json", "text"],
    typer.Option("--log-format", help="Log lines as JSON objects (with trace and span ids) or as text."),
]
TableOrJson = Annotated[Literal["table", "json"], format_option("table", "json")]


def log_export(settings: Settings, service: str) -> LogExport:
    """`setup_logging`'s OTLP options from the settings (CONTROLPLANE_OTLP_ENDPOINT, _HEADERS)."""
    headers = settings.otlp_headers.get_secret_value() if settings.otlp_headers else ""
    return LogExport(otlp_endpoint=settings.otlp_endpoint, otlp_headers=headers, service=service)


def load_settings(**overrides: object) -> Settings:
    """The control plane's settings (`CONTROLPLANE_*`), with the flags a verb was given."""
    return settings_or_exit(Settings, "CONTROLPLANE_", overrides)


def settings_or_exit(model: type[SettingsT], prefix: str, overrides: dict[str, object]) -> SettingsT:
    """`model(**overrides)` (unset flags left to the environment); invalid values exit 3 naming the variable."""
    try:
        return model(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(
            f"{prefix}{'_'.join(str(p) for p in e['loc']).upper() or 'SETTINGS'}: {e['msg']}" for e in exc.errors()
        )
        raise fail(f"invalid settings: {problems}") from None


StoreUrl = Annotated[
    str | None,
    typer.Option(
        "--store-url",
        help="The control plane's store (default: $CONTROLPLANE_STORE_URL, else sqlite:///./var/controlplane.db).",
    ),
]
# The platform a command drives (`platform load`, `platform faults ...`) and its admin token.
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
SlosPath = Annotated[Path | None, typer.Option("--slos", help="SLO file (default: $CONTROLPLANE_SLOS_PATH).")]


def store_engine(settings: Settings) -> Engine:
    """The control plane's store, migrated to the newest schema."""

    try:
        engine = make_engine(settings.store_url, **settings.engine_options())
    except StorageConfigError as exc:
        raise fail(str(exc)) from None
    try:
        migrate_store(engine)
    except SQLAlchemyError as exc:
        engine.dispose()
        where = make_url(settings.store_url).render_as_string(hide_password=True)
        raise fail(f"cannot open the store at {where}: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    return engine


def audit_or_exit(settings: Settings) -> Engine:
    """The audit log's database (migrated, shared by the process); one that cannot be opened exits 3."""
    try:
        return audit_engine(settings)
    except AuditUnavailable as exc:
        raise fail(str(exc)) from None


def audit_outbox_sink(settings: Settings) -> Any:
    """The sink that appends the platform's outbox events to the audit log (typed money and change
    entries, each event once), marking changes made while a slice is frozen (`policy: freeze`)."""
    # local: only an audit-log sink needs these
    from audit.log import AuditLog
    from audit.sink import OutboxAuditSink, SubjectKeys
    from controlplane.policy.flag import FreezeFlag

    engine = audit_or_exit(settings)
    # The store is only read, lazily and never migrated here: one that is not there yet, or is down,
    # marks nothing and does not stop the caller.
    try:
        flag: FreezeFlag | None = FreezeFlag(make_engine(settings.store_url, **settings.engine_options()))
    except ValueError as exc:  # a store URL it cannot use: no marks, say so once
        typer.echo(f"warning: changes are not marked with the error budget policy: {exc}", err=True)
        flag = None
    return OutboxAuditSink(AuditLog(engine, origin=settings.audit_origin), SubjectKeys(engine), annotate=flag)


def slices_or_exit(settings: Settings) -> SliceConfig:
    """Only the slice file (what a collector needs without SLOs); a wrong file exits 3."""
    try:
        return load_slices(settings.slices_path)
    except SliceConfigError as exc:
        raise fail(str(exc)) from None


def config_or_exit(settings: Settings) -> ControlPlaneConfig:
    """The SLO, event and slice files the settings name; a wrong file exits 3 naming the file and the fix."""
    try:
        return load_config(settings)
    except CONFIG_ERRORS as exc:
        raise fail(str(exc)) from None


def cut_short_by_ctrl_c(exc: BaseException) -> bool:
    """Whether a Ctrl-C is behind `exc`: one that lands inside a database transaction comes out as the
    error of the rollback it cut short (SQLAlchemy's PendingRollbackError), with the interrupt as its
    context."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False
