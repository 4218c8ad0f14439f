"""Dashboard accounts in the audit log: account changes as `change` entries and sign-ins as `access`
entries, both with the subject `user:<name>`. No password, hash or session token is ever written.

    disable_user(engine, "ana", by="bo", record=lambda change: audit_change(settings, change))
    audit_sign_in(settings, authenticate(engine, "ana", password, now=now), source="10.0.0.7")
"""

from __future__ import annotations

from typing import Any

from controlplane.auditing import audit_append
from controlplane.clock import utc_text
from controlplane.settings import Settings
from controlplane.users.accounts import AccountChange
from controlplane.users.signin import SignIn

# A name that belongs to no account is not written: people type their password into the name field,
# and the log keeps whatever it is given for good.
UNKNOWN_ACCOUNT = "(unknown)"


def audit_change(settings: Settings, change: AccountChange) -> int:
    """Append a `change` entry for one account change; returns its sequence number (AuditUnavailable when
    the log cannot be written)."""
    payload = {"type": "dashboard_user", "action": change.action, "role": change.role, "at": utc_text(change.at)}
    return audit_append(settings, kind="change", actor=change.by, subject=f"user:{change.username}", payload=payload)


def audit_sign_in(settings: Settings, attempt: SignIn, *, source: str | None = None) -> int:
    """Append an `access` entry for one sign-in attempt, with its outcome and reason; `source` is where
    it came from (a client address), if known."""
    account = attempt.account or UNKNOWN_ACCOUNT
    payload: dict[str, Any] = {
        "type": "dashboard_sign_in",
        "outcome": "success" if attempt.ok else "failure",
        "reason": attempt.reason,
        "at": utc_text(attempt.at),
    }
    if attempt.user is not None:
        payload["role"] = attempt.user.role
    if attempt.locked_until is not None:
        payload["locked_until"] = utc_text(attempt.locked_until)
    if source is not None:
        payload["source"] = source[:200]
    return audit_append(settings, kind="access", actor=account, subject=f"user:{account}", payload=payload)
