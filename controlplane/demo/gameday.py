"""The demo's game day, over the platform's admin API as a person would run it: the undercard market
settled before the event, each fault set and cleared by a named person with a reason (so the audit
log shows who did what), and the wait for the page alert while the lock-wait fault holds.

Usage:

    with GameDay(platform_url, admin_token) as day:
        day.undercard()
        record = day.set_fault(step)
        day.clear_fault(record, because="the page alert fired")
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any

import httpx
from sqlalchemy import Engine, func, select

from controlplane.clock import as_utc, utcnow
from controlplane.demo.plan import FaultStep
from controlplane.demo.seed import GAMEDAY
from controlplane.scheduler.tables import snapshots_t
from controlplane.storage import reader
from sample_platform.client import PlatformClient

PAGED_SLO = "bet-placement-availability"
ADMIN_DEADLINE = 60.0  # seconds an admin call is retried while the platform answers 503 or not at all


@dataclass
class FaultRecord:
    kind: str
    set_at: datetime
    set_by: str
    reason: str
    fault_id: str = ""
    cleared_at: datetime | None = None
    cleared_by: str = ""
    cleared_because: str = ""

    def to_dict(self, start: datetime) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "set_at": self.set_at.isoformat(),
            "set_s": round((self.set_at - start).total_seconds(), 1),
            "set_by": self.set_by,
            "reason": self.reason,
            "cleared_at": self.cleared_at.isoformat() if self.cleared_at else None,
            "cleared_s": round((self.cleared_at - start).total_seconds(), 1) if self.cleared_at else None,
            "cleared_by": self.cleared_by,
            "cleared_because": self.cleared_because,
        }


class GameDay:
    def __init__(self, platform_url: str, admin_token: str) -> None:
        self.admin_token = admin_token
        self.http = httpx.Client(base_url=platform_url, headers={"Authorization": f"Bearer {admin_token}"}, timeout=30)
        self.faults: list[FaultRecord] = []

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> GameDay:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def _call(
        self, method: str, path: str, *, ok: tuple[int, ...] = (200, 201), deadline: float = ADMIN_DEADLINE,
        **kwargs: Any,
    ) -> Any:  # fmt: skip
        """An admin call, retried while the platform is busy (503, e.g. a lock-wait fault) or unreachable."""
        deadline = time.monotonic() + deadline
        while True:
            try:
                response = self.http.request(method, path, **kwargs)
                if response.status_code in ok:
                    return response.json()
                if response.status_code != 503 or time.monotonic() > deadline:
                    raise RuntimeError(f"{method} {path} answered {response.status_code}: {response.text[:300]}")
                wait = float(response.headers.get("Retry-After", "1") or 1)
            except httpx.TransportError as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{method} {path} failed: {exc}") from exc
                wait = 1.0
            time.sleep(min(max(wait, 0.2), 2.0))

    def undercard(self) -> dict[str, Any]:
        """A small market before the event, bet on by one punter and settled: the first settlement."""
        with PlatformClient(str(self.http.base_url), admin_token=self.admin_token) as client:
            market = client.create_market(
                "Undercard: the maiden stakes", [("Early Doors", "2.10"), ("Late Show", "1.80")]
            )
            punter = client.create_account(f"punter-{uuid.uuid4().hex[:8]}")
            client.deposit(punter["id"], 50_000)
            for index, selection in enumerate(market["selections"]):
                body = {
                    "market_id": market["id"],
                    "selection_id": selection["id"],
                    "stake_minor": 500 * (index + 1),
                    "odds": selection["odds"],
                    "price_version": market["price_version"],
                }
                client.place_bet(punter["token"], body)
            result = client.result(market["id"], winner_selection_id=market["selections"][0]["id"])
        return {"market_id": market["id"], "settlement": result.get("settlement", {})}

    def set_fault(self, step: FaultStep) -> FaultRecord:
        body = {"kind": step.kind, "ttl_seconds": int(step.hold) + 60, "actor": GAMEDAY, "reason": step.reason}
        created = self._call("POST", "/v1/admin/faults", json=body | step.options)
        record = FaultRecord(step.kind, utcnow(), GAMEDAY, step.reason, fault_id=str(created.get("id", "")))
        self.faults.append(record)
        return record

    def clear_fault(self, record: FaultRecord, *, because: str) -> None:
        self._call("DELETE", "/v1/admin/faults", params={"kind": record.kind, "actor": GAMEDAY})
        record.cleared_at, record.cleared_by, record.cleared_because = utcnow(), GAMEDAY, because

    def clear_all(self, *, because: str) -> None:
        """Every fault on the platform cleared (also one whose setting was interrupted), in one call
        with a short deadline; a fault left behind ends by its TTL anyway."""
        try:
            self._call("DELETE", "/v1/admin/faults", params={"actor": GAMEDAY}, deadline=10.0)
        except RuntimeError:
            return
        for record in self.faults:
            if record.cleared_at is None:
                record.cleared_at, record.cleared_by, record.cleared_because = utcnow(), GAMEDAY, because


def paging_since(store: Engine, *, since: datetime, slo: str = PAGED_SLO) -> bool:
    """Whether an evaluation at or after `since` (the end of the minutes it judged) found `slo` paging."""
    t = snapshots_t
    query = select(t.c.at).where(t.c.slo == slo, t.c.at >= as_utc(since), t.c.page.is_(True)).limit(1)
    with reader(store).connect() as conn:
        return conn.execute(query).first() is not None


def page_state(store: Engine) -> list[str]:
    """The SLOs paging in the newest evaluation."""
    t = snapshots_t
    with reader(store).connect() as conn:
        newest = conn.execute(select(func.max(t.c.at))).scalar()
        if newest is None:
            return []
        return sorted(conn.execute(select(t.c.slo).where(t.c.at == newest, t.c.page.is_(True))).scalars())
