"""The cost report for people (a table) and for spreadsheets (CSV with a header row).

CSV: one row per component and a `total` row; with `--by`, one row per bucket instead.
"""

from __future__ import annotations

import csv
import io
from typing import Any

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


def render_csv(report: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    window, currency = report["window"], report["currency"]
    if report["buckets"]:
        writer.writerow(BUCKET_COLUMNS)
        for b in report["buckets"]:
            writer.writerow([b["start"], b["end"], currency] + [_blank(b[k]) for k in BUCKET_COLUMNS[3:]])
        return out.getvalue()
    writer.writerow(COMPONENT_COLUMNS)
    common = [currency, window["start"], window["end"], report["settled_bets"], report["voided_bets"]]
    for c in report["components"]:
        writer.writerow(
            [
                c["name"],
                c["cost"],
                c["allocated"],
                c["unallocated"],
                _blank(c["share"]),
                _blank(c["cost_per_settled_bet"]),
                c["source"],
                c["allocation"],
                *common,
            ]
        )
    writer.writerow(
        [
            "total",
            report["total_cost"],
            report["allocated_cost"],
            report["unallocated_cost"],
            "1" if report["components"] else "",
            _blank(report["cost_per_settled_bet"]),
            "",
            report["unallocated_policy"],
            *common,
        ]
    )
    return out.getvalue()


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    cells = [header] + [[str(_blank(v)) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells]


def render_table(report: dict[str, Any]) -> str:
    w, cur = report["window"], report["currency"]
    per_bet = report["cost_per_settled_bet"]
    title = f"Cost {w['start']} .. {w['end']}" + (f" (event {w['event']})" if w["event"] else "")
    if not w["complete"]:
        title += " [window not over yet: cost so far]"
    lines = [
        title,
        f"total {report['total_cost']} {cur}: allocated {report['allocated_cost']}, unallocated "
        f"{report['unallocated_cost']} ({report['unallocated_policy']}); bills matching no component "
        f"{report['unmapped_billing_cost']}",
        f"settled bets {report['settled_bets']}, voided {report['voided_bets']}, probe bets left out "
        f"{report['probe_bets_excluded']}, resettled {report['resettled_bets']}",
        f"cost per settled bet: {per_bet} {cur}"
        if per_bet is not None
        else f"cost per settled bet: none ({report['cost_per_settled_bet_reason']})",
        *(f"warning: {w}" for w in report["warnings"]),
        "",
    ]
    lines += _table(
        ["component", "cost", "allocated", "unallocated", "share", "per settled bet", "source", "allocation"],
        [
            [
                c["name"],
                c["cost"],
                c["allocated"],
                c["unallocated"],
                c["share"],
                c["cost_per_settled_bet"],
                c["source"],
                c["allocation"],
            ]
            for c in report["components"]
        ],
    )
    if report["buckets"]:
        lines.append("")
        lines += _table(
            ["bucket", "cost", "allocated", "settled", "voided", "per settled bet"],
            [
                [
                    b["start"],
                    b["total_cost"],
                    b["allocated_cost"],
                    b["settled_bets"],
                    b["voided_bets"],
                    b["cost_per_settled_bet"],
                ]
                for b in report["buckets"]
            ],
        )
    if report["slos"]:
        lines.append("")
        lines += _table(
            ["slo", "slice", "budget left", "alert now", "alerts fired", "requests", "slice cost"],
            [
                [
                    s["name"],
                    s["slice"],
                    f"{s['budget_remaining']:.1%}",
                    s["alert_state"],
                    s["alerts_fired"],
                    s["requests"],
                    s["slice_cost"],
                ]
                for s in report["slos"]
            ],
        )
    if "event" in report:
        e = report["event"]
        burned = ", ".join(
            f"{name} {value:.1%}" if value is not None else f"{name} no data"
            for name, value in e["budget_consumed"].items()
        )
        lines += [
            "",
            f"event {e['name']}: idle headroom paid {e['headroom_cost']} {cur}; error budget burned: {burned}",
        ]
    return "\n".join(lines)
