"""The audit page (`/audit`): browse and filter the log's entries page by page, the chain and the latest
signed checkpoint, verify now, and proof bundles (a bet, a checklist run, a range) with the verifier key
and the one command a regulator runs offline. Every export is an `access` entry in the log: the page's
download buttons record it, and tables offer no export of their own (`client.disableDataExport`)."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

import streamlit as st
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from audit.keys import AuditKeyError
from audit.log import KINDS as AUDIT_KINDS
from audit.log import AuditError
from audit.query import count_entries, find_entries
from audit.schema import checkpoints, entries
from controlplane.auditing import AuditUnavailable, open_audit
from controlplane.formatting import count, utc
from controlplane.proofs import ProofError, export_bundle, seqs_for_bet, seqs_for_checklist_run, seqs_for_range
from dashboards.handoff_page import offer_export
from dashboards.links import at_caption, pinned_at
from dashboards.shell import audit_store, problem, require, settings

ROLES = ("compliance", "admin")

KINDS = ("any", *AUDIT_KINDS)
PAGE_SIZES = (100, 500)
PAGE = "audit_page_number"  # session-state keys
ANCHOR = "audit_page_anchor"
BUNDLE = "audit_prepared_bundle"
RUN_ID = re.compile(r"[0-9A-Za-z_-]+")
MAX_BUNDLE = 100_000  # entries; controlplane.proofs refuses longer ranges

Filters = tuple[str, str, str, str | None, str | None]  # kind, actor, subject prefix, since, until (ISO)


def _query(filters: Filters) -> dict[str, Any]:
    kind, actor, subject, since, until = filters
    return {
        "kind": None if kind == "any" else kind,
        "actor": actor or None,
        "subject_prefix": subject or None,
        "since": datetime.fromisoformat(since) if since else None,
        "until": datetime.fromisoformat(until) if until else None,
    }


@st.cache_data(ttl=15, show_spinner=False)
def _count(filters: Filters, before_seq: int) -> int:
    return count_entries(audit_store(), **_query(filters), before_seq=before_seq)


@st.cache_data(ttl=15, show_spinner=False)
def _rows(filters: Filters, before_seq: int, limit: int, offset: int) -> list[dict[str, Any]]:
    found = find_entries(
        audit_store(), **_query(filters), before_seq=before_seq, limit=limit, offset=offset, newest_first=True
    )
    return [
        {
            "seq": e.seq,
            "time": utc(e.time),
            "kind": e.kind,
            "actor": e.actor,
            "subject": e.subject,
            "payload": json.dumps(e.payload, sort_keys=True, ensure_ascii=False),
        }
        for e in found
    ]


@st.cache_data(ttl=15, show_spinner=False)
def _status() -> dict[str, Any]:
    with audit_store().connect() as conn:
        size = conn.execute(select(func.count()).select_from(entries)).scalar_one()
        head = conn.execute(
            select(checkpoints.c.tree_size, checkpoints.c.key_id, checkpoints.c.created_at)
            .order_by(checkpoints.c.tree_size.desc())
            .limit(1)
        ).first()
    return {
        "entries": size,
        "checkpoint": None if head is None else {"tree_size": head[0], "key_id": head[1], "at": head[2]},
    }


def _filters(pinned: datetime | None) -> Filters | None:
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
    if pinned is not None:  # the link's instant: entries recorded up to the end of its minute
        cap = (pinned + timedelta(minutes=1)).isoformat()
        end = cap if end is None else min(end, cap, key=datetime.fromisoformat)
    return kind, actor.strip(), subject.strip(), start, end


def _anchor(filters: Filters, size: int) -> int:
    """The log's size when these filters were set: pages count back from there, so page 2 stays page 2
    while the platform keeps appending. New filters, or "show newer entries", move it to the head."""
    anchored = st.session_state.get(ANCHOR)
    if not isinstance(anchored, tuple) or anchored[0] != filters:
        st.session_state[ANCHOR] = (filters, size)
        st.session_state[PAGE] = 1
        return size
    before: int = anchored[1]
    newer = size - before
    if newer > 0 and st.button(f"Show {count(newer)} newer {'entry' if newer == 1 else 'entries'}"):
        st.session_state[ANCHOR] = (filters, size)
        st.session_state[PAGE] = 1
        return size
    return before


def _entries(filters: Filters, size: int) -> None:
    before = _anchor(filters, size)
    total = _count(filters, before)
    if total == 0:
        st.caption("No entries match these filters.")
        return
    left, right, _ = st.columns([1, 1, 3])
    per_page = int(left.selectbox("Per page", PAGE_SIZES))
    pages = math.ceil(total / per_page)
    st.session_state.setdefault(PAGE, 1)
    page = int(right.number_input("Page (1 is the newest)", min_value=1, step=1, key=PAGE))
    if page > pages:
        right.error(f"There are {count(pages)} pages of {per_page}; showing the last.")
        page = pages
    offset = (page - 1) * per_page
    rows = _rows(filters, before, per_page, offset)
    st.caption(
        f"entries {count(offset + 1)}\u2013{count(offset + len(rows))} of {count(total)}, newest first "
        f"(page {count(page)} of {count(pages)})"
    )
    st.dataframe(
        rows,
        hide_index=True,
        column_config={"payload": st.column_config.JsonColumn("payload", width="large")},
    )


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

            def checked(done: int) -> None:
                bar.progress(min(done / size, 1.0), text=f"{count(done)} of {count(size)} entries checked")

            result = log.verify(*ring.verifiers(), progress=checked)
            bar.progress(1.0, text=f"{count(result.entries)} entries checked")
            if result.ok:
                progress.update(
                    label=f"Intact: {count(result.entries)} entries, {count(result.checkpoints)} checkpoints",
                    state="complete",
                )
            else:
                progress.update(label=f"BROKEN at entry {result.first_bad_seq}: {result.problem}", state="error")


@dataclass(frozen=True)
class PreparedBundle:
    """A proof bundle built for this session, kept across reruns (a download click is one) until the
    fields ask for another."""

    request: tuple[str, Any]  # what the fields said when it was prepared
    subject: str  # what it proves: bet:3, checklist-run:9f37..., entries:10-20
    file_name: str
    text: str
    verifier_key: str
    entries: int


def _request() -> tuple[str, Any] | None:
    """What the fields ask a bundle for, or None (with a message beside the field when it is wrong)."""
    what = st.radio("For", ["a bet", "a checklist run", "a range of entries"], horizontal=True)
    if what == "a bet":
        text = st.text_input("Bet id", max_chars=19, placeholder="42").strip()
        bet = int(text) if text.isascii() and text.isdigit() and 1 <= int(text) <= 2**63 - 1 else None
        if text and bet is None:
            st.error("A bet id is a whole number from 1 to 9223372036854775807.")
        return None if bet is None else (what, bet)
    if what == "a checklist run":
        run = st.text_input("Run id", max_chars=32, placeholder="9f37c2a41b0d6e85").strip()
        if run and not RUN_ID.fullmatch(run):
            st.error("A run id is letters, digits, - and _ (`controlplane checklist history` lists runs).")
            return None
        return (what, run) if run else None
    left, right = st.columns(2)
    first = int(left.number_input("First seq", min_value=0, step=1, value=0))
    last = int(right.number_input("Last seq", min_value=0, step=1, value=0))
    if last < first:
        right.error("Last seq must not be below First seq.")
        return None
    if last - first >= MAX_BUNDLE:
        right.error(f"A bundle holds at most {count(MAX_BUNDLE)} entries; make the range shorter.")
        return None
    return what, (first, last)


def _prepare(request: tuple[str, Any]) -> PreparedBundle | None:
    what, value = request
    try:
        log, ring = open_audit(settings(), signing=False)
        if what == "a bet":
            seqs, subject, name = seqs_for_bet(log, value), f"bet:{value}", f"bet-{value}"
        elif what == "a checklist run":
            seqs = seqs_for_checklist_run(log, value)
            subject, name = f"checklist-run:{value}", f"checklist-run-{value}"
        else:
            first, last = value
            seqs, subject, name = seqs_for_range(first, last), f"entries:{first}-{last}", f"entries-{first}-{last}"
        bundle = export_bundle(log, ring, seqs)
    except (ProofError, AuditError, KeyError, AuditKeyError, AuditUnavailable, SQLAlchemyError) as exc:
        st.error(str(exc).strip("'\""))
        return None
    return PreparedBundle(
        request=request,
        subject=subject,
        file_name=f"{name}-bundle.json",
        text=json.dumps(bundle, indent=2),
        verifier_key=bundle["verifier_key"],
        entries=len(bundle["entries"]),
    )


def _bundle() -> None:
    st.subheader("Proof bundle")
    request = _request()
    if st.button("Prepare bundle"):
        st.session_state.pop(BUNDLE, None)
        if request is None:
            st.error("Give the bet id, the run id or a range first.")
        elif (prepared := _prepare(request)) is not None:
            st.session_state[BUNDLE] = prepared
    prepared = st.session_state.get(BUNDLE)
    if not isinstance(prepared, PreparedBundle) or prepared.request != request:
        return  # nothing prepared yet, or prepared for what the fields no longer say
    st.caption(f"{prepared.subject}: {count(prepared.entries)} entries with their inclusion proofs.")
    offer_export(
        "Download bundle (JSON)", prepared.text, file_name=prepared.file_name, mime="application/json",
        what="proof-bundle", roles=ROLES, detail={"entries": prepared.entries, "for": prepared.subject},
    )  # fmt: skip
    st.code(
        f"python -m audit.verify {prepared.file_name} --key '{prepared.verifier_key}'", language="sh", wrap_lines=True
    )


def _header(status: dict[str, Any]) -> None:
    head = status["checkpoint"]
    a, b = st.columns(2)
    a.metric("entries", count(status["entries"]))
    b.metric("latest signed checkpoint", "none yet" if head is None else f"tree size {count(head['tree_size'])}")
    if head is None:
        st.caption("No checkpoint signed yet: `controlplane audit checkpoint`, or run `controlplane scheduler`.")
        return
    unsigned = status["entries"] - head["tree_size"]
    b.caption(
        f"signed {utc(head['at'])} with key {head['key_id']}"
        + (f"; {count(unsigned)} newer entries not yet covered" if unsigned > 0 else "")
    )


def render() -> None:
    require(*ROLES)
    st.title("Audit log")
    at, pinned = pinned_at()
    if pinned:
        st.caption(at_caption(at, pinned) + " Entries recorded after it are not listed.")
    try:
        status = _status()
    except AuditUnavailable as exc:
        problem(f"The audit log cannot be opened: {exc}.", "Check CONTROLPLANE_AUDIT_URL, then reload.")
        return
    _header(status)
    _verify()
    filters = _filters(at if pinned else None)
    if filters is not None:
        _entries(filters, status["entries"])
    _bundle()
