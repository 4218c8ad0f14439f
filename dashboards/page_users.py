"""/users"""

from dashboards.users_page import render

render()
