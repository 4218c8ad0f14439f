"""The control plane's web dashboard's pages: `controlplane dashboard` serves them with the routes of
`dashboards/webapp.py` (the server-set session cookie, recorded exports); a bare `streamlit run
streamlit_app.py` serves the pages alone, without exports, and a reload signs you out.

A router: the signed-in user's role decides which pages exist (`dashboards.shell.role_pages`); signed out,
only the login page does. Pages read only through the control plane's and the audit log's APIs.
"""

from __future__ import annotations

import streamlit as st
from sqlalchemy.exc import SQLAlchemyError

from controlplane.storage import StorageConfigError
from dashboards.login import render_account
from dashboards.shell import current_user, pages_for

st.set_page_config(page_title="Betting control plane", page_icon=":material/sports_score:", layout="wide")
try:
    user = current_user()
    navigation = st.navigation(pages_for(user))
    if user is not None:
        render_account(user.username, user.role, user.source)
    navigation.run()
except (SQLAlchemyError, StorageConfigError) as exc:  # the store or the audit log cannot be reached
    st.error(
        f"The control plane's store cannot be read ({type(exc).__name__}). Check CONTROLPLANE_STORE_URL and "
        "CONTROLPLANE_AUDIT_URL, and that the database is up; then reload."
    )
