"""`controlplane audit` end to end, and the signing keys: encrypted at rest, rotated, still verifying."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from sqlalchemy import text

from audit.keys import AuditKeyError, KeyRing
from controlplane.storage import make_engine
from tests.support import CONTROLPLANE


def cli(tmp_path, *args: str, **env: str) -> subprocess.CompletedProcess:
    environment = (
        os.environ
        | {
            "CONTROLPLANE_AUDIT_URL": f"sqlite:///{tmp_path / 'audit.db'}",
            "CONTROLPLANE_AUDIT_KEY_DIR": str(tmp_path / "keys"),
            "CONTROLPLANE_AUDIT_KEY_PASSPHRASE": "correct horse",
            "CONTROLPLANE_AUDIT_ORIGIN": "audit.test/cli",
        }
        | env
    )
    return subprocess.run([CONTROLPLANE, "audit", *args], capture_output=True, text=True, env=environment, timeout=60)


def test_append_checkpoint_export_verify_offline(tmp_path) -> None:
    for stake in (100, 200):
        assert (
            cli(
                tmp_path,
                "append",
                "--kind",
                "money",
                "--actor",
                "relay",
                "--subject",
                "bet:7",
                "--payload",
                json.dumps({"stake_minor": stake}),
            ).returncode
            == 0
        )
    cli(tmp_path, "append", "--kind", "change", "--actor", "ana", "--subject", "slo:x", "--payload", "{}")
    note = cli(tmp_path, "checkpoint")
    assert note.returncode == 0 and note.stdout.startswith("audit.test/cli\n3\n")
    assert "OK: 3 entries, 1 checkpoints" in cli(tmp_path, "verify").stdout
    rotated = cli(tmp_path, "rotate-key").stdout.strip()
    cli(tmp_path, "append", "--kind", "change", "--actor", "ana", "--subject", "slo:y", "--payload", "{}")
    cli(tmp_path, "checkpoint")
    assert "OK: 4 entries, 2 checkpoints" in cli(tmp_path, "verify").stdout  # the old key still verifies its head
    key = cli(tmp_path, "verifier-key").stdout.strip()
    assert key == rotated and key.startswith("audit.test/cli+")
    exported = cli(tmp_path, "export", "--bet", "7", "--out", str(tmp_path / "bundle.json"))
    assert exported.returncode == 0 and "wrote 2 entries" in exported.stdout
    bundle = json.loads((tmp_path / "bundle.json").read_text())
    assert {"checkpoint", "verifier_key", "tree_size", "entries"} <= bundle.keys()
    offline = subprocess.run(
        [sys.executable, "-m", "audit.verify", str(tmp_path / "bundle.json"), "--key", key],
        capture_output=True,
        text=True,
    )
    assert offline.returncode == 0, offline.stderr
    proof = json.loads(cli(tmp_path, "prove", "--seq", "2").stdout)
    assert proof["entries"][0]["seq"] == 2 and proof["tree_size"] == 4


def test_verify_names_the_first_bad_entry(tmp_path) -> None:
    for i in range(5):
        cli(
            tmp_path,
            "append",
            "--kind",
            "money",
            "--actor",
            "r",
            "--subject",
            f"bet:{i}",
            "--payload",
            json.dumps({"i": i}),
        )
    cli(tmp_path, "checkpoint")
    engine = make_engine(f"sqlite:///{tmp_path / 'audit.db'}")
    with engine.begin() as conn:
        conn.execute(text("DROP TRIGGER audit_entries_no_update"))
        conn.execute(text("UPDATE audit_entries SET entry = replace(entry, 'bet:3', 'bet:9') WHERE seq = 3"))
    engine.dispose()
    failed = cli(tmp_path, "verify")
    assert failed.returncode == 2 and "seq 3" in failed.stderr


def test_entries_are_searched_by_kind_type_and_time(tmp_path) -> None:
    for kind, payload in (("money", {"type": "bet.placed"}), ("change", {"type": "fault_set"}), ("money", {})):
        cli(
            tmp_path, "append", "--kind", kind, "--actor", "ana", "--subject", "bet:1", "--payload", json.dumps(payload)
        )
    everything = json.loads(cli(tmp_path, "entries", "--format", "json").stdout)
    assert [(e["seq"], e["kind"], e["type"]) for e in everything] == [
        (0, "money", "bet.placed"),
        (1, "change", "fault_set"),
        (2, "money", None),
    ]
    assert set(everything[0]) == {"seq", "kind", "type", "actor", "at", "subject", "event_id", "payload"}
    money = json.loads(cli(tmp_path, "entries", "--kind", "money", "--format", "json").stdout)
    assert [e["seq"] for e in money] == [0, 2]
    faults = cli(tmp_path, "entries", "--type", "fault_set").stdout.splitlines()
    assert len(faults) == 2 and "fault_set" in faults[1] and faults[1].split()[0] == "1"
    newest = json.loads(cli(tmp_path, "entries", "--limit", "2", "--format", "json").stdout)
    assert [e["seq"] for e in newest] == [1, 2]
    assert (
        json.loads(cli(tmp_path, "entries", "--since", "2h", "--limit", "1", "--format", "json").stdout)[0]["seq"] == 0
    )
    assert json.loads(cli(tmp_path, "entries", "--since", "2999-01-01", "--format", "json").stdout) == []
    bad = cli(tmp_path, "entries", "--since", "yesterday")
    assert bad.returncode == 3 and "--since" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("append", "--kind", "money", "--actor", "a", "--subject", "s", "--payload", "not json"), "not JSON"),
        (("append", "--kind", "rumour", "--actor", "a", "--subject", "s", "--payload", "{}"), "kind"),
        (("export", "--out", "x.json"), "one of --from-seq"),
        (("export", "--from-seq", "0", "--to-seq", "3", "--out", "x.json"), "no checkpoint yet"),
        (("checkpoint", "--every", "300"), "scheduler's `checkpoint` job"),
    ],
)
def test_cli_errors_are_messages(tmp_path, args, message) -> None:
    result = cli(tmp_path, *args)
    assert result.returncode == 3 and message in result.stderr and "Traceback" not in result.stderr


def test_production_refuses_a_key_without_passphrase(tmp_path) -> None:
    result = cli(
        tmp_path,
        "checkpoint",
        CONTROLPLANE_AUDIT_KEY_PASSPHRASE="",
        CONTROLPLANE_ENVIRONMENT="production",
        PLATFORM_ADMIN_TOKEN="a-real-token-for-production",
    )
    assert result.returncode == 3 and "CONTROLPLANE_AUDIT_KEY_PASSPHRASE" in result.stderr


def test_keys_are_encrypted_and_rotation_keeps_old_checkpoints_verifiable(tmp_path) -> None:
    ring = KeyRing(tmp_path / "keys", name="audit.test/keys", passphrase=b"s3cret passphrase")
    first = ring.signer()
    pem = next((tmp_path / "keys").glob("*.pem")).read_bytes()
    assert b"ENCRYPTED" in pem
    with pytest.raises(AuditKeyError, match="wrong or missing"):
        KeyRing(tmp_path / "keys", name="audit.test/keys", passphrase=b"wrong").signer()
    second = ring.rotate()
    assert ring.signer().verifier_key() == second.verifier_key() != first.verifier_key()
    assert {v.key_id for v in ring.verifiers()} == {first.verifier.key_id, second.verifier.key_id}
    with pytest.raises(AuditKeyError, match="PASSPHRASE"):
        KeyRing(tmp_path / "other", name="x", passphrase=None).signer()


def test_check_money_cli(tmp_path) -> None:
    cli(
        tmp_path,
        "append",
        "--kind",
        "money",
        "--actor",
        "p",
        "--subject",
        "bet:1",
        "--payload",
        json.dumps({"type": "bet_placed", "stake_minor": 200, "odds": "2.50"}),
    )
    cli(
        tmp_path,
        "append",
        "--kind",
        "money",
        "--actor",
        "p",
        "--subject",
        "bet:1",
        "--payload",
        json.dumps({"type": "payout", "payout_minor": 500}),
    )
    assert cli(tmp_path, "check-money").returncode == 0
    cli(
        tmp_path,
        "append",
        "--kind",
        "money",
        "--actor",
        "p",
        "--subject",
        "bet:2",
        "--payload",
        json.dumps({"type": "void", "payout_minor": 7}),
    )
    failed = cli(tmp_path, "check-money")
    assert failed.returncode == 2 and "bet:2 was settled but never placed" in failed.stderr
