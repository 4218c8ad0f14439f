"""What the demo sets up before the load: its own config files (the event calendar, the scheduler's
cadences, the checklist pointing at freshly exported rules), the dashboard's users, and the people
and drills the checklist asks about.

Usage:

    files = write_config(workdir / "config", source=Path("config"))
    write_events(files, plan)                 # once the timeline is known
    logins = seed_people(settings, store)      # name -> (role, password)
"""

from __future__ import annotations

import os
import secrets
import shutil
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import yaml
from sqlalchemy import Engine

from controlplane.checklist.records import attest, record_drill
from controlplane.clock import utc_text
from controlplane.demo.plan import CHECKLIST_OFFSET, DemoPlan
from controlplane.settings import Settings
from controlplane.slices import load_slices
from controlplane.slo.rules import render_rules
from controlplane.slo.spec import load_events, load_slos
from controlplane.users.accounts import add_user
from controlplane.users.audit_entries import audit_change

EVENT = "derby"
EVALUATION_EVERY = "2s"
EVALUATION_DELAY = "10s"
# Who is who in the demo's audit log.
LEAD, SRE, GAMEDAY = "morgan.lead", "sam.sre", "riley.gameday"
DASHBOARD_USERS = (("demo-oncall", "oncall"), ("demo-compliance", "compliance"), ("demo-admin", "admin"))
ATTESTED = ("incident-roles", "oncall-rested")  # status-page-ready is left open: a warning to show


@dataclass(frozen=True)
class DemoFiles:
    directory: Path
    slos: Path
    slices: Path
    events: Path
    checklist: Path
    costs: Path
    scheduler: Path
    rules: Path


def write_config(directory: Path, *, source: Path) -> DemoFiles:
    """Copy the project's SLOs, slices and cost model; write the demo's scheduler file and checklist."""
    directory.mkdir(parents=True, exist_ok=True)
    files = DemoFiles(
        directory=directory,
        slos=directory / "slos.yaml",
        slices=directory / "slices.yaml",
        events=directory / "events.yaml",
        checklist=directory / "checklist.yaml",
        costs=directory / "costs.yaml",
        scheduler=directory / "scheduler.yaml",
        rules=directory / "slo-rules.yml",
    )
    for name in ("slos.yaml", "slices.yaml", "costs.yaml"):
        shutil.copyfile(source / name, directory / name)
    (directory / "costs.source.yaml").write_bytes((source / "costs.yaml").read_bytes())
    files.events.write_text("events: []\n")
    checklist = yaml.safe_load((source / "checklist.yaml").read_text())
    for check in checklist["checks"]:
        if check["evaluator"]["type"] == "prometheus_rules":
            check["evaluator"]["file"] = str(files.rules)
    files.checklist.write_text(
        "# The demo's copy of config/checklist.yaml, checking the rules it exported.\n"
        + yaml.safe_dump(checklist, sort_keys=False, width=120)
    )
    scheduler = {
        # Every few seconds rather than every minute: the demo's whole derby night lasts minutes.
        "jobs": {
            "slo-evaluation": {"every": EVALUATION_EVERY},
            "alert-delivery": {"every": "5s"},
            "incidents": {"every": EVALUATION_EVERY},
            "budget-policy": {"every": EVALUATION_EVERY},
            "checkpoint": {"every": "30s"},
            "checklists": {"every": EVALUATION_EVERY},
            "rollups": {"every": "60s"},
            "cost-rollups": {"every": "60s"},
            "retention": {"enabled": False, "cron": "17 3 * * *"},
        },
        "evaluation_delay": EVALUATION_DELAY,
        "checklist_offsets": [CHECKLIST_OFFSET],
        "lease_seconds": 10,
    }
    files.scheduler.write_text(
        "# The demo's scheduler: config/scheduler.yaml with cadences of seconds.\n"
        + yaml.safe_dump(scheduler, sort_keys=False)
    )
    specs = load_slos(files.slos)
    files.rules.write_text(render_rules(specs, load_slices(files.slices), events={}))
    return files


def point_costs_at(files: DemoFiles, metrics_urls: list[str]) -> None:
    """The cost model's CPU-allocated components read the CPU of the demo's platform (its port is the
    demo's choice, not the file's)."""
    model = yaml.safe_load((files.directory / "costs.source.yaml").read_text())
    for component in model.get("components", []):
        allocation = component.get("allocation")
        if isinstance(allocation, dict) and isinstance(allocation.get("by_cpu_seconds"), dict):
            allocation["by_cpu_seconds"]["targets"] = list(metrics_urls)
    files.costs.write_text(
        "# The demo's copy of config/costs.yaml, reading its platform's CPU.\n" + yaml.safe_dump(model, sort_keys=False)
    )


def write_events(files: DemoFiles, plan: DemoPlan) -> None:
    """The event calendar: the derby, kicking off at the plan's kickoff."""
    settled = plan.latest_end + timedelta(minutes=1)
    document = {
        "events": [
            {
                "name": EVENT,
                "kickoff": utc_text(plan.kickoff),
                "settlement_expected": utc_text(settled),
            }
        ]
    }
    draft = files.events.with_suffix(".draft")
    draft.write_text(yaml.safe_dump(document, sort_keys=False))
    load_events(draft)  # refuses a calendar the scheduler would refuse
    os.replace(draft, files.events)  # the scheduler reads the file every few seconds: never half of it


def seed_people(settings: Settings, store: Engine) -> dict[str, tuple[str, str]]:
    """Dashboard users (returns name -> (role, password)), two attestations and a failover drill."""
    logins = {}
    for name, role in DASHBOARD_USERS:
        password = secrets.token_urlsafe(12)
        add_user(
            store,
            name,
            role=role,
            password=password,
            by=LEAD,
            record=lambda change: audit_change(settings, change),
        )
        logins[name] = (role, password)
    for check_id in ATTESTED:
        attest(
            settings,
            store,
            check_id=check_id,
            by=LEAD,
            expires_at=timedelta(hours=6),
            event=EVENT,
            note="named in the event channel before the demo's derby",
        )
    record_drill(
        settings, kind="failover", by=SRE, note="database failover to the replica and back, 41 s of write refusals"
    )
    return logins
