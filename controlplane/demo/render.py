"""The end-of-run report for people: one section per question the demo answers."""

from __future__ import annotations

from typing import Any

from controlplane.formatting import budget_left, burn, duration


def _pct(value: float | None, digits: int = 3) -> str:
    return "no data" if value is None else f"{100 * value:.{digits}f}%"


def _yes(flag: object) -> str:
    return "OK" if flag else "FAILED"


def _incident(inc: dict[str, Any]) -> list[str]:
    lines = ["", "Incident (opened by the page; every figure from the stored SLI minutes, alerts and audit log)"]
    if not inc.get("opened"):
        return [*lines, f"  none: {inc.get('reason', 'no page alert fired')}"]
    lines.append(f"  {inc['id']} on {inc['slice']}: {inc['title']} ({inc['state']})")
    mitigated = (
        f"mitigated +{inc['mitigated_s']:.0f} s (time to mitigate {duration(inc['time_to_mitigate_s'])})"
        if inc["mitigated_s"] is not None
        else f"not mitigated by full time (the SLI must stay within objective {inc['quiet_minutes']} min)"
    )
    lines.append(
        f"  impact started +{inc['impact_started_s']:.0f} s, detected +{inc['detected_s']:.0f} s "
        f"(time to detect {duration(inc['time_to_detect_s'])}), {mitigated}"
    )
    bad = ", ".join(f"{slo} {n}" for slo, n in inc["bad_events"].items())
    spent = ", ".join(f"{slo} {burn(v)}" for slo, v in inc["budget_spent"].items() if v)
    lines.append(
        f"  user-impact minutes {inc['user_impact_minutes']}; bad events {bad}; budget spent {spent or 'none'}"
    )
    top = inc.get("top_change")
    if top:
        offset = f"{abs(top['offset_s']):.0f} s {'before' if top['offset_s'] < 0 else 'after'} the impact started"
        reason = f": {top['reason']}" if top["reason"] else ""
        lines.append(
            f"  nearest change ({inc['changes']} in all): {top['what']} by {top['actor']}, {offset}{reason} "
            f"(seq {top['seq']})"
        )
    policy = ", ".join(
        f"{name} {p['state'].upper() if p['state'] != 'ship' else 'ship'}" for name, p in inc["policy"].items()
    )
    lines.append(f"  error budget policy now: {policy}")
    return lines


def _cluster(cluster: dict[str, Any]) -> list[str]:
    if not cluster:
        return []
    stream = cluster["stream"]
    lines = ["", f"Cluster ({len(cluster['replicas'])} platform replicas, {cluster['collectors']} collectors, "
             f"{cluster['ingesters']} audit ingesters, NATS JetStream at {cluster['nats_url']})"]  # fmt: skip
    lines.append(f"  {'replica':<12} {'url':<24} {'requests':>9} {'bets':>6} {'errors':>7} {'no answer':>10}")
    for r in cluster["replicas"]:
        lines.append(
            f"  {r['process']:<12} {r['url']:<24} {r.get('requests', 0):>9} {r.get('bets_accepted', 0):>6} "
            f"{r.get('errors', 0):>7} {r.get('failures', 0):>10}"
        )
    lines.append(
        f"  stream: {stream['audited_once']} of {stream['outbox_events']} outbox events in the audit log exactly once "
        f"({stream['missing']} missing, {stream['doubled']} doubled); commit-to-audit lag p50 {stream['lag_p50_s']} s, "
        f"p99 {stream['lag_p99_s']} s, max {stream['lag_max_s']} s; dead letters {stream['dead_letters']}"
    )
    for f in cluster["faults"]:
        back = f"back after {f['back_after_s']:.0f} s" if f["back_after_s"] is not None else "not restarted"
        lines.append(f"  SIGKILL {f['process']:<16} +{f['at_s']:.0f} s ({f['fault']}), {back}")
    return lines


def render_report(data: dict[str, Any]) -> str:
    out: list[str] = []
    add = out.append
    timeline = data["timeline"]
    add("")
    add(f"Derby night: load from {timeline['load_started_at']}, kickoff {timeline['kickoff']} "
        f"(+{timeline['kickoff_s']:.0f} s), finished {timeline['finished_at']}")  # fmt: skip

    add("")
    add("SLOs at full time (per slice; budget over each SLO's window)")
    add(f"  {'slo':<28} {'slice':<14} {'objective':>9} {'sli':>10} {'events':>7} {'bad':>5} {'budget left':>16}  alert")
    for s in data["slos"]:
        left = budget_left(s["budget_remaining"], 1 - s["budget_remaining"])
        add(
            f"  {s['slo']:<28} {s['slice']:<14} {100 * s['objective']:>8.2f}% {_pct(s['sli']):>10} "
            f"{s['events']:>7} {s['bad_events']:>5} {left:>16}  {s['alert']}"
        )

    add("")
    add("Game day (each fault set and cleared over the admin API; the audit log names who and why)")
    for f in data["faults"]:
        cleared = (
            f"cleared +{f['cleared_s']:.0f} s ({f['cleared_because']})" if f["cleared_s"] is not None else "not cleared"
        )
        add(f"  {f['kind']:<12} set +{f['set_s']:.0f} s by {f['set_by']}, {cleared}")

    add("")
    add("Alert transitions (from the scheduler's SLO evaluations)")
    if not data["alerts"]:
        add("  none")
    for a in data["alerts"]:
        after = a["after_fault"]
        rel = f"{after['seconds']:+.0f} s after {after['kind']} was set" if after else "before any fault"
        burn = ", ".join(f"{w} {v:g}x" for w, v in a["burn_rates"].items() if w in ("5m", "1h"))
        add(
            f"  +{a['at_s']:>4.0f} s  {a['slo']:<28} {a['severity']:<6} {a['state']:<8} {a['when']:<24} {rel}  [{burn}]"
        )

    check = data["checklist"]
    out.extend(_incident(data.get("incident") or {}))

    add("")
    add("Pre-kickoff checklist (run by the scheduler, signed into the audit log)")
    if not check.get("ran"):
        add(f"  did not run: {check.get('reason')}")
    else:
        add(
            f"  {check['decision'].upper()} (exit {check['exit_code']}), run {check['run_id']} at {check['at']}, "
            f"{check['seconds_before_kickoff']:.0f} s before kickoff, audit seq {check['audit_seq']}"
        )
        add("  " + ", ".join(f"{n} {status}" for status, n in sorted(check["counts"].items())))
        for c in check["not_passing"]:
            add(f"  - {c['id']} ({c['severity']}): {c['status']}: {c['reason']}")

    cost = data["cost"]
    add("")
    add(f"Cost over the run ({cost.get('currency')})")
    per_bet = cost.get("cost_per_settled_bet")
    if per_bet is None:
        per_bet = f"none: {cost.get('cost_per_settled_bet_reason')}"
    add(
        f"  total {cost.get('total_cost')}, settled bets {cost.get('settled_bets')}, "
        f"voided {cost.get('voided_bets')}, cost per settled bet {per_bet}"
    )
    for c in cost.get("components", []):
        add(f"  - {c['name']:<20} {c['cost']:>12} ({c['allocation']})")

    load = data["load"]
    add("")
    add("Bets (what the load generator saw)")
    add(
        f"  placed {load['bets_placed']}, idempotent replays {load['replays']}, client retries {load['retries']}, "
        f"shed {load['shed']}, refused while the database was locked {load['database_busy']}, "
        f"unknown at the end {load['bets_unknown']}"
    )
    add(
        f"  markets settled {load['markets_settled']}: won {load['bets_won']}, lost {load['bets_lost']}, "
        f"void {load['bets_void']}"
    )
    if load["rejected"]:
        add("  rejected by reason: " + ", ".join(f"{k} x{v}" for k, v in load["rejected"].items()))

    audit = data["audit"] or {}
    add("")
    add("Audit log")
    kinds = ", ".join(f"{k} {n}" for k, n in audit.get("by_kind", {}).items())
    problem = f": {audit['verify_problem']}" if audit.get("verify_problem") else ""
    money = "OK" if not audit.get("money_problems") else "FAILED: " + "; ".join(audit["money_problems"])
    add(f"  {audit.get('entries', 0)} entries ({kinds})")
    bets = audit.get("money_bets", 0)
    add(f"  verification {_yes(audit.get('verified'))}{problem}; money check {money} over {bets} bets")
    for b in audit.get("bundles", []):
        if not b["path"] or not b["entries"]:
            add(f"  bundle for {b['what']}: FAILED: {b['output']}")
            continue
        add(f"  bundle for {b['what']}: {b['entries']} entries, offline check {_yes(b['verified'])} ({b['path']})")
        if not b["verified"]:
            add(f"    the verifier said: {b['output']}")
    commands = [b["command"] for b in audit.get("bundles", []) if b["command"]]
    if commands:
        add(f"    verify it yourself: {commands[0]}")

    out.extend(_cluster(data.get("cluster") or {}))

    ledger = data["ledger"]
    add("")
    add(f"Ledger: {_yes(ledger.get('ok'))} ({ledger.get('transactions')} transactions, every one balanced)"
        if ledger.get("ok") else f"Ledger: FAILED: {'; '.join(ledger.get('problems', []))}")  # fmt: skip
    for note in data.get("notes", []):
        add(f"note: {note}")
    add("")
    add(
        "Result: "
        + (
            "OK: the books balance, the audit log verifies, every bundle verifies offline"
            + (", every event reached the audit log once" if data.get("cluster") else "")
            if data["ok"]
            else "FAILED"
        )
    )
    return "\n".join(out)
