"""What a page's URL pins: the instant (`?at=2026-12-04T21:07:00Z`) and the page's own choices (`slo`,
`range`, `window`), so a link pasted into a channel or carried by an alert reproduces the same numbers.

Usage (in a page):

    at = pinned_at()                # ?at=ISO, or now to the minute (live); a bad value is a message
    st.query_params["slo"] = slo    # the page writes its choices back into the URL

Signed out, the login page keeps the link that was opened (`remember_link`), and signing in returns to
it (`return_to_link`).
"""

from __future__ import annotations

from datetime import UTC, datetime

import streamlit as st

from controlplane.clock import utcnow
from controlplane.formatting import utc

WANTED_LINK = "wanted_link"  # session key: (url path, query params) opened while signed out


def live_minute() -> datetime:
    return utcnow().replace(second=0, microsecond=0)


def parse_at(text: str) -> datetime:
    """An ISO 8601 instant (a trailing Z or an offset; no zone means UTC), taken to its minute."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace(" ", "T"))
    except ValueError:
        raise ValueError(f"cannot read {text!r} as a time; use ISO 8601, like 2026-12-04T21:07:00Z") from None
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.replace(second=0, microsecond=0)


def pinned_at() -> tuple[datetime, bool]:
    """The instant the page shows, and whether it is pinned by the link (False: live, now to the minute).
    An unreadable or future `at` is a message, and the page shows now."""
    text = st.query_params.get("at")
    now = live_minute()
    if not text:
        return now, False
    try:
        moment = parse_at(text)
    except ValueError as exc:
        st.error(f"The link's `at`: {exc}. Showing now.")
        return now, False
    if moment > now:
        st.error(f"The link's `at` ({utc(moment)}) is in the future. Showing now.")
        return now, False
    return moment, True


def at_caption(at: datetime, pinned: bool) -> str:
    if pinned:
        return f"As of {utc(at)} (pinned by the link's `at`; remove it from the URL to follow now)."
    return f"As of {utc(at)}; live."


def remember_link() -> None:
    """On the login page: keep the page and parameters the signed-out visitor opened, for after sign-in."""
    path = (st.context.url or "").split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    params = st.query_params.to_dict()
    if (path and path not in ("login", "home")) or params:
        st.session_state.setdefault(WANTED_LINK, (path, params))


def return_to_link(pages: dict[str, st.Page], first: str) -> None:
    """After sign-in: open the remembered page with its parameters (the role's first page, `first`, if the
    link named none or one the role does not have)."""
    wanted = st.session_state.pop(WANTED_LINK, None)
    if not wanted:
        return
    path, params = wanted
    page = pages.get(path) or pages[first]
    st.switch_page(page, query_params=params)


TRACE_PAGE = "trace"  # relative, as the runbook links: the dashboard may live under a path


def trace_link(trace_id: str) -> str:
    """A Markdown link to the trace page for a kept trace's id."""
    return f"[`{trace_id}`]({TRACE_PAGE}?id={trace_id})"
