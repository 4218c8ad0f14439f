"""The runbook page (`/runbook?name=...`, where an alert's `runbook_url` leads) in Streamlit's AppTest: a
runbook as its Markdown; no name, an unknown one or one that would leave the directory, a message and
the list of runbooks; a role without the page, nothing. No database: the viewer is given."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from dashboards import shell

RUNBOOKS = Path(__file__).parents[2] / "config" / "runbooks"


def _page() -> None:
    from dashboards import runbook_page

    runbook_page.render()


@pytest.fixture
def viewer(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """The signed-in role (change `viewer["role"]`); the shipped runbooks unless the test points elsewhere."""
    who = {"role": "oncall"}
    monkeypatch.setattr(shell, "current_user", lambda: shell.Viewer("ana", who["role"], "local"))
    monkeypatch.setenv("CONTROLPLANE_RUNBOOKS_PATH", str(RUNBOOKS))
    st.cache_resource.clear()  # shell.settings() reads the environment again
    yield who
    st.cache_resource.clear()


def _open(name: str | None = None) -> AppTest:
    at = AppTest.from_function(_page, default_timeout=60)
    if name is not None:
        at.query_params["name"] = name
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _text(at: AppTest) -> str:
    return "\n".join(m.value for m in at.markdown)


@pytest.mark.parametrize("role", ["oncall", "compliance", "admin"])
def test_a_runbook_shows_as_its_markdown(viewer: dict[str, str], role: str) -> None:
    viewer["role"] = role
    at = _open("bet-placement")
    assert [t.value for t in at.title] == ["Runbook: Bet placement"]
    assert "## 3. Safe actions" in _text(at) and "controlplane platform faults clear" in _text(at)
    assert not at.error


@pytest.mark.parametrize("name", ["no-such-runbook", "../slos", "bet-placement.md"])
def test_an_unknown_name_says_so_and_lists_the_runbooks(viewer: dict[str, str], name: str) -> None:
    at = _open(name)
    assert [t.value for t in at.title] == ["Runbooks"]
    (error,) = at.error
    assert f"`?name={name}`" in error.value
    listing = _text(at)
    for runbook in ("bet-placement", "settlement", "login", "odds-feed"):
        assert f"[{runbook}](runbook?name={runbook})" in listing
    assert "slos:" not in listing


def test_without_a_name_the_page_lists_the_runbooks(viewer: dict[str, str]) -> None:
    at = _open()
    assert [t.value for t in at.title] == ["Runbooks"] and not at.error
    assert "[odds-feed](runbook?name=odds-feed)" in _text(at)


def test_no_runbooks_directory_names_the_setting(
    viewer: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CONTROLPLANE_RUNBOOKS_PATH", str(tmp_path / "none"))
    st.cache_resource.clear()
    at = _open("bet-placement")
    assert "CONTROLPLANE_RUNBOOKS_PATH" in at.error[0].value
    assert "CONTROLPLANE_RUNBOOKS_PATH" in at.info[0].value


def test_a_role_without_the_page_sees_nothing(viewer: dict[str, str]) -> None:
    viewer["role"] = "nobody"
    at = _open("bet-placement")
    assert [e.value for e in at.error] == ["This page is not open to your role."]
    assert not at.title and not at.markdown
