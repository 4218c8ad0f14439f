"""/audit"""

from dashboards.audit_page import render

render()
