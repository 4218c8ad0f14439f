"""The runbook page (`/runbook?name=bet-placement`), which an alert's `runbook_url` opens: one runbook of
the runbooks directory (config/runbooks, CONTROLPLANE_RUNBOOKS_PATH) as its Markdown. Without a name, or
with one that is no runbook, it says so and lists the runbooks there, each a link."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from controlplane.runbooks import PAGE, RunbookNotFound, available, read_runbook
from dashboards.shell import require, settings


def render() -> None:
    require("oncall", "compliance", "admin")
    directory = settings().runbooks_path
    name = st.query_params.get("name", "").strip()
    if not name:
        st.title("Runbooks")
        _listing(directory)
        return
    try:
        book = read_runbook(directory, name)
    except RunbookNotFound as exc:
        st.title("Runbooks")
        st.error(f"No runbook to show for `?name={name}`: {exc}.")
        _listing(directory)
        return
    st.title(f"Runbook: {book.title}")
    st.caption(f"`{book.name}` · {book.path}")
    st.markdown(book.body)


def _listing(directory: Path) -> None:
    names = available(directory)
    if not names:
        st.info(
            f"There are no runbooks in {directory}. Put one Markdown file per runbook there (NAME.md), or point "
            "CONTROLPLANE_RUNBOOKS_PATH at the folder that has them."
        )
        return
    st.markdown("Runbooks:\n\n" + "\n".join(f"- [{n}]({PAGE}?name={n})" for n in names))
