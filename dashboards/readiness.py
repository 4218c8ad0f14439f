"""The readiness page (`/readiness`): the next events with a countdown, then for the chosen event (kept in
the URL as `?event=`) the latest go/no-go as a banner in its colour, every check with what needs attention
first (reason, runbook, evidence as a table), the run history, and (for on-call and admin; compliance reads
only) run now, attest and waive, each audited under the signed-in person's name."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import streamlit as st
from sqlalchemy.exc import SQLAlchemyError

from audit.query import find_entries
from controlplane.auditing import AuditUnavailable
from controlplane.checklist.probes import FAULT_TTL_SECONDS
from controlplane.checklist.records import RecordError, attest, list_runs, load_run, waive
from controlplane.checklist.results import ChecklistRun, CheckResult, RunSummary
from controlplane.checklist.session import run_and_record
from controlplane.checklist.spec import ChecklistConfigError
from controlplane.clock import parse_duration, utcnow
from controlplane.formatting import count, duration, utc
from controlplane.users import list_users
from dashboards import data
from dashboards.links import at_caption, pinned_at
from dashboards.shell import audit_store, problem, require, settings, store

DECISION_WORDS = {"go": "GO", "go-with-warnings": "GO WITH WARNINGS", "no-go": "NO-GO"}
STATUS_WORDS = {"fail": "FAILED", "unknown": "UNKNOWN", "waived": "WAIVED", "pass": "PASSED"}
STATUS_BADGE = {
    "fail": ":red-badge[FAILED]",
    "unknown": ":orange-badge[UNKNOWN]",
    "waived": ":blue-badge[WAIVED]",
    "pass": ":green-badge[PASSED]",
}
NO_EVENT = "(no event)"
NO_EVENT_PARAM = "_none"  # `?event=_none`: no event name can start with "_", so it never shadows one
ISO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")
PROBE_WARNING = (
    "Running the checklist **probes the live platform** at `{url}`: it logs in with probe accounts until it is "
    "rate-limited, sends a burst of requests to see load shedding, injects a synthetic latency fault (cleared "
    "when the probe ends, {ttl} s at most) and places synthetic bets on a synthetic market. Players' requests "
    "are not slowed, but the platform does the work. The run is recorded in the audit log under your name."
)


@st.cache_data(ttl=30, show_spinner=False)
def _runs(event: str | None, until: str | None) -> list[RunSummary]:
    moment = datetime.fromisoformat(until) if until else None
    return list_runs(store(), event=event, limit=20, without_event=event is None, until=moment)


@st.cache_data(ttl=3600, show_spinner=False)
def _run(run_id: str) -> ChecklistRun | None:
    return load_run(store(), run_id)  # a run never changes once recorded


@st.cache_data(ttl=3600, show_spinner=False)
def _started_by(run_id: str) -> str | None:
    """Who started the run: the actor of its audit entry (`controlplane` for the scheduler and the CLI)."""
    found = find_entries(audit_store(), kind="checklist", subject=f"checklist-run:{run_id}", limit=1)
    return found[0].actor if found else None


def started_by(run_id: str, audit_seq: int | None) -> str:
    if audit_seq is None:  # its audit entry is being appended (or the append failed and the run goes again)
        return "unknown (not in the audit log yet)"
    try:
        actor = _started_by(run_id)
    except (AuditUnavailable, SQLAlchemyError):
        return "unknown (the audit log cannot be read)"
    return actor if actor is not None else "unknown (no audit entry)"


def counts_text(counts: dict[str, int]) -> str:
    """`14 passed, 5 failed, 1 unknown, 2 waived`: every status, in words, zero included."""
    words = (("pass", "passed"), ("fail", "failed"), ("unknown", "unknown"), ("waived", "waived"))
    return ", ".join(f"{count(counts.get(status, 0))} {word}" for status, word in words)


def run_counts(run: ChecklistRun) -> dict[str, int]:
    counts: dict[str, int] = {}
    for check in run.checks:
        counts[check.status] = counts.get(check.status, 0) + 1
    return counts


def attention_order(check: CheckResult) -> int:
    """Blocking failures and unknowns, then warning ones, then waived checks, then passes."""
    if check.counts_against:
        return (0 if check.severity == "blocking" else 2) + (0 if check.status == "fail" else 1)
    return 4 if check.status == "waived" else 5


def ordered(checks: list[CheckResult]) -> list[CheckResult]:
    return sorted(checks, key=attention_order)  # stable: the checklist's own order within each group


def readable(value: Any) -> str:
    """One evidence value as text a person reads: times as UTC, yes/no, lists joined, nested keys named."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.6g}"
    if isinstance(value, int):
        return count(value)
    if isinstance(value, str):
        if ISO_TIME.match(value):
            try:
                return utc(datetime.fromisoformat(value.replace("Z", "+00:00")))
            except ValueError:
                return value
        return value
    if isinstance(value, dict):
        return "; ".join(f"{k}: {readable(v)}" for k, v in value.items()) if value else "none"
    if isinstance(value, list | tuple):
        return ", ".join(readable(v) for v in value) if value else "none"
    return str(value)


def evidence_rows(evidence: dict[str, Any], prefix: str = "") -> list[dict[str, str]]:
    """Evidence as `what` / `value` rows: a nested mapping becomes one row per key (`window.start`), a list
    of mappings one row per item (`thresholds 1`), anything else one row of readable text."""
    rows: list[dict[str, str]] = []
    for key, value in evidence.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            rows.extend(evidence_rows(value, f"{name}."))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            rows.extend({"what": f"{name} {i}", "value": readable(v)} for i, v in enumerate(value, start=1))
        else:
            rows.append({"what": name, "value": readable(value)})
    return rows


def _table(rows: list[dict[str, str]]) -> None:
    """All the rows at once, long text wrapped (no scroll box)."""
    st.table(rows, hide_index=True)


def _banner(run: ChecklistRun, actor: str, *, yours: bool) -> None:
    """The decision in its colour and in words: when, by whom, the counts, and what decides it."""
    blocking = [c for c in run.checks if c.counts_against and c.severity == "blocking"]
    warnings = [c for c in run.checks if c.counts_against and c.severity == "warning"]
    event = f" for **{run.event}**" if run.event else " (no event)"
    lines = [
        f"**{DECISION_WORDS.get(run.decision, run.decision)}**{event}",
        f"Run {utc(run.at)} by {actor}{' (you, just now)' if yours else ''}: {counts_text(run_counts(run))}.",
    ]
    if blocking:
        lines.append("Blocking: " + ", ".join(f"{c.id} ({STATUS_WORDS[c.status].lower()})" for c in blocking) + ".")
    if warnings:
        lines.append("Warnings: " + ", ".join(f"{c.id} ({STATUS_WORDS[c.status].lower()})" for c in warnings) + ".")
    _in_its_colour(run.decision, "  \n".join(lines))


def _in_its_colour(decision: str, text: str) -> None:
    """A no-go is an error box, a go with warnings a warning box, a go a success box (words and icon too)."""
    if decision == "no-go":
        st.error(text, icon=":material/block:")
    elif decision == "go-with-warnings":
        st.warning(text, icon=":material/warning:")
    else:
        st.success(text, icon=":material/check_circle:")


def _check(check: CheckResult) -> None:
    """One check: status, severity, reason; for a failed or unknown one its owner and runbook; its waiver or
    attestation; and its evidence as a table."""
    with st.container(border=check.counts_against):
        st.markdown(f"{STATUS_BADGE[check.status]} {check.severity} **{check.id}**: {check.title}")
        st.markdown(check.reason)
        if check.counts_against:
            st.markdown(f"**Runbook:** {check.runbook}  \n**Owner:** {check.owner}")
        if check.attestation:
            a = check.attestation
            st.caption(f"Attested by {a.get('by', '?')} until {readable(a.get('expires_at'))}: {a.get('note') or ''}")
        with st.expander(f"Evidence of {check.id}", expanded=check.counts_against and check.severity == "blocking"):
            rows = evidence_rows(check.evidence)
            if rows:
                _table(rows)
            else:
                st.caption("This check kept no evidence beyond its reason.")


def _checks(run: ChecklistRun) -> None:
    checks = ordered(run.checks)
    attention = [c for c in checks if c.counts_against]
    st.subheader(f"Needs attention ({count(len(attention))})" if attention else "Nothing needs attention")
    for check in attention:
        _check(check)
    rest = [c for c in checks if not c.counts_against]
    if rest:
        st.subheader(f"Waived and passed ({count(len(rest))})")
        for check in rest:
            _check(check)


def _history(runs: list[RunSummary]) -> None:
    st.subheader("History")
    _table(
        [
            {
                "When (UTC)": utc(r.at),
                "Decision": DECISION_WORDS.get(r.decision, r.decision),
                "Checks": counts_text(r.counts),
                "Started by": started_by(r.run_id, r.audit_seq),
                "Run": r.run_id,
                "Audit entry": "-" if r.audit_seq is None else str(r.audit_seq),
            }
            for r in runs
        ]
    )


def _refusal(exc: RecordError, fields: dict[str, tuple[str, Any]], fallback: Any) -> None:
    """A refused attestation or waiver beside the field it is about, in the form's words: `fields` maps each
    CLI flag the refusal may name (`--expires`) to the form's label for it and the slot under that field."""
    message = str(exc)
    about = next((flag for flag in fields if flag in message), None)
    for flag, (label, _slot) in fields.items():
        message = message.replace(flag, label)
    slot = fields[about][1] if about else fallback
    slot.error(message[:1].upper() + message[1:])


def _attest_form(column: Any, event: str | None, username: str, attestable: list[str]) -> None:
    with column.form(f"attest-{event}"):
        st.markdown("**Attest** (a manual check you have made)")
        check = st.selectbox("Check", attestable, key=f"attest-check-{event}")
        lifetime = st.text_input("Holds for", "24h", key=f"attest-for-{event}", help="e.g. 12h, 1d, 2w")
        lifetime_slot = st.empty()
        note = st.text_input("What was checked", key=f"attest-note-{event}")
        submitted = st.form_submit_button("Attest")
        outcome = st.empty()
        if not submitted:
            return
        try:
            holds_for = parse_duration(lifetime)
        except ValueError as exc:
            lifetime_slot.error(f"Holds for: {exc}")
            return
        try:
            attested = attest(
                settings(), store(), check_id=check, by=username, expires_at=holds_for, event=event,
                note=note.strip() or None,
            )  # fmt: skip
        except RecordError as exc:
            _refusal(exc, {"--expires": ("Holds for", lifetime_slot)}, outcome)
        else:
            outcome.success(
                f"Attested until {utc(attested.expires_at)} (audit entry {attested.audit_seq}); "
                "it counts from the next run."
            )


def _waive_form(column: Any, event: str | None, username: str, checks: list[str], approvers: list[str]) -> None:
    with column.form(f"waive-{event}"):
        st.markdown("**Waive** (a second person approves)")
        check = st.selectbox("Check", checks, key=f"waive-check-{event}")
        approver = st.selectbox(
            "Approved by", approvers, index=None, key=f"waive-by-{event}", placeholder="another on-call or admin"
        )
        approver_slot = st.empty()
        reason = st.text_input("Justification", key=f"waive-why-{event}")
        reason_slot = st.empty()
        lifetime = st.text_input("Lasts", "24h", key=f"waive-for-{event}", help="e.g. 12h, 1d, 2w")
        lifetime_slot = st.empty()
        submitted = st.form_submit_button("Waive")
        outcome = st.empty()
        if not submitted:
            return
        if approver is None:
            approver_slot.error("Approved by: choose the second person (another enabled on-call or admin account).")
            return
        try:
            lasts = parse_duration(lifetime)
        except ValueError as exc:
            lifetime_slot.error(f"Lasts: {exc}")
            return
        try:
            waived = waive(
                settings(), store(), check_id=check, requested_by=username, approved_by=approver,
                reason=reason, expires_at=lasts, event=event,
            )  # fmt: skip
        except RecordError as exc:
            fields = {  # --approved-by before --by: a refusal naming both is about the approver
                "--approved-by": ("Approved by", approver_slot),
                "--reason": ("Justification", reason_slot),
                "--expires": ("Lasts", lifetime_slot),
                "--by": ("you", outcome),
            }
            _refusal(exc, fields, outcome)
        else:
            outcome.success(
                f"Waived until {utc(waived.expires_at)} (audit entry {waived.audit_seq}); it counts from the next run."
            )


def _run_now(event: str | None, username: str, yours: ChecklistRun | None) -> None:
    """Run now, after a confirmation that says the run probes the live platform; the run is the user's.
    `yours`: the run this user just made, when it is still the latest (its decision is repeated here, beside
    the button, as well as in the banner at the top)."""
    confirming = f"readiness-confirm-{event}"
    if not st.session_state.get(confirming):
        if yours is not None:
            _in_its_colour(
                yours.decision,
                f"Your run {yours.run_id} ({utc(yours.at)}): **{DECISION_WORDS.get(yours.decision, yours.decision)}**,"
                f" {counts_text(run_counts(yours))}. Its checks are at the top of the page.",
            )
        if st.button("Run the checklist now", key=f"run-{event}", icon=":material/play_arrow:"):
            st.session_state[confirming] = True
            st.rerun()
        return
    st.warning(PROBE_WARNING.format(url=settings().platform_url, ttl=FAULT_TTL_SECONDS), icon=":material/sensors:")
    yes, no, _ = st.columns([2, 1, 3])
    confirmed = yes.button("Yes, probe the platform and run", key=f"run-yes-{event}", type="primary")
    if no.button("Cancel", key=f"run-no-{event}"):
        st.session_state[confirming] = False
        st.rerun()
    if not confirmed:
        return
    chosen = data.config().events.get(event) if event else None
    with st.spinner("Running every check, the live probes included ..."):
        try:
            done = run_and_record(settings(), store(), event=chosen, actor=username)
        except (ValueError, RecordError) as exc:
            st.error(f"The run could not complete, so nothing was recorded: {exc}")
            return
    st.session_state[confirming] = False
    st.session_state[f"readiness-ran-{event}"] = done.run_id
    _runs.clear()
    st.rerun()  # from the top, so the banner shows this run's decision


def _act(event: str | None, username: str, yours: ChecklistRun | None) -> None:
    """Run now, attest and waive; each refusal is shown beside its field."""
    _run_now(event, username, yours)
    try:
        checklist = data.config().checklist()
    except (ChecklistConfigError, ValueError) as exc:
        st.error(f"The checklist file cannot be read: {exc}")
        return
    attestable = [c.id for c in checklist.checks if c.evaluator.type == "attestation"]
    approvers = [u.username for u in list_users(store()) if not u.disabled and u.username != username
                 and u.role in ("oncall", "admin")]  # fmt: skip
    left, right = st.columns(2)
    if attestable:
        _attest_form(left, event, username, attestable)
    else:
        left.caption("The checklist has no attestation check.")
    _waive_form(right, event, username, [c.id for c in checklist.checks], approvers)


def _choose_event(names: list[str]) -> str | None:
    """The event from the URL (`?event=NAME`, `?event=_none` for runs of no event), kept in the URL."""
    wanted = st.query_params.get("event")
    default = NO_EVENT if wanted == NO_EVENT_PARAM else wanted or names[0]
    if default not in names:
        st.warning(f"The link names the event {wanted!r}, which config/events.yaml does not hold; showing {names[0]}.")
        default = names[0]
    chosen = st.selectbox("Event", names, index=names.index(default))
    st.query_params["event"] = NO_EVENT_PARAM if chosen == NO_EVENT else chosen
    return None if chosen == NO_EVENT else chosen


def render() -> None:
    user = require("oncall", "compliance", "admin")
    st.title("Readiness")
    at, pinned = pinned_at()
    if pinned:
        st.caption(at_caption(at, pinned) + " Runs made after it are not shown.")
    try:
        events = data.config().events
    except ValueError as exc:
        problem(f"The events file cannot be read: {exc}.", "Fix config/events.yaml.")
        return
    now = utcnow()
    upcoming = sorted((e for e in events.values() if e.window()[1] > now), key=lambda e: e.kickoff)
    if upcoming:
        _table(
            [{"Event": e.name, "Kickoff (UTC)": utc(e.kickoff),
              "Starts": "under way" if e.kickoff <= now else f"in {duration((e.kickoff - now).total_seconds())}"}
             for e in upcoming]
        )  # fmt: skip
    else:
        st.caption("No event ahead: add one to config/events.yaml (CONTROLPLANE_EVENTS_PATH).")
    names = [e.name for e in upcoming] + [e.name for e in events.values() if e not in upcoming] + [NO_EVENT]
    event = _choose_event(names)
    runs = _runs(event, at.isoformat() if pinned else None)
    latest = _run(runs[0].run_id) if runs else None
    yours = latest if latest is not None and st.session_state.get(f"readiness-ran-{event}") == latest.run_id else None
    if latest is not None:
        _banner(latest, started_by(latest.run_id, latest.audit_seq), yours=yours is not None)
        _checks(latest)
        _history(runs)
    else:
        st.info("No checklist run yet for this event: run one below, or `controlplane checklist run --event NAME`.")
    if user.role == "compliance":
        st.caption("Compliance reads the runs; running, attesting and waiving are for on-call and admin.")
        return
    st.subheader("Act")
    _act(event, user.username, yours)
