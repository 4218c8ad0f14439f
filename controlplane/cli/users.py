"""`controlplane users`: the dashboard's local accounts (add, list, disable, enable, a new password).

Passwords are read from stdin: typed twice at a terminal, else the first line of what is piped in.
Every change is a `change` entry in the audit log. Exit codes: 0 done, 3 could not (bad name, role or
password, unknown or duplicate user, unreachable store or audit log), with the reason.
"""

from __future__ import annotations

import getpass
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from controlplane.auditing import AuditUnavailable
from controlplane.cli.common import StoreUrl, TableOrJson, fail, load_settings, store_engine
from controlplane.clock import utc_text, utcnow
from controlplane.settings import Settings
from controlplane.users.accounts import (
    AccountChange,
    add_user,
    disable_user,
    enable_user,
    find_user,
    list_users,
    set_password,
    unknown_user,
)
from controlplane.users.audit_entries import audit_change
from controlplane.users.policy import UserError, check_password, check_role, normalise_username

users_app = typer.Typer(
    help="Local accounts for the web dashboard: roles, passwords, lockout (every change audited).",
    no_args_is_help=True,
)
Name = Annotated[str, typer.Argument(help="The username: 1 to 64 characters of a-z, 0-9, '.', '_', '-'.")]
By = Annotated[str | None, typer.Option("--by", help="Who makes the change, for the audit log (default: the OS user).")]
AuditUrl = Annotated[str | None, typer.Option("--audit-url", help="The audit log (default: $CONTROLPLANE_AUDIT_URL).")]


def _who(by: str | None) -> str:
    who = (by or getpass.getuser()).strip()
    if not who or len(who) > 200:
        raise fail("--by must name a person (1 to 200 characters)")
    return who


def _read_password() -> str:
    """Typed twice (unseen) at a terminal; otherwise the first line of stdin, without its line ending."""
    try:
        if sys.stdin.isatty():
            first = getpass.getpass("Password: ")
            if getpass.getpass("Password again: ") != first:
                raise fail("the two passwords differ; run the command again and type the same one twice")
            return first
        line = sys.stdin.readline()
    except UnicodeDecodeError:
        raise fail("the password on stdin is not UTF-8 text") from None
    password = line.removesuffix("\n").removesuffix("\r")
    if not password:
        raise fail("no password on stdin; pipe one in: printf '%s\\n' \"$PASSWORD\" | controlplane users ...")
    return password


@contextmanager
def _store(settings: Settings) -> Iterator[Engine]:
    """The store, with its errors and the accounts' errors as messages (exit 3)."""

    engine = store_engine(settings)
    try:
        yield engine
    except (UserError, AuditUnavailable) as exc:
        raise fail(str(exc)) from None
    except SQLAlchemyError as exc:
        raise fail(f"cannot use the store: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    finally:
        engine.dispose()


def _recorder(settings: Settings) -> Callable[[AccountChange], object]:

    return lambda change: audit_change(settings, change)


@users_app.command("add")
def users_add(
    name: Name,
    role: Annotated[str, typer.Option("--role", help="oncall, compliance or admin: which dashboard pages they use.")],
    by: By = None,
    store_url: StoreUrl = None,
    audit_url: AuditUrl = None,
) -> None:
    """Add a dashboard user; the password comes from stdin (typed twice at a terminal). Audited."""

    settings = load_settings(store_url=store_url, audit_url=audit_url)
    who = _who(by)
    try:  # everything that needs no store is checked before the password is asked for or the store opened
        username = normalise_username(name)
        check_role(role)
        password = _read_password()
        check_password(password, username=username)
    except UserError as exc:
        raise fail(str(exc)) from None
    with _store(settings) as engine:
        user = add_user(engine, username, role=role, password=password, by=who, record=_recorder(settings))
    typer.echo(f"added {user.username} ({user.role})")


@users_app.command("list")
def users_list(fmt: TableOrJson = "table", store_url: StoreUrl = None) -> None:
    """Every dashboard user: role, state (enabled, disabled, locked), created, last sign-in. Never a hash."""

    settings = load_settings(store_url=store_url)
    with _store(settings) as engine:
        users = list_users(engine)
    if fmt == "json":
        typer.echo(json.dumps([user.to_dict() for user in users], indent=2))
        return
    if not users:
        typer.echo("no dashboard users; add one with `controlplane users add NAME --role oncall`")
        return
    now = utcnow()
    rows = [("user", "role", "state", "created", "last sign-in")]
    for user in users:
        state = "disabled" if user.disabled else "enabled"
        if user.locked(now) and user.locked_until is not None:
            state += f", locked until {utc_text(user.locked_until)}"
        last = utc_text(user.last_login_at) if user.last_login_at else "never"
        rows.append((user.username, user.role, state, utc_text(user.created_at), last))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


@users_app.command("disable")
def users_disable(name: Name, by: By = None, store_url: StoreUrl = None, audit_url: AuditUrl = None) -> None:
    """Stop a user signing in and end their sessions (audited); disabling a disabled user changes nothing."""

    settings = load_settings(store_url=store_url, audit_url=audit_url)
    who = _who(by)
    with _store(settings) as engine:
        change = disable_user(engine, name, by=who, record=_recorder(settings))
    typer.echo(f"disabled {change.username}" if change else f"{name.strip().casefold()} was already disabled")


@users_app.command("enable")
def users_enable(name: Name, by: By = None, store_url: StoreUrl = None, audit_url: AuditUrl = None) -> None:
    """Let a disabled or locked-out user sign in again (audited)."""

    settings = load_settings(store_url=store_url, audit_url=audit_url)
    who = _who(by)
    with _store(settings) as engine:
        change = enable_user(engine, name, by=who, record=_recorder(settings))
    typer.echo(f"enabled {change.username}" if change else f"{name.strip().casefold()} was already enabled")


@users_app.command("password")
def users_password(name: Name, by: By = None, store_url: StoreUrl = None, audit_url: AuditUrl = None) -> None:
    """Set a user's password from stdin (typed twice at a terminal); lifts a lockout, ends their sessions. Audited."""

    settings = load_settings(store_url=store_url, audit_url=audit_url)
    who = _who(by)
    try:
        username = normalise_username(name)
    except UserError as exc:
        raise fail(str(exc)) from None
    with _store(settings) as engine:
        if find_user(engine, username) is None:  # before asking for a password nobody can use
            raise unknown_user(username)
        password = _read_password()
        check_password(password, username=username)
        change = set_password(engine, username, password, by=who, record=_recorder(settings))
    typer.echo(f"new password set for {change.username}; their sessions have ended")
