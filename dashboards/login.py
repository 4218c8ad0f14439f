"""Signing in and out of the dashboard with a local account (`controlplane users add`); every attempt is
an `access` entry in the audit log."""

from __future__ import annotations

import streamlit as st

from controlplane.auditing import AuditUnavailable
from controlplane.clock import utcnow
from controlplane.users import SESSION_TTL, audit_sign_in, authenticate, create_session, revoke_session
from dashboards.handoff_page import grant_for, hand_cookie, revoke_grant
from dashboards.links import remember_link
from dashboards.shell import COOKIE, SESSION_KEY, oidc_configured, settings, store


def render_login() -> None:
    st.title("Betting control plane")
    remember_link()
    if st.session_state.get("cookie_cleared") and st.context.cookies.get(COOKIE):
        hand_cookie(COOKIE, "", 0)  # the server clears it: no script can
    if reason := st.session_state.pop("signed_out_reason", None):
        st.info(reason)
    with st.form("login"):
        username = st.text_input("Username", max_chars=64)
        password = st.text_input("Password", type="password", max_chars=1024)
        submitted = st.form_submit_button("Log in")
    if submitted:
        sign_in(username, password)
    if oidc_configured():
        if st.session_state.pop("sso_stale", False):
            st.button("Log out of single sign-on", on_click=st.logout)
        else:
            st.button("Log in with single sign-on", on_click=st.login)
    st.caption("No account yet? An admin adds one: `controlplane users add NAME --role oncall|compliance|admin`.")


def sign_in(username: str, password: str) -> None:

    if not username.strip() or not password:
        st.error("Give your username and password.")
        return
    now = utcnow()
    attempt = authenticate(store(), username, password, now=now)
    try:
        audit_sign_in(settings(), attempt, source="dashboard")
    except AuditUnavailable:  # the detail names the audit database: not for a signed-out visitor
        st.error("Sign-in cannot be recorded in the audit log, so it is refused; tell an admin.")
        return
    if not attempt.ok or attempt.user is None:
        # One message for every refusal, so the form tells nobody which names exist or are locked.
        st.error("Sign-in refused: unknown user or wrong password, or the account is locked or disabled.")
        return
    st.session_state[SESSION_KEY] = create_session(store(), attempt.user, now)
    st.session_state.pop("cookie_cleared", None)
    st.rerun()


def render_account(username: str, role: str, source: str = "local") -> None:
    """The signed-in user and the way out, in the sidebar."""

    token = st.session_state.get(SESSION_KEY, "")
    with st.sidebar:
        st.caption(f"Signed in as **{username}** ({role})")
        if source == "oidc":
            issued = st.user.get("iat")  # the grant ends with the single sign-on session it stands for
            since = utcnow().timestamp() - issued if isinstance(issued, int | float) else 0.0
            left = SESSION_TTL.total_seconds() - since
            grant_for(username, role, max(left, 1.0))
            st.button("Log out", key="logout", on_click=_sso_logout)
            return
        if st.button("Log out", key="logout"):
            st.session_state.pop(SESSION_KEY, None)
            st.session_state["cookie_cleared"] = True
            if token:
                revoke_session(store(), token, utcnow())
            st.rerun()
        if token and st.context.cookies.get(COOKIE) != token:  # the cookie this browser sent when it connected
            hand_cookie(COOKIE, token, int(SESSION_TTL.total_seconds()))


def _sso_logout() -> None:
    revoke_grant()
    st.logout()
