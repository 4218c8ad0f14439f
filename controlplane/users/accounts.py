"""Dashboard accounts: add, list, disable, enable, a new password, a new role.

    user = add_user(engine, "ana", role="oncall", password=secret, by="bo")
    disable_user(engine, "ana", by="bo", record=lambda change: audit_change(settings, change))

Each change can be recorded (in the audit log, see `audit_entries`): `record(change)` runs after the
change is stored, and if it fails the change is undone, so the store and the record are kept both or
neither. Changes that end what a session was made for (disable, new password, new role) revoke the
user's sessions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, cast

from sqlalchemy import Connection, Engine, Row, delete, select, update
from sqlalchemy.exc import IntegrityError

from controlplane.clock import as_utc, utc_text, utcnow
from controlplane.storage import reader
from controlplane.users.passwords import hash_password
from controlplane.users.policy import Role, UserError, check_password, check_role, normalise_username
from controlplane.users.tables import sessions_t, users_t

Action = Literal["add", "disable", "enable", "password", "role"]


@dataclass(frozen=True)
class User:
    """A dashboard account as the rest of the product sees it: never its password hash."""

    username: str
    role: Role
    disabled: bool
    failed_attempts: int
    locked_until: datetime | None
    created_at: datetime
    last_login_at: datetime | None

    def locked(self, now: datetime) -> bool:
        return self.locked_until is not None and self.locked_until > as_utc(now)

    def to_dict(self) -> dict[str, Any]:
        def text(moment: datetime | None) -> str | None:
            return utc_text(moment) if moment is not None else None

        return {
            "username": self.username,
            "role": self.role,
            "disabled": self.disabled,
            "failed_attempts": self.failed_attempts,
            "locked_until": text(self.locked_until),
            "created_at": text(self.created_at),
            "last_login_at": text(self.last_login_at),
        }


@dataclass(frozen=True)
class AccountChange:
    """One change to one account, as recorded in the audit log (never a password or its hash)."""

    action: Action
    username: str
    role: Role
    by: str
    at: datetime


Record = Callable[[AccountChange], object]


def user_from_row(row: Row[Any]) -> User:
    return User(
        username=row.username,
        role=cast(Role, row.role),
        disabled=bool(row.disabled),
        failed_attempts=row.failed_attempts,
        locked_until=as_utc(row.locked_until) if row.locked_until is not None else None,
        created_at=as_utc(row.created_at),
        last_login_at=as_utc(row.last_login_at) if row.last_login_at is not None else None,
    )


def unknown_user(name: str) -> UserError:
    return UserError(f"no dashboard user is named {name!r}; `controlplane users list` shows who there is")


def add_user(
    engine: Engine,
    username: str,
    *,
    role: str,
    password: str,
    by: str,
    now: datetime | None = None,
    record: Record | None = None,
) -> User:
    """A new enabled account; refuses a bad name, an unknown role, a weak password or a name in use."""
    name = normalise_username(username)
    checked_role = check_role(role)
    check_password(password, username=name)
    at = as_utc(now or utcnow())
    values = dict(
        username=name,
        role=checked_role,
        password_hash=hash_password(password),
        disabled=False,
        failed_attempts=0,
        locked_until=None,
        created_at=at,
        last_login_at=None,
    )
    try:
        with engine.begin() as conn:
            conn.execute(users_t.insert().values(**values))
    except IntegrityError:
        raise UserError(
            f"a dashboard user named {name!r} already exists; choose another name, or give them a new password "
            f"with `controlplane users password {name}`"
        ) from None
    if record is not None:
        try:
            record(AccountChange("add", name, checked_role, by, at))
        except BaseException:
            with engine.begin() as conn:
                conn.execute(delete(users_t).where(users_t.c.username == name))
            raise
    return User(name, checked_role, False, 0, None, at, None)


def list_users(engine: Engine) -> list[User]:
    """Every account, by name."""
    with reader(engine).connect() as conn:
        rows = conn.execute(select(users_t).order_by(users_t.c.username)).all()
    return [user_from_row(row) for row in rows]


def find_user(engine: Engine, username: str) -> User | None:
    """The account of that name, or None (also for a name no account could have)."""
    try:
        name = normalise_username(username)
    except UserError:
        return None
    with reader(engine).connect() as conn:
        row = conn.execute(select(users_t).where(users_t.c.username == name)).one_or_none()
    return user_from_row(row) if row is not None else None


def disable_user(
    engine: Engine, username: str, *, by: str, now: datetime | None = None, record: Record | None = None
) -> AccountChange | None:
    """Refuse the account's sign-ins and end its sessions; None when it was already disabled."""
    return _change(
        engine, username, "disable", by, now, record, lambda row: {"disabled": True} if not row.disabled else None
    )


def enable_user(
    engine: Engine, username: str, *, by: str, now: datetime | None = None, record: Record | None = None
) -> AccountChange | None:
    """Allow the account's sign-ins again, and lift a lockout; None when it was enabled and not locked."""
    at = as_utc(now or utcnow())

    def values(row: Row[Any]) -> dict[str, Any] | None:
        locked = row.locked_until is not None and as_utc(row.locked_until) > at
        if not row.disabled and not locked:
            return None
        return {"disabled": False, "failed_attempts": 0, "locked_until": None}

    return _change(engine, username, "enable", by, at, record, values)


def set_password(
    engine: Engine,
    username: str,
    password: str,
    *,
    by: str,
    now: datetime | None = None,
    record: Record | None = None,
) -> AccountChange:
    """A new password: the lockout is lifted and every session of the account ends."""
    name = normalise_username(username)
    check_password(password, username=name)
    hashed = hash_password(password)
    change = _change(
        engine,
        name,
        "password",
        by,
        now,
        record,
        lambda row: {"password_hash": hashed, "failed_attempts": 0, "locked_until": None},
    )
    assert change is not None  # a new password is always a change
    return change


def set_role(
    engine: Engine, username: str, role: str, *, by: str, now: datetime | None = None, record: Record | None = None
) -> AccountChange | None:
    """Another role; the account's sessions (made for the old role) end. None when it had that role."""
    checked = check_role(role)
    return _change(
        engine, username, "role", by, now, record, lambda row: {"role": checked} if row.role != checked else None
    )


def _change(
    engine: Engine,
    username: str,
    action: Action,
    by: str,
    now: datetime | None,
    record: Record | None,
    values_for: Callable[[Row[Any]], dict[str, Any] | None],
) -> AccountChange | None:
    """Apply `values_for(row)` to the account (None: nothing to do), end its sessions unless it is being
    enabled, record the change; if the record fails, put the row and the sessions back as they were."""
    name = normalise_username(username)
    at = as_utc(now or utcnow())
    with engine.begin() as conn:
        before = conn.execute(select(users_t).where(users_t.c.username == name)).one_or_none()
        if before is None:
            raise unknown_user(name)
        values = values_for(before)
        if values is None:
            return None
        conn.execute(update(users_t).where(users_t.c.username == name).values(**values))
        revoked = _revoke_all(conn, name, at) if action != "enable" else []
    change = AccountChange(action, name, cast(Role, values.get("role", before.role)), by, at)
    if record is not None:
        try:
            record(change)
        except BaseException:
            with engine.begin() as conn:
                old = {key: getattr(before, key) for key in values}
                conn.execute(update(users_t).where(users_t.c.username == name).values(**old))
                if revoked:
                    conn.execute(
                        update(sessions_t).where(sessions_t.c.token_sha256.in_(revoked)).values(revoked_at=None)
                    )
            raise
    return change


def _revoke_all(conn: Connection, username: str, now: datetime) -> list[str]:
    """End every live session of the user; returns their keys."""
    return list(
        conn.execute(
            update(sessions_t)
            .where(sessions_t.c.username == username, sessions_t.c.revoked_at.is_(None))
            .values(revoked_at=now)
            .returning(sessions_t.c.token_sha256)
        ).scalars()
    )
