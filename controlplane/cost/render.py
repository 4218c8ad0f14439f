"""The cost report for people (a table) and for spreadsheets (CSV with a header row).

CSV: one row per component and a `total` row; with `--by`, one row per bucket instead.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from controlplane.clock import utc_text
from controlplane.cost.compute import rounded
from controlplane.cost.results import CostFigures, CostReport

COMPONENT_COLUMNS = (
    "component",
    "cost",
    "allocated",
    "unallocated",
    "share",
    "cost_per_settled_bet",
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
)


def _blank(value: Any) -> Any:
    return "" if value is None else value


def _figures_row(f: CostFigures) -> list[Any]:
    """The figures of BUCKET_COLUMNS[3:], in that order."""
    return [
        rounded(f.total_cost),
        rounded(f.allocated_cost),
        rounded(f.unallocated_cost),
        f.settled_bets,
        f.voided_bets,
        _blank(rounded(f.cost_per_settled_bet)),
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
            "",
            report.unallocated_policy,
            *common,
        ]
    )
    return out.getvalue()


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    cells = [header] + [[str(_blank(v)) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells]


def render_table(report: CostReport) -> str:
    w, cur, f = report.window, report.currency, report.figures
    title = f"Cost {utc_text(w.start)} .. {utc_text(w.end)}" + (f" (event {w.event})" if w.event else "")
    if not w.complete:
        title += " [window not over yet: cost so far]"
    lines = [
        title,
        f"total {rounded(f.total_cost)} {cur}: allocated {rounded(f.allocated_cost)}, unallocated "
        f"{rounded(f.unallocated_cost)} ({report.unallocated_policy}); bills matching no component "
        f"{rounded(report.unmapped_billing_cost)}",
        f"settled bets {f.settled_bets}, voided {f.voided_bets}, probe bets left out "
        f"{report.probe_bets_excluded}, resettled {report.resettled_bets}",
        f"cost per settled bet: {rounded(f.cost_per_settled_bet)} {cur}"
        if f.cost_per_settled_bet is not None
        else f"cost per settled bet: none ({f.cost_per_settled_bet_reason})",
        *(f"warning: {warning}" for warning in report.warnings),
        "",
    ]
    lines += _table(
        ["component", "cost", "allocated", "unallocated", "share", "per settled bet", "source", "allocation"],
        [
            [
                c.name,
                rounded(c.cost),
                rounded(c.allocated),
                rounded(c.unallocated),
                rounded(c.share),
                rounded(c.cost_per_settled_bet),
                c.source,
                c.allocation,
            ]
            for c in report.components
        ],
    )
    if report.buckets:
        lines.append("")
        lines += _table(
            ["bucket", "cost", "allocated", "settled", "voided", "per settled bet"],
            [
                [
                    utc_text(b.start),
                    rounded(b.figures.total_cost),
                    rounded(b.figures.allocated_cost),
                    b.figures.settled_bets,
                    b.figures.voided_bets,
                    rounded(b.figures.cost_per_settled_bet),
                ]
                for b in report.buckets
            ],
        )
    if report.slos:
        lines.append("")
        lines += _table(
            ["slo", "slice", "budget left", "alert now", "alerts fired", "requests", "slice cost"],
            [
                [
                    s.name,
                    s.slice,
                    f"{s.budget_remaining:.1%}",
                    s.alert_state,
                    s.alerts_fired,
                    s.requests,
                    rounded(s.slice_cost),
                ]
                for s in report.slos
            ],
        )
    if report.event is not None:
        e = report.event
        burned = ", ".join(
            f"{name} {value:.1%}" if value is not None else f"{name} no data"
            for name, value in e.budget_consumed.items()
        )
        lines += [
            "",
            f"event {e.name}: idle headroom paid {rounded(e.headroom_cost)} {cur}; error budget burned: {burned}",
        ]
    return "\n".join(lines)
