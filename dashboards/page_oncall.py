"""/oncall"""

from dashboards.oncall import render

render()
