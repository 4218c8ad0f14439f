"""The one way configuration changes are recorded (SLO specs now; faults and checklists later).

Usage:

    record_change(settings, kind="slo", subject="bet-placement-availability", before=old, after=new, actor="ana")

Each change is appended to the audit log (`CONTROLPLANE_AUDIT_URL`) as a `change` entry with its
actor, subject, before and after, and as one JSON line to `CONTROLPLANE_CHANGE_LOG_PATH` for people
reading along.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from controlplane.auditing import audit_append
from controlplane.clock import utc_text, utcnow
from controlplane.settings import Settings


@dataclass(frozen=True)
class RecordedChange:
    """One change as recorded: what changed (`change`: slo, ...), its subject, who, before and after."""

    at: datetime
    change: str
    subject: str
    actor: str
    before: Any
    after: Any
    audit_seq: int

    def to_dict(self) -> dict[str, Any]:
        """The change-log line's JSON."""
        return {
            "at": utc_text(self.at),
            "kind": "change",
            "change": self.change,
            "subject": self.subject,
            "actor": self.actor,
            "before": self.before,
            "after": self.after,
            "audit_seq": self.audit_seq,
        }


def record_change(
    settings: Settings, *, kind: str, subject: str, before: Any, after: Any, actor: str
) -> RecordedChange:
    at = utcnow()
    seq = audit_append(
        settings, kind="change", actor=actor, subject=f"{kind}:{subject}", payload={"before": before, "after": after}
    )
    change = RecordedChange(at, kind, subject, actor, before, after, seq)
    path = Path(settings.change_log_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(change.to_dict(), sort_keys=True, separators=(",", ":")) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    return change
