"""The dashboard's overview page, run by Streamlit's own AppTest."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from controlplane.clock import utcnow
from controlplane.slo import floor_minute
from controlplane.store import SliBucket

APP = str(Path(__file__).parents[2] / "streamlit_app.py")


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_overview_lists_every_slo_with_its_budget(store, store_settings, monkeypatch) -> None:
    minute = floor_minute(utcnow() - timedelta(minutes=5))
    with store.begin() as conn:
        conn.execute(
            SliBucket.__table__.insert(), [{"slice": "bet-placement", "minute": minute, "total": 1000, "bad": 500}]
        )
    monkeypatch.setenv("CONTROLPLANE_STORE_URL", store_settings.store_url)
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    table = at.dataframe[0].value
    assert "bet-placement-availability" in list(table["SLO"])
    row = table[table["SLO"] == "bet-placement-availability"].iloc[0]
    assert row["alert"] == "PAGE"
    assert "settings" not in str(at.caption[0].value).lower()


def test_overview_says_what_to_do_when_the_store_is_unusable(monkeypatch) -> None:
    monkeypatch.setenv("CONTROLPLANE_STORE_URL", "mysql://nobody@nowhere/none")
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    assert "CONTROLPLANE_STORE_URL" in at.error[0].value
