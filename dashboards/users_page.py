"""The users page (`/users`, admin only): the dashboard's local accounts; add one, disable or enable it.
Every change is a `change` entry in the audit log (a change the log cannot record is undone)."""

from __future__ import annotations

import streamlit as st

from controlplane.clock import utcnow
from controlplane.users import (
    ROLES,
    AccountChange,
    UserError,
    add_user,
    audit_change,
    disable_user,
    enable_user,
    list_users,
)
from dashboards.shell import require, settings, store


def _record(change: AccountChange) -> int:
    return audit_change(settings(), change)


def render() -> None:
    admin = require("admin")
    st.title("Users")
    users = list_users(store())
    st.dataframe(
        [{"username": u.username, "role": u.role, "disabled": u.disabled,
          "locked until": u.locked_until if u.locked(utcnow()) else None,
          "last login": u.last_login_at, "created": u.created_at} for u in users],
        hide_index=True,
    )  # fmt: skip
    left, right = st.columns(2)
    with left.form("add-user", clear_on_submit=True):
        st.markdown("**Add a user**")
        name = st.text_input("Username", max_chars=64)
        role = st.selectbox("Role", list(ROLES))
        password = st.text_input("Password", type="password", max_chars=1024, help="At least 12 characters.")
        if st.form_submit_button("Add"):
            try:
                add_user(store(), name, role=role, password=password, by=admin.username, record=_record)
            except (UserError, ValueError) as exc:
                st.error(str(exc))
            else:
                st.toast(f"Added {name.strip().lower()} ({role}).")
                st.rerun()
    with right.form("switch-user"):
        st.markdown("**Disable or enable**")
        names = [u.username for u in users if u.username != admin.username]
        chosen = st.selectbox("User", names, index=None, placeholder="choose a user")
        disable, enable = st.columns(2)
        off = disable.form_submit_button("Disable")
        on = enable.form_submit_button("Enable")
        if (off or on) and chosen is None:
            st.error("Choose a user first.")
        elif chosen is not None and (off or on):
            act = disable_user if off else enable_user
            try:
                change = act(store(), chosen, by=admin.username, record=_record)
            except (UserError, ValueError) as exc:
                st.error(str(exc))
            else:
                st.toast(f"{chosen}: {'disabled' if off else 'enabled'}" if change else f"{chosen}: no change")
                st.rerun()
