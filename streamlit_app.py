"""The control plane's web dashboard: `controlplane dashboard` (or `streamlit run streamlit_app.py`).

It reads only through the control plane's APIs (the store, the SLO engine), never a platform's database.
"""

from __future__ import annotations

import streamlit as st

from controlplane.settings import Settings
from dashboards import overview

st.set_page_config(page_title="Betting control plane", layout="wide")
overview.render(Settings())
