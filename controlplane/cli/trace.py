"""`controlplane trace show`: a kept trace as a span tree (with log lines and links) or as JSON."""

from __future__ import annotations

import json
import re
from typing import Annotated, Literal

import typer

from controlplane.cli.common import EXIT_WARNING, StoreUrl, fail, format_option, load_settings, store_engine

trace_app = typer.Typer(
    help="Traces the collector kept: each slice-minute's bad and slowest events and readiness probes.",
    no_args_is_help=True,
)
TRACE_ID = re.compile(r"^[0-9a-f]{32}$")


@trace_app.command("show")
def trace_show(
    trace_id: Annotated[
        str, typer.Argument(help="The trace id: 32 hex digits (a response's traceparent, a problem's trace_id).")
    ],
    store_url: StoreUrl = None,
    fmt: Annotated[Literal["tree", "json"], format_option("tree", "json")] = "tree",
) -> None:
    """The span tree of a kept trace with timings, attributes, links and the log lines of each span.
    Exit 1 when the collector did not keep that trace."""
    # local: the traces store is only needed by this verb
    from controlplane.traces.render import render_tree
    from controlplane.traces.store import read_trace

    wanted = trace_id.strip().lower()
    if not TRACE_ID.match(wanted):
        raise fail(f"trace id {trace_id[:80]!r} is not 32 hex digits (as in traceparent 00-<trace id>-<span id>-01)")
    view = read_trace(store_engine(load_settings(store_url=store_url)), wanted)
    if view is None:
        raise fail(
            f"trace {wanted} was not kept: the collector keeps each slice-minute's bad and slowest events and "
            "probes, for CONTROLPLANE_TRACE_RETENTION_DAYS",
            EXIT_WARNING,
        )
    typer.echo(json.dumps(view.to_dict(), indent=2, default=str) if fmt == "json" else render_tree(view))
