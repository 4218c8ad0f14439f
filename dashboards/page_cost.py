"""/cost"""

from dashboards.cost_page import render

render()
