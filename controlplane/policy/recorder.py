"""The policy in force, recorded: the scheduler's `budget-policy` job evaluates every slice each minute
and, when a slice's state changes (or is seen for the first time), keeps the new state in the store
and appends a `policy` audit entry (`policy:<slice>`: from, to, the reason, each SLO's budget and burn).

Usage:

    changes = record_policy(settings, store, now=utcnow())    # [{"slice", "from", "to", "reason", "seq"}]
    frozen = frozen_slices(store)                             # ["bet-placement"] while its budget is spent
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Engine, delete, select, update

from controlplane.auditing import audit_append
from controlplane.clock import utc_text
from controlplane.config import ControlPlaneConfig, load_config
from controlplane.policy.evaluate import PolicyReport, policy_states
from controlplane.policy.tables import policy_states_t
from controlplane.settings import Settings
from controlplane.slo.periods import floor_minute
from controlplane.slo.rolled import evaluate_all_from_rollups
from controlplane.storage import reader

SYSTEM_ACTOR = "controlplane"


def current_policy(config: ControlPlaneConfig, store: Engine, *, at: datetime) -> PolicyReport:
    report = evaluate_all_from_rollups(store, config.specs, events=config.events, boundaries=config.boundaries, at=at)
    return policy_states(config.budget_policy(), report)


def recorded(store: Engine) -> dict[str, Any]:
    with reader(store).connect() as conn:
        return {row.slice: row for row in conn.execute(select(policy_states_t)).all()}


def frozen_slices(store: Engine) -> list[str]:
    return sorted(name for name, row in recorded(store).items() if row.state == "freeze")


def record_policy(settings: Settings, store: Engine, *, now: datetime) -> list[dict[str, Any]]:
    config = load_config(settings)
    at = floor_minute(now)
    states = current_policy(config, store, at=at)
    before = recorded(store)
    changes = []
    for s in states.slices:
        old = before.get(s.slice)
        if old is not None and old.state == s.state and old.audit_seq is not None:
            continue  # unchanged, and its change is in the audit log (a run cut off before the append retries it)
        values = {"slice": s.slice, "state": s.state, "reason": s.reason, "since": at, "audit_seq": None}
        with store.begin() as conn:
            if old is None:
                conn.execute(policy_states_t.insert(), values)
            else:
                conn.execute(update(policy_states_t).where(policy_states_t.c.slice == s.slice).values(values))
        try:
            seq = audit_append(
                settings,
                kind="policy",
                actor=SYSTEM_ACTOR,
                subject=f"policy:{s.slice}",
                payload={
                    "type": "state_changed",
                    "from": None if old is None else old.state,
                    "to": s.state,
                    "reason": s.reason,
                    "at": utc_text(at),
                    "slos": {p.slo: {"state": p.state, "budget_remaining": p.budget_remaining, "burn_1h": p.burn_1h}
                             for p in s.slos},
                },
            )  # fmt: skip
        except BaseException:  # both or neither: the next run records the change again
            with store.begin() as conn:
                if old is None:
                    conn.execute(delete(policy_states_t).where(policy_states_t.c.slice == s.slice))
                else:
                    restore = {"state": old.state, "reason": old.reason, "since": old.since, "audit_seq": old.audit_seq}
                    conn.execute(update(policy_states_t).where(policy_states_t.c.slice == s.slice).values(restore))
            raise
        with store.begin() as conn:
            conn.execute(update(policy_states_t).where(policy_states_t.c.slice == s.slice).values(audit_seq=seq))
        changes.append({"slice": s.slice, "from": None if old is None else old.state, "to": s.state,
                        "reason": s.reason, "seq": seq})  # fmt: skip
    for name in sorted(set(before) - {s.slice for s in states.slices}):  # a slice no SLO covers any more
        seq = audit_append(
            settings, kind="policy", actor=SYSTEM_ACTOR, subject=f"policy:{name}",
            payload={"type": "state_removed", "from": before[name].state, "to": None, "at": utc_text(at),
                     "reason": "no SLO covers this slice any more"},
        )  # fmt: skip
        with store.begin() as conn:
            conn.execute(delete(policy_states_t).where(policy_states_t.c.slice == name))
        changes.append({"slice": name, "from": before[name].state, "to": None, "reason": "no SLO", "seq": seq})
    return changes
