"""The audit page (`/audit`): browse and filter the log's entries, the chain and the latest signed
checkpoint, verify now, and proof bundles (a bet, a checklist run, a range) with the verifier key and
the one command a regulator runs offline. Every export is an `access` entry in the log."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time
from typing import Any

import streamlit as st
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from audit.keys import AuditKeyError
from audit.log import AuditError
from audit.query import find_entries
from audit.schema import checkpoints, entries
from controlplane.auditing import AuditUnavailable, open_audit
from controlplane.proofs import ProofError, export_bundle, seqs_for_bet, seqs_for_checklist_run, seqs_for_range
from dashboards.shell import audit_store, record_export, require, settings

KINDS = ("any", "change", "money", "checklist", "attestation", "access", "system")


@st.cache_data(ttl=15, show_spinner=False)
def _entries(kind: str, actor: str, subject: str, since: str | None, until: str | None) -> list[dict[str, Any]]:

    found = find_entries(
        audit_store(),
        kind=None if kind == "any" else kind,
        actor=actor or None,
        subject_prefix=subject or None,
        since=datetime.fromisoformat(since) if since else None,
        until=datetime.fromisoformat(until) if until else None,
        limit=500,
        newest_first=True,
    )
    rows = [e.to_dict() for e in found]
    return [{**r, "payload": json.dumps(r["payload"], sort_keys=True)} for r in rows]


@st.cache_data(ttl=15, show_spinner=False)
def _status() -> dict[str, Any]:

    with audit_store().connect() as conn:
        size = conn.execute(select(func.count()).select_from(entries)).scalar_one()
        head = conn.execute(
            select(checkpoints.c.tree_size, checkpoints.c.root_hash, checkpoints.c.created_at)
            .order_by(checkpoints.c.tree_size.desc())
            .limit(1)
        ).first()
    return {
        "entries": size,
        "checkpoint": None if head is None else {"tree_size": head[0], "root": head[1], "at": head[2]},
    }


def _filters() -> tuple[str, str, str, str | None, str | None] | None:
    a, b, c = st.columns(3)
    kind = a.selectbox("Kind", KINDS)
    actor = b.text_input("Actor", max_chars=200)
    subject = c.text_input("Subject starts with", max_chars=200, placeholder="bet:42, checklist-run:, user:")
    d, e = st.columns(2)
    since = d.date_input("From", value=None)
    until = e.date_input("To (inclusive)", value=None)
    if since and until and until < since:
        e.error("To must not be before From.")
        return None
    start = datetime.combine(since, time.min, tzinfo=UTC).isoformat() if since else None
    end = datetime.combine(until, time.max, tzinfo=UTC).isoformat() if until else None
    return kind, actor.strip(), subject.strip(), start, end


def _verify() -> None:
    if st.button("Verify the whole log now"):
        with st.status("Verifying chain, Merkle tree and every checkpoint ...", expanded=True) as progress:
            try:
                log, ring = open_audit(settings(), signing=False)
            except (AuditKeyError, AuditUnavailable, SQLAlchemyError) as exc:
                progress.update(label=f"Cannot open the log: {exc}", state="error")
                return
            size = _status()["entries"] or 1
            bar = st.progress(0.0, text="0 entries checked")

            def checked(count: int) -> None:
                bar.progress(min(count / size, 1.0), text=f"{count:,} of {size:,} entries checked")

            result = log.verify(*ring.verifiers(), progress=checked)
            bar.progress(1.0, text=f"{result.entries:,} entries checked")
            if result.ok:
                progress.update(
                    label=f"Intact: {result.entries} entries, {result.checkpoints} checkpoints", state="complete"
                )
            else:
                progress.update(label=f"BROKEN at entry {result.first_bad_seq}: {result.problem}", state="error")


def _bundle() -> None:

    st.subheader("Proof bundle")
    what = st.radio("For", ["a bet", "a checklist run", "a range of entries"], horizontal=True)
    value: Any
    if what == "a bet":
        text = st.text_input("Bet id", max_chars=19, placeholder="42").strip()
        value = int(text) if text.isascii() and text.isdigit() and 1 <= int(text) <= 2**63 - 1 else None
        if text and value is None:
            st.error("A bet id is a whole number from 1 to 9223372036854775807.")
    elif what == "a checklist run":
        value = st.text_input("Run id", max_chars=32)
    else:
        left, right = st.columns(2)
        first = left.number_input("First seq", min_value=0, step=1, value=0)
        last = right.number_input("Last seq", min_value=0, step=1, value=0)
        value = (int(first), int(last))
    if not st.button("Prepare bundle"):
        return
    if value in (None, ""):
        st.error("Give the bet id or the run id first.")
        return
    try:
        log, ring = open_audit(settings(), signing=False)
        if what == "a bet":
            seqs = seqs_for_bet(log, int(value))
        elif what == "a checklist run":
            seqs = seqs_for_checklist_run(log, str(value).strip())
        else:
            seqs = seqs_for_range(*value)
        bundle = export_bundle(log, ring, seqs)
        key = bundle["verifier_key"]
    except (
        ProofError,
        AuditError,
        KeyError,
        AuditKeyError,
        AuditUnavailable,
        SQLAlchemyError,
    ) as exc:
        st.error(str(exc).strip("'\""))
        return
    st.download_button(
        "Download bundle (JSON)", json.dumps(bundle, indent=2), file_name="bundle.json",
        on_click=record_export, args=("proof-bundle",), kwargs={"entries": len(bundle["entries"]), "for": what},
    )  # fmt: skip
    st.code(f"python -m audit.verify bundle.json --key '{key}'", language="sh")


def render() -> None:
    require("compliance", "admin")
    st.title("Audit log")
    status = _status()
    head = status["checkpoint"]
    a, b = st.columns(2)
    a.metric("entries", status["entries"])
    b.metric("latest signed checkpoint", "none yet" if head is None else f"tree size {head['tree_size']}")
    if head is None:
        st.caption("No checkpoint signed yet: `controlplane audit checkpoint`, or run `controlplane scheduler`.")
    _verify()
    filters = _filters()
    if filters is not None:
        rows = _entries(*filters)
        st.caption(f"{len(rows)} entries (newest first, at most 500).")
        st.dataframe(rows, hide_index=True)
    _bundle()
