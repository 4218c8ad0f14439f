"""The dashboard as served: Streamlit's pages (`streamlit_app.py`) and, beside them, the routes a page
cannot serve over its websocket (`dashboards.routes`): the session cookie, set by the server as
HttpOnly, and exports, served only to the browser they were prepared for and recorded when fetched.

    python -m dashboards.server run dashboards/webapp.py --server.port 8501   (what `controlplane dashboard` runs)
"""

from pathlib import Path

import streamlit as st

from dashboards.routes import routes

app = st.App(Path(__file__).resolve().parents[1] / "streamlit_app.py", routes=routes())
