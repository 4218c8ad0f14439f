"""Local accounts for the web dashboard: users with a role, scrypt password hashes, lockout, sessions,
and their entries in the audit log.

    add_user(engine, "ana", role="oncall", password=secret, by="bo")
    attempt = authenticate(engine, "ana", secret, now=now)      # SignIn: ok, user, reason
    token = create_session(engine, attempt.user, now)
"""

from controlplane.users.accounts import (
    AccountChange,
    User,
    add_user,
    disable_user,
    enable_user,
    find_user,
    list_users,
    set_password,
    set_role,
)
from controlplane.users.audit_entries import audit_change, audit_sign_in
from controlplane.users.policy import ROLES, Role, UserError
from controlplane.users.signin import (
    LOCKOUT,
    MAX_FAILED_ATTEMPTS,
    SESSION_TTL,
    SignIn,
    authenticate,
    create_session,
    purge_sessions,
    revoke_session,
    session_user,
)

__all__ = [
    "LOCKOUT",
    "MAX_FAILED_ATTEMPTS",
    "ROLES",
    "SESSION_TTL",
    "AccountChange",
    "Role",
    "SignIn",
    "User",
    "UserError",
    "add_user",
    "audit_change",
    "audit_sign_in",
    "authenticate",
    "create_session",
    "disable_user",
    "enable_user",
    "find_user",
    "list_users",
    "purge_sessions",
    "revoke_session",
    "session_user",
    "set_password",
    "set_role",
]
