"""`controlplane dashboard` in Chromium: the session cookie is set by the server (HttpOnly, SameSite=Strict)
and no script in the page can read it; an export's address gives nothing without the session that
prepared it, or after logout, and each fetch writes one `access` entry with the file's sha256; sign-ins
at once (11 wrong and 1 right, then 20 wrong) raise nothing, the right one after the limit is refused,
and every attempt is audited exactly once. On SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select

from audit.schema import entries
from controlplane.users import MAX_FAILED_ATTEMPTS
from tests.dashboards.test_audit_page import _seed_and_sign
from tests.dashboards.test_browser import _settled, _sign_in, browser, prepare_bundle, serving_dashboard  # noqa: F401
from tests.dashboards.test_pages import PASSWORD, dashboard  # noqa: F401
from tests.support import wait_until

pytestmark = pytest.mark.slow
COOKIE = "controlplane_session"


def _access(engine: Engine, subject: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        texts = conn.execute(select(entries.c.entry).where(entries.c.subject == subject).order_by(entries.c.seq))
        return [json.loads(t) for t in texts.scalars()]


def test_the_cookie_is_the_servers_and_exports_go_to_their_session_only(
    browser: Any,  # noqa: F811
    dashboard: Engine,  # noqa: F811
    tmp_path: Path,
) -> None:
    _seed_and_sign(dashboard)
    with serving_dashboard(dict(os.environ), tmp_path / "dashboard.log") as url:
        page = _sign_in(browser, url, "cleo")
        [cookie] = [c for c in page.context.cookies() if c["name"] == COOKIE]
        assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict", cookie
        assert cookie["secure"] is False  # served over http here; https (or an https dashboard URL) adds it
        assert COOKIE not in page.evaluate("document.cookie")
        page.reload()  # the cookie keeps the sign-in
        page.get_by_text("Signed in as cleo").wait_for(timeout=60_000)

        page.goto(f"{url}/audit")
        page.get_by_role("heading", name="Audit log", exact=True).wait_for(timeout=60_000)
        _settled(page)
        link = prepare_bundle(page, 3)
        href = link.get_attribute("href")
        assert href is not None and href.startswith("/api/exports/"), href
        assert _access(dashboard, "export:proof-bundle") == []  # offering is not exporting

        # Copied out of the page: nothing without the session, whatever else the browser sends.
        stranger = httpx.get(f"{url}{href}", timeout=30)
        assert stranger.status_code == 401 and stranger.headers["content-type"] == "application/problem+json"
        forged = httpx.get(f"{url}{href}", cookies={COOKIE: "not-a-session"}, timeout=30)
        assert forged.status_code == 401
        assert _access(dashboard, "export:proof-bundle") == []

        # With the session: the file, and one entry per fetch naming the user, the export and its digest.
        fetched = [page.context.request.get(f"{url}{href}") for _ in range(2)]
        assert [f.status for f in fetched] == [200, 200]
        body = fetched[0].body()
        assert "bet-3-bundle.json" in fetched[0].headers["content-disposition"]
        assert {json.loads(e["entry"])["subject"] for e in json.loads(body)["entries"]} == {"bet:3"}
        recorded = _access(dashboard, "export:proof-bundle")
        assert len(recorded) == 2
        assert {r["actor"] for r in recorded} == {"cleo"}
        assert {r["payload"]["sha256"] for r in recorded} == {hashlib.sha256(body).hexdigest()}
        assert {r["payload"]["file"] for r in recorded} == {"bet-3-bundle.json"}

        # Another signed-in user's browser gets nothing of cleo's exports.
        other = _sign_in(browser, url, "ada")
        assert other.context.request.get(f"{url}{href}").status == 404
        other.context.close()

        # After logout: the session is void and its cookie gone.
        page.get_by_role("button", name="Log out").click()
        page.get_by_role("button", name="Log in").wait_for(timeout=60_000)
        wait_until(lambda: COOKIE not in {c["name"] for c in page.context.cookies()}, "the server to clear the cookie")
        assert page.context.request.get(f"{url}{href}").status == 401
        assert len(_access(dashboard, "export:proof-bundle")) == 2
        page.context.close()


def _attempts(chromium: Any, url: str, passwords: list[str], reuse: Sequence[Any] = ()) -> list[Any]:
    """A page (a Streamlit session) of its own per password, each with the sign-in form filled in: the pages
    of `reuse` first (signed out, the form shown again), then new ones, loading side by side."""
    pages = [*reuse, *(chromium.new_context().new_page() for _ in passwords[len(reuse) :])]
    for page in pages[len(reuse) :]:
        page.goto(url, wait_until="commit")
    for page, password in zip(pages, passwords, strict=True):
        page.get_by_role("textbox", name="Username").fill("ana", timeout=120_000)
        page.get_by_role("textbox", name="Password").fill(password)
        page.get_by_role("button", name="Log in").wait_for()
    return pages


def _outcome(page: Any) -> str:
    page.wait_for_function(
        "() => document.body.innerText.includes('Sign-in refused') || document.body.innerText.includes('Signed in as')",
        timeout=120_000,
    )
    _settled(page)
    return "in" if page.get_by_text("Signed in as ana").count() else "refused"


def _sign_ins(engine: Engine) -> list[dict[str, Any]]:
    return [e for e in _access(engine, "user:ana") if e["payload"].get("type") == "dashboard_sign_in"]


def test_sign_ins_at_once_raise_nothing_and_are_each_audited_once(
    browser: Any,  # noqa: F811
    dashboard: Engine,  # noqa: F811
    tmp_path: Path,
) -> None:
    with serving_dashboard(dict(os.environ), tmp_path / "dashboard.log") as url:
        *wrong, right = _attempts(browser, url, [*(f"wrong password {i}" for i in range(11)), PASSWORD])
        for page in wrong:  # all sent before any is answered: they run at once on the server
            page.get_by_role("button", name="Log in").click()
        # The right password arrives once the limit has been reached, while other wrong ones are still
        # being checked: it must be refused, however the rest interleave.
        wait_until(
            lambda: sum(e["payload"]["outcome"] == "failure" for e in _sign_ins(dashboard)) >= MAX_FAILED_ATTEMPTS,
            "the limit of failed sign-ins",
            timeout=120,
        )
        right.get_by_role("button", name="Log in").click()
        outcomes = [_outcome(p) for p in [*wrong, right]]
        assert outcomes == ["refused"] * 12
        wait_until(lambda: len(_sign_ins(dashboard)) == 12, "an audit entry for every attempt", timeout=120)
        recorded = _sign_ins(dashboard)
        assert len(recorded) == 12 and all(e["payload"]["outcome"] == "failure" for e in recorded)

        many = _attempts(browser, url, [f"guess {i}" for i in range(12)], reuse=[*wrong, right])
        for page in many:
            page.get_by_role("button", name="Log in").click()
        # A reused page still shows its last refusal: the audit log says when all 12 have been decided.
        wait_until(lambda: len(_sign_ins(dashboard)) >= 24, "an audit entry for each of 12 more", timeout=120)
        assert [_outcome(p) for p in many] == ["refused"] * 12
        assert len(_sign_ins(dashboard)) == 24
        for page in many:
            page.context.close()
