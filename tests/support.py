"""Test support: the platform as a real separate process (`controlplane platform serve`), and waiting
for a condition with a generous deadline (never for a fixed time)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx

from controlplane.demo.stack import free_port
from tests.conftest import ADMIN_TOKEN

CONTROLPLANE = str(Path(sys.executable).with_name("controlplane"))


def wait_until(condition: Callable[[], object], what: str, timeout: float = 60) -> None:
    """Return as soon as `condition()` is true; fail saying `what` did not happen within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        time.sleep(0.02)


class ServiceProcess:
    """A `controlplane <group> serve` process on a free port, waited for until `health` answers 200."""

    def __init__(self, group: str, env: dict[str, str], log: Path, health: str, *, port: int | None = None) -> None:
        self.log = log
        # A port found free can be taken by a process of another test worker before ours binds it:
        # then start again on another one (only when the port was ours to choose).
        for attempt in range(1 if port else 5):
            self.port = port or free_port()
            self.url = f"http://127.0.0.1:{self.port}"
            if self._start(group, env, health):
                return
            if "address already in use" not in log.read_text().lower() or attempt == 4:
                break
        raise RuntimeError(f"{group} did not start: {log.read_text()}")

    def _start(self, group: str, env: dict[str, str], health: str) -> bool:
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [CONTROLPLANE, group, "serve", "--port", str(self.port)],
                env=os.environ | env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.url}{health}", timeout=1).status_code == 200:
                    return True
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None:
                return False
            if time.monotonic() > deadline:
                self.proc.kill()
                return False
            time.sleep(0.1)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


class PlatformProcess(ServiceProcess):
    """`controlplane platform serve` with the tests' admin token, a sink file and quick background loops."""

    def __init__(self, database_url: str, sink: Path, *, port: int | None = None, **env_overrides: str) -> None:
        env = {
            "PLATFORM_DATABASE_URL": database_url,
            "PLATFORM_ADMIN_TOKEN": ADMIN_TOKEN,
            "PLATFORM_OUTBOX_SINK_PATH": str(sink),
            "PLATFORM_OUTBOX_RELAY_INTERVAL_SECONDS": "0.05",
            "PLATFORM_SETTLEMENT_BATCH_SIZE": "5",
            "PLATFORM_PRICE_MOVER_INTERVAL_SECONDS": "0",
            "PLATFORM_ODDS_STREAM_PORT": "0",
            **env_overrides,
        }
        super().__init__("platform", env, sink.with_name(f"platform-{free_port()}.log"), "/v1/health", port=port)


class SseReader:
    """Reads `odds` events from the stream in a thread, recording the lag of each."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.events: list[dict] = []
        self.lags: list[float] = []
        self.other: list[str] = []
        self.connected = threading.Event()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.connected.wait(10)

    def _run(self) -> None:
        try:
            self._read()
        except httpx.HTTPError:
            if not self.done.is_set():  # a stream cut while the test still listens is a failure
                raise

    def _read(self) -> None:
        with httpx.Client(timeout=30, follow_redirects=True) as client, client.stream("GET", self.url) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            kind = None
            for line in response.iter_lines():
                if line.startswith(": connected"):
                    self.connected.set()
                elif line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: ") and kind == "odds":
                    event = json.loads(line[6:])
                    published = datetime.fromisoformat(event["published_at"])
                    self.lags.append((datetime.now(UTC) - published).total_seconds())
                    self.events.append(event)
                elif line.startswith("data: "):
                    self.other.append(kind or "")
                if self.done.is_set():
                    return

    def wait_for(self, count: int, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while len(self.events) < count and time.monotonic() < deadline:
            time.sleep(0.02)

    def close(self) -> None:
        self.done.set()
