"""The dashboard's accounts in the control plane's store: users (role, password hash, lockout) and their
sign-in sessions, each kept under the SHA-256 of its token, never the token itself.

Migration: `controlplane/migrations/versions/s0006_users.py`.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, DateTime
from sqlmodel import Field

from controlplane.store import StoreModel, table


def _utc(*, nullable: bool = False) -> Column:
    return Column(DateTime(timezone=True), nullable=nullable)


class DashboardUser(StoreModel, table=True):
    """One person who may sign in to the dashboard, with one role."""

    __tablename__ = "dashboard_users"

    username: str = Field(primary_key=True, max_length=64)
    role: str = Field(max_length=16)  # oncall | compliance | admin
    password_hash: str = Field(max_length=255)  # scrypt$log2_n$r$p$salt$digest
    disabled: bool = Field(default=False)
    failed_attempts: int = Field(default=0)  # consecutive wrong passwords since the last success or lockout
    locked_until: datetime | None = Field(default=None, sa_column=_utc(nullable=True))
    created_at: datetime = Field(sa_column=_utc())
    last_login_at: datetime | None = Field(default=None, sa_column=_utc(nullable=True))


class DashboardSession(StoreModel, table=True):
    """A signed-in browser: valid until `expires_at` unless revoked, and only for the role it was made with."""

    __tablename__ = "dashboard_sessions"

    token_sha256: str = Field(primary_key=True, max_length=64)
    username: str = Field(max_length=64, foreign_key="dashboard_users.username", index=True)
    role: str = Field(max_length=16)
    created_at: datetime = Field(sa_column=_utc())
    expires_at: datetime = Field(sa_column=_utc())
    revoked_at: datetime | None = Field(default=None, sa_column=_utc(nullable=True))


users_t, sessions_t = table(DashboardUser), table(DashboardSession)
