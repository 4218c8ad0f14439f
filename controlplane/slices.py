"""Slices: which spans or metric points belong to which SLI slice, and what counts as bad.

config = load_slices(Path("config/slices.yaml"))
config.for_span(service="sample-platform", name="POST /v1/bets", kind="server")  # -> Slice | None
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from controlplane.config_files import explain, read_yaml

DEFAULT_BOUNDARIES = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
SpanKind = Literal["unspecified", "internal", "server", "client", "producer", "consumer"]
SPAN_KINDS: tuple[SpanKind, ...] = ("unspecified", "internal", "server", "client", "producer", "consumer")


class SliceConfigError(ValueError):
    """slices.yaml is wrong; the message names the file, the slice and the field, and the fix."""


CLIENT_REFUSALS = (401, 408, 413, 429)  # refused because of the client: no valid token, too slow, too big, too many


class BadRule(BaseModel):
    model_config = ConfigDict(extra="forbid")
    http_status_min: int = Field(500, ge=0, le=600)
    span_status_error: bool = True
    # Counted apart, neither good nor bad (as the SRE Workbook leaves client errors out of an SLI); a
    # genuine overload (503) still counts as bad.
    excluded_statuses: list[int] = Field(default_factory=lambda: list(CLIENT_REFUSALS))

    @field_validator("excluded_statuses")
    @classmethod
    def _client_statuses(cls, value: list[int]) -> list[int]:
        wrong = [code for code in value if not 400 <= code <= 499]
        if wrong:
            raise ValueError(
                f"excluded_statuses takes client error codes (400-499) only, not {wrong}: a server's failure "
                "must count against its SLO"
            )
        return sorted(set(value))


class SliceSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")
    signal: Literal["traces", "metrics"]
    service: str | None = None
    spans: list[str] = Field(default_factory=list)
    kinds: list[SpanKind] = Field(default_factory=lambda: list[SpanKind](["server"]))
    metric: str | None = None
    routes: list[str] = Field(default_factory=list)
    bad: BadRule = Field(default_factory=BadRule)

    @model_validator(mode="after")
    def _signal_fields(self) -> SliceSpec:
        if self.signal == "traces" and not self.spans:
            raise ValueError("`spans` missing: a traces slice needs the span names it counts, e.g. ['POST /v1/bets']")
        if self.signal == "metrics" and not self.metric:
            raise ValueError(
                "`metric` missing: a metrics slice needs a histogram name, e.g. http.server.request.duration"
            )
        return self


class SlicesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    latency_boundaries_seconds: list[float] = Field(default_factory=lambda: list(DEFAULT_BOUNDARIES))
    slices: list[SliceSpec] = Field(min_length=1)

    @field_validator("latency_boundaries_seconds")
    @classmethod
    def _increasing(cls, value: list[float]) -> list[float]:
        if not value or any(b <= a for a, b in pairwise(value)) or value[0] <= 0:
            raise ValueError("boundaries must be positive and strictly increasing, e.g. [0.1, 0.25, 0.5]")
        return value

    @model_validator(mode="after")
    def _unique(self) -> SlicesFile:
        names = [s.name for s in self.slices]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"slice names must be unique; repeated: {', '.join(dupes)}")
        return self


def label(boundary: float) -> str:
    """The `le` label of a boundary: "0.25", "1.0", "+Inf"."""
    return "+Inf" if boundary == float("inf") else repr(float(boundary))


@dataclass
class SliceConfig:
    boundaries: tuple[float, ...]
    slices: list[SliceSpec]
    _spans: dict[tuple[str, str], list[SliceSpec]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for spec in self.slices:
            if spec.signal == "traces":
                for kind in spec.kinds:
                    for name in spec.spans:
                        self._spans.setdefault((name, kind), []).append(spec)

    @property
    def span_names(self) -> frozenset[str]:
        """The span names some slice counts (of some kind): any other span is in no slice."""
        return frozenset(name for name, _ in self._spans)

    @property
    def labels(self) -> list[str]:
        return [label(b) for b in self.boundaries] + ["+Inf"]

    def for_span(self, *, service: str | None, name: str, kind: str) -> SliceSpec | None:
        for spec in self._spans.get((name, kind), ()):
            if spec.service is None or spec.service == service:
                return spec
        return None

    def for_metric(self, *, service: str | None, metric: str, route: str | None) -> SliceSpec | None:
        for spec in self.slices:
            if spec.signal != "metrics" or spec.metric != metric:
                continue
            if spec.service is not None and spec.service != service:
                continue
            if spec.routes and route not in spec.routes:
                continue
            return spec
        return None

    def latency_label(self, seconds: float) -> str:
        for boundary in self.boundaries:
            if seconds <= boundary:
                return label(boundary)
        return "+Inf"


def load_slices(path: Path) -> SliceConfig:
    raw = read_yaml(path, error=SliceConfigError, missing_hint="copy config/slices.yaml from the project and edit it")
    try:
        parsed = SlicesFile.model_validate(raw)
    except ValidationError as exc:
        raise SliceConfigError(explain(path, raw, exc, list_key="slices", what="slice")) from None
    return SliceConfig(tuple(parsed.latency_boundaries_seconds), parsed.slices)
