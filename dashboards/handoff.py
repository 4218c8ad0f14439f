"""What a page hands to the dashboard's own routes (`dashboards.routes`), in this process: cookies the
server sets, and exports it serves.

A page runs over a websocket and cannot set a response header, so the session cookie goes through a
one-time claim: the page registers the cookie's value under a random nonce (`Claims.register`) and
loads `/api/session/claim?nonce=...` in a tiny frame; the route takes the nonce once, within a minute,
and answers with `Set-Cookie` (HttpOnly, SameSite=Strict, Secure over https). No script in the page
ever sees the token.

The cookie's value identifies the browser to the routes: a local account's session token (checked in
the store on every use), or, for a single-sign-on viewer, a grant kept here (`Grants`) for the
session's lifetime. An export (`Shelf`) is bound to one such value and served to nothing else.

`SERVED` is set when the routes are mounted in this process (`dashboards.webapp`); a bare `streamlit run
streamlit_app.py` has no routes, so pages then offer no exports and set no cookie.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

SESSION_COOKIE = "controlplane_session"  # a local account's session token
GRANT_COOKIE = "controlplane_grant"  # a single-sign-on viewer's grant
CLAIM_SECONDS = 60.0
EXPORT_SECONDS = 15 * 60.0
MAX_EXPORT_BYTES = 256 * 1024 * 1024  # all exports on the shelf together; the oldest go first past it
SERVED = threading.Event()
V = TypeVar("V")


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class Lapsing(Generic[V]):
    """A map, behind a lock, whose entries lapse after the seconds each was given."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._items: dict[str, tuple[V, float]] = {}

    def put(self, key: str, value: V, seconds: float, too_many: Callable[[list[V]], bool] | None = None) -> None:
        """Keep `value` under `key`; with `too_many`, the oldest entries go while it holds for those kept."""
        with self._lock:
            now = self.clock()
            items = {k: v for k, v in self._items.items() if v[1] > now}
            items[key] = (value, now + seconds)
            while too_many is not None and len(items) > 1 and too_many([v for v, _ in items.values()]):
                del items[next(iter(items))]
            self._items = items

    def get(self, key: str) -> V | None:
        with self._lock:
            found = self._items.get(key)
        return found[0] if found is not None and found[1] > self.clock() else None

    def pop(self, key: str) -> V | None:
        with self._lock:
            found = self._items.pop(key, None)
        return found[0] if found is not None and found[1] > self.clock() else None


@dataclass(frozen=True)
class Claim:
    cookie: str
    value: str  # "" to clear the cookie
    max_age: int


class Claims:
    """Nonces for cookies not yet handed to the browser; each is taken at most once."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._pending: Lapsing[Claim] = Lapsing(clock)
        self._taken: Lapsing[bool] = Lapsing(clock)

    def register(self, cookie: str, value: str, max_age: int) -> str:
        nonce = secrets.token_urlsafe(24)
        self._pending.put(nonce, Claim(cookie, value, max_age), CLAIM_SECONDS)
        return nonce

    def take(self, nonce: str) -> Claim | None:
        found = self._pending.pop(nonce)
        if found is not None:
            self._taken.put(nonce, True, CLAIM_SECONDS)
        return found

    def taken(self, nonce: str) -> bool:
        return self._taken.get(nonce) is not None


@dataclass(frozen=True)
class Grantee:
    username: str
    role: str
    source: str


class Grants:
    """Single-sign-on viewers' grants, by the sha256 of the cookie's value, until they expire or are revoked."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._grants: Lapsing[Grantee] = Lapsing(clock)

    def issue(self, grantee: Grantee, seconds: float) -> str:
        value = secrets.token_urlsafe(32)
        self._grants.put(digest(value), grantee, seconds)
        return value

    def find(self, value: str) -> Grantee | None:
        return self._grants.get(digest(value))

    def revoke(self, value: str) -> None:
        self._grants.pop(digest(value))


@dataclass(frozen=True)
class Export:
    owner: str  # sha256 of the cookie value it is served to
    roles: frozenset[str]
    what: str
    file_name: str
    mime: str
    data: bytes
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


class Shelf:
    """Exports prepared by pages, until `EXPORT_SECONDS` have passed (an export may be fetched more than once
    while it lasts: each fetch is recorded); past `max_bytes` in all, the oldest go first."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_bytes: int = MAX_EXPORT_BYTES) -> None:
        self.max_bytes = max_bytes
        self._items: Lapsing[Export] = Lapsing(clock)

    def put(self, export: Export) -> str:
        key = secrets.token_urlsafe(24)
        self._items.put(key, export, EXPORT_SECONDS, lambda kept: sum(len(e.data) for e in kept) > self.max_bytes)
        return key

    def get(self, key: str) -> Export | None:
        return self._items.get(key)


CLAIMS = Claims()
GRANTS = Grants()
SHELF = Shelf()
