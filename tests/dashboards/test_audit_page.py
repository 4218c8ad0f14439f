"""The audit page, and every export from the dashboard recorded: tables offer no export of their own
(Streamlit's `client.disableDataExport`, from the command line and from .streamlit/config.toml), no page
hands out a file but through the export route, which records each fetch, a proof bundle is named for what it proves and its verify command
stays on screen after the download, the latest checkpoint says when it was signed, and entries page back
past the first 500. In Streamlit's AppTest, on SQLite and PostgreSQL."""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import streamlit as st
from sqlalchemy import Engine, func, select
from streamlit.testing.v1 import AppTest
from typer.testing import CliRunner

from audit.log import AuditLog
from audit.schema import checkpoints, entries
from audit.verify import main as verify_main
from controlplane.auditing import open_audit
from controlplane.cli import app
from controlplane.formatting import utc
from controlplane.settings import Settings
from dashboards.charts.common import CHART_CONFIG
from tests.dashboards.test_browser import _settled, _sign_in, browser, prepare_bundle, serving_dashboard  # noqa: F401
from tests.dashboards.test_pages import _assert_clean, _fetch, _open, _signed_in, dashboard, served  # noqa: F401

ROOT = Path(__file__).parents[2]
APP = ROOT / "streamlit_app.py"
ORIGIN = "audit.test/dashboard"  # the `dashboard` fixture's CONTROLPLANE_AUDIT_ORIGIN
RUN_ID = "9f37c2a41b0d6e85"


# -- no table offers an export of its own -----------------------------------------------------------


def _flag(command: list[str], name: str) -> str | None:
    return command[command.index(name) + 1] if name in command else None


def _without_streamlit_settings(home: Path) -> dict[str, str]:
    """The environment minus what else could set Streamlit's options: STREAMLIT_* variables, ~/.streamlit."""
    return {k: v for k, v in os.environ.items() if not k.startswith("STREAMLIT_")} | {"HOME": str(home)}


def test_the_dashboard_command_line_turns_off_table_exports(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    started: list[list[str]] = []
    monkeypatch.setattr("os.execv", lambda _path, argv: started.append(list(argv)))
    result = CliRunner().invoke(app, ["dashboard", "--port", "8599"])
    assert result.exit_code == 0, result.output
    [command] = started
    assert _flag(command, "--client.disableDataExport") == "true"
    assert _flag(command, "--client.toolbarMode") == "minimal"
    # Streamlit itself takes the flags (a misspelt option is refused, a wrong value not applied): the same
    # command line, asked for its configuration instead of serving, away from the repository's config file.
    at = command.index("run")
    shown = subprocess.run(
        [*command[:at], "config", "show", *command[at + 2 :]],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, env=_without_streamlit_settings(tmp_path),
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert re.search(
        r"set in command-line argument or environment variable\n(.*\n)?disableDataExport = true", shown.stdout
    ), shown.stdout


@pytest.mark.parametrize("where", ["repository root", "elsewhere"])
def test_streamlit_run_reads_the_repository_config(where: str, tmp_path: Path) -> None:
    """`streamlit run streamlit_app.py` reads .streamlit/config.toml from the working directory and from
    beside the script; this does what `streamlit run` does before it serves (streamlit.web.cli._main_run)."""
    probe = (
        "import sys\n"
        "from streamlit import config\n"
        "config._main_script_path = sys.argv[1]\n"
        "config.get_config_options(force_reparse=True)\n"
        "print(config.get_option('client.disableDataExport'), config.get_option('client.toolbarMode'))\n"
        "print(config.get_where_defined('client.disableDataExport'))\n"
    )
    cwd = ROOT if where == "repository root" else tmp_path
    done = subprocess.run(
        [sys.executable, "-c", probe, str(APP)], cwd=cwd, capture_output=True, text=True, timeout=120,
        env=_without_streamlit_settings(tmp_path),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    values, defined_in = done.stdout.splitlines()
    assert values == "True minimal"
    assert Path(defined_in) == ROOT / ".streamlit" / "config.toml"


def _download_buttons(tree: ast.AST) -> list[ast.Call]:
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "download_button"
    ]


def test_no_page_hands_out_a_file_but_through_the_export_route() -> None:
    """A guard beside the behaviour tests: a download button would hand its file to whoever has its media
    URL, unrecorded; every export is offered through `offer_export`, whose route records each fetch."""
    pages = [ROOT / "streamlit_app.py", *sorted((ROOT / "dashboards").rglob("*.py"))]
    found = [
        f"{path.relative_to(ROOT)}:{call.lineno}"
        for path in pages
        for call in _download_buttons(ast.parse(path.read_text(), filename=str(path)))
    ]
    assert not found, f"download buttons: {found}"


def test_every_chart_hides_the_image_download() -> None:
    """Plotly's "Download plot as png" would export a page's data unrecorded: every chart is drawn with
    `CHART_CONFIG`, which removes it."""
    pages = [ROOT / "streamlit_app.py", *sorted((ROOT / "dashboards").rglob("*.py"))]
    charts = [
        (path, node)
        for path in pages
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path)))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "plotly_chart"
    ]
    assert len(charts) >= 8
    bare = [
        f"{path.relative_to(ROOT)}:{call.lineno}"
        for path, call in charts
        if not any(
            k.arg == "config" and isinstance(k.value, ast.Name) and k.value.id == "CHART_CONFIG" for k in call.keywords
        )
    ]
    assert not bare, f"charts with the image download: {bare}"
    assert "toImage" in CHART_CONFIG["modeBarButtonsToRemove"]


# -- proof bundles ------------------------------------------------------------------------------------


def _seed_and_sign(engine: Engine) -> None:
    log = AuditLog(engine, origin=ORIGIN)
    log.append(kind="money", actor="platform", subject="bet:3", payload={"type": "bet_placed", "stake_minor": 100})
    log.append(kind="money", actor="platform", subject="bet:4", payload={"type": "bet_placed", "stake_minor": 250})
    log.append(kind="money", actor="platform", subject="bet:3", payload={"type": "bet_settled", "outcome": "win"})
    log.append(kind="checklist", actor="cron", subject=f"checklist-run:{RUN_ID}", payload={"checks": []})
    signer, _ring = open_audit(Settings())
    signer.checkpoint()
    signer.engine.dispose()


def _field(widgets: Any, label: str) -> Any:
    return next(w for w in widgets if w.label == label)


def _exports(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        texts = conn.execute(select(entries.c.entry).where(entries.c.subject == "export:proof-bundle")).scalars()
        return [json.loads(t) for t in texts]


def _ask(at: AppTest, what: str) -> None:
    if what == "a bet":
        _field(at.text_input, "Bet id").input("3").run()
    elif what == "a checklist run":
        at.radio[0].set_value(what).run()
        _field(at.text_input, "Run id").input(RUN_ID).run()
    else:
        at.radio[0].set_value(what).run()
        _field(at.number_input, "First seq").set_value(1).run()
        _field(at.number_input, "Last seq").set_value(2).run()


@pytest.mark.parametrize(
    ("what", "file_name", "proves", "subjects"),
    [
        ("a bet", "bet-3-bundle.json", "bet:3", {"bet:3"}),
        (
            "a checklist run",
            f"checklist-run-{RUN_ID}-bundle.json",
            f"checklist-run:{RUN_ID}",
            {f"checklist-run:{RUN_ID}"},
        ),
        ("a range of entries", "entries-1-2-bundle.json", "entries:1-2", {"bet:4", "bet:3"}),
    ],
)
def test_a_bundle_is_named_for_what_it_proves_and_its_command_stays_after_the_download(
    dashboard: Engine,  # noqa: F811
    served: None,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    what: str,
    file_name: str,
    proves: str,
    subjects: set[str],
) -> None:
    _seed_and_sign(dashboard)
    at = _open(_signed_in("cleo"), "audit").run()
    _ask(at, what)
    _field(at.button, "Prepare bundle").click().run()
    _assert_clean(at)
    assert not at.error, [e.value for e in at.error]
    command = at.code[0].value
    assert command.startswith(f"python -m audit.verify {file_name} --key ")
    assert _exports(dashboard) == []  # offered, not taken

    saved, data = _fetch(at, "Download bundle (JSON)")
    assert saved == file_name
    at.run()
    _assert_clean(at)
    assert [c.value for c in at.code] == [command]
    [export] = _exports(dashboard)
    assert export["actor"] == "cleo"
    assert (export["payload"]["for"], export["payload"]["file"]) == (proves, file_name)
    assert export["payload"]["sha256"] == hashlib.sha256(data).hexdigest()

    # The command on screen verifies the file the browser saved, offline.
    bundle = json.loads(data)
    assert {json.loads(e["entry"])["subject"] for e in bundle["entries"]} == subjects
    (tmp_path / file_name).write_bytes(data)
    monkeypatch.chdir(tmp_path)
    argv = shlex.split(command)
    assert argv[:3] == ["python", "-m", "audit.verify"]
    assert verify_main(argv[3:]) == 0


def test_without_the_export_route_the_page_offers_no_file(dashboard: Engine) -> None:  # noqa: F811
    _seed_and_sign(dashboard)
    at = _open(_signed_in("cleo"), "audit").run()
    _ask(at, "a bet")
    _field(at.button, "Prepare bundle").click().run()
    assert not at.get("link_button")
    assert any("controlplane dashboard" in c.value for c in at.caption)


def test_a_new_request_replaces_the_prepared_bundle_and_bad_input_is_said_beside_the_field(
    dashboard: Engine,  # noqa: F811
) -> None:
    _seed_and_sign(dashboard)
    at = _open(_signed_in("cleo"), "audit").run()
    _field(at.button, "Prepare bundle").click().run()
    assert "Give the bet id, the run id or a range first." in [e.value for e in at.error]
    _field(at.text_input, "Bet id").input("3").run()
    _field(at.button, "Prepare bundle").click().run()
    assert at.code[0].value.startswith("python -m audit.verify bet-3-bundle.json")
    _field(at.text_input, "Bet id").input("4").run()
    assert not at.code and not at.get("link_button")  # the bundle on screen is always for what the field says
    _field(at.text_input, "Bet id").input("99").run()
    _field(at.button, "Prepare bundle").click().run()
    assert any("no audit entry about bet 99" in e.value for e in at.error) and not at.code
    at.radio[0].set_value("a checklist run").run()
    _field(at.text_input, "Run id").input("../../etc").run()
    assert any("A run id is letters, digits" in e.value for e in at.error)
    at.radio[0].set_value("a range of entries").run()
    _field(at.number_input, "First seq").set_value(5).run()
    _field(at.number_input, "Last seq").set_value(2).run()
    assert "Last seq must not be below First seq." in [e.value for e in at.error]
    _assert_clean(at)
    assert _exports(dashboard) == []  # preparing is not exporting; only a download is


# -- the checkpoint and the entries -------------------------------------------------------------------


def test_the_latest_checkpoint_shows_its_tree_size_and_when_it_was_signed(dashboard: Engine) -> None:  # noqa: F811
    at = _open(_signed_in("cleo"), "audit").run()
    assert _field(at.metric, "latest signed checkpoint").value == "none yet"
    _seed_and_sign(dashboard)
    AuditLog(dashboard, origin=ORIGIN).append(kind="system", actor="test", subject="late", payload={})
    st.cache_data.clear()
    with dashboard.connect() as conn:
        size, signed = conn.execute(select(checkpoints.c.tree_size, checkpoints.c.created_at)).one()
    at = _open(_signed_in("cleo"), "audit").run()
    _assert_clean(at)
    assert _field(at.metric, "latest signed checkpoint").value == f"tree size {size}"
    caption = next(c.value for c in at.caption if c.value.startswith("signed "))
    assert caption.startswith(f"signed {utc(signed)} with key ")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ", utc(signed))
    assert caption.endswith("newer entries not yet covered")  # the late entry and the sign-ins since


def _caption(at: AppTest) -> str:
    return next(c.value for c in at.caption if c.value.startswith("entries "))


def _seqs(at: AppTest) -> list[int]:
    return [int(s) for s in at.dataframe[0].value["seq"]]


def test_entries_page_back_past_the_first_500(dashboard: Engine) -> None:  # noqa: F811
    log = AuditLog(dashboard, origin=ORIGIN)
    log.append_many(
        [{"kind": "money", "actor": "platform", "subject": f"bet:{n}", "payload": {"n": n}} for n in range(1_200)]
    )
    at = _open(_signed_in("cleo"), "audit").run()
    _assert_clean(at)
    with dashboard.connect() as conn:
        total = conn.execute(select(func.count()).select_from(entries)).scalar_one()  # 1,200 and the sign-in
    assert total > 1_200
    assert _caption(at) == f"entries 1\u2013100 of {total:,}, newest first (page 1 of {-(-total // 100)})"
    assert _seqs(at) == list(range(total - 1, total - 101, -1))
    row = at.dataframe[0].value.iloc[-1]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ", row["time"])
    assert json.loads(row["payload"]) == {"n": row["seq"]}

    _field(at.selectbox, "Per page").set_value(500).run()
    _field(at.number_input, "Page (1 is the newest)").set_value(3).run()
    _assert_clean(at)
    assert _caption(at) == f"entries 1,001\u2013{total:,} of {total:,}, newest first (page 3 of 3)"
    third = _seqs(at)
    assert third == list(range(total - 1_001, -1, -1))  # down to the oldest entry of all

    # The log grows while one reads: the page stays put until asked for the newer entries.
    log.append_many([{"kind": "system", "actor": "test", "subject": "later", "payload": {}} for _ in range(7)])
    st.cache_data.clear()  # the page's caches live 15 s; the test does not wait them out
    at.run()
    assert (
        _seqs(at) == third and _caption(at) == f"entries 1,001\u2013{total:,} of {total:,}, newest first (page 3 of 3)"
    )
    newer = next(b for b in at.button if b.label == "Show 7 newer entries")
    newer.click().run()
    _assert_clean(at)
    assert _field(at.number_input, "Page (1 is the newest)").value == 1
    assert _seqs(at)[0] == total + 6  # the newest of the 7

    _field(at.number_input, "Page (1 is the newest)").set_value(40).run()
    _assert_clean(at)
    assert "There are 3 pages of 500; showing the last." in [e.value for e in at.error]
    assert _seqs(at)[-1] == 0


# -- in a real browser ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_in_a_browser_tables_offer_no_download_and_the_bundle_keeps_its_name(
    browser: Any,  # noqa: F811
    dashboard: Engine,  # noqa: F811
    tmp_path: Path,
) -> None:
    """`controlplane dashboard` in Chromium: the entries table's toolbar has no "Download as CSV" (only
    AppTest's view of the page cannot show that), and the bundle the browser saves has its name."""
    _seed_and_sign(dashboard)
    with serving_dashboard(dict(os.environ), tmp_path / "dashboard.log") as url:
        page = _sign_in(browser, url, "cleo")
        page.goto(f"{url}/audit")
        page.get_by_role("heading", name="Audit log", exact=True).wait_for(timeout=60_000)
        _settled(page)
        table = page.locator('[data-testid="stDataFrame"]').first
        table.hover()
        toolbar = page.locator('[data-testid="stElementToolbar"]').first
        toolbar.get_by_role("button").first.wait_for(timeout=30_000)  # the toolbar is up (search, fullscreen)
        labels = [b.get_attribute("aria-label") for b in toolbar.get_by_role("button").all()]
        assert labels and "Download as CSV" not in labels, labels

        link = prepare_bundle(page, 3)
        with page.expect_download() as download:
            page.evaluate("href => { const a = document.createElement('a'); a.href = href; a.click(); }",
                          link.get_attribute("href"))  # fmt: skip
        assert download.value.suggested_filename == "bet-3-bundle.json"
        _settled(page)
        assert "python -m audit.verify bet-3-bundle.json --key" in page.locator('[data-testid="stCode"]').inner_text()
        page.context.close()
    assert [e["payload"]["file"] for e in _exports(dashboard)] == ["bet-3-bundle.json"]
