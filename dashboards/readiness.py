"""The readiness page (`/readiness`): the next events with a countdown, the latest go/no-go per event with
every check (status, reason, evidence, waiver, attestation), the run history, and (for on-call and
admin; compliance reads only) run now, attest and waive, each audited."""

from __future__ import annotations

from typing import Any

import streamlit as st

from controlplane.checklist.records import RecordError, attest, list_runs, load_run, waive
from controlplane.checklist.session import run_and_record
from controlplane.checklist.spec import ChecklistConfigError
from controlplane.clock import parse_duration, utc_text, utcnow
from controlplane.users import list_users
from dashboards import data
from dashboards.shell import problem, require, settings, store

DECISION_ICON = {"go": ":green[GO]", "go-with-warnings": ":orange[GO with warnings]", "no-go": ":red[NO-GO]"}


@st.cache_data(ttl=30, show_spinner=False)
def _runs(event: str | None) -> list[dict[str, Any]]:

    return [r.to_dict() for r in list_runs(store(), event=event, limit=20, without_event=event is None)]


@st.cache_data(ttl=30, show_spinner=False)
def _run(run_id: str) -> dict[str, Any] | None:

    run = load_run(store(), run_id)
    return None if run is None else run.to_dict()


def _countdown(seconds: float) -> str:
    if seconds <= 0:
        return "under way"
    days, rest = divmod(int(seconds), 86400)
    return (
        f"in {days} d {rest // 3600} h {rest % 3600 // 60} min"
        if days
        else f"in {rest // 3600} h {rest % 3600 // 60} min"
    )


def _checks(run: dict[str, Any]) -> None:
    st.markdown(f"**{DECISION_ICON.get(run['decision'], run['decision'])}** at {run['at']}: {run.get('summary', '')}")
    st.dataframe(
        [
            {
                "check": c["id"],
                "severity": c["severity"],
                "status": c["status"],
                "reason": c["reason"],
                "waiver": (c["waiver"] or {}).get("reason", ""),
                "attested by": (c["attestation"] or {}).get("by", ""),
                "owner": c["owner"],
            }
            for c in run["checks"]
        ],
        hide_index=True,
    )
    with st.expander("Evidence of each check"):
        for c in run["checks"]:
            st.markdown(f"**{c['id']}** ({c['status']}) runbook: {c['runbook']}")
            st.json(c["evidence"], expanded=False)


def _attest_form(column: Any, event: str | None, username: str, attestable: list[str]) -> None:

    with column.form(f"attest-{event}"):
        st.markdown("**Attest**")
        check = st.selectbox("Check", attestable, key=f"attest-check-{event}")
        lifetime = st.text_input("Holds for", "24h", key=f"attest-for-{event}")
        note = st.text_input("What was checked", key=f"attest-note-{event}")
        if st.form_submit_button("Attest"):
            try:
                attested = attest(
                    settings(), store(), check_id=check, by=username, expires_at=parse_duration(lifetime),
                    event=event, note=note or None,
                )  # fmt: skip
            except (ValueError, RecordError) as exc:
                st.error(f"Holds for: {exc}" if "duration" in str(exc) else str(exc))
            else:
                st.success(f"Attested until {utc_text(attested.expires_at)} (audit seq {attested.audit_seq})")
                _runs.clear()


def _act(event: str | None, username: str) -> None:
    """Run now, attest and waive; each refusal is shown beside its form."""

    config = data.config()
    chosen = config.events.get(event) if event else None
    if st.button("Run the checklist now", key=f"run-{event}"):
        with st.spinner("Running every check (probes included) ..."):
            try:
                done = run_and_record(settings(), store(), event=chosen)
            except (ValueError, RecordError) as exc:
                st.error(f"The run could not complete: {exc}")
            else:
                st.success(f"Run {done.run_id}: {done.decision}")
                _runs.clear()
                _run.clear()
    try:
        checklist = config.checklist()
    except ChecklistConfigError as exc:
        st.error(str(exc))
        return
    attestable = [c.id for c in checklist.checks if c.evaluator.type == "attestation"]

    approvers = [u.username for u in list_users(store()) if not u.disabled and u.username != username
                 and u.role in ("oncall", "admin")]  # fmt: skip
    left, right = st.columns(2)
    if not attestable:
        left.caption("The checklist has no attestation check.")
    else:
        _attest_form(left, event, username, attestable)
    with right.form(f"waive-{event}"):
        st.markdown("**Waive** (a second person approves)")
        check = st.selectbox("Check", [c.id for c in checklist.checks], key=f"waive-check-{event}")
        approver = st.selectbox(
            "Approved by", approvers, index=None, key=f"waive-by-{event}", placeholder="another on-call or admin"
        )
        reason = st.text_input("Justification", key=f"waive-why-{event}")
        lifetime = st.text_input("Lasts", "24h", key=f"waive-for-{event}")
        if st.form_submit_button("Waive"):
            if approver is None:
                st.error("Approved by: choose the second person (another enabled on-call or admin account).")
                return
            try:
                waived = waive(
                    settings(), store(), check_id=check, requested_by=username, approved_by=approver,
                    reason=reason, expires_at=parse_duration(lifetime), event=event,
                )  # fmt: skip
            except (ValueError, RecordError) as exc:
                st.error(str(exc))
            else:
                st.success(f"Waived until {utc_text(waived.expires_at)} (audit seq {waived.audit_seq})")


def render() -> None:
    user = require("oncall", "compliance", "admin")
    st.title("Readiness")
    try:
        events = data.config().events
    except ValueError as exc:
        problem(f"The events file cannot be read: {exc}.", "Fix config/events.yaml.")
        return
    now = utcnow()
    upcoming = sorted((e for e in events.values() if e.window()[1] > now), key=lambda e: e.kickoff)
    if upcoming:
        st.dataframe(
            [{"event": e.name, "kickoff": utc_text(e.kickoff), "starts": _countdown((e.kickoff - now).total_seconds())}
             for e in upcoming],
            hide_index=True,
        )  # fmt: skip
    else:
        st.caption("No event ahead: add one to config/events.yaml (CONTROLPLANE_EVENTS_PATH).")
    names = [e.name for e in upcoming] + [e.name for e in events.values() if e not in upcoming] + ["(no event)"]
    chosen = st.selectbox("Event", names)
    event = None if chosen == "(no event)" else chosen
    runs = _runs(event)
    if runs:
        latest = _run(runs[0]["run_id"])
        if latest is not None:
            _checks(latest)
        st.subheader("History")
        st.dataframe(runs, hide_index=True)
    else:
        st.caption("No checklist run yet for this event: run one below, or `controlplane checklist run --event NAME`.")
    if user.role == "compliance":
        st.caption("Compliance reads the runs; running, attesting and waiving are for on-call and admin.")
        return
    st.subheader("Act")
    _act(event, user.username)
