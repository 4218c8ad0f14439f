"""Test support: the platform as a real separate process (`controlplane platform serve`)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import ADMIN_TOKEN

CONTROLPLANE = str(Path(sys.executable).with_name("controlplane"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PlatformProcess:
    """`controlplane platform serve` on a free port, waited for until it answers."""

    def __init__(self, database_url: str, sink: Path, **env_overrides: str) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = os.environ | {
            "CONTROLPLANE_DATABASE_URL": database_url,
            "CONTROLPLANE_ADMIN_TOKEN": ADMIN_TOKEN,
            "CONTROLPLANE_OUTBOX_SINK_PATH": str(sink),
            "CONTROLPLANE_OUTBOX_RELAY_INTERVAL_SECONDS": "0.05",
            "CONTROLPLANE_SETTLEMENT_BATCH_SIZE": "5",
            "CONTROLPLANE_PRICE_MOVER_INTERVAL_SECONDS": "0",
            **env_overrides,
        }
        self.log = sink.with_name(f"platform-{self.port}.log")
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [CONTROLPLANE, "platform", "serve", "--port", str(self.port)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.url}/v1/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"platform did not start: {self.log.read_text()}")
            time.sleep(0.1)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


