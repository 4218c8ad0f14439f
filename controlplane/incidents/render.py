"""Incidents for people: the list, one incident in full, the post-incident review skeleton (Markdown),
and the monthly report per slice (count, mean time to detect and to mitigate, user-impact minutes).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from controlplane.formatting import duration, percent, utc
from controlplane.incidents.record import IncidentRecord


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


def _spent(value: float | None) -> str:
    return "-" if value is None else percent(value)


def render_list(records: list[IncidentRecord]) -> str:
    if not records:
        return "No incidents in that range."
    rows = [
        [
            r.id,
            r.slice,
            r.state,
            utc(r.opened_at),
            duration(r.kpis.time_to_detect_s),
            duration(r.kpis.time_to_mitigate_s) if r.kpis.mitigated_at else "not yet",
            str(r.kpis.user_impact_minutes),
            r.title,
        ]
        for r in records
    ]
    headers = ["Incident", "Slice", "State", "Opened", "Detected in", "Mitigated in", "Impact min", "Title"]
    return _table(headers, rows)


def _kpi_lines(r: IncidentRecord) -> list[tuple[str, str]]:
    k = r.kpis
    return [
        ("Impact started", utc(k.impact_started_at)),
        ("Detected (first page)", f"{utc(k.detected_at)}, {duration(k.time_to_detect_s)} after the impact started"),
        (
            "Mitigated",
            f"{utc(k.mitigated_at)}, {duration(k.time_to_mitigate_s)} after detection"
            if k.mitigated_at
            else "not yet (the SLI has not stayed within objective for the quiet period)",
        ),
        ("Alerts resolved", utc(k.resolved_at) if k.resolved_at else "not yet"),
        ("User-impact minutes", str(k.user_impact_minutes)),
        ("Bad events", ", ".join(f"{slo} {n:,}" for slo, n in k.bad_events.items()) or "-"),
        ("Budget spent", ", ".join(f"{slo} {_spent(v)}" for slo, v in r.budget_spent.items()) or "-"),
    ]


def render_show(r: IncidentRecord) -> str:
    lines = [f"Incident {r.id}: {r.title}", f"  slice {r.slice} ({', '.join(r.slos)}), {r.state}"]
    lines.append(
        f"  opened {utc(r.opened_at)} by {r.opened_by}" + (f", closed {utc(r.closed_at)}" if r.closed_at else "")
    )
    lines += [f"  {name}: {value}" for name, value in _kpi_lines(r)]
    lines.append("Alerts")
    lines += [
        f"  {a.severity} {a.slo}: fired {utc(a.fired_at)}, "
        + (f"resolved {utc(a.resolved_at)}" if a.resolved_at else "firing")
        for a in r.alerts
    ] or ["  none"]
    lines.append("What changed (nearest to the impact's start first)")
    lines += [
        f"  {_offset(c.offset_s)}  {utc(c.at)}  {c.what} by {c.actor}"
        + (f": {c.reason}" if c.reason else "")
        + f" (seq {c.seq})"
        for c in r.changes
    ] or ["  nothing recorded from 30 min before the impact to its mitigation"]
    return "\n".join(lines)


def _offset(seconds: float) -> str:
    sign = "-" if seconds < 0 else "+"
    return f"{sign}{duration(abs(seconds))}".rjust(10)


def render_markdown(r: IncidentRecord) -> str:
    """A post-incident review, the facts filled in from the record, the judgement left to people."""
    out = [f"# Post-incident review: {r.title}", ""]
    out += [
        "## Summary",
        "",
        f"Incident `{r.id}` on the **{r.slice}** slice ({', '.join(r.slos)}), opened {utc(r.opened_at)} by "
        f"{r.opened_by}" + (f", closed {utc(r.closed_at)}." if r.closed_at else "; still open."),
        "",
        "_What happened, in two sentences a bettor would understand:_",
        "",
        "## Key figures",
        "",
        "| figure | value |",
        "| --- | --- |",
    ]
    out += [f"| {name} | {value} |" for name, value in _kpi_lines(r)]
    out += ["", "## Timeline (UTC)", "", "| time | source | what |", "| --- | --- | --- |"]
    out += [f"| {utc(t.at)} | {t.source} | {t.text} |" for t in r.timeline]
    out += ["", "## Impacted SLOs", "", "| SLO | bad events | budget spent |", "| --- | --- | --- |"]
    out += [f"| {slo} | {r.kpis.bad_events.get(slo, 0):,} | {_spent(r.budget_spent.get(slo))} |" for slo in r.slos]
    out += ["", "## What changed", ""]
    if r.changes:
        out += [
            "| from impact start | time | change | by | reason | audit seq |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        out += [
            f"| {_offset(c.offset_s).strip()} | {utc(c.at)} | {c.what} | {c.actor} | {c.reason or '-'} | {c.seq} |"
            for c in r.changes
        ]
    else:
        out.append("Nothing recorded from 30 minutes before the impact to its mitigation.")
    for heading in ("Contributing factors", "What went well", "What was hard", "Action items (owner, due date)"):
        out += ["", f"## {heading}", "", "_To be written by the people involved._"]
    out += [
        "",
        f"_Figures computed {utc(r.as_of)} from the SLI per minute, the alert transitions and the audit log._",
        "",
    ]
    return "\n".join(out)


@dataclass(frozen=True)
class MonthRow:
    slice: str
    month: str  # YYYY-MM
    incidents: int
    mttd_s: float | None
    mttm_s: float | None  # over the mitigated ones
    user_impact_minutes: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "slice": self.slice,
            "month": self.month,
            "incidents": self.incidents,
            "mttd_s": self.mttd_s,
            "mttm_s": self.mttm_s,
            "user_impact_minutes": self.user_impact_minutes,
        }


def monthly(records: list[IncidentRecord]) -> list[MonthRow]:
    groups: dict[tuple[str, str], list[IncidentRecord]] = {}
    for r in records:
        groups.setdefault((r.slice, f"{r.opened_at:%Y-%m}"), []).append(r)
    rows = []
    for (slice_name, month), items in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        ttm = [r.kpis.time_to_mitigate_s for r in items if r.kpis.time_to_mitigate_s is not None]
        rows.append(
            MonthRow(
                slice=slice_name,
                month=month,
                incidents=len(items),
                mttd_s=round(statistics.fmean(r.kpis.time_to_detect_s for r in items), 3),
                mttm_s=round(statistics.fmean(ttm), 3) if ttm else None,
                user_impact_minutes=sum(r.kpis.user_impact_minutes for r in items),
            )
        )
    return rows


def render_monthly(rows: list[MonthRow]) -> str:
    if not rows:
        return "No incidents in that range."
    return _table(
        ["Month", "Slice", "Incidents", "MTTD", "MTTM", "User-impact min"],
        [
            [r.month, r.slice, str(r.incidents), duration(r.mttd_s), duration(r.mttm_s), str(r.user_impact_minutes)]
            for r in rows
        ],
    )
