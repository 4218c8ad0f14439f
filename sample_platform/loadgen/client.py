"""The load generator's HTTP client: aiohttp by default (a fraction of httpx's CPU per request, so the
generator is rarely the bottleneck), or any httpx transport (tests inject `httpx.MockTransport`).

    async with open_client("http://127.0.0.1:8080", connections=256) as client:
        reply = await client.request("GET", "/v1/health", deadline=loop.time() + 10)

Several base URLs (a platform's replicas) make a `SpreadClient`: each request goes to the next one in
turn, and what each replica answered is counted (`client.counts`).
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
import httpx


class TransportFailure(Exception):
    """The request got no HTTP answer (refused, reset, timed out): the server may or may not have acted."""


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str] = field(default_factory=dict)  # names in lower case
    body: bytes = b""

    @property
    def is_success(self) -> bool:
        return 200 <= self.status < 300

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.body)


class LoadClient(Protocol):
    async def request(
        self,
        method: str,
        path: str,
        *,
        deadline: float,
        headers: dict[str, str] | None = None,
        json: Any = None,
    ) -> Reply:
        """One attempt that ends by `deadline` (event-loop time): a Reply, or TransportFailure."""
        ...

    def stream_lines(
        self, path: str, *, connect_deadline: float, headers: dict[str, str] | None = None
    ) -> AbstractAsyncContextManager[tuple[Reply, AsyncIterator[str]]]:
        """A long-lived response (SSE): its status and headers, then its body line by line."""
        ...


class AiohttpClient:
    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    async def request(
        self,
        method: str,
        path: str,
        *,
        deadline: float,
        headers: dict[str, str] | None = None,
        json: Any = None,
    ) -> Reply:
        try:
            async with asyncio.timeout_at(deadline):
                async with self.session.request(method, path, headers=headers, json=json) as response:
                    body = await response.read()
                    return Reply(response.status, _lower(response.headers.items()), body)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise TransportFailure(type(exc).__name__) from exc

    @asynccontextmanager
    async def stream_lines(
        self, path: str, *, connect_deadline: float, headers: dict[str, str] | None = None
    ) -> AsyncIterator[tuple[Reply, AsyncIterator[str]]]:
        try:
            async with asyncio.timeout_at(connect_deadline):
                response = await self.session.get(path, headers=headers)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise TransportFailure(type(exc).__name__) from exc
        try:
            yield Reply(response.status, _lower(response.headers.items())), _aiohttp_lines(response)
        finally:
            response.release()


async def _aiohttp_lines(response: aiohttp.ClientResponse) -> AsyncIterator[str]:
    try:
        async for raw in response.content:
            yield raw.decode("utf-8", "replace").rstrip("\r\n")
    except (aiohttp.ClientError, OSError) as exc:
        raise TransportFailure(type(exc).__name__) from exc


class HttpxClient:
    """Any httpx transport behind the same interface; what tests use to run the real logic offline."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def request(
        self,
        method: str,
        path: str,
        *,
        deadline: float,
        headers: dict[str, str] | None = None,
        json: Any = None,
    ) -> Reply:
        try:
            async with asyncio.timeout_at(deadline):
                response = await self.client.request(method, path, headers=headers, json=json)
        except (httpx.HTTPError, TimeoutError) as exc:
            raise TransportFailure(type(exc).__name__) from exc
        return Reply(response.status_code, _lower(response.headers.items()), response.content)

    @asynccontextmanager
    async def stream_lines(
        self, path: str, *, connect_deadline: float, headers: dict[str, str] | None = None
    ) -> AsyncIterator[tuple[Reply, AsyncIterator[str]]]:
        timeout = httpx.Timeout(max(0.1, connect_deadline - asyncio.get_running_loop().time()), read=None)
        try:
            async with self.client.stream("GET", path, headers=headers, timeout=timeout) as response:
                yield Reply(response.status_code, _lower(response.headers.items())), _httpx_lines(response)
        except httpx.HTTPError as exc:
            raise TransportFailure(type(exc).__name__) from exc


async def _httpx_lines(response: httpx.Response) -> AsyncIterator[str]:
    try:
        async for line in response.aiter_lines():
            yield line
    except httpx.HTTPError as exc:
        raise TransportFailure(type(exc).__name__) from exc


class SpreadClient:
    """Requests spread round-robin over the replicas of one platform, each replica's answers counted:
    `requests`, `failures` (no HTTP answer), `errors` (4xx/5xx), `bets_accepted` (new bets, not replays)
    and `streams` (SSE subscriptions opened on it)."""

    def __init__(self, clients: Sequence[tuple[str, LoadClient]]) -> None:
        self.clients = list(clients)
        self.turn = 0
        self.counts: dict[str, Counter[str]] = {url: Counter() for url, _ in self.clients}

    def _next(self) -> tuple[str, LoadClient]:
        url, client = self.clients[self.turn % len(self.clients)]
        self.turn += 1
        return url, client

    async def request(
        self,
        method: str,
        path: str,
        *,
        deadline: float,
        headers: dict[str, str] | None = None,
        json: Any = None,
    ) -> Reply:
        url, client = self._next()
        counts = self.counts[url]
        counts["requests"] += 1
        try:
            reply = await client.request(method, path, deadline=deadline, headers=headers, json=json)
        except TransportFailure:
            counts["failures"] += 1
            raise
        if reply.status >= 400:
            counts["errors"] += 1
        elif method == "POST" and path == "/v1/bets" and reply.status == 201:
            if reply.headers.get("idempotent-replayed", "").lower() != "true":
                counts["bets_accepted"] += 1
        return reply

    def stream_lines(
        self, path: str, *, connect_deadline: float, headers: dict[str, str] | None = None
    ) -> AbstractAsyncContextManager[tuple[Reply, AsyncIterator[str]]]:
        url, client = self._next()
        self.counts[url]["streams"] += 1
        return client.stream_lines(path, connect_deadline=connect_deadline, headers=headers)

    def summary(self) -> dict[str, dict[str, int]]:
        keys = ("requests", "failures", "errors", "bets_accepted", "streams")
        return {url: {k: counts[k] for k in keys} for url, counts in self.counts.items()}


@asynccontextmanager
async def open_clients(
    base_urls: Sequence[str], *, connections: int, transport: httpx.AsyncBaseTransport | None = None
) -> AsyncIterator[LoadClient]:
    """One client for one base URL; for several, a `SpreadClient` over one client each (the
    `connections` shared out among them)."""
    if len(base_urls) == 1:
        async with open_client(base_urls[0], connections=connections, transport=transport) as client:
            yield client
        return
    each = max(1, connections // len(base_urls))
    async with AsyncExitStack() as stack:
        clients = [
            (url, await stack.enter_async_context(open_client(url, connections=each, transport=transport)))
            for url in base_urls
        ]
        yield SpreadClient(clients)


@asynccontextmanager
async def open_client(
    base_url: str, *, connections: int, transport: httpx.AsyncBaseTransport | None = None
) -> AsyncIterator[LoadClient]:
    """aiohttp with `connections` keep-alive connections, or httpx over `transport` when one is given."""
    if transport is not None:
        async with httpx.AsyncClient(base_url=base_url, transport=transport) as client:
            yield HttpxClient(client)
        return
    connector = aiohttp.TCPConnector(limit=connections, limit_per_host=connections, ttl_dns_cache=300)
    # Deadlines are ours (per attempt, from the scheduled time); aiohttp's own timeouts are off.
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=None, sock_read=None)
    async with aiohttp.ClientSession(base_url, connector=connector, timeout=timeout) as session:
        yield AiohttpClient(session)


def _lower(items: Any) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in items}
