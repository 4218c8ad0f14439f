"""/readiness"""

from dashboards.readiness import render

render()
