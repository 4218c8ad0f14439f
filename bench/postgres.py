"""PostgreSQL for the benchmarks: is the server there, a scratch schema to run in, and a URL safe to print.

Usage:

    why = postgres_skip_reason(args)             # None when PostgreSQL should run
    with ScratchSchema(args.postgres_url, "bench_slo") as schema:
        engine = make_engine(schema.url)         # the URL's search_path is the fresh schema
"""

from __future__ import annotations

import argparse
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from controlplane.storage import normalise_url

POSTGRES_URL_VARIABLE = "CONTROLPLANE_TEST_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def default_postgres_url() -> str:
    """The tests' PostgreSQL ($CONTROLPLANE_TEST_POSTGRES_URL), else a local server."""
    return os.environ.get(POSTGRES_URL_VARIABLE) or DEFAULT_POSTGRES_URL


def _admin_engine(base_url: str) -> Engine:
    url = make_url(normalise_url(base_url)).update_query_dict({"connect_timeout": "5"})
    return create_engine(url, isolation_level="AUTOCOMMIT")


def postgres_reachable(base_url: str) -> str | None:
    """None when PostgreSQL answers; else why not."""
    try:
        engine = _admin_engine(base_url)
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        finally:
            engine.dispose()
    except Exception as exc:  # any failure means "skip PostgreSQL"
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return None


def postgres_skip_reason(args: argparse.Namespace) -> str | None:
    """Why this run leaves PostgreSQL out (`--skip-postgres`, or the server does not answer); None to run it."""
    if args.skip_postgres:
        return "--skip-postgres"
    why = postgres_reachable(args.postgres_url)
    return None if why is None else f"{redact(args.postgres_url)} unreachable ({why})"


def redact(url: str) -> str:
    """The URL with its password hidden (unparseable URLs are returned as they are)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


class ScratchSchema:
    """A fresh schema in the database of `base_url`, created on entry and dropped with all it holds on exit.

    `url` reaches it through `?options=-csearch_path=<schema>`, so every engine made from that URL (the
    store's, the audit log's, the platform server's) creates and reads its tables there.
    """

    def __init__(self, base_url: str, prefix: str) -> None:
        self.base_url = base_url
        self.name = f"{prefix}_{secrets.token_hex(4)}"
        base = make_url(normalise_url(base_url))
        self.url = base.update_query_dict({"options": f"-csearch_path={self.name}"}).render_as_string(
            hide_password=False
        )
        self.admin: Engine | None = None

    def __enter__(self) -> Self:
        self.admin = _admin_engine(self.base_url)
        try:
            with self.admin.connect() as conn:
                conn.execute(text(f'CREATE SCHEMA "{self.name}"'))
        except BaseException:
            self.admin.dispose()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.admin is None:
            return
        try:
            with self.admin.connect() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{self.name}" CASCADE'))
        finally:
            self.admin.dispose()
            self.admin = None

    def show(self, *names: str) -> dict[str, str]:
        """Server settings (`SHOW name`), e.g. fsync and synchronous_commit, to print beside the figures."""
        assert self.admin is not None, "use the schema inside its `with` block"
        with self.admin.connect() as conn:
            return {name: str(conn.exec_driver_sql(f"SHOW {name}").scalar()) for name in names}


def on_each_database(
    args: argparse.Namespace, workdir: Path, prefix: str, run: Callable[[str, str], dict[str, Any]]
) -> list[dict[str, Any]]:
    """`run(label, url)` on a SQLite file in `workdir`, then on a scratch PostgreSQL schema unless this run
    leaves PostgreSQL out; a PostgreSQL that is skipped or fails gets a line of its own in the result."""
    results = [run("SQLite", f"sqlite:///{workdir / f'{prefix}.db'}")]
    why = postgres_skip_reason(args)
    if why is not None:
        return [*results, {"database": "PostgreSQL", "skipped": why}]
    try:
        with ScratchSchema(args.postgres_url, prefix) as schema:
            results.append(run("PostgreSQL", schema.url))
    except Exception as exc:
        results.append({"database": "PostgreSQL", "failed": f"{redact(args.postgres_url)}: {exc!r}"})
    return results
