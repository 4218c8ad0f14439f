"""What a checklist run reports: each check's status with its evidence, the decision, and its forms
(JSON for scripts, a table for people, JUnit XML for CI servers).

Usage:

    run = ChecklistRun(run_id=..., event="cup-final", at=at, checks=[...])
    run.decision   # "go" | "go-with-warnings" | "no-go"
    run.exit_code  # 0 | 1 | 2

Decision: a blocking check that fails or is unknown makes it `no-go`; otherwise a warning check that
fails or is unknown makes it `go-with-warnings`; otherwise `go`. A waived check counts as neither.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from xml.etree import ElementTree as ET

from audit.canonical import canonical_json, floats_as_strings
from controlplane.clock import utc_text

Status = Literal["pass", "fail", "unknown"]
Reported = Literal["pass", "fail", "unknown", "waived"]
Decision = Literal["go", "go-with-warnings", "no-go"]
EXIT_CODES: dict[Decision, int] = {"go": 0, "go-with-warnings": 1, "no-go": 2}


@dataclass(frozen=True)
class Outcome:
    """What an evaluator found: a status, one line of reason, and the values it saw (JSON-safe)."""

    status: Status
    reason: str
    evidence: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def passed(cls, reason: str, **evidence: Any) -> Outcome:
        return cls("pass", reason, evidence)

    @classmethod
    def failed(cls, reason: str, **evidence: Any) -> Outcome:
        return cls("fail", reason, evidence)

    @classmethod
    def unknown(cls, reason: str, **evidence: Any) -> Outcome:
        return cls("unknown", reason, evidence)


def evidence_digest(evidence: dict[str, Any]) -> str:
    """SHA-256 of the evidence's canonical JSON (floats as strings), as recorded in the audit log."""
    return hashlib.sha256(canonical_json(floats_as_strings(evidence)).encode()).hexdigest()


@dataclass(frozen=True)
class CheckResult:
    id: str
    title: str
    severity: Literal["blocking", "warning"]
    owner: str
    runbook: str
    status: Reported
    reason: str
    evidence: dict[str, Any]
    duration_ms: int
    waiver: dict[str, Any] | None = None  # with `outcome`: what the check found under the waiver
    attestation: dict[str, Any] | None = None

    @property
    def counts_against(self) -> bool:
        return self.status in ("fail", "unknown")

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "severity": self.severity,
            "owner": self.owner,
            "runbook": self.runbook,
            "status": self.status,
            "reason": self.reason,
            "evidence": self.evidence,
            "evidence_digest": evidence_digest(self.evidence),
            "duration_ms": self.duration_ms,
            "waiver": self.waiver,
            "attestation": self.attestation,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CheckResult:
        keys = ("id", "title", "severity", "owner", "runbook", "status", "reason", "evidence", "duration_ms")
        return cls(**{k: data[k] for k in keys}, waiver=data.get("waiver"), attestation=data.get("attestation"))


@dataclass(frozen=True)
class RunSummary:
    """A past run in a history list: its decision and how many checks ended in each status."""

    run_id: str
    event: str | None
    at: datetime
    decision: str
    counts: dict[str, int]
    audit_seq: int | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "event": self.event,
            "at": utc_text(self.at),
            "decision": self.decision,
            "counts": self.counts,
            "audit_seq": self.audit_seq,
        }


@dataclass(frozen=True)
class ChecklistRun:
    run_id: str
    event: str | None
    at: datetime
    checks: list[CheckResult]
    spec_path: str = ""
    spec_digest: str = ""
    audit_seq: int | None = None

    @property
    def decision(self) -> Decision:
        if any(c.counts_against and c.severity == "blocking" for c in self.checks):
            return "no-go"
        if any(c.counts_against for c in self.checks):
            return "go-with-warnings"
        return "go"

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.decision]

    def summary(self) -> str:
        """One line: the decision and why."""
        blocking = [c for c in self.checks if c.counts_against and c.severity == "blocking"]
        warnings = [c for c in self.checks if c.counts_against and c.severity == "warning"]
        waived = [c for c in self.checks if c.status == "waived"]
        parts = [f"{self.decision.upper()}:"]
        if blocking:
            parts.append("blocking " + ", ".join(f"{c.id} ({c.status})" for c in blocking) + ";")
            if any(c.status == "unknown" for c in blocking):
                parts.append("an unknown blocking check cannot be shown ready, so it counts as no-go;")
        if warnings:
            parts.append("warning " + ", ".join(f"{c.id} ({c.status})" for c in warnings) + ";")
        passed = sum(c.status == "pass" for c in self.checks)
        parts.append(f"{passed} of {len(self.checks)} checks passed" + (f", {len(waived)} waived" if waived else ""))
        return " ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "event": self.event,
            "at": utc_text(self.at),
            "decision": self.decision,
            "summary": self.summary(),
            "spec": {"path": self.spec_path, "digest": self.spec_digest},
            "audit_seq": self.audit_seq,
            "checks": [c.to_dict() for c in self.checks],
        }

    def audit_payload(self) -> dict[str, Any]:
        """What the audit log keeps of a run: every result, with the digest of its evidence."""
        return floats_as_strings(
            {
                "type": "run",
                "run_id": self.run_id,
                "event": self.event,
                "at": utc_text(self.at),
                "decision": self.decision,
                "spec_digest": self.spec_digest,
                "checks": [
                    {
                        "id": c.id,
                        "severity": c.severity,
                        "status": c.status,
                        "reason": c.reason,
                        "evidence_digest": evidence_digest(c.evidence),
                        "waiver_id": (c.waiver or {}).get("id"),
                        "attestation_id": (c.attestation or {}).get("id"),
                        "audit_seqs": list(c.evidence.get("audit_seqs", [])),
                    }
                    for c in self.checks
                ],
            }
        )


STATUS_MARK = {"pass": "PASS", "fail": "FAIL", "unknown": "UNKNOWN", "waived": "WAIVED"}


def render_table(run: ChecklistRun) -> str:
    event = f" for {run.event}" if run.event else ""
    lines = [f"Readiness checklist{event} as of {utc_text(run.at)} (run {run.run_id})"]
    lines.append(f"{'status':<8} {'severity':<8} {'check':<32} reason")
    for c in run.checks:
        lines.append(f"{STATUS_MARK[c.status]:<8} {c.severity:<8} {c.id:<32} {c.reason}")
        if c.counts_against:
            lines.append(f"{'':<8} {'':<8} {'':<32} owner: {c.owner}; runbook: {c.runbook}")
    lines.append(run.summary())
    return "\n".join(lines)


def render_junit(run: ChecklistRun) -> str:
    """One <testcase> per check: fail -> <failure>, unknown -> <error>, waived -> <skipped>."""
    failures = sum(c.status == "fail" for c in run.checks)
    errors = sum(c.status == "unknown" for c in run.checks)
    skipped = sum(c.status == "waived" for c in run.checks)
    total_seconds = sum(c.duration_ms for c in run.checks) / 1000
    suites = ET.Element("testsuites", name="readiness-checklist")
    suite = ET.SubElement(
        suites,
        "testsuite",
        name=f"readiness-checklist{'.' + run.event if run.event else ''}",
        tests=str(len(run.checks)),
        failures=str(failures),
        errors=str(errors),
        skipped=str(skipped),
        time=f"{total_seconds:.3f}",
        timestamp=utc_text(run.at),
    )
    props = ET.SubElement(suite, "properties")
    for name, value in (("run_id", run.run_id), ("decision", run.decision), ("event", run.event or "")):
        ET.SubElement(props, "property", name=name, value=value)
    for c in run.checks:
        case = ET.SubElement(
            suite, "testcase", classname=f"checklist.{c.severity}", name=c.id, time=f"{c.duration_ms / 1000:.3f}"
        )
        detail = f"{c.reason}\nowner: {c.owner}\nrunbook: {c.runbook}"
        if c.status == "fail":
            ET.SubElement(case, "failure", message=c.reason, type=c.severity).text = detail
        elif c.status == "unknown":
            ET.SubElement(case, "error", message=c.reason, type="unknown").text = detail
        elif c.status == "waived":
            ET.SubElement(case, "skipped", message=c.reason)
        ET.SubElement(case, "system-out").text = c.title
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"
