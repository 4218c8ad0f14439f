"""The cost report for people and for spreadsheets. People (`cost report`'s table and the dashboard's
cost page) read the same labels and rows, formatted by `controlplane.formatting`; spreadsheets read CSV
with a header row named as the JSON's keys, amounts exact to 6 places.

Usage:

    headline(report)         # [("Cost per settled bet", "0.000285 EUR"), ("Allocated per settled bet", ...), ...]
    component_rows(report)   # [{"Component": "database", "Cost": "14.88 EUR", "Allocated": ..., ...}]
    render_table(report), render_csv(report)

CSV: one row per component and a `total` row; with `--by`, one row per bucket instead.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from controlplane.clock import utc_text
from controlplane.cost.compute import rounded
from controlplane.cost.results import CostFigures, CostReport
from controlplane.formatting import budget_left, count, money, percent, utc, utc_minute

COMPONENT_COLUMNS = (
    "component",
    "cost",
    "allocated",
    "unallocated",
    "share",
    "cost_per_settled_bet",
    "allocated_cost_per_settled_bet",
    "source",
    "allocation",
    "currency",
    "window_start",
    "window_end",
    "settled_bets",
    "voided_bets",
)
BUCKET_COLUMNS = (
    "bucket_start",
    "bucket_end",
    "currency",
    "total_cost",
    "allocated_cost",
    "unallocated_cost",
    "settled_bets",
    "voided_bets",
    "cost_per_settled_bet",
    "allocated_cost_per_settled_bet",
)
# What people read for each figure (the JSON key it shows, where the words differ from it).
PER_BET = "Cost per settled bet"  # cost_per_settled_bet: total cost ÷ settled bets
ALLOCATED_PER_BET = "Allocated per settled bet"  # allocated_cost_per_settled_bet
IDLE = "Idle or others'"  # unallocated


def _blank(value: Any) -> Any:
    return "" if value is None else value


def headline(report: CostReport) -> list[tuple[str, str]]:
    """The window's figures as (label, text), in the order the page's tiles and the table's lines show them."""
    f, cur = report.figures, report.currency
    return [
        (PER_BET, money(f.cost_per_settled_bet, cur)),
        (ALLOCATED_PER_BET, money(f.allocated_cost_per_settled_bet, cur)),
        ("Total cost", money(f.total_cost, cur)),
        ("Settled bets", count(f.settled_bets)),
        ("Voided bets", count(f.voided_bets)),
        (f"{IDLE} cost", money(f.unallocated_cost, cur)),
    ]


def explanation(report: CostReport) -> str:
    """How the headline is made, with its own numbers (or why there is no cost per settled bet)."""
    f, cur = report.figures, report.currency
    if f.cost_per_settled_bet_reason is not None:
        return f"{PER_BET}: none ({f.cost_per_settled_bet_reason})."
    bets = count(f.settled_bets)
    return (
        f"{PER_BET} = total cost ÷ settled bets ({money(f.total_cost, cur)} ÷ {bets}). "
        f"{ALLOCATED_PER_BET} = allocated cost ÷ settled bets ({money(f.allocated_cost, cur)} ÷ {bets}): the part "
        f"the betting product used, by the cost model's allocation rules. {IDLE} cost is idle headroom and other "
        "users' shares of shared components."
    )


def notes(report: CostReport) -> str:
    """What else counts: bills no component matches, probe bets left out, resettled bets."""
    return (
        f"Bills matching no component: {money(report.unmapped_billing_cost, report.currency)}; probe bets left out: "
        f"{count(report.probe_bets_excluded)}; resettled bets: {count(report.resettled_bets)}"
    )


def component_rows(report: CostReport) -> list[dict[str, str]]:
    cur = report.currency
    return [
        {
            "Component": c.name,
            "Cost": money(c.cost, cur),
            "Allocated": money(c.allocated, cur),
            IDLE: money(c.unallocated, cur),
            "Share of cost": percent(float(c.share)) if c.share is not None else "-",
            "Per settled bet": money(c.cost_per_settled_bet, cur),
            ALLOCATED_PER_BET: money(c.allocated_cost_per_settled_bet, cur),
            "Source": c.source,
            "Allocation": c.allocation,
        }
        for c in report.components
    ]


def bucket_rows(report: CostReport) -> list[dict[str, str]]:
    cur, by = report.currency, (report.window.by or "bucket").capitalize()
    return [
        {
            by: utc_minute(b.start),
            "Cost": money(b.figures.total_cost, cur),
            "Allocated": money(b.figures.allocated_cost, cur),
            "Settled bets": count(b.figures.settled_bets),
            "Voided bets": count(b.figures.voided_bets),
            "Per settled bet": money(b.figures.cost_per_settled_bet, cur),
            ALLOCATED_PER_BET: money(b.figures.allocated_cost_per_settled_bet, cur),
        }
        for b in report.buckets
    ]


def slo_rows(report: CostReport) -> list[dict[str, str]]:
    return [
        {
            "SLO": s.name,
            "Slice": s.slice,
            "Budget left": budget_left(s.budget_remaining, 1 - s.budget_remaining),
            "Alert now": s.alert_state,
            "Alerts fired": count(s.alerts_fired),
            "Requests": count(s.requests),
            "Slice cost": money(s.slice_cost, report.currency),
        }
        for s in report.slos
    ]


def event_rows(report: CostReport) -> list[dict[str, str]]:
    """Each SLO's error budget burned in the event's window ("no data" where it saw no request)."""
    if report.event is None:
        return []
    return [{"SLO": name, "Budget burned": percent(v)} for name, v in report.event.budget_consumed.items()]


def window_title(report: CostReport) -> str:
    w = report.window
    title = f"Cost {utc(w.start)} .. {utc(w.end)}" + (f" (event {w.event})" if w.event else "")
    return title + (" [window not over yet: cost so far]" if not w.complete else "")


def _figures_row(f: CostFigures) -> list[Any]:
    """The figures of BUCKET_COLUMNS[3:], in that order."""
    return [
        rounded(f.total_cost),
        rounded(f.allocated_cost),
        rounded(f.unallocated_cost),
        f.settled_bets,
        f.voided_bets,
        _blank(rounded(f.cost_per_settled_bet)),
        _blank(rounded(f.allocated_cost_per_settled_bet)),
    ]


def render_csv(report: CostReport) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    window, currency, figures = report.window, report.currency, report.figures
    if report.buckets:
        writer.writerow(BUCKET_COLUMNS)
        for b in report.buckets:
            writer.writerow([utc_text(b.start), utc_text(b.end), currency, *_figures_row(b.figures)])
        return out.getvalue()
    writer.writerow(COMPONENT_COLUMNS)
    common = [currency, utc_text(window.start), utc_text(window.end), figures.settled_bets, figures.voided_bets]
    for c in report.components:
        writer.writerow(
            [
                c.name,
                rounded(c.cost),
                rounded(c.allocated),
                rounded(c.unallocated),
                _blank(rounded(c.share)),
                _blank(rounded(c.cost_per_settled_bet)),
                _blank(rounded(c.allocated_cost_per_settled_bet)),
                c.source,
                c.allocation,
                *common,
            ]
        )
    writer.writerow(
        [
            "total",
            rounded(figures.total_cost),
            rounded(figures.allocated_cost),
            rounded(figures.unallocated_cost),
            "1" if report.components else "",
            _blank(rounded(figures.cost_per_settled_bet)),
            _blank(rounded(figures.allocated_cost_per_settled_bet)),
            "",
            report.unallocated_policy,
            *common,
        ]
    )
    return out.getvalue()


def _table(rows: list[dict[str, str]]) -> list[str]:
    if not rows:
        return []
    header = list(rows[0])
    cells = [header] + [[row[key] for key in header] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return ["", *("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells)]


def render_table(report: CostReport) -> str:
    figures = headline(report)
    lines = [
        window_title(report),
        "; ".join(f"{label}: {text}" for label, text in figures[:3]),
        "; ".join(f"{label}: {text}" for label, text in figures[3:]),
        explanation(report),
        notes(report),
        *(f"warning: {warning}" for warning in report.warnings),
    ]
    lines += _table(component_rows(report))
    lines += _table(bucket_rows(report))
    lines += _table(slo_rows(report))
    if report.event is not None:
        e = report.event
        lines += ["", f"Event {e.name}: idle headroom paid {money(e.headroom_cost, report.currency)}"]
        lines += _table(event_rows(report))
    return "\n".join(lines)
