"""/ : opens the signed-in role's first page (on-call for on-call and admin, readiness for compliance)."""

import streamlit as st

from dashboards.shell import first_page, require

user = require("oncall", "compliance", "admin")
st.switch_page(first_page(user.role))
