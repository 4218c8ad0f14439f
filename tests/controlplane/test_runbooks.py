"""Runbooks as code: how a reference is written and checked (SLOs strictly, checklist checks with their
old free text still allowed), where its link points, and that the shipped runbooks cover every slice,
are named by the shipped SLOs and checks, and tell on-call only commands that exist."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from controlplane.checklist.spec import ChecklistConfigError, load_checklist
from controlplane.cli.reference import walk
from controlplane.runbooks import (
    RunbookNotFound,
    available,
    link_for,
    missing_problem,
    read_runbook,
    reference_problem,
    runbook_link,
)
from controlplane.settings import Settings
from controlplane.slo.spec import SloConfigError, SloSpec, apply_slo_changes, load_events, load_slos

CONFIG = Path(__file__).parents[2] / "config"
RUNBOOKS = CONFIG / "runbooks"
SLO = {"name": "x", "slice": "login", "objective": 0.99, "window": {"rolling_days": 7}}
CHECK = {"id": "c", "title": "t", "severity": "warning", "owner": "o", "evaluator": {"type": "attestation"}}


@pytest.fixture
def runbooks(tmp_path: Path) -> Path:
    directory = tmp_path / "runbooks"
    directory.mkdir()
    (directory / "bet-placement.md").write_text("# Bet placement\n\nShed load.\n")
    (directory / "login.md").write_text("No heading here.\n")
    (directory / "Not A Name.md").write_text("ignored: not a runbook name\n")
    return directory


def _slos(tmp_path: Path, runbook: str) -> Path:
    path = tmp_path / "slos.yaml"
    path.write_text(yaml.safe_dump({"slos": [SLO | {"runbook": runbook}]}))
    return path


def _checklist(tmp_path: Path, runbook: str) -> Path:
    path = tmp_path / "checklist.yaml"
    path.write_text(yaml.safe_dump({"checks": [CHECK | {"runbook": runbook}]}))
    return path


# --- references and links -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reference", "fine"),
    [
        ("bet-placement", True),
        ("odds-feed-2", True),
        ("https://wiki.example/runbooks/bets#shed", True),
        ("http://runbooks.internal/login", True),
        ("runbooks/bet-placement.md", False),
        ("bet-placement.md", False),
        ("Bet Placement", False),
        ("ftp://files.example/r.md", False),
        ("https://", False),
        ("https://wiki.example/a b", False),
        ("-leading-hyphen", False),
    ],
)
def test_a_reference_is_a_runbook_name_or_an_http_url(reference: str, fine: bool) -> None:
    assert (reference_problem(reference) is None) is fine


def test_a_path_is_refused_with_the_name_to_write_instead() -> None:
    problem = reference_problem("runbooks/bet-placement.md")
    assert problem is not None and "write `runbook: bet-placement`" in problem and "http(s)://" in problem


@pytest.mark.parametrize(
    ("reference", "link"),
    [
        ("bet-placement", "https://ops.example/runbook?name=bet-placement"),
        ("https://wiki.example/bets?x=1", "https://wiki.example/bets?x=1"),
    ],
)
def test_a_name_links_to_the_dashboard_page_and_a_url_to_itself(reference: str, link: str) -> None:
    assert runbook_link(reference, dashboard_url="https://ops.example/") == link


def test_a_runbook_is_read_with_its_title_and_body(runbooks: Path) -> None:
    book = read_runbook(runbooks, "bet-placement")
    assert (book.name, book.title, book.body) == ("bet-placement", "Bet placement", "Shed load.\n")
    untitled = read_runbook(runbooks, "login")
    assert untitled.title == "login" and untitled.body == "No heading here.\n"
    assert available(runbooks) == ["bet-placement", "login"]


@pytest.mark.parametrize("name", ["nope", "../slos", "..%2Fslos", "/etc/passwd", "bet-placement.md", ""])
def test_an_unknown_or_unsafe_name_is_not_found_and_never_leaves_the_directory(runbooks: Path, name: str) -> None:
    (runbooks.parent / "slos.md").write_text("outside the runbooks directory")
    with pytest.raises(RunbookNotFound) as error:
        read_runbook(runbooks, name)
    assert "outside" not in str(error.value)
    if name == "nope":
        assert "runbooks there: bet-placement, login" in str(error.value)


def test_a_missing_directory_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(RunbookNotFound, match="CONTROLPLANE_RUNBOOKS_PATH"):
        read_runbook(tmp_path / "none", "bet-placement")
    problem = missing_problem(tmp_path / "none", "bet-placement")
    assert problem is not None and "CONTROLPLANE_RUNBOOKS_PATH" in problem


def test_the_runbooks_path_is_a_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert Settings().runbooks_path == Path("config/runbooks")
    monkeypatch.setenv("CONTROLPLANE_RUNBOOKS_PATH", str(tmp_path))
    assert Settings().runbooks_path == tmp_path


# --- SLOs: a name must be a file ---------------------------------------------------------------------


def test_an_slo_naming_an_unknown_runbook_is_refused_naming_file_field_and_fix(tmp_path: Path, runbooks: Path) -> None:
    path = _slos(tmp_path, "bet-placment")
    with pytest.raises(SloConfigError) as error:
        load_slos(path, runbooks=runbooks)
    message = str(error.value)
    assert message.startswith(f"{path}: slo 'x': runbook: no runbook 'bet-placment'".replace("placement", "placment"))
    assert str(runbooks / "bet-placment.md") in message and "did you mean bet-placement?" in message
    assert "write that file, name one of those, or give an http(s):// URL" in message
    assert load_slos(path)[0].runbook == "bet-placment"  # the file alone: the form is right


@pytest.mark.parametrize("runbook", ["bet-placement", "https://wiki.example/runbooks/x"])
def test_an_slo_may_name_a_runbook_file_or_a_url(tmp_path: Path, runbooks: Path, runbook: str) -> None:
    [spec] = load_slos(_slos(tmp_path, runbook), runbooks=runbooks)
    assert spec.runbook == runbook


def test_an_slo_runbook_written_as_a_path_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = _slos(tmp_path, "runbooks/bet-placement.md")
    with pytest.raises(SloConfigError) as error:
        load_slos(path)
    assert str(error.value).startswith(f"{path}: slo 'x': runbook: 'runbooks/bet-placement.md' is not how")
    assert "write `runbook: bet-placement`" in str(error.value)


def test_an_slo_without_a_runbook_has_none() -> None:
    assert SloSpec.model_validate(SLO).runbook is None


def test_slo_changes_may_not_name_a_missing_runbook(tmp_path: Path) -> None:
    slos = tmp_path / "slos.yaml"
    slos.write_text((CONFIG / "slos.yaml").read_text())
    settings = Settings(slos_path=slos, runbooks_path=RUNBOOKS, change_log_path=tmp_path / "changes.jsonl")
    spec = SloSpec.model_validate(SLO | {"runbook": "no-such-runbook"})
    with pytest.raises(SloConfigError, match=r"slo 'x': runbook: no runbook 'no-such-runbook'"):
        apply_slo_changes(settings, [spec], actor="ana", events={})
    assert slos.read_text() == (CONFIG / "slos.yaml").read_text()  # nothing written


# --- checklist checks: a name, a URL, or the old free text ------------------------------------------


@pytest.mark.parametrize(
    "runbook",
    ["bet-placement", "https://wiki.example/x", "Check PLATFORM_LOGIN_* on every node.", "r", "attest", "warm it"],
)
def test_a_check_may_name_a_runbook_a_url_or_say_what_to_do(tmp_path: Path, runbooks: Path, runbook: str) -> None:
    checklist = load_checklist(_checklist(tmp_path, runbook), runbooks=runbooks)
    assert checklist.checks[0].runbook == runbook


@pytest.mark.parametrize(("runbook", "meant"), [("bet-placment", "bet-placement"), ("logn", "login")])
def test_a_check_misspelling_a_runbook_is_refused_with_the_right_name(
    tmp_path: Path, runbooks: Path, runbook: str, meant: str
) -> None:
    path = _checklist(tmp_path, runbook)
    with pytest.raises(ChecklistConfigError) as error:
        load_checklist(path, runbooks=runbooks)
    assert str(error.value).startswith(f"{path}: check 'c': runbook: no runbook {runbook!r}")
    assert f"did you mean `runbook: {meant}`?" in str(error.value)


@pytest.mark.parametrize(
    ("runbook", "link"),
    [
        ("bet-placement", "https://ops.example/runbook?name=bet-placement"),
        ("https://wiki.example/x", "https://wiki.example/x"),
        ("attest", None),
        ("Pre-warm the cache.", None),
    ],
)
def test_a_check_links_to_its_runbook_but_not_to_words(
    tmp_path: Path, runbooks: Path, runbook: str, link: str | None
) -> None:
    check = load_checklist(_checklist(tmp_path, runbook)).checks[0]
    assert check.runbook_link(runbooks=runbooks, dashboard_url="https://ops.example") == link
    assert link_for(runbook, directory=runbooks, dashboard_url="https://ops.example") == link


# --- what ships ----------------------------------------------------------------------------------------


def test_every_slice_has_a_runbook_and_its_slos_name_it() -> None:
    slices = [s["name"] for s in yaml.safe_load((CONFIG / "slices.yaml").read_text())["slices"]]
    specs = load_slos(CONFIG / "slos.yaml", events=load_events(CONFIG / "events.yaml"), runbooks=RUNBOOKS)
    assert set(available(RUNBOOKS)) >= set(slices)
    assert {spec.slice: spec.runbook for spec in specs} == {name: name for name in slices}


def test_the_shipped_checklist_points_at_shipped_runbooks() -> None:
    checklist = load_checklist(CONFIG / "checklist.yaml", runbooks=RUNBOOKS)
    named = {c.id: c.runbook for c in checklist.checks if c.runbook in available(RUNBOOKS)}
    assert named["risk-cache-warm"] == "bet-placement" and named["outbox-depth"] == "settlement"
    assert named["relay-lag"] == "settlement" and named["login-limits-live"] == "login"
    for runbook in set(named.values()):
        text = (RUNBOOKS / f"{runbook}.md").read_text()
        assert all(check in text for check, book in named.items() if book == runbook and "budget" not in check)


@pytest.mark.parametrize("name", available(RUNBOOKS))
def test_a_shipped_runbook_names_its_signals_and_safe_actions(name: str) -> None:
    text = read_runbook(RUNBOOKS, name).text
    assert text.startswith("# ")
    assert f"--slice {name}" in text, "which SLI: `controlplane sli show --slice NAME`"
    assert "/metrics" in text and re.search(r"\bplatform_[a-z_]+", text), "which of the platform's metrics"
    assert "trace id" in text, "where the worst minutes' trace ids are"
    assert "## 3. Safe actions" in text and "## Done when" in text
    assert len(text.splitlines()) <= 100, "short enough to read at 2 a.m."


def _commands(text: str) -> list[list[str]]:
    """`controlplane ...` lines of the fenced blocks, as argument lists (comments dropped)."""
    commands, fenced = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif fenced and line.startswith("controlplane "):
            commands.append(shlex.split(line, comments=True))
    return commands


@pytest.mark.parametrize("name", available(RUNBOOKS))
def test_every_command_a_runbook_gives_is_a_real_verb_with_real_options(name: str) -> None:
    verbs = {v.path: v for v in walk() if not v.is_group}
    commands = _commands(read_runbook(RUNBOOKS, name).text)
    assert commands, "a runbook gives commands to paste"
    for argv in commands:
        words = argv[1:]
        path = next((words[:n] for n in range(len(words), 0, -1) if tuple(words[:n]) in verbs), None)
        assert path is not None, f"{name}.md: `{' '.join(argv)}` is no controlplane verb"
        verb = verbs[tuple(path)]
        options = {o for spec in verb.options for o in spec.split("/")}
        given = {w.split("=", 1)[0] for w in words[len(path) :] if w.startswith("--")}
        assert given <= options, f"{name}.md: `{' '.join(argv)}`: no option {sorted(given - options)}"
