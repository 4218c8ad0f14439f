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
from dataclasses import dataclass, field
from typing import Any

SESSION_COOKIE = "controlplane_session"  # a local account's session token
GRANT_COOKIE = "controlplane_grant"  # a single-sign-on viewer's grant
CLAIM_SECONDS = 60.0
EXPORT_SECONDS = 15 * 60.0
MAX_EXPORT_BYTES = 256 * 1024 * 1024  # all exports on the shelf together; the oldest go first past it
SERVED = threading.Event()


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass(frozen=True)
class Claim:
    cookie: str
    value: str  # "" to clear the cookie
    max_age: int


class Claims:
    """Nonces for cookies not yet handed to the browser; each is taken at most once."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._pending: dict[str, tuple[Claim, float]] = {}
        self._taken: dict[str, float] = {}

    def register(self, cookie: str, value: str, max_age: int) -> str:
        nonce = secrets.token_urlsafe(24)
        now = self.clock()
        with self._lock:
            self._prune(now)
            self._pending[nonce] = (Claim(cookie, value, max_age), now + CLAIM_SECONDS)
        return nonce

    def take(self, nonce: str) -> Claim | None:
        now = self.clock()
        with self._lock:
            self._prune(now)
            found = self._pending.pop(nonce, None)
            if found is None:
                return None
            self._taken[nonce] = now + CLAIM_SECONDS
            return found[0]

    def taken(self, nonce: str) -> bool:
        with self._lock:
            return nonce in self._taken

    def _prune(self, now: float) -> None:
        self._pending = {n: v for n, v in self._pending.items() if v[1] > now}
        self._taken = {n: t for n, t in self._taken.items() if t > now}


@dataclass(frozen=True)
class Grantee:
    username: str
    role: str
    source: str


class Grants:
    """Single-sign-on viewers' grants, by the sha256 of the cookie's value, until they expire or are revoked."""

    def __init__(self, clock: Any = time.time) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._grants: dict[str, tuple[Grantee, float]] = {}

    def issue(self, grantee: Grantee, seconds: float) -> str:
        value = secrets.token_urlsafe(32)
        with self._lock:
            now = self.clock()
            self._grants = {k: v for k, v in self._grants.items() if v[1] > now}
            self._grants[digest(value)] = (grantee, now + seconds)
        return value

    def find(self, value: str) -> Grantee | None:
        with self._lock:
            found = self._grants.get(digest(value))
        return found[0] if found is not None and found[1] > self.clock() else None

    def revoke(self, value: str) -> None:
        with self._lock:
            self._grants.pop(digest(value), None)


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
    """Exports prepared by pages, until fetched by their owner or `EXPORT_SECONDS` have passed (an export may
    be fetched more than once while it lasts: each fetch is recorded)."""

    def __init__(self, clock: Any = time.monotonic, max_bytes: int = MAX_EXPORT_BYTES) -> None:
        self.clock = clock
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._items: dict[str, tuple[Export, float]] = {}

    def put(self, export: Export) -> str:
        key = secrets.token_urlsafe(24)
        now = self.clock()
        with self._lock:
            items = {k: v for k, v in self._items.items() if v[1] > now}
            items[key] = (export, now + EXPORT_SECONDS)
            while sum(len(e.data) for e, _ in items.values()) > self.max_bytes and len(items) > 1:
                del items[next(iter(items))]  # the oldest first
            self._items = items
        return key

    def get(self, key: str) -> Export | None:
        with self._lock:
            found = self._items.get(key)
        return found[0] if found is not None and found[1] > self.clock() else None


CLAIMS = Claims()
GRANTS = Grants()
SHELF = Shelf()
