"""What every dashboard page shares: settings, the engines, the signed-in user, and which pages each
role has.

Usage (in streamlit_app.py):

    user = current_user()
    st.navigation(pages_for(user)).run()

A page a role may not see is not registered for that session, so it does not exist, not even by URL;
each page also checks the role itself (`require`) before it reads anything.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import streamlit as st
from sqlalchemy import Engine

from controlplane.auditing import AuditUnavailable, audit_append, audit_engine
from controlplane.clock import utcnow
from controlplane.settings import Settings
from controlplane.storage import make_engine
from controlplane.store import migrate_store
from controlplane.users import SESSION_TTL, session_user
from dashboards.handoff import SESSION_COOKIE
from dashboards.links import WANTED_LINK, return_to_link


@dataclass(frozen=True)
class Viewer:
    """Who is looking: a local account or a single-sign-on identity, with one role."""

    username: str
    role: str
    source: str  # local | oidc


SESSION_KEY = "controlplane_session"
COOKIE = SESSION_COOKIE  # the same token, set by the server (HttpOnly), so a reload or a pasted link keeps the sign-in


@dataclass(frozen=True)
class PageSpec:
    render: Callable[[], None]
    title: str
    url_path: str
    icon: str
    roles: frozenset[str]


def role_pages() -> tuple[PageSpec, ...]:
    """Every page behind the sign-in, in menu order, with the roles that have it."""
    # Imported here, not at the top: each of these modules imports this one (require, settings, store).
    from dashboards import audit_page, cost_page, incidents_page, oncall, readiness, users_page

    return (
        PageSpec(oncall.render, "On-call", "oncall", ":material/monitor_heart:", frozenset({"oncall", "admin"})),
        PageSpec(
            incidents_page.render,
            "Incidents",
            "incidents",
            ":material/emergency:",
            frozenset({"oncall", "compliance", "admin"}),
        ),
        PageSpec(
            readiness.render,
            "Readiness",
            "readiness",
            ":material/fact_check:",
            frozenset({"oncall", "compliance", "admin"}),
        ),
        PageSpec(cost_page.render, "Cost", "cost", ":material/payments:", frozenset({"oncall", "admin"})),
        PageSpec(audit_page.render, "Audit", "audit", ":material/verified:", frozenset({"compliance", "admin"})),
        PageSpec(users_page.render, "Users", "users", ":material/group:", frozenset({"admin"})),
    )


@st.cache_resource
def settings() -> Settings:
    return Settings()


@st.cache_resource
def store() -> Engine:
    s = settings()
    engine = make_engine(s.store_url, **s.engine_options())
    migrate_store(engine)
    return engine


def audit_store() -> Engine:
    """The audit log's engine, shared by the process (`controlplane.auditing`)."""
    return audit_engine(settings())


def oidc_configured() -> bool:
    """Single sign-on is on when the dashboard's secrets hold an `[auth]` section (Streamlit's st.login)."""
    try:
        return "auth" in st.secrets
    except Exception:  # no secrets file at all: Streamlit raises its own not-found error
        return False


ROLE_ORDER = ("admin", "oncall", "compliance")


def oidc_viewer() -> Viewer | None:
    """The signed-in single-sign-on user with the strongest role their claim grants, or None. A sign-in
    lasts the dashboard's session lifetime (from the token's `iat`), so a role taken away at the
    provider takes effect at the next sign-in; each sign-in, granted or refused, is audited once."""

    if not oidc_configured() or not st.user.is_logged_in:
        return None
    issued = st.user.get("iat")
    if not isinstance(issued, int | float) or utcnow().timestamp() - issued > SESSION_TTL.total_seconds():
        st.session_state["signed_out_reason"] = "Your single sign-on session has ended; log in again."
        st.session_state["sso_stale"] = True
        return None
    claim = st.user.get(settings().dashboard_role_claim)
    granted = {claim} if isinstance(claim, str) else set(claim) if isinstance(claim, list) else set()
    role = next((r for r in ROLE_ORDER if r in granted), None)
    name = str(st.user.get("email") or st.user.get("sub") or "(unnamed)")
    sign_in = (name, str(issued))
    recorded = _recorded_sign_ins()
    if sign_in not in recorded:  # once per sign-in at the provider, not once per browser tab or reload
        outcome = {"outcome": "success", "role": role} if role else {"outcome": "failure", "reason": "no role"}
        try:
            audit_append(
                settings(), kind="access", actor=name, subject=f"user:{name}",
                payload={"type": "sign_in", "source": "oidc", **outcome},
            )  # fmt: skip
        except AuditUnavailable:
            st.session_state["signed_out_reason"] = "Sign-in cannot be recorded in the audit log, so it is refused."
            st.session_state["sso_stale"] = True
            return None
        recorded.add(sign_in)
    if role is None:
        st.session_state["signed_out_reason"] = (
            f"Your identity provider gave no dashboard role in the `{settings().dashboard_role_claim}` claim "
            "(one of oncall, compliance, admin); ask an admin to grant one."
        )
        st.session_state["sso_stale"] = True
        return None
    return Viewer(name, role, "oidc")


@st.cache_resource
def _recorded_sign_ins() -> set[tuple[str, str]]:
    return set()


def current_user() -> Viewer | None:
    """The viewer of this browser session: a single-sign-on identity, or a local account while its session
    is valid (unexpired, not revoked, the account still enabled with the same role)."""

    if (viewer := oidc_viewer()) is not None:
        return viewer
    token = st.session_state.get(SESSION_KEY)
    from_cookie = False
    if not token and not st.session_state.get("cookie_cleared"):
        token, from_cookie = st.context.cookies.get(COOKIE), True
    if not isinstance(token, str) or not token:
        return None
    user = session_user(store(), token, utcnow())
    if user is None:
        st.session_state.pop(SESSION_KEY, None)
        st.session_state["cookie_cleared"] = True
        if not from_cookie:
            st.session_state["signed_out_reason"] = "Your session has ended; log in again."
        return None
    st.session_state[SESSION_KEY] = token
    return Viewer(user.username, user.role, "local")


def pages_for(user: Viewer | None) -> list[st.Page]:
    """Signed out: the login page. Signed in: a hidden home page at / that opens the role's first page,
    then the role's pages, each at its own URL (a default page would answer only at /). Just signed in
    from a link: that link's page and parameters."""
    # Imported here, not at the top: the login module imports this one (settings, store, the cookie).
    from dashboards.login import render_login

    if user is None:
        return [st.Page(render_login, title="Log in", url_path="login", icon=":material/login:")]
    home = st.Page(_open_first_page, title="Home", url_path="home", default=True, visibility="hidden")
    pages = {p.url_path: _page(p) for p in role_pages() if user.role in p.roles}
    pages.update({p.url_path: _page(p, hidden=True) for p in hidden_pages() if user.role in p.roles})
    if st.session_state.get(WANTED_LINK):
        st.navigation([home, *pages.values()])  # switch_page needs the session's pages registered
        return_to_link(pages, first_page(user.role).url_path)
    return [home, *pages.values()]


def _page(spec: PageSpec, *, hidden: bool = False) -> st.Page:
    return st.Page(
        spec.render, title=spec.title, url_path=spec.url_path, icon=spec.icon,
        visibility="hidden" if hidden else "visible",
    )  # fmt: skip


def hidden_pages() -> tuple[PageSpec, ...]:
    """Pages reached by link only (an alert's runbook, a worst minute's trace), not from the menu."""
    from dashboards import runbook_page, trace_page

    return (
        PageSpec(runbook_page.render, "Runbook", "runbook", ":material/menu_book:", frozenset(ROLE_ORDER)),
        PageSpec(trace_page.render, "Trace", "trace", ":material/timeline:", frozenset(ROLE_ORDER)),
    )


HOME = {"compliance": "readiness"}  # a role's landing page when it is not the first of its menu


def first_page(role: str) -> PageSpec:
    pages = [p for p in role_pages() if role in p.roles]
    return next((p for p in pages if p.url_path == HOME.get(role)), pages[0])


def _open_first_page() -> None:
    """/ : opens the signed-in role's first page (on-call for on-call and admin, readiness for compliance)."""
    user = require("oncall", "compliance", "admin")
    st.switch_page(_page(first_page(user.role)))


def require(*roles: str) -> Viewer:
    """The signed-in user, if their role is one of `roles`; otherwise the page stops here."""
    user = current_user()
    if user is None or user.role not in roles:
        st.error("This page is not open to your role.")
        st.stop()
    assert user is not None
    return user


def problem(message: str, fix: str) -> None:
    """A page that cannot show its data says why and what to run."""
    st.warning(f"{message} {fix}")
