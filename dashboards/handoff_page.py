"""The pages' side of the hand-off to the dashboard's routes (`dashboards.handoff`, `dashboards.routes`).

    hand_cookie(SESSION_COOKIE, token, max_age)       # the server sets it, HttpOnly; ("", 0) clears it
    offer_export("Download report (CSV)", text, file_name="cost-report.csv", mime="text/csv",
                 what="cost-report-csv", roles=("oncall", "admin"))

An export leaves the dashboard only through its route: to the browser it was prepared for, signed in
with a role that may have it, each fetch an `access` entry. Served without the routes (a bare
`streamlit run streamlit_app.py`), pages say so instead of offering the file.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from dashboards.handoff import CLAIMS, GRANT_COOKIE, GRANTS, SERVED, SHELF, Export, Grantee, digest
from dashboards.shell import SESSION_KEY, current_user

HANDED = "cookie_handoff"  # session state: (cookie, digest of value) -> nonce, or DONE once the browser has it
GRANT = "sso_grant"  # session state: this browser's single-sign-on grant (the cookie's value)
EXPORTS = "exports"  # session state: (what, file, sha256) -> shelf key
DONE = "done"
NOT_SERVED = (
    "Exports are served by `controlplane dashboard` (dashboards/webapp.py), which records each one; this "
    "server has no export route."
)


def hand_cookie(cookie: str, value: str, max_age: int) -> None:
    """Have the server set `cookie` to `value` in this browser (or clear it: "" and 0), once per value: a
    one-pixel frame loads the one-time claim until the route has taken it."""
    if not SERVED.is_set():
        return
    handed: dict[tuple[str, str], str] = st.session_state.setdefault(HANDED, {})
    key = (cookie, digest(value))
    nonce = handed.get(key)
    if nonce == DONE:
        return
    if nonce is None:
        nonce = handed[key] = CLAIMS.register(cookie, value, max_age)
    elif CLAIMS.taken(nonce):
        handed[key] = DONE
        return
    st.iframe(f"/api/session/claim?nonce={nonce}", height=1)


def grant_for(username: str, role: str, seconds: float) -> str:
    """This browser's single-sign-on grant (issued once per browser session and handed to it as a cookie):
    what the export route knows the viewer by, as it knows a local account by its session token."""
    value = st.session_state.get(GRANT)
    if not isinstance(value, str) or GRANTS.find(value) != Grantee(username, role, "oidc"):
        sent = st.context.cookies.get(GRANT_COOKIE)
        reusable = sent and GRANTS.find(sent) == Grantee(username, role, "oidc")
        value = sent if reusable else GRANTS.issue(Grantee(username, role, "oidc"), seconds)
        st.session_state[GRANT] = value
    assert isinstance(value, str)
    if st.context.cookies.get(GRANT_COOKIE) != value:
        hand_cookie(GRANT_COOKIE, value, int(seconds))
    return value


def revoke_grant() -> None:
    """Signing out: the grant is void at once, whatever becomes of its cookie."""
    value = st.session_state.pop(GRANT, None)
    if isinstance(value, str):
        GRANTS.revoke(value)


def _owner() -> str | None:
    """The digest of the cookie value this browser's exports are served to."""
    viewer = current_user()
    if viewer is None:
        return None
    value = st.session_state.get(SESSION_KEY) if viewer.source == "local" else st.session_state.get(GRANT)
    return digest(value) if isinstance(value, str) and value else None


def offer_export(
    label: str,
    data: str | bytes,
    *,
    file_name: str,
    mime: str,
    what: str,
    roles: Iterable[str],
    detail: dict[str, Any] | None = None,
    where: DeltaGenerator | None = None,
) -> None:
    """A link to `data` as `file_name`, served by the export route to this browser alone; each fetch is
    recorded with `what`, the file's sha256 and `detail`."""
    place = where if where is not None else st.container()
    owner = _owner()
    if not SERVED.is_set() or owner is None:
        place.caption(f"{label}: {NOT_SERVED}" if owner is not None else f"{label}: sign in to take exports.")
        return
    raw = data.encode() if isinstance(data, str) else data
    export = Export(
        owner=owner,
        roles=frozenset(roles),
        what=what,
        file_name=re.sub(r"[^A-Za-z0-9._-]", "_", file_name),
        mime=mime,
        data=raw,
        detail=dict(detail or {}),
    )
    offered: dict[tuple[str, str, str, str], str] = st.session_state.setdefault(EXPORTS, {})
    known = (owner, what, export.file_name, export.sha256)
    key = offered.get(known)
    if key is None or SHELF.get(key) is None:
        key = offered[known] = SHELF.put(export)
    place.link_button(label, f"/api/exports/{key}", icon=":material/download:")
