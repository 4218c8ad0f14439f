"""What every evaluator may look at: the instant, the event, the store, the audit log, the SLOs and the
platform (over HTTP, as any client would).

Usage:

    ctx = CheckContext(settings=settings, store=engine, at=utcnow(), event=events["cup-final"], ...)
    outcome = evaluate(check, ctx)
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime

import httpx
from sqlalchemy import Engine

from controlplane.auditing import audit_engine
from controlplane.settings import Settings
from controlplane.slices import SliceConfig
from controlplane.slo.spec import EventSpec, SloSpec
from controlplane.storage import reader


@dataclass
class CheckContext:
    settings: Settings
    store: Engine
    at: datetime
    now: datetime
    run_id: str
    event: EventSpec | None = None
    slos: list[SloSpec] = field(default_factory=list)
    events: dict[str, EventSpec] = field(default_factory=dict)
    slices: SliceConfig | None = None
    probe_lock: threading.Lock = field(default_factory=threading.Lock)
    # How probes reach the platform; None: over the network. Tests give a stand-in for a broken platform.
    transport: httpx.BaseTransport | None = None

    @property
    def audit(self) -> Engine:
        """The audit log's database, for reading (only evidence checks need it)."""
        return reader(audit_engine(self.settings))

    def slo(self, name: str) -> SloSpec:
        for spec in self.slos:
            if spec.name == name:
                return spec
        raise KeyError(name)

    @property
    def live(self) -> bool:
        """Whether `at` is now (within 5 minutes): probes observe the platform only as it is now."""
        return abs((self.at - self.now).total_seconds()) <= 300
