"""The only page there is before signing in."""

from dashboards.login import render_login

render_login()
