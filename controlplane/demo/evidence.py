"""The demo's evidence at full time: a signed checkpoint, the whole log verified, the money checked
from the log alone, and proof bundles for one bet, the checklist run and the incident, each verified offline by
the stand-alone verifier in a process of its own (as a regulator would run it).

Usage:

    evidence = gather_evidence(settings, bundles_dir, bet_id=42, checklist_run="ab12...")
    evidence.ok   # the log verifies and every bundle verifies offline
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from audit.schema import entries
from audit.sink import check_money
from controlplane.auditing import open_audit
from controlplane.proofs import ProofError, export_bundle, seqs_for_bet, seqs_for_checklist_run
from controlplane.settings import Settings

VERIFY_TIMEOUT = 120


@dataclass
class BundleCheck:
    what: str  # "bet 42", "checklist run ab12..."
    path: str
    entries: int = 0
    verified: bool = False
    command: str = ""
    output: str = ""


@dataclass
class Evidence:
    entries: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    checkpoint_size: int = 0
    verified: bool = False
    verify_problem: str | None = None
    checkpoints_verified: int = 0
    money_bets: int = 0
    money_problems: list[str] = field(default_factory=list)
    verifier_key: str = ""
    bundles: list[BundleCheck] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.verified and len(self.bundles) >= 2 and all(b.verified for b in self.bundles)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"ok": self.ok}


def verify_offline(path: Path, key: str) -> tuple[bool, str, str]:
    """`python -m audit.verify BUNDLE --key KEY` in a process of its own: (verified, command, output)."""
    command = [sys.executable, "-m", "audit.verify", str(path), "--key", key]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=VERIFY_TIMEOUT)
    except subprocess.TimeoutExpired:
        return False, " ".join(command), f"the verifier did not finish within {VERIFY_TIMEOUT} s"
    output = (done.stdout + done.stderr).strip()
    shown = f"python -m audit.verify {path} --key {key}"
    return done.returncode == 0, shown, output


def _bundle(log: Any, ring: Any, what: str, seqs: list[int], path: Path) -> BundleCheck:
    check = BundleCheck(what=what, path=str(path))
    bundle = export_bundle(log, ring, seqs)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(bundle, indent=2))
    check.entries = len(bundle["entries"])
    check.verified, check.command, check.output = verify_offline(path, bundle["verifier_key"])
    return check


def gather_evidence(
    settings: Settings,
    bundles: Path,
    *,
    bet_id: int | None,
    checklist_run: str | None,
    incident: tuple[str, list[int]] | None = None,
) -> Evidence:
    """Sign a checkpoint of everything logged so far, verify, check the money, export and verify bundles
    (a bet, the checklist run and, if one opened, the incident: its entries and the changes it names)."""
    evidence = Evidence()
    bundles.mkdir(parents=True, exist_ok=True)
    log, ring = open_audit(settings)
    log.checkpoint()
    evidence.verifier_key = ring.signer().verifier_key()
    with log.engine.connect() as conn:
        counted = conn.execute(select(entries.c.kind, func.count()).group_by(entries.c.kind)).all()
    evidence.by_kind = {kind: int(n) for kind, n in sorted(counted)}
    evidence.entries = sum(evidence.by_kind.values())
    evidence.checkpoint_size = log.size()
    result = log.verify(*ring.verifiers())
    evidence.verified = bool(result.ok)
    evidence.checkpoints_verified = int(result.checkpoints)
    evidence.verify_problem = None if result.ok else f"seq {result.first_bad_seq}: {result.problem}"
    money = check_money(log)
    evidence.money_bets, evidence.money_problems = money.bets, list(money.problems[:10])
    wanted = []
    if bet_id is not None:
        wanted.append((f"bet {bet_id}", lambda: seqs_for_bet(log, bet_id), bundles / f"bet-{bet_id}.json"))
    if checklist_run is not None:
        wanted.append(
            (
                f"checklist run {checklist_run}",
                lambda: seqs_for_checklist_run(log, checklist_run),
                bundles / f"checklist-run-{checklist_run}.json",
            )
        )
    if incident is not None:
        ident, incident_seqs = incident
        wanted.append((f"incident {ident}", lambda: incident_seqs, bundles / f"incident-{ident}.json"))
    if bet_id is None:
        evidence.bundles.append(BundleCheck(what="a bet", path="", output="no bet was accepted, so none to prove"))
    if checklist_run is None:
        evidence.bundles.append(
            BundleCheck(what="the checklist run", path="", output="the checklist did not run before kickoff")
        )
    for what, seqs, path in wanted:
        try:
            evidence.bundles.append(_bundle(log, ring, what, seqs(), path))
        except ProofError as exc:
            evidence.bundles.append(BundleCheck(what=what, path=str(path), output=str(exc)))
    (bundles / "verifier-key.txt").write_text(evidence.verifier_key + "\n")
    return evidence
