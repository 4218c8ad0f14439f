"""The mark a change made while a slice is frozen carries in its audit entry: `policy: freeze` and the
frozen slices, read from the state the scheduler's `budget-policy` job recorded (cached a few seconds,
since the platform's relay delivers every second or so). A store that cannot be read marks nothing
and never holds up the relay.

Usage:

    sink = OutboxAuditSink(log, keys, annotate=FreezeFlag(store))
"""

from __future__ import annotations

import logging
import time
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from controlplane.policy.recorder import frozen_slices

log = logging.getLogger(__name__)
TTL_SECONDS = 5.0


class FreezeFlag:
    def __init__(self, store: Engine, *, ttl: float = TTL_SECONDS) -> None:
        self.store, self.ttl = store, ttl
        self._read_at = -float("inf")
        self._frozen: list[str] = []
        self._warned = False  # a store that cannot be read is said once, until it can be again

    def __call__(self) -> dict[str, Any]:
        now = time.monotonic()
        if now - self._read_at >= self.ttl:
            try:
                self._frozen = frozen_slices(self.store)
                self._warned = False
            except SQLAlchemyError as exc:
                if not self._warned:
                    log.warning("cannot read the error budget policy state; changes are not marked: %s", exc)
                    self._warned = True
                self._frozen = []
            self._read_at = now
        return {"policy": "freeze", "frozen_slices": list(self._frozen)} if self._frozen else {}
