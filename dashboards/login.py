"""Signing in and out of the dashboard with a local account (`controlplane users add`); every attempt is
an `access` entry in the audit log."""

from __future__ import annotations

import streamlit as st

from controlplane.clock import utcnow
from dashboards.shell import SESSION_KEY, settings, store


def render_login() -> None:
    st.title("Betting control plane")
    if reason := st.session_state.pop("signed_out_reason", None):
        st.info(reason)
    with st.form("login"):
        username = st.text_input("Username", max_chars=64)
        password = st.text_input("Password", type="password", max_chars=1024)
        submitted = st.form_submit_button("Log in")
    if submitted:
        sign_in(username, password)
    st.caption("No account yet? An admin adds one: `controlplane users add NAME --role oncall|compliance|admin`.")


def sign_in(username: str, password: str) -> None:
    from controlplane.checklist.records import RecordError
    from controlplane.users import audit_sign_in, authenticate, create_session

    if not username.strip() or not password:
        st.error("Give your username and password.")
        return
    now = utcnow()
    attempt = authenticate(store(), username, password, now=now)
    try:
        audit_sign_in(settings(), attempt, source="dashboard")
    except RecordError as exc:
        st.error(f"Sign-in cannot be recorded in the audit log, so it is refused: {exc}")
        return
    if not attempt.ok or attempt.user is None:
        st.error(attempt.reason or "Sign-in refused.")
        return
    st.session_state[SESSION_KEY] = create_session(store(), attempt.user, now)
    st.rerun()


def render_account(username: str, role: str) -> None:
    """The signed-in user and the way out, in the sidebar."""
    from controlplane.users import revoke_session

    with st.sidebar:
        st.caption(f"Signed in as **{username}** ({role})")
        if st.button("Log out", key="logout"):
            token = st.session_state.pop(SESSION_KEY, None)
            if token:
                revoke_session(store(), token, utcnow())
            st.rerun()
