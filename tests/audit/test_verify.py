"""The stand-alone verifier: a bundle verifies offline; any altered field makes it fail."""

from __future__ import annotations

import ast
import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit.canonical import canonical_json
from audit.merkle import inclusion_proof, leaf_hash, tree_hash
from audit.note import NoteSigner, checkpoint_text, sign_note
from audit.verify import GENESIS, BundleError, verify_bundle

AUDIT = Path(__file__).parents[2] / "audit"


def make_bundle(count: int = 6, export: range | None = None) -> tuple[dict, str]:
    signer = NoteSigner.generate("audit.test/log")
    texts, leaves, prev = [], [], GENESIS
    for seq in range(count):
        entry = {
            "seq": seq,
            "kind": "money",
            "actor": "relay",
            "subject": f"bet:{seq}",
            "payload": {"stake_minor": 100 + seq},
            "prev_hash": prev,
        }
        text = canonical_json(entry)
        texts.append(text)
        leaves.append(leaf_hash(text.encode()))
        prev = leaves[-1].hex()
    checkpoint = sign_note(checkpoint_text("audit.test/log", count, tree_hash(leaves)), signer)
    chosen = export or range(count)
    bundle = {
        "checkpoint": checkpoint,
        "verifier_key": signer.verifier_key(),
        "tree_size": count,
        "entries": [
            {
                "seq": s,
                "entry": texts[s],
                "leaf_hash": leaves[s].hex(),
                "inclusion_proof": [p.hex() for p in inclusion_proof(leaves, s)],
            }
            for s in chosen
        ],
    }
    return bundle, signer.verifier_key()


def test_a_bundle_verifies_offline(tmp_path) -> None:
    bundle, key = make_bundle(7, export=range(2, 5))
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(bundle))
    ok = subprocess.run(
        [sys.executable, "-m", "audit.verify", str(path), "--key", key],
        capture_output=True,
        text=True,
        cwd=AUDIT.parent,
    )
    assert ok.returncode == 0, ok.stderr
    assert "OK: 3 entries" in ok.stdout
    other_key = NoteSigner.generate("audit.test/log").verifier_key()
    wrong = subprocess.run(
        [sys.executable, "-m", "audit.verify", str(path), "--key", other_key],
        capture_output=True,
        text=True,
        cwd=AUDIT.parent,
    )
    assert wrong.returncode == 2 and "trusted key" in wrong.stderr
    unreadable = subprocess.run(
        [sys.executable, "-m", "audit.verify", str(tmp_path / "none.json"), "--key", key],
        capture_output=True,
        text=True,
        cwd=AUDIT.parent,
    )
    assert unreadable.returncode == 3


def _paths(node, prefix=()):  # type: ignore[no-untyped-def]
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _paths(value, (*prefix, i))
    else:
        yield prefix


BUNDLE, KEY = make_bundle(9, export=range(3, 7))
FIELDS = list(_paths(BUNDLE))


@settings(max_examples=400, deadline=None)
@given(path=st.sampled_from(FIELDS), data=st.data())
def test_any_altered_field_fails(path, data) -> None:  # type: ignore[no-untyped-def]
    bundle = copy.deepcopy(BUNDLE)
    node = bundle
    for key in path[:-1]:
        node = node[key]
    old = node[path[-1]]
    if isinstance(old, str) and old:
        i = data.draw(st.integers(0, len(old) - 1))
        replacement = data.draw(st.sampled_from("0123456789abcdefABCDEF+/=xyz \n\u2014")).replace(old[i], "#")
        new = old[:i] + replacement + old[i + 1 :]
    elif isinstance(old, bool):
        new = not old
    elif isinstance(old, int):
        new = old + data.draw(st.sampled_from([-1, 1, 2]))
    else:
        new = "x"
    node[path[-1]] = new
    with pytest.raises(BundleError):
        verify_bundle(bundle, KEY)


def test_removing_or_reordering_entries_of_a_run_fails() -> None:
    bundle = copy.deepcopy(BUNDLE)
    bundle["entries"][1], bundle["entries"][2] = bundle["entries"][2], bundle["entries"][1]
    with pytest.raises(BundleError, match="ascending seq order"):
        verify_bundle(bundle, KEY)
    bundle = copy.deepcopy(BUNDLE)
    del bundle["entries"][1]  # a gap is allowed (a partial export), but the proofs still must hold
    assert verify_bundle(bundle, KEY)["entries"] == 3


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_the_audit_package_stands_alone() -> None:
    """audit/ uses none of the product's other packages; the offline verifier only the standard
    library and cryptography."""
    ours = {"controlplane", "collectors", "sample_platform", "dashboards", "tests"}
    for path in list(AUDIT.glob("*.py")) + list(AUDIT.glob("migrations/**/*.py")):
        assert not _imports(path) & ours, f"{path.name} imports {_imports(path) & ours}"
    allowed = set(sys.stdlib_module_names) | {"audit", "cryptography"}
    for module in ("verify", "canonical", "merkle", "note"):
        extra = _imports(AUDIT / f"{module}.py") - allowed
        assert not extra, f"audit/{module}.py imports {extra}"
