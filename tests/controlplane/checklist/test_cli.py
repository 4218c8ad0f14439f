"""`controlplane checklist` and `controlplane drill` as a user runs them: exit codes, formats, records,
an offline-verifiable bundle of a run, and mistakes as messages with exit 3."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from tests.controlplane.checklist.conftest import CONFIG

CONTROLPLANE = str(Path(sys.executable).with_name("controlplane"))

SPEC = """
checks:
  - id: slos-defined
    title: Every slice has an SLO
    severity: blocking
    owner: sre
    runbook: add SLOs
    evaluator: {type: slo_coverage}
  - id: incident-roles
    title: Incident roles named
    severity: blocking
    owner: event-lead
    runbook: name them, then attest
    evaluator: {type: attestation}
  - id: failover-drill
    title: A failover drill this week
    severity: warning
    owner: sre
    runbook: run one, then record it
    evaluator: {type: audit_evidence, kinds: [failover], within_days: 7}
"""


KICKOFF = datetime.now(UTC).replace(microsecond=0) + timedelta(days=2)


@pytest.fixture
def cli(database_url: str, tmp_path: Path):
    spec = tmp_path / "checklist.yaml"
    spec.write_text(SPEC)
    events = tmp_path / "events.yaml"
    settles = KICKOFF + timedelta(hours=2)
    events.write_text(f"events:\n  - {{name: cup-final, kickoff: '{KICKOFF.isoformat()}', "
                      f"settlement_expected: '{settles.isoformat()}'}}\n")  # fmt: skip
    env = os.environ | {
        "CONTROLPLANE_STORE_URL": database_url,
        "CONTROLPLANE_AUDIT_URL": database_url,
        "CONTROLPLANE_AUDIT_KEY_DIR": str(tmp_path / "keys"),
        "CONTROLPLANE_CHECKLIST_PATH": str(spec),
        "CONTROLPLANE_SLOS_PATH": str(CONFIG / "slos.yaml"),
        "CONTROLPLANE_EVENTS_PATH": str(events),
        "CONTROLPLANE_SLICES_PATH": str(CONFIG / "slices.yaml"),
    }

    def run(*args: str, code: int | None = 0, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [CONTROLPLANE, *args], env=env | (extra or {}), capture_output=True, text=True, cwd=tmp_path, timeout=300
        )
        assert "Traceback" not in done.stderr + done.stdout, done.stderr
        if code is not None:
            assert done.returncode == code, (args, done.returncode, done.stdout, done.stderr)
        return done

    run.spec = spec  # type: ignore[attr-defined]
    return run


def _run(cli, *args: str, code: int) -> dict:
    return json.loads(cli("checklist", "run", "--format", "json", *args, code=code).stdout)


def test_a_run_from_no_go_to_go_and_its_proof(cli, tmp_path: Path) -> None:
    first = _run(cli, "--event", "cup-final", code=2)
    assert first["decision"] == "no-go" and first["event"] == "cup-final"
    statuses = {c["id"]: c["status"] for c in first["checks"]}
    assert statuses == {"slos-defined": "pass", "incident-roles": "fail", "failover-drill": "fail"}
    assert set(first["checks"][0]) >= {"id", "title", "severity", "status", "reason", "evidence", "duration_ms",
                                       "waiver", "attestation"}  # fmt: skip

    out = cli("checklist", "attest", "incident-roles", "--by", "ana", "--expires", "24h", "--note", "IC ana, comms bo")
    assert "attested incident-roles by ana" in out.stdout
    second = _run(cli, code=1)
    assert second["decision"] == "go-with-warnings"
    attested = next(c for c in second["checks"] if c["id"] == "incident-roles")
    assert attested["status"] == "pass" and attested["attestation"]["by"] == "ana"

    cli("drill", "record", "--kind", "failover", "--by", "bo", "--note", "promoted the replica in 40 s")
    third = _run(cli, code=0)
    assert third["decision"] == "go"

    junit = cli("checklist", "run", "--format", "junit").stdout
    suite = ET.fromstring(junit).find("testsuite")
    assert suite is not None and len(suite.findall("testcase")) == 3 and suite.get("failures") == "0"
    table = cli("checklist", "run").stdout
    assert "GO:" in table and "incident-roles" in table

    history = json.loads(cli("checklist", "history", "--format", "json").stdout)["runs"]
    assert [r["decision"] for r in history[-3:]] == ["go", "go-with-warnings", "no-go"]
    assert [r["run_id"] for r in json.loads(cli("checklist", "history", "--event", "cup-final", "--format", "json")
                                             .stdout)["runs"]] == [first["run_id"]]  # fmt: skip
    shown = json.loads(cli("checklist", "show", second["run_id"], "--format", "json").stdout)
    assert shown["checks"] == second["checks"] and shown["decision"] == "go-with-warnings"

    cli("audit", "checkpoint")
    bundle = tmp_path / "run.json"
    out = cli("audit", "export", "--checklist-run", second["run_id"], "--out", str(bundle))
    exported = json.loads(bundle.read_text())
    kinds = sorted(json.loads(e["entry"])["kind"] for e in exported["entries"])
    assert kinds == ["attestation", "checklist"], "the run and the attestation it relied on"
    key = cli("audit", "verifier-key").stdout.strip()
    verified = subprocess.run(
        [sys.executable, "-m", "audit.verify", str(bundle), "--key", key], capture_output=True, text=True
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "OK" in cli("audit", "verify").stdout


def test_a_waiver_turns_a_failure_into_waived_and_the_exit_code_follows(cli) -> None:
    cli("drill", "record", "--kind", "failover", "--by", "bo", "--note", "promoted the replica")
    assert _run(cli, code=2)["decision"] == "no-go"
    out = cli("checklist", "waive", "incident-roles", "--by", "ana", "--approved-by", "bo",
              "--reason", "roles named in the war room, attest after", "--expires", "event-end", "--event", "cup-final")  # fmt: skip
    event_end = (KICKOFF + timedelta(hours=3)).isoformat().replace("+00:00", "Z")
    assert f"waived incident-roles until {event_end}" in out.stdout
    assert _run(cli, code=2)["decision"] == "no-go", "an event's waiver does not cover a run for no event"
    run = _run(cli, "--event", "cup-final", code=0)
    waived = next(c for c in run["checks"] if c["id"] == "incident-roles")
    assert (
        waived["status"] == "waived"
        and waived["waiver"]["approved_by"] == "bo"
        and waived["waiver"]["outcome"] == "fail"
    )


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("checklist", "run", "--event", "nope"), ["no event named 'nope'", "cup-final"]),
        (("checklist", "run", "--at", "yesterday-ish"), ["--at", "ISO 8601"]),
        (("checklist", "run", "--format", "xml"), ["xml"]),
        (
            (
                "checklist",
                "waive",
                "incident-roles",
                "--by",
                "ana",
                "--approved-by",
                "ana",
                "--reason",
                "because I can",
                "--expires",
                "2h",
            ),
            ["second person"],
        ),
        (
            (
                "checklist",
                "waive",
                "incident-roles",
                "--by",
                "ana",
                "--approved-by",
                "bo",
                "--reason",
                "because we can",
                "--expires",
                "event-end",
            ),
            ["needs --event"],
        ),
        (
            (
                "checklist",
                "waive",
                "nope",
                "--by",
                "ana",
                "--approved-by",
                "bo",
                "--reason",
                "because we can",
                "--expires",
                "2h",
            ),
            ["no check 'nope'"],
        ),
        (("checklist", "attest", "slos-defined", "--by", "ana", "--expires", "2h"), ["not by attestation"]),
        (
            ("checklist", "attest", "incident-roles", "--by", "ana", "--expires", "forever"),
            ["--expires", "a whole number and a unit"],
        ),
        (("checklist", "show", "0123456789abcdef"), ["no checklist run"]),
        (
            (
                "checklist",
                "run",
                "--at",
                "2h",
                "--event",
                "cup-final",
                "--format",
                "json",
                "--at",
                "2999-01-01T00:00:00Z",
            ),
            ["--at lies in the future"],
        ),
        (("checklist", "run", "--at", "500000w"), ["--at"]),
        (("checklist", "attest", "incident-roles", "--by", "ana", "--expires", "500000w"), ["--expires"]),
        (("checklist", "attest", "incident-roles", "--by", "ana", "--expires", "60d"), ["at most 30 days"]),
        (("drill", "record", "--kind", "fire", "--by", "ana", "--note", "x"), ["fire"]),
        (("audit", "export", "--checklist-run", "nope", "--out", "x.json"), ["no checklist run 'nope'"]),
    ],
)
def test_mistakes_are_messages_with_exit_3(cli, args: tuple[str, ...], words: list[str]) -> None:
    done = cli(*args, code=3)
    for word in words:
        assert word in done.stderr, (word, done.stderr)


def test_a_bad_spec_or_store_cannot_run(cli, tmp_path: Path) -> None:
    cli.spec.write_text(SPEC.replace("severity: warning", "severity: maybe"))
    done = cli("checklist", "run", code=3)
    assert "check 'failover-drill'" in done.stderr and "severity" in done.stderr
    cli.spec.write_text(SPEC)
    done = cli("checklist", "run", "--store-url", "postgresql+psycopg://nobody:secret@127.0.0.1:1/none", code=3)
    assert "cannot open the store" in done.stderr and "secret" not in done.stderr


def test_an_audit_log_that_cannot_be_written_is_a_message(cli) -> None:
    done = cli("drill", "record", "--kind", "failover", "--by", "ana", "--note", "promoted the replica", code=3,
               extra={"CONTROLPLANE_AUDIT_URL": "mysql://root@127.0.0.1/audit"})  # fmt: skip
    assert "CONTROLPLANE_AUDIT_URL" in done.stderr and "mysql" in done.stderr
    done = cli("checklist", "attest", "incident-roles", "--by", "ana", "--expires", "1h", code=3,
               extra={"CONTROLPLANE_AUDIT_URL": "postgresql+psycopg://nobody:pw@127.0.0.1:1/none"})  # fmt: skip
    assert "cannot be written" in done.stderr and ":pw@" not in done.stderr
