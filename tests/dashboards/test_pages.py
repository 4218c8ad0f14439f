"""The dashboard in Streamlit's AppTest, on SQLite and PostgreSQL: signed out only the login page
exists; each role gets exactly its pages (the others are not registered for its session at all), each
page renders without an exception, and bad input is a message beside the field."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import streamlit as st
from sqlalchemy import Engine, select
from streamlit.testing.v1 import AppTest

from audit.log import AuditLog
from audit.schema import entries, migrate_audit
from controlplane.storage import make_engine
from controlplane.store import SliBucket, migrate_store, table
from controlplane.users import add_user
from dashboards import handoff, routes
from dashboards.shell import SESSION_KEY

APP = str(Path(__file__).parents[2] / "streamlit_app.py")
PASSWORD = "correct horse battery staple"
USERS = {"ana": "oncall", "cleo": "compliance", "ada": "admin"}
PAGES = {
    "oncall": ("On-call", {"oncall", "admin"}),
    "incidents": ("Incidents", {"oncall", "compliance", "admin"}),
    "readiness": ("Readiness", {"oncall", "compliance", "admin"}),
    "cost": ("Cost per settled bet", {"oncall", "admin"}),
    "audit": ("Audit log", {"compliance", "admin"}),
    "users": ("Users", {"admin"}),
}


@contextmanager
def dashboard_store(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, origin: str, users: dict[str, str]
) -> Iterator[Engine]:
    """A fresh store and audit log where the pages look for them (the environment's URLs, caches cleared),
    with `users` (name: role) signed up; afterwards the app's own engines are disposed too, so that no
    connection outlives the test's schema."""
    for name, value in {
        "CONTROLPLANE_STORE_URL": database_url,
        "CONTROLPLANE_AUDIT_URL": database_url,
        "CONTROLPLANE_AUDIT_KEY_DIR": str(tmp_path / "keys"),
        "CONTROLPLANE_AUDIT_ORIGIN": origin,
    }.items():
        monkeypatch.setenv(name, value)
    st.cache_data.clear()
    st.cache_resource.clear()
    engine = make_engine(database_url)
    migrate_store(engine)
    migrate_audit(engine)
    for name, role in users.items():
        add_user(engine, name, role=role, password=PASSWORD, by="test")
    try:
        yield engine
    finally:
        from dashboards import shell

        routes.close_engines()
        shell.store().dispose()
        shell.audit_store().dispose()
        st.cache_resource.clear()
        engine.dispose()


@pytest.fixture
def dashboard(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    with dashboard_store(database_url, tmp_path, monkeypatch, "audit.test/dashboard", USERS) as engine:
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        with engine.begin() as conn:
            conn.execute(
                table(SliBucket).insert(),
                [{"slice": "bet-placement", "minute": now - timedelta(minutes=m), "total": 100,
                  "bad": 5 if m < 3 else 0} for m in range(1, 90)],
            )  # fmt: skip
        yield engine


@pytest.fixture
def served() -> Iterator[None]:
    """The pages as `controlplane dashboard` serves them: with the export route beside them."""
    handoff.SERVED.set()
    yield
    handoff.SERVED.clear()


def _fetch(at: AppTest, label: str) -> tuple[str, bytes]:
    """Fetch the export a page offers under `label`, as this session's browser would: its file name and bytes."""
    [url] = [e.proto.url for e in at.get("link_button") if e.proto.label == label]
    response = routes.serve_export(
        url.removeprefix("/api/exports/"), {handoff.SESSION_COOKIE: at.session_state[SESSION_KEY]}
    )
    assert response.status_code == 200, response.body
    name = response.headers["content-disposition"].split('filename="', 1)[1].rstrip('"')
    return name, bytes(response.body)


def _signed_in(user: str, password: str = PASSWORD) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.text_input[0].input(user)
    at.text_input[1].input(password)
    return at.button[0].click().run()


def _assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def _url_paths(at: AppTest) -> set[str]:
    """The pages st.navigation registered for this session at its last run, by URL path ("" is the
    default page, at /)."""
    return {str(info.get("url_pathname")) for info in at._registered_pages.values()}


def _open(at: AppTest, url_path: str) -> AppTest:
    """Open a page as its menu entry or its URL does. The pages are functions, and AppTest.switch_page()
    finds only pages that are files, so ask for the page by the hash st.navigation registered it under."""
    by_path = {info.get("url_pathname"): page_hash for page_hash, info in at._registered_pages.items()}
    assert url_path in by_path, f"no page at /{url_path} for this session; it has {sorted(by_path)}"
    at._page_hash = by_path[url_path]
    return at


def test_signed_out_only_the_login_page_exists(dashboard: Engine) -> None:
    at = AppTest.from_file(APP, default_timeout=120).run()
    _assert_clean(at)
    assert [t.value for t in at.title] == ["Betting control plane"]
    assert [w.label for w in at.text_input] == ["Username", "Password"] and at.button[0].label == "Log in"
    assert _url_paths(at) == {""}  # the login page, at /


@pytest.mark.parametrize("user", list(USERS))
def test_each_role_reaches_exactly_its_pages(dashboard: Engine, user: str) -> None:
    at = _signed_in(user)
    _assert_clean(at)
    role = USERS[user]
    own = {page: title for page, (title, roles) in PAGES.items() if role in roles}
    # the hidden home page at / and the hidden runbook page, then exactly the role's pages
    assert _url_paths(at) == {"", "runbook", "trace", *own}
    for page, title in own.items():
        _open(at, page).run()
        _assert_clean(at)
        assert at.title[0].value == title
        assert not at.error, (page, [e.value for e in at.error])


def test_a_wrong_password_is_refused_beside_the_form_and_audited(dashboard: Engine) -> None:
    at = _signed_in("ana", "not the password at all")
    assert [t.value for t in at.title] == ["Betting control plane"]
    assert "unknown user or wrong password" in at.error[0].value
    with dashboard.connect() as conn:
        docs = [
            json.loads(t) for t in conn.execute(select(entries.c.entry).where(entries.c.kind == "access")).scalars()
        ]
    assert [d["payload"]["outcome"] for d in docs if d["subject"] == "user:ana"] == ["failure"]
    assert not any("not the password" in json.dumps(d) for d in docs)


def test_logging_out_or_a_revoked_session_leaves_only_the_login_page(dashboard: Engine) -> None:
    from controlplane.users import disable_user

    at = _signed_in("ana")
    at.sidebar.button[0].click().run()
    assert [t.value for t in at.title] == ["Betting control plane"]
    at = _signed_in("ada")
    disable_user(dashboard, "ada", by="test")
    at.run()
    assert [t.value for t in at.title] == ["Betting control plane"]
    assert "session has ended" in at.info[0].value


def test_compliance_reads_readiness_but_cannot_act(dashboard: Engine) -> None:
    at = _signed_in("cleo")
    assert at.title[0].value == "Readiness"
    assert "Run the checklist now" not in [b.label for b in at.button]
    on_call = _signed_in("ana")
    _open(on_call, "readiness").run()
    assert "Run the checklist now" in [b.label for b in on_call.button]


def test_the_on_call_view_comes_back_from_its_url(dashboard: Engine) -> None:
    at = _signed_in("ana")
    at.query_params["slo"] = "login-availability"
    at.query_params["range"] = "30d"
    at.run()
    _assert_clean(at)
    assert at.selectbox[0].value == "login-availability"
    assert at.query_params["range"] in ("30d", ["30d"])
    boxes = [*at.error, *at.warning, *at.success, *at.info]
    tiles = [b for b in boxes if b.value.startswith("**") and " · " in b.value.split("\n")[0]]
    by_name = {t.value.split("**")[1]: t for t in tiles}
    # The bad minutes of bet placement spent its availability budget: an amber tile that says so in words.
    spent = by_name["bet-placement-availability"]
    assert spent in at.warning and "budget exhausted" in spent.value, spent.value
    assert by_name["login-availability"] in at.info and "no data" in by_name["login-availability"].value


def test_a_proof_bundle_for_a_bet_and_bad_input_beside_the_field(dashboard: Engine, served: None) -> None:
    log = AuditLog(dashboard, origin="audit.test/dashboard")
    log.append(kind="money", actor="platform", subject="bet:7", payload={"type": "bet_placed", "stake_minor": 100})
    at = _signed_in("cleo")
    _open(at, "audit").run()
    bet_field = next(w for w in at.text_input if w.label == "Bet id")
    bet_field.input("seven").run()
    assert any("A bet id is a whole number" in e.value for e in at.error)
    next(w for w in at.text_input if w.label == "Bet id").input("7").run()
    next(b for b in at.button if b.label == "Prepare bundle").click().run()
    assert any("no checkpoint" in e.value for e in at.error)  # nothing signed yet: said, not crashed
    from controlplane.auditing import open_audit
    from controlplane.settings import Settings

    signer, _ring = open_audit(Settings())
    signer.checkpoint()
    signer.engine.dispose()
    next(b for b in at.button if b.label == "Prepare bundle").click().run()
    _assert_clean(at)
    assert at.code[0].value.startswith("python -m audit.verify bet-7-bundle.json --key ")
    assert _fetch(at, "Download bundle (JSON)")[0] == "bet-7-bundle.json"
    with dashboard.connect() as conn:
        exports = (
            conn.execute(select(entries.c.entry).where(entries.c.subject == "export:proof-bundle")).scalars().all()
        )
    assert [(json.loads(e)["actor"], json.loads(e)["payload"]["entries"]) for e in exports] == [("cleo", 1)]
