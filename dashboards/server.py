"""The dashboard's server process: Streamlit's own command line, started with the libraries the pages
use already imported. Streamlit looks up `sys.modules["pandas"]` from every session's thread; a page
importing pandas for the first time while another session runs could let that session see a
half-initialised module. Importing it here, before any session, rules that out.

    python -m dashboards.server run dashboards/webapp.py --server.port 8501   (what `controlplane dashboard` runs)
"""

import sys

import pandas  # type: ignore[import-untyped]  # noqa: F401
import plotly.graph_objects  # noqa: F401
from streamlit.web.cli import main

if __name__ == "__main__":
    sys.exit(main(prog_name="streamlit"))
