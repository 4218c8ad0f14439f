"""Fixtures: every database-touching test runs on SQLite and, where a server is configured, PostgreSQL.

PostgreSQL: set CONTROLPLANE_TEST_POSTGRES_URL (CI does). Each test gets its own schema, dropped
afterwards. With CONTROLPLANE_TEST_REQUIRE_POSTGRES=1 an unreachable server fails the run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from controlplane.auditing import close_audit_engines
from controlplane.settings import Settings
from controlplane.storage import make_engine
from controlplane.store import migrate_store
from sample_platform import db
from sample_platform.client import PlatformClient
from sample_platform.server import PlatformServer
from sample_platform.settings import PlatformSettings

ADMIN_TOKEN = "test-admin-token"
CPU_HOGS = int(os.environ.get("CONTROLPLANE_TEST_CPU_HOGS", "0"))
SLICES_PATH = Path(__file__).parents[1] / "config" / "slices.yaml"
POSTGRES_URL = os.environ.get("CONTROLPLANE_TEST_POSTGRES_URL", "")
REQUIRE_POSTGRES = os.environ.get("CONTROLPLANE_TEST_REQUIRE_POSTGRES") == "1"


def _libpq_dsn(url: str) -> str:
    parsed = make_url(url)
    return parsed.set(drivername="postgresql", query={}).render_as_string(hide_password=False)


@contextmanager
def cpu_hogs(count: int) -> Iterator[None]:
    """`count` processes that keep a core busy each, for as long as the block runs (a loaded machine)."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


@pytest.fixture(scope="session", autouse=True)
def loaded_machine() -> Iterator[None]:
    """With CONTROLPLANE_TEST_CPU_HOGS=N (`make test-loaded`), the whole session runs beside N CPU hogs."""
    with cpu_hogs(CPU_HOGS):
        yield


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'platform.db'}"
        close_audit_engines()
        return
    if not POSTGRES_URL:
        if REQUIRE_POSTGRES:
            pytest.fail("CONTROLPLANE_TEST_REQUIRE_POSTGRES=1 but CONTROLPLANE_TEST_POSTGRES_URL is not set")
        pytest.skip("set CONTROLPLANE_TEST_POSTGRES_URL to run the PostgreSQL cases")
    schema = f"t_{uuid.uuid4().hex[:16]}"
    try:
        with psycopg.connect(_libpq_dsn(POSTGRES_URL), autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
    except psycopg.OperationalError as exc:
        if REQUIRE_POSTGRES:
            pytest.fail(f"PostgreSQL at {POSTGRES_URL} is unreachable: {exc}")
        pytest.skip(f"PostgreSQL unreachable: {exc}")
    url = make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        close_audit_engines()  # the process keeps the audit log's engines; this schema's go with it
        with psycopg.connect(_libpq_dsn(POSTGRES_URL), autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> PlatformSettings:
    return PlatformSettings(
        environment="test",
        database_url=database_url,
        admin_token=ADMIN_TOKEN,
        outbox_sink_path=tmp_path / "outbox.jsonl",
        outbox_relay_interval_seconds=0.05,
        price_mover_interval_seconds=0,  # tests move prices themselves
        password_scrypt_log2_n=12,  # cheaper hashing; the format and checks are the same
        max_bets_per_minute=100_000,
        # These tests are about correctness under concurrency (50 requests at once with one key);
        # shedding and the per-client limits have their own tests with small bounds.
        bet_max_in_flight=100,
        client_max_in_flight=100,
    )


@pytest.fixture
def engine(settings: PlatformSettings) -> Iterator[Engine]:
    engine = db.make_engine(settings.database_url, **settings.engine_options())
    db.migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def server(settings: PlatformSettings, engine: Engine) -> Iterator[PlatformServer]:
    with PlatformServer(settings, engine) as running:
        yield running


@pytest.fixture
def start_platform(settings: PlatformSettings, engine: Engine) -> Iterator:
    """Start a platform with some settings changed: `server, client = start_platform(bet_max_in_flight=4)`."""
    stack = ExitStack()

    def start(**overrides: object) -> tuple[PlatformServer, PlatformClient]:
        changed = settings.model_copy(update=overrides)
        server = stack.enter_context(PlatformServer(changed, engine))
        client = stack.enter_context(PlatformClient(server.url, admin_token=ADMIN_TOKEN))
        return server, client

    with stack:
        yield start


@pytest.fixture
def client(server: PlatformServer) -> Iterator[PlatformClient]:
    with PlatformClient(server.url, admin_token=ADMIN_TOKEN) as c:
        yield c


@pytest.fixture
def funded_player(client: PlatformClient) -> dict:
    """A player with 100.00 in the wallet."""
    account = client.create_account(f"p-{uuid.uuid4().hex[:10]}")
    client.deposit(account["id"], 10_000)
    return account


@pytest.fixture
def market(client: PlatformClient) -> dict:
    return client.create_market("Derby", [("Home", "2.50"), ("Draw", "3.20"), ("Away", "2.80")])


def bet_body(market: dict, *, selection: int = 0, stake: int = 500, **overrides: object) -> dict:
    sel = market["selections"][selection]
    body = {
        "market_id": market["id"],
        "selection_id": sel["id"],
        "stake_minor": stake,
        "odds": sel["odds"],
        "price_version": market["price_version"],
        "accept_price_change": "none",
    }
    body.update(overrides)
    return body


@pytest.fixture
def store_settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(environment="test", store_url=database_url, slices_path=SLICES_PATH)


@pytest.fixture
def store(store_settings: Settings) -> Iterator[Engine]:
    engine = make_engine(store_settings.store_url, **store_settings.engine_options())
    migrate_store(engine)
    yield engine
    engine.dispose()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Longest first: the demo's end-to-end runs, then the other slow tests, then the rest (each group
    in its own order), so that on several workers the long ones overlap the many short ones instead
    of running alone at the end."""
    demo = Path(__file__).parent / "demo" / "test_demo.py"

    def rank(item: pytest.Item) -> int:
        if Path(str(item.fspath)) == demo:
            return 0
        return 1 if item.get_closest_marker("slow") else 2

    items.sort(key=rank)
