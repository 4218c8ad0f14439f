"""The odds stream's own server: SSE subscribers served from a dedicated thread, event loop and port.

    stream = OddsStreamServer(broker, host="127.0.0.1", port=0)
    stream.start()            # binds the broker to the stream's loop; stream.url is where clients go
    ...
    stream.stop()

Fanning an update out to a thousand subscribers is a thousand socket writes. Done on the API's event
loop, they delay every request behind them; here the API only hands each update over (one
`call_soon_threadsafe`), and this loop does the writing. The API's `GET /v1/odds/stream` redirects
(307) here, so clients that follow redirects (browsers' EventSource, aiohttp, httpx with
`follow_redirects=True`) need no other change. It speaks just enough HTTP/1.1 for SSE: a GET, a
chunked `text/event-stream` response, and problem+json for anything else.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading

from sample_platform.odds_feed import KEEPALIVE_SECONDS, OddsBroker

log = logging.getLogger(__name__)
STREAM_PATH = "/v1/odds/stream"
MAX_HEAD_BYTES = 8192
HEAD_TIMEOUT_SECONDS = 10.0


class OddsStreamServer:
    def __init__(self, broker: OddsBroker, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.broker = broker
        self.host = host
        self.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._bus_task: asyncio.Task | None = None

    def start(self, timeout: float = 30.0) -> None:
        self._thread = threading.Thread(target=self._run, name="odds-stream", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("the odds stream server did not start")
        if self._failure is not None:
            raise RuntimeError(f"the odds stream server could not listen on {self.host}:{self.port}: {self._failure}")

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            self._server = loop.run_until_complete(
                asyncio.start_server(self._serve, self.host, self.port, limit=MAX_HEAD_BYTES)
            )
        except OSError as exc:
            self._failure = exc
            self._ready.set()
            loop.close()
            return
        self.port = self._server.sockets[0].getsockname()[1]
        self.broker.bind(loop, frame=_chunk)
        if self.broker.bus is not None:  # odds from every replica, through NATS
            self._bus_task = loop.create_task(self.broker.bus.run())
        loop.call_later(KEEPALIVE_SECONDS, self._keepalive)
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._shutdown())
            loop.close()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        if self.broker.bus is not None:
            await self.broker.bus.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _keepalive(self) -> None:
        self.broker.keepalive()
        if self._loop is not None:
            self._loop.call_later(KEEPALIVE_SECONDS, self._keepalive)

    def stop(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            self.broker.bind(None)
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{STREAM_PATH}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                async with asyncio.timeout(HEAD_TIMEOUT_SECONDS):
                    head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
                return
            method, _, rest = head.decode("latin-1").partition(" ")
            path = rest.split(" ", 1)[0].split("?", 1)[0]
            if path != STREAM_PATH:
                await _problem(writer, 404, "not-found", f"this port serves only GET {STREAM_PATH}")
                return
            if method != "GET":
                await _problem(writer, 405, "method-not-allowed", f"{STREAM_PATH} takes GET", allow="GET")
                return
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\ncache-control: no-cache\r\n"
                b"x-accel-buffering: no\r\ntransfer-encoding: chunked\r\n\r\n"
            )
            subscriber = self.broker.attach(writer)
            try:
                # Updates are written by the broker; this only waits for the subscriber to go away.
                while await reader.read(4096):
                    pass
            finally:
                self.broker.detach(subscriber)
        except (ConnectionError, OSError):
            pass  # the subscriber went away
        finally:
            writer.close()


def _chunk(text: str) -> bytes:
    data = text.encode()
    return b"%x\r\n%s\r\n" % (len(data), data)


async def _problem(writer: asyncio.StreamWriter, status: int, slug: str, detail: str, *, allow: str = "") -> None:
    title = {404: "Not Found", 405: "Method Not Allowed"}[status]
    body = json.dumps({"type": f"/problems/{slug}", "title": title, "status": status, "detail": detail}).encode()
    extra = f"allow: {allow}\r\n" if allow else ""
    writer.write(
        f"HTTP/1.1 {status} {title}\r\ncontent-type: application/problem+json\r\ncontent-length: {len(body)}\r\n"
        f"{extra}connection: close\r\n\r\n".encode()
        + body
    )
    await writer.drain()
