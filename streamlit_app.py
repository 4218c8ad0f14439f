"""The control plane's web dashboard (run with `streamlit run streamlit_app.py`).

Pages per role arrive with the SLO engine and the audit log; for now the page shows the bundled
platform's ledger summary, read through the platform's own modules.
"""

from __future__ import annotations

import streamlit as st
from sqlalchemy import func, select

from controlplane.settings import get_settings
from controlplane.storage import make_engine, reader
from sample_platform.ledger import check_ledger
from sample_platform.models import Bet

st.set_page_config(page_title="Betting control plane", layout="wide")
st.title("Betting control plane")
settings = get_settings()
st.caption(f"Platform database: {settings.database_url}")

try:
    engine = make_engine(settings.database_url)
    with reader(engine).begin() as conn:
        check = check_ledger(conn)
        by_status = dict(conn.execute(select(Bet.status, func.count()).group_by(Bet.status)).all())
except Exception as exc:  # the page reports, it does not crash
    st.error(f"Cannot read the platform database: {exc}. Run `controlplane platform migrate` or `make demo` first.")
else:
    cols = st.columns(4)
    for col, status in zip(cols, ("open", "won", "lost", "void")):
        col.metric(f"bets {status}", by_status.get(status, 0))
    st.metric("ledger transactions", check.transactions)
    if check.ok:
        st.success("Ledger check passed: every transaction balances, no wallet is negative, every bet resolved once.")
    else:
        st.error("Ledger check failed")
        st.write(check.problems[:20])
