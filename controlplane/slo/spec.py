"""SLO specs (`config/slos.yaml`) and events (`config/events.yaml`), validated with errors that name
the file, the SLO and the field.

Usage:

    specs = load_slos(Path("config/slos.yaml"), events=load_events(Path("config/events.yaml")))
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from controlplane.changes import RecordedChange, record_change
from controlplane.clock import as_utc
from controlplane.config_files import explain, read_yaml
from controlplane.runbooks import missing_problem, reference_problem

EVENT_MARGIN = timedelta(hours=1)


class SloConfigError(ValueError):
    """A spec file is wrong; the message names the file, the SLO and the field, and the fix."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SliSpec(Strict):
    kind: Literal["ratio", "latency", "freshness"] = "ratio"
    threshold_seconds: float | None = Field(default=None, gt=0)
    percentile: float = Field(default=0.99, gt=0, lt=1)

    @model_validator(mode="after")
    def _threshold(self) -> SliSpec:
        if self.kind != "ratio" and self.threshold_seconds is None:
            raise ValueError(f"`threshold_seconds` missing: a {self.kind} SLI needs one, e.g. 0.5")
        return self


class WindowSpec(Strict):
    rolling_days: int | None = Field(default=None, ge=1, le=366)
    calendar: Literal["month"] | None = None
    event: str | None = None

    @model_validator(mode="after")
    def _one(self) -> WindowSpec:
        chosen = [k for k in ("rolling_days", "calendar", "event") if getattr(self, k) is not None]
        if len(chosen) != 1:
            raise ValueError("give exactly one of rolling_days (e.g. 30), calendar (month) or event (a name)")
        return self


class AlertingSpec(Strict):
    page: bool = True
    ticket: bool = True


class SloSpec(Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")
    slice: str = Field(min_length=1, max_length=64)
    sli: SliSpec = Field(default_factory=SliSpec)
    objective: float = Field(gt=0, lt=1, description="e.g. 0.999 for 99.9%")
    window: WindowSpec
    alerting: AlertingSpec = Field(default_factory=AlertingSpec)
    description: str | None = None
    runbook: str | None = Field(
        default=None,
        max_length=2000,
        description="a runbook name (the file NAME.md of config/runbooks) or an http(s) URL; alerts carry its link",
    )

    @field_validator("runbook")
    @classmethod
    def _runbook(cls, value: str | None) -> str | None:
        problem = reference_problem(value) if value is not None else None
        if problem:
            raise ValueError(problem)
        return value


class EventSpec(Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")
    kickoff: datetime
    settlement_expected: datetime

    @field_validator("kickoff", "settlement_expected")
    @classmethod
    def _zoned(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("give a time with its zone, e.g. 2026-12-05T15:00:00Z")
        return as_utc(value)

    @model_validator(mode="after")
    def _order(self) -> EventSpec:
        if self.settlement_expected <= self.kickoff:
            raise ValueError("settlement_expected must come after kickoff")
        return self

    def window(self) -> tuple[datetime, datetime]:
        return self.kickoff - EVENT_MARGIN, self.settlement_expected + EVENT_MARGIN


class SlosFile(Strict):
    slos: list[SloSpec] = Field(min_length=1)


class EventsFile(Strict):
    events: list[EventSpec] = Field(default_factory=list)


def load_events(path: Path) -> dict[str, EventSpec]:
    if not Path(path).exists():
        return {}
    raw = read_yaml(path, error=SloConfigError, missing_hint="copy it from the project's config/") or {"events": []}
    try:
        parsed = EventsFile.model_validate(raw)
    except ValidationError as exc:
        raise SloConfigError(explain(path, raw, exc, list_key="events", what="event")) from None
    return {event.name: event for event in parsed.events}


def load_slos(path: Path, *, events: dict[str, EventSpec] | None = None, runbooks: Path | None = None) -> list[SloSpec]:
    """The SLO file, validated; with `runbooks` (the runbooks directory) each runbook name must be a file there."""
    raw = read_yaml(path, error=SloConfigError, missing_hint="copy it from the project's config/ and edit it")
    try:
        parsed = SlosFile.model_validate(raw)
    except ValidationError as exc:
        raise SloConfigError(explain(path, raw, exc, list_key="slos", what="slo")) from None
    return check_slos(parsed.slos, events=events or {}, source=str(path), runbooks=runbooks)


def check_slos(
    specs: list[SloSpec], *, events: dict[str, EventSpec], source: str, runbooks: Path | None = None
) -> list[SloSpec]:
    """Rules across SLOs and files: unique names, known events, and (given the runbooks directory) runbook
    names that are files there."""
    names = [s.name for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise SloConfigError(f"{source}: slo names must be unique; repeated: {', '.join(dupes)}")
    for spec in specs:
        if spec.window.event is not None and spec.window.event not in events:
            known = ", ".join(sorted(events)) or "none defined"
            raise SloConfigError(
                f"{source}: slo '{spec.name}': window.event: no event named {spec.window.event!r} in "
                f"config/events.yaml (known: {known}); add it there or pick another window"
            )
        problem = missing_problem(runbooks, spec.runbook) if runbooks is not None and spec.runbook else None
        if problem:
            raise SloConfigError(f"{source}: slo '{spec.name}': runbook: {problem}")
    return specs


def spec_document(spec: SloSpec) -> dict:
    """A spec as it is written in slos.yaml (defaults left out)."""
    return spec.model_dump(mode="json", exclude_none=True, exclude_defaults=True) | {
        "objective": spec.objective,
        "window": spec.window.model_dump(mode="json", exclude_none=True),
    }


def apply_slo_changes(
    settings: Any, new_specs: list[SloSpec], *, actor: str, events: dict[str, EventSpec]
) -> list[RecordedChange]:
    """The one way SLO specs change: merge by name into the SLO file, validate, write, record each change.

    Returns the recorded changes (added or replaced SLOs); nothing is written if validation fails.
    """

    path = Path(settings.slos_path)
    current = load_slos(path, events=events) if path.exists() else []
    by_name = {spec.name: spec for spec in current}
    changes = []
    for spec in new_specs:
        before = by_name.get(spec.name)
        if before is not None and spec_document(before) == spec_document(spec):
            continue
        by_name[spec.name] = spec
        changes.append((spec.name, spec_document(before) if before else None, spec_document(spec)))
    runbooks = Path(settings.runbooks_path)
    merged = check_slos(list(by_name.values()), events=events, source=str(path), runbooks=runbooks)
    if not changes:
        return []
    header = "# Service level objectives; changed through `controlplane slo import` (each change is recorded).\n"
    path.write_text(header + yaml.safe_dump({"slos": [spec_document(s) for s in merged]}, sort_keys=False))
    return [
        record_change(settings, kind="slo", subject=name, before=before, after=after, actor=actor)
        for name, before, after in changes
    ]
