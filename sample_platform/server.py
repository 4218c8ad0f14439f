"""The platform's HTTP server: uvicorn with a deadline for each request's header, keep-alive and proxy
settings from `PlatformSettings` (`uvicorn_options`), and a way to run it in a background thread (for
the demo, tests and benchmarks).

Usage:

    uvicorn.run(app, host=host, port=port, **uvicorn_options(settings))
    with PlatformServer(settings, engine) as server:
        httpx.get(f"{server.url}/v1/health")
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import h11
import uvicorn
from sqlalchemy import Engine
from uvicorn.protocols.http.h11_impl import H11Protocol

from sample_platform.api import create_app
from sample_platform.outbox import OutboxSink
from sample_platform.settings import PlatformSettings

MAX_HEADER_BYTES = 16 * 1024  # a request's line and headers; past it, 400 (h11's own default, stated)


class HeaderDeadline(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose request header has not come whole within
    `header_timeout` seconds of its first byte (of the connection's opening, for its first request).
    uvicorn has no such deadline of its own: a client sending its header a byte at a time would hold its
    connection for as long as it liked. Idle keep-alive connections keep uvicorn's own timeout."""

    header_timeout = 10.0
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._header_timer is None and self.conn.their_state is h11.IDLE:
            self._arm()  # the first byte of a kept-alive connection's next request
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._disarm()  # the header is whole (or the connection is done)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._header_timer = self.loop.call_later(self.header_timeout, self._too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _too_slow(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


def uvicorn_options(settings: PlatformSettings) -> dict[str, Any]:
    """uvicorn's settings for the platform: the header deadline, keep-alive, header size and proxies."""
    protocol = type("PlatformHttp", (HeaderDeadline,), {"header_timeout": settings.header_timeout_seconds})
    proxies = settings.trusted_proxies.strip()
    return {
        "http": protocol,
        "timeout_keep_alive": settings.keep_alive_seconds,
        "h11_max_incomplete_event_size": MAX_HEADER_BYTES,
        "proxy_headers": bool(proxies),  # otherwise uvicorn believes X-Forwarded-For from 127.0.0.1
        "forwarded_allow_ips": proxies or None,
    }


class ThreadedServer:
    """uvicorn serving `app` on a free port of 127.0.0.1 until the `with` block ends."""

    def __init__(self, app, *, host: str = "127.0.0.1", port: int = 0, **options: Any) -> None:
        config = uvicorn.Config(
            app, host=host, port=port, log_level="warning", lifespan="on", timeout_graceful_shutdown=2, **options
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


class PlatformServer(ThreadedServer):
    def __init__(
        self,
        settings: PlatformSettings,
        engine: Engine,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        run_background: bool = True,
        outbox_sink: OutboxSink | None = None,
    ) -> None:
        app = create_app(settings, engine=engine, outbox_sink=outbox_sink, run_background=run_background)
        super().__init__(app, host=host, port=port, **uvicorn_options(settings))
