"""Serve an ASGI app with uvicorn in a background thread (tests, benchmarks).

Usage:

    with ThreadedServer(create_collector_app(settings, engine=store, slices=slices)) as server:
        httpx.get(f"{server.url}/metrics")
"""

from __future__ import annotations

import threading
import time
from typing import Any

import uvicorn


class ThreadedServer:
    """uvicorn serving `app` on a free port of 127.0.0.1 until the `with` block ends."""

    def __init__(self, app: Any, *, host: str = "127.0.0.1", port: int = 0) -> None:
        config = uvicorn.Config(
            app, host=host, port=port, log_level="warning", lifespan="on", timeout_graceful_shutdown=2
        )
        self.server = uvicorn.Server(config)
        self.app = app
        self._thread = threading.Thread(target=self.server.run, name="http-server", daemon=True)
        self.url = ""

    def __enter__(self) -> ThreadedServer:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.01)
        host, port = self.server.servers[0].sockets[0].getsockname()[:2]
        self.url = f"http://{host}:{port}"
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=30)
