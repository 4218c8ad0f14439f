"""The demo's work directory (`var/demo/` by default) and its databases: what the demo may create and
delete there, and nothing else.

Usage:

    urls = prepare(Path("var/demo"), database_url=None, store_url=None, audit_url=None)
    write_env(Path("var/demo"), running.env); write_logins(Path("var/demo"), running.logins)
    kept = clean_up(Path("var/demo"), urls, keep=False, failed=False)

A directory is the demo's once it holds the marker file `.controlplane-demo`: a directory that is
not empty and has no marker is refused, so `--workdir var` or `--workdir .` can never delete a real
audit log or the project's config. Only the files the demo names are ever deleted. Databases given
by URL are never deleted, and must not hold an earlier run's data.
"""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path

from sqlalchemy import func, inspect, select, table
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from controlplane.demo.stack import DemoError
from controlplane.storage import make_engine

MARKER = ".controlplane-demo"
DATABASES = {"platform": "platform.db", "store": "store.db", "audit": "audit.db"}
DIRECTORIES = ("keys", "logs", "bundles", "config", "nats")
FILES = ("report.json", "env.sh", "logins.txt", "outbox.jsonl", "changes.jsonl")
KEPT_ALWAYS = ("report.json", "bundles")
FLAGS = {"platform": "--database-url", "store": "--store-url", "audit": "--audit-url"}
# Tables each database has rows in once it holds anything: the demo refuses to mix its run with another.
FILLED_BY = {
    "platform": ("accounts",),
    "store": ("sli_buckets", "sli_minute_blocks"),  # minutes as rows, or packed
    "audit": ("audit_entries",),
}


def check_url(which: str, url: str) -> str:
    """A SQLite file or PostgreSQL URL, or DemoError naming the flag and the fix."""
    flag = FLAGS[which]
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DemoError(f"{flag}: {url!r} is not a database URL; e.g. postgresql+psycopg://user@host/db") from None
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise DemoError(f"{flag}: the demo runs on SQLite or PostgreSQL, not {backend}")
    if backend == "sqlite" and (not parsed.database or parsed.database == ":memory:"):
        raise DemoError(f"{flag}: an in-memory SQLite database cannot be shared by processes; give a file")
    return url


def _sqlite_file(url: str) -> Path | None:
    parsed = make_url(url)
    return Path(parsed.database) if parsed.get_backend_name() == "sqlite" and parsed.database else None


def is_own_database(url: str, workdir: Path) -> bool:
    """One of the demo's own SQLite files in its work directory (the demo may delete it)."""
    path = _sqlite_file(url)
    return path is not None and path.resolve() in {(workdir / name).resolve() for name in DATABASES.values()}


def _remove_sqlite(url: str) -> None:
    path = _sqlite_file(url)
    if path is not None:
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


def prepare(
    workdir: Path, *, database_url: str | None, store_url: str | None, audit_url: str | None, cluster: bool = False
) -> dict[str, str]:
    """The three database URLs, with the work directory claimed and an earlier run's files removed.

    A `cluster` runs several processes of each kind on one store: PostgreSQL only, and the store and the
    audit log go to the platform's database unless given (their tables and migrations are apart)."""
    if cluster:
        database_url, store_url, audit_url = _cluster_urls(database_url, store_url, audit_url)
    given = {"platform": database_url, "store": store_url, "audit": audit_url}
    urls = {
        which: check_url(which, url) if url else f"sqlite:///{workdir.resolve() / DATABASES[which]}"
        for which, url in given.items()
    }
    if workdir.exists() and not workdir.is_dir():
        raise DemoError(f"--workdir: {workdir} is a file; give a directory (the default is var/demo)")
    if workdir.is_dir() and any(workdir.iterdir()) and not (workdir / MARKER).exists():
        raise DemoError(
            f"--workdir: {workdir} is not empty and was not made by the demo; give a new or empty directory"
        )
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / MARKER).write_text("made by `controlplane demo`; it deletes only the files it names here\n")
    except OSError as exc:
        raise DemoError(f"--workdir: cannot write to {workdir} ({exc.strerror or exc})") from None
    for name in DIRECTORIES:
        shutil.rmtree(workdir / name, ignore_errors=True)
    for name in FILES:
        (workdir / name).unlink(missing_ok=True)
    for which, url in urls.items():
        if is_own_database(url, workdir):
            _remove_sqlite(url)
        else:
            _refuse_used(which, url)
    return urls


def _cluster_urls(database_url: str | None, store_url: str | None, audit_url: str | None) -> tuple[str, str, str]:
    if not database_url:
        raise DemoError(
            "--topology cluster runs 3 platform replicas, 2 collectors and 2 ingesters on one PostgreSQL: give "
            "--database-url postgresql+psycopg://user@host/db (an empty database; --store-url and --audit-url "
            "default to it)"
        )
    urls = {"platform": database_url, "store": store_url or database_url, "audit": audit_url or database_url}
    for which, url in urls.items():
        if make_url(check_url(which, url)).get_backend_name() != "postgresql":
            raise DemoError(
                f"{FLAGS[which]}: --topology cluster needs PostgreSQL (several processes write at once); "
                f"give postgresql+psycopg://user@host/db, not {make_url(url).get_backend_name()}"
            )
    return urls["platform"], urls["store"], urls["audit"]


def _refuse_used(which: str, url: str) -> None:
    """A database given by URL must not hold an earlier run: its SLIs and alerts would mix with this one."""
    shown = make_url(url).render_as_string(hide_password=True)
    try:
        engine = make_engine(url)
    except Exception as exc:  # the engine factory's own refusal names the problem
        raise DemoError(f"{FLAGS[which]}: {exc}") from None
    try:
        with engine.connect() as conn:
            held = {
                name: conn.execute(select(func.count()).select_from(table(name))).scalar_one()
                for name in FILLED_BY[which]
                if inspect(conn).has_table(name)
            }
    except Exception as exc:  # an unreachable server, a refused login: say which database and why
        raise DemoError(f"{FLAGS[which]}: cannot use {shown}: {str(exc).splitlines()[0]}") from None
    finally:
        engine.dispose()
    for name, rows in held.items():
        if rows:
            raise DemoError(
                f"{FLAGS[which]}: {shown} already holds data ({rows} rows in {name}); the demo needs empty "
                "databases so that its alerts and costs are its own: create new ones (e.g. `createdb demo_platform`)"
            )


def write_env(workdir: Path, env: dict[str, str]) -> Path:
    """`source var/demo/env.sh` points every `controlplane` command at the demo's data (its own settings
    only, no tokens; readable by this user alone)."""
    path = workdir / "env.sh"
    lines = [
        f"export {name}={shlex.quote(value)}"
        for name, value in sorted(env.items())
        if name.startswith("CONTROLPLANE_") and not name.endswith(("TOKENS", "ADMIN_TOKEN"))
    ]
    _private(path, "\n".join(lines) + "\n")
    return path


def write_logins(workdir: Path, logins: dict[str, tuple[str, str]]) -> Path:
    """The dashboard users and their passwords, readable by this user alone."""
    path = workdir / "logins.txt"
    _private(path, "".join(f"{name}\t{role}\t{password}\n" for name, (role, password) in logins.items()))
    return path


def _private(path: Path, text: str) -> None:
    path.unlink(missing_ok=True)
    path.touch(mode=0o600)
    path.write_text(text)


def clean_up(workdir: Path, urls: dict[str, str], *, keep: bool, failed: bool) -> list[str]:
    """Without `keep`, the demo's own databases, keys, config and logins go (logs too, unless the run
    failed); the report and the bundles stay. Returns what is left, for the user."""
    external = [which for which, url in urls.items() if not is_own_database(url, workdir)]
    if keep:
        return [str(workdir)]
    for url in urls.values():
        if is_own_database(url, workdir):
            _remove_sqlite(url)
    gone = ["config"] + ([] if failed else ["logs"]) + ([] if "audit" in external else ["keys"])
    for name in gone:
        shutil.rmtree(workdir / name, ignore_errors=True)
    for name in FILES:
        if name not in KEPT_ALWAYS:
            (workdir / name).unlink(missing_ok=True)
    kept = [str(workdir / name) for name in (*KEPT_ALWAYS, "logs", "keys") if (workdir / name).exists()]
    kept += [
        f"the {which} database ({make_url(urls[which]).render_as_string(hide_password=True)})" for which in external
    ]
    return kept
