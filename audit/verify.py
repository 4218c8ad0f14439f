"""Stand-alone verifier of audit proof bundles: `python -m audit.verify bundle.json --key VKEY`.

It needs only the Python standard library and `cryptography`, and no database. It exits 0 only if
the checkpoint is signed by the given verifier key and every entry's leaf hash, inclusion proof and
chain link holds; 2 (naming the first bad entry) if anything does not; 3 if it cannot read its input.

A bundle is JSON: `checkpoint` (the signed note text), `verifier_key`, `tree_size`, and `entries`,
each with `seq` (its leaf index), `entry` (the entry's canonical JSON text, whose UTF-8 bytes are the
Merkle leaf data), `leaf_hash` (hex) and `inclusion_proof` (list of hex, RFC 9162).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from audit.canonical import NotCanonical, canonical_json
from audit.merkle import ProofError, leaf_hash, verify_inclusion
from audit.note import NoteError, Verifier, open_note, parse_checkpoint

GENESIS = "0" * 64


class BundleError(ValueError):
    """A bundle that does not verify; the message names the first bad part."""


def _hex(value: Any, what: str) -> bytes:
    """A SHA-256 hash as 64 lowercase hex digits: the one spelling exports use, so any edit shows."""
    if not isinstance(value, str) or len(value) != 64 or value != value.lower():
        raise BundleError(f"{what} must be 64 lowercase hex digits")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise BundleError(f"{what} is not hex") from None


def verify_bundle(bundle: dict, trusted_key: str) -> dict:
    """Check every signature and proof; returns a summary or raises BundleError."""
    try:
        verifier = Verifier.parse(trusted_key)
        if str(bundle.get("verifier_key", "")).strip() != str(verifier):
            raise BundleError("the bundle's verifier_key is not the trusted key given with --key")
        origin, size, root = parse_checkpoint(open_note(str(bundle.get("checkpoint", "")), verifier))
    except NoteError as exc:
        raise BundleError(f"checkpoint: {exc}") from None
    if bundle.get("tree_size") != size:
        raise BundleError(f"tree_size {bundle.get('tree_size')!r} is not the checkpoint's tree size {size}")
    entries = bundle.get("entries")
    if not isinstance(entries, list) or not entries:
        raise BundleError("entries must be a non-empty list")
    previous: tuple[int, bytes] | None = None
    for item in entries:
        seq = item.get("seq") if isinstance(item, dict) else None
        if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq < size:
            raise BundleError(f"entry with seq {seq!r}: seq must be a leaf index below tree size {size}")
        where = f"entry seq {seq}"
        if previous is not None and seq <= previous[0]:
            raise BundleError(f"{where}: entries must be in ascending seq order, each once (after seq {previous[0]})")
        text = item.get("entry")
        if not isinstance(text, str):
            raise BundleError(f"{where}: `entry` must be the entry's canonical JSON text")
        try:
            parsed = json.loads(text)
            if canonical_json(parsed) != text:
                raise BundleError(f"{where}: entry text is not in canonical form")
        except (ValueError, NotCanonical) as exc:
            raise BundleError(f"{where}: entry text is not canonical JSON ({exc})") from None
        if not isinstance(parsed, dict) or parsed.get("seq") != seq:
            raise BundleError(
                f"{where}: the entry's own seq is {parsed.get('seq') if isinstance(parsed, dict) else None!r}"
            )
        leaf = leaf_hash(text.encode("utf-8"))
        if _hex(item.get("leaf_hash"), f"{where}: leaf_hash") != leaf:
            raise BundleError(f"{where}: leaf_hash is not SHA-256(0x00 || entry)")
        proof = item.get("inclusion_proof")
        if not isinstance(proof, list):
            raise BundleError(f"{where}: inclusion_proof must be a list of hex hashes")
        try:
            verify_inclusion(leaf, seq, size, [_hex(p, f"{where}: inclusion_proof") for p in proof], root)
        except ProofError as exc:
            raise BundleError(f"{where}: {exc}") from None
        if previous is not None and previous[0] + 1 == seq and parsed.get("prev_hash") != previous[1].hex():
            raise BundleError(f"{where}: prev_hash does not link to entry seq {previous[0]}")
        if seq == 0 and parsed.get("prev_hash") != GENESIS:
            raise BundleError(f"{where}: the first entry's prev_hash must be {GENESIS}")
        previous = (seq, leaf)
    return {"origin": origin, "tree_size": size, "entries": len(entries)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m audit.verify", description="Verify an audit proof bundle offline.")
    parser.add_argument("bundle", type=Path, help="bundle.json from `controlplane audit export`")
    parser.add_argument("--key", required=True, help="the log's verifier key, obtained from a trusted channel")
    args = parser.parse_args(argv)
    try:
        bundle = json.loads(args.bundle.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"error: cannot read {args.bundle}: {exc}", file=sys.stderr)
        return 3
    if not isinstance(bundle, dict):
        print(f"error: {args.bundle} is not a bundle (a JSON object)", file=sys.stderr)
        return 3
    try:
        summary = verify_bundle(bundle, args.key)
    except BundleError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 2
    print(
        f"OK: {summary['entries']} entries verified against the signed checkpoint of {summary['origin']} "
        f"at tree size {summary['tree_size']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
