"""Plotly figures for the pages: `slo` (on-call), `cost` (cost page), `common` (layout and colours shared
by all)."""
