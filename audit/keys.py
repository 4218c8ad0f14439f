"""The log's Ed25519 signing keys: created on first use, encrypted at rest, rotated without
orphaning old checkpoints (every key ever used stays a verifier).

Usage:

    ring = KeyRing(Path("var/audit-keys"), name="audit.example/betting", passphrase=b"...")
    signer = ring.signer()          # creates the first key if there is none
    ring.verifiers()                # every key, current and retired

Keys are PKCS#8 PEM files encrypted with the passphrase (cryptography's best available scheme).
Without a passphrase a key is written unencrypted only when `development=True`.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

from audit.note import NoteSigner, Verifier


class AuditKeyError(ValueError):
    """A key that cannot be created, read or used; the message says how to fix it."""


class KeyRing:
    def __init__(self, directory: Path, *, name: str, passphrase: bytes | None, development: bool = False) -> None:
        self.directory = Path(directory)
        self.name = name
        self.passphrase = passphrase
        self.development = development

    @property
    def _index_path(self) -> Path:
        return self.directory / "keys.json"

    def _index(self) -> list[dict]:
        if not self._index_path.exists():
            return []
        return json.loads(self._index_path.read_text())

    def _write_index(self, index: list[dict]) -> None:
        tmp = self._index_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(index, indent=2))
        os.replace(tmp, self._index_path)

    def _encryption(self):
        if self.passphrase:
            return BestAvailableEncryption(self.passphrase)
        if self.development:
            return NoEncryption()
        raise AuditKeyError(
            "no passphrase for the audit signing key: set CONTROLPLANE_AUDIT_KEY_PASSPHRASE "
            "(keys are never stored unencrypted outside development)"
        )

    def rotate(self) -> NoteSigner:
        """A new current key; earlier keys are kept as verifiers of the checkpoints they signed."""
        encryption = self._encryption()
        self.directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        signer = NoteSigner(self.name, Ed25519PrivateKey.generate())
        key_id = signer.verifier.key_id.hex()
        path = self.directory / f"{key_id}.pem"
        path.write_bytes(signer.private_key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, encryption))
        os.chmod(path, 0o600)
        now = datetime.now(UTC).isoformat()
        index = [dict(entry, retired_at=entry.get("retired_at") or now) for entry in self._index()]
        index.append({"key_id": key_id, "verifier_key": signer.verifier_key(), "created_at": now, "retired_at": None})
        self._write_index(index)
        return signer

    def signer(self) -> NoteSigner:
        current = [entry for entry in self._index() if not entry.get("retired_at")]
        if not current:
            return self.rotate()
        key_id = current[-1]["key_id"]
        pem = (self.directory / f"{key_id}.pem").read_bytes()
        try:
            key = load_pem_private_key(pem, password=self.passphrase or None)
        except (TypeError, ValueError) as exc:
            raise AuditKeyError(
                f"cannot open audit key {key_id}: wrong or missing CONTROLPLANE_AUDIT_KEY_PASSPHRASE ({exc})"
            ) from None
        if not isinstance(key, Ed25519PrivateKey):
            raise AuditKeyError(f"audit key {key_id} is not an Ed25519 key")
        signer = NoteSigner(self.name, key)
        if signer.verifier.key_id.hex() != key_id:
            raise AuditKeyError(f"audit key file {key_id}.pem holds another key")
        return signer

    def verifiers(self) -> list[Verifier]:
        return [Verifier.parse(entry["verifier_key"]) for entry in self._index()]

    def verifier_keys(self) -> list[dict]:
        return self._index()
