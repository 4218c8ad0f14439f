"""A nats-server with JetStream of the test's own: its port, its store directory, killed and restarted
at will (the machine's own server is left alone)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import nats
import pytest
from sqlalchemy import Engine

from audit.schema import migrate_audit
from controlplane.demo.stack import free_port
from controlplane.storage import make_engine
from controlplane.streams.ingester import Ingester, ensure_streams

NATS_SERVER = shutil.which("nats-server")
REQUIRED = os.environ.get("CONTROLPLANE_TEST_REQUIRE_NATS") == "1"


class NatsServer:
    def __init__(self, store: Path, log: Path) -> None:
        self.store, self.log = store, log
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        assert NATS_SERVER is not None
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [NATS_SERVER, "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(self.store)],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"nats-server did not start: {self.log.read_text()[-2000:]}") from None
                time.sleep(0.05)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    if NATS_SERVER is None:
        if REQUIRED:
            pytest.fail("nats-server is required in CI (Debian package nats-server)")
        pytest.skip("nats-server not installed (apt-get install nats-server)")
    server = NatsServer(tmp_path / "jetstream", tmp_path / "nats-server.log")
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def running(ingester: Ingester) -> Iterator[Ingester]:
    """The ingester's loop in a thread of its own, stopped (as by SIGTERM) when the block ends."""
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    failed: list[BaseException] = []

    def serve() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(ingester.run(stop))
        except BaseException as exc:  # reported by the test, not lost in the thread
            failed.append(exc)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield ingester
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=30)
        loop.close()
    assert not failed, failed


@pytest.fixture
def audit(database_url: str, tmp_path: Path) -> Iterator[Engine]:
    url = f"sqlite:///{tmp_path / 'audit.db'}" if database_url.startswith("sqlite") else database_url
    engine = make_engine(url)
    migrate_audit(engine)
    yield engine
    engine.dispose()


async def publish(url: str, documents: list[bytes], subject: str = "platform.events.money.deposit") -> None:
    nc = await nats.connect(url)
    js = nc.jetstream()
    await ensure_streams(js)
    for i, data in enumerate(documents):
        await js.publish(subject, data, headers={"Nats-Msg-Id": f"test-{i}-{uuid.uuid4().hex}"})
    await nc.close()


def outbox_event(event_id: str) -> bytes:
    return json.dumps(
        {"seq": 1, "event_id": event_id, "aggregate_type": "account", "aggregate_id": "7", "event_type": "money.deposit",
         "payload": {"account_id": 7, "amount_minor": 100, "reference": "t"}, "created_at": "2026-12-05T10:00:00Z"}
    ).encode()  # fmt: skip
