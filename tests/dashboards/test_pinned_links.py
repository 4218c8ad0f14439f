"""Every page with figures takes `?at=ISO` and says so: on-call, readiness, cost and audit show the
pinned instant instead of following now, keep it in the URL, and an unreadable one is a message."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from tests.dashboards.test_pages import _assert_clean, _open, _signed_in, dashboard  # noqa: F401

PINNED_PAGES = ("oncall", "readiness", "cost", "audit")


@pytest.mark.parametrize("page", PINNED_PAGES)
def test_a_page_shows_the_instant_its_link_pins(dashboard: Engine, page: str) -> None:  # noqa: F811
    pinned = (datetime.now(UTC) - timedelta(hours=2)).replace(second=0, microsecond=0)
    at = _signed_in("ada")
    at.query_params["at"] = pinned.strftime("%Y-%m-%dT%H:%M:%SZ")
    _open(at, page).run()
    _assert_clean(at)
    shown = f"{pinned:%Y-%m-%d %H:%M}:00Z"
    assert any(shown in c.value and "pinned by the link" in c.value for c in at.caption), [c.value for c in at.caption]
    assert at.query_params["at"] in (pinned.strftime("%Y-%m-%dT%H:%M:%SZ"), [pinned.strftime("%Y-%m-%dT%H:%M:%SZ")])


@pytest.mark.parametrize("page", PINNED_PAGES)
def test_an_unreadable_at_is_a_message_beside_the_page(dashboard: Engine, page: str) -> None:  # noqa: F811
    at = _signed_in("ada")
    at.query_params["at"] = "last tuesday"
    _open(at, page).run()
    _assert_clean(at)
    assert any("cannot read 'last tuesday' as a time" in e.value for e in at.error), [e.value for e in at.error]
