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
from pathlib import Path
from typing import Any

from controlplane.auditing import audit_append
from controlplane.clock import utcnow
from controlplane.settings import Settings


def record_change(settings: Settings, *, kind: str, subject: str, before: Any, after: Any, actor: str) -> dict:
    entry = {
        "at": utcnow().isoformat().replace("+00:00", "Z"),
        "kind": "change",
        "change": kind,
        "subject": subject,
        "actor": actor,
        "before": before,
        "after": after,
    }
    entry["audit_seq"] = audit_append(
        settings, kind="change", actor=actor, subject=f"{kind}:{subject}", payload={"before": before, "after": after}
    )
    path = Path(settings.change_log_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry, sort_keys=True, separators=(",", ":")) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    return entry
