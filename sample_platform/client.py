"""A small client for the platform's API, used by the demo, the tests and the load generator.

Usage:

    client = PlatformClient("http://127.0.0.1:8080", admin_token="...")
    account = client.create_account("alice")
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx


class PlatformClient:
    def __init__(
        self,
        base_url: str,
        *,
        admin_token: str | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=timeout, transport=transport)
        self.admin_token = admin_token

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> PlatformClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}

    @staticmethod
    def _player(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    @staticmethod
    def _ok(response: httpx.Response) -> Any:
        if response.status_code >= 400:
            raise httpx.HTTPStatusError(
                f"{response.request.method} {response.request.url.path} -> {response.status_code}: {response.text}",
                request=response.request,
                response=response,
            )
        return response.json()

    def create_account(self, username: str) -> dict:
        return self._ok(self.http.post("/v1/accounts", json={"username": username}, headers=self._admin()))

    def deposit(self, account_id: int, amount_minor: int) -> dict:
        body = {"account_id": account_id, "amount_minor": amount_minor}
        return self._ok(self.http.post("/v1/admin/deposit", json=body, headers=self._admin()))

    def create_market(self, name: str, selections: list[tuple[str, str]]) -> dict:
        body = {"name": name, "selections": [{"name": n, "odds": o} for n, o in selections]}
        return self._ok(self.http.post("/v1/admin/markets", json=body, headers=self._admin()))

    def change_odds(self, market_id: int, selection_id: int, odds: str) -> dict:
        return self._ok(
            self.http.post(
                f"/v1/admin/markets/{market_id}/odds",
                json={"selection_id": selection_id, "odds": odds},
                headers=self._admin(),
            )
        )

    def result(
        self, market_id: int, *, winner_selection_id: int | None = None, void: bool = False, wait_seconds: float = 300
    ) -> dict:
        """Result the market and settle its bets. A settlement longer than the platform's request timeout
        is answered 504 while it goes on: then wait until the market is no longer settling and repeat
        the result, which finishes anything left and answers with the settlement."""
        body: dict[str, Any] = {"void": True} if void else {"winner_selection_id": winner_selection_id}
        path = f"/v1/admin/markets/{market_id}/result"
        deadline = time.monotonic() + wait_seconds
        while True:
            response = self.http.post(path, json=body, headers=self._admin())
            if response.status_code != 504 or time.monotonic() > deadline:
                return self._ok(response)
            while self.market(market_id)["status"] == "settling" and time.monotonic() < deadline:
                time.sleep(0.2)

    def market(self, market_id: int) -> dict:
        return self._ok(self.http.get(f"/v1/markets/{market_id}"))

    def wallet(self, token: str) -> dict:
        return self._ok(self.http.get("/v1/wallet", headers=self._player(token)))

    def bet(self, token: str, bet_id: int) -> dict:
        return self._ok(self.http.get(f"/v1/bets/{bet_id}", headers=self._player(token)))

    def place_bet(self, token: str, body: dict, *, key: str | None = None) -> httpx.Response:
        """POST /v1/bets; returns the raw response so callers can see replays and problems."""
        headers = self._player(token) | {"Idempotency-Key": f'"{key or uuid.uuid4()}"'}
        return self.http.post("/v1/bets", json=body, headers=headers)
