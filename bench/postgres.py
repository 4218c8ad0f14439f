"""PostgreSQL helpers shared by the benchmarks: is the server there, and a URL safe to print.

Usage:

    why = postgres_reachable(url)      # None when PostgreSQL answers, else the reason
    print(redact(url))
"""

from __future__ import annotations


def postgres_reachable(base_url: str) -> str | None:
    """None when PostgreSQL answers; else why not."""
    try:
        from sqlalchemy import create_engine, text
        from sqlalchemy.engine import make_url

        from controlplane.storage import normalise_url

        engine = create_engine(make_url(normalise_url(base_url)).update_query_dict({"connect_timeout": "5"}))
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        finally:
            engine.dispose()
    except Exception as exc:  # any failure means "skip PostgreSQL"
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return None


def redact(url: str) -> str:
    """The URL with its password hidden (unparseable URLs are returned as they are)."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url
