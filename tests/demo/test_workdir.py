"""The demo's work directory and databases: it claims only a new, empty or marked directory, deletes
only the files it names, never a database given by URL, and refuses bad URLs with the flag and the fix."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from controlplane.cli import app
from controlplane.demo.stack import DemoError
from controlplane.demo.workdir import MARKER, clean_up, is_own_database, prepare, write_env, write_logins

NONE = {"database_url": None, "store_url": None, "audit_url": None}


def test_a_directory_that_is_not_the_demos_is_refused(tmp_path: Path) -> None:
    (tmp_path / "audit.db").write_text("a real audit log")
    (tmp_path / "config").mkdir()
    with pytest.raises(DemoError, match="is not empty and was not made by the demo"):
        prepare(tmp_path, **NONE)
    assert (tmp_path / "audit.db").read_text() == "a real audit log" and (tmp_path / "config").is_dir()
    afile = tmp_path / "a-file"
    afile.write_text("x")
    with pytest.raises(DemoError, match="is a file"):
        prepare(afile, **NONE)


def test_only_named_files_are_deleted_and_the_evidence_stays(tmp_path: Path) -> None:
    work = tmp_path / "demo"
    urls = prepare(work, **NONE)
    assert (work / MARKER).exists()
    assert all(is_own_database(url, work) for url in urls.values())
    for name in ("platform.db", "store.db-wal", "audit.db", "report.json", "env.sh", "notes-of-mine.txt"):
        (work / name).write_text("x")
    for name in ("keys", "logs", "bundles", "config"):
        (work / name).mkdir()
        (work / name / "f").write_text("x")
    urls = prepare(work, **NONE)  # a second run: the earlier one's files go, the user's own stay
    assert sorted(p.name for p in work.iterdir()) == [MARKER, "notes-of-mine.txt"]
    for name in ("platform.db", "report.json"):
        (work / name).write_text("x")
    for name in ("keys", "logs", "bundles", "config"):
        (work / name).mkdir()
    kept = clean_up(work, urls, keep=False, failed=False)
    assert sorted(p.name for p in work.iterdir()) == [MARKER, "bundles", "notes-of-mine.txt", "report.json"]
    assert kept == [str(work / "report.json"), str(work / "bundles")]


def test_a_failed_run_keeps_its_logs_and_a_database_given_by_url_keeps_its_keys(tmp_path: Path) -> None:
    work = tmp_path / "demo"
    outside = tmp_path / "elsewhere.db"
    urls = prepare(work, database_url=None, store_url=None, audit_url=f"sqlite:///{outside}")
    outside.write_text("x")
    for name in ("keys", "logs"):
        (work / name).mkdir()
    kept = clean_up(work, urls, keep=False, failed=True)
    assert (work / "logs").is_dir() and (work / "keys").is_dir() and outside.exists()
    assert any("the audit database" in k for k in kept)


def test_env_and_logins_are_private_and_hold_no_tokens(tmp_path: Path) -> None:
    env = {"CONTROLPLANE_STORE_URL": "sqlite:////x/$HOME/`id`.db", "CONTROLPLANE_COLLECTOR_TOKENS": "secret",
           "CONTROLPLANE_PLATFORM_ADMIN_TOKEN": "secret", "PATH": "/bin"}  # fmt: skip
    path = write_env(tmp_path, env)
    text = path.read_text()
    assert "secret" not in text and "PATH" not in text
    assert text == "export CONTROLPLANE_STORE_URL='sqlite:////x/$HOME/`id`.db'\n"  # quoted: never expanded
    logins = write_logins(tmp_path, {"demo-admin": ("admin", "pw")})
    for written in (path, logins):
        assert stat.S_IMODE(written.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--database-url", "not a url"], "--database-url: 'not a url' is not a database URL"),
        (["--store-url", "mysql://u@h/db"], "--store-url: the demo runs on SQLite or PostgreSQL, not mysql"),
        (["--audit-url", "sqlite://"], "--audit-url: an in-memory SQLite database cannot be shared"),
    ],
)
def test_bad_input_is_a_message_and_exit_3(tmp_path: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["demo", "--workdir", str(tmp_path / "demo"), *args])
    assert result.exit_code == 3, result.output
    assert message in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("packed", [False, True])
def test_a_store_holding_minutes_as_rows_or_packed_is_refused(tmp_path: Path, packed: bool) -> None:
    from datetime import UTC, datetime

    from controlplane.slo.minute_store import Block, blocks_t, buckets_t
    from controlplane.storage import make_engine
    from controlplane.store import migrate_store

    url = f"sqlite:///{tmp_path / 'store.db'}"
    engine = make_engine(url)
    migrate_store(engine)
    hour = datetime(2026, 12, 1, tzinfo=UTC)
    with engine.begin() as conn:
        if packed:
            conn.execute(blocks_t.insert().values(slice="bets", hour=hour, minutes=Block().encode(0)))
        else:
            conn.execute(buckets_t.insert().values(slice="bets", minute=hour, total=1, bad=0))
    engine.dispose()
    with pytest.raises(
        DemoError, match=f"--store-url: .* already holds data .1 rows in {blocks_t.name if packed else 'sli_buckets'}"
    ):
        prepare(tmp_path / "demo", **{**NONE, "store_url": url})
