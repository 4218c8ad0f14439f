"""C2SP signed notes (Ed25519) and tlog checkpoints, with the standard library and `cryptography` only.

Usage:

    signer = NoteSigner.generate("audit.example/log")
    note = sign_note(checkpoint_text("audit.example/log", 8, root), signer)
    origin, size, root = parse_checkpoint(open_note(note, Verifier.parse(signer.verifier_key())))

Key id (signed-note spec): the first 4 bytes of SHA-256(name || "\\n" || 0x01 || public key).
Verifier key: `<name>+<key id, 8 hex digits>+<base64(0x01 || public key)>`.
Signature line: `— <name> <base64(key id || signature)>`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

ALG_ED25519 = b"\x01"
SIGNATURE_PREFIX = "\u2014 "  # an em dash and a space


class NoteError(ValueError):
    """A note, key or checkpoint that is malformed or not signed by the expected key."""


def _valid_name(name: str) -> str:
    if not name or any(c.isspace() for c in name) or "+" in name:
        raise NoteError(f"key name {name!r} must be non-empty, without spaces or '+'")
    return name


def key_id(name: str, public_key: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + ALG_ED25519 + public_key).digest()[:4]


@dataclass(frozen=True)
class Verifier:
    name: str
    public_key: bytes

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.public_key)

    @classmethod
    def parse(cls, text: str) -> Verifier:
        try:
            name, hex_id, encoded = text.strip().split("+", 2)  # the base64 key may hold "+" too
            raw = base64.b64decode(encoded, validate=True)
        except (ValueError, binascii.Error):
            raise NoteError("verifier key must look like <name>+<8 hex digits>+<base64 key>") from None
        if len(raw) != 33 or raw[:1] != ALG_ED25519:
            raise NoteError("verifier key is not an Ed25519 key (algorithm byte 0x01 and 32 key bytes)")
        verifier = cls(_valid_name(name), raw[1:])
        if verifier.key_id.hex() != hex_id.lower():
            raise NoteError(f"verifier key id {hex_id} does not match its name and key")
        return verifier

    def __str__(self) -> str:
        return f"{self.name}+{self.key_id.hex()}+{base64.b64encode(ALG_ED25519 + self.public_key).decode()}"

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class NoteSigner:
    name: str
    private_key: Ed25519PrivateKey

    @classmethod
    def generate(cls, name: str) -> NoteSigner:
        return cls(_valid_name(name), Ed25519PrivateKey.generate())

    @property
    def verifier(self) -> Verifier:
        public = self.private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return Verifier(self.name, public)

    def verifier_key(self) -> str:
        return str(self.verifier)


def sign_note(text: str, *signers: NoteSigner) -> str:
    if not text.endswith("\n") or "\n\n" in text:
        raise NoteError("note text must end with a newline and contain no blank line")
    lines = []
    for signer in signers:
        signature = signer.private_key.sign(text.encode())
        blob = base64.b64encode(signer.verifier.key_id + signature).decode()
        lines.append(f"{SIGNATURE_PREFIX}{signer.name} {blob}\n")
    return text + "\n" + "".join(lines)


def open_note(note: str, *verifiers: Verifier) -> str:
    """The note's text, if at least one signature is by a given verifier and every such signature holds."""
    split = note.rfind("\n\n")
    if split < 0:
        raise NoteError("not a signed note: no blank line before the signatures")
    text, signatures = note[: split + 1], note[split + 2 :]
    if not signatures.endswith("\n"):
        raise NoteError("signature lines must end with a newline")
    by_id = {(v.name, v.key_id): v for v in verifiers}
    verified = 0
    for line in signatures[:-1].split("\n"):
        if not line.startswith(SIGNATURE_PREFIX):
            raise NoteError(f"malformed signature line {line[:60]!r}")
        try:
            name, encoded = line[len(SIGNATURE_PREFIX) :].split(" ")
            blob = base64.b64decode(encoded, validate=True)
        except (ValueError, binascii.Error):
            raise NoteError(f"malformed signature line {line[:60]!r}") from None
        verifier = by_id.get((name, blob[:4]))
        if verifier is None:
            continue  # a signature by a key we were not asked to trust
        if not verifier.verify(text.encode(), blob[4:]):
            raise NoteError(f"signature by {name} does not verify")
        verified += 1
    if not verified:
        raise NoteError("the note carries no signature by the trusted key")
    return text


def checkpoint_text(origin: str, size: int, root: bytes) -> str:
    """C2SP tlog-checkpoint body: origin, tree size, base64 root hash."""
    if not origin or "\n" in origin:
        raise NoteError("checkpoint origin must be one non-empty line")
    return f"{origin}\n{size}\n{base64.b64encode(root).decode()}\n"


def parse_checkpoint(text: str) -> tuple[str, int, bytes]:
    lines = text.split("\n")
    if len(lines) < 4 or lines[-1] != "":
        raise NoteError("checkpoint must have an origin, a tree size and a root hash line")
    origin, size_text, root_text = lines[0], lines[1], lines[2]
    if not size_text.isdigit() or (size_text != "0" and size_text.startswith("0")):
        raise NoteError(f"checkpoint tree size {size_text!r} is not a decimal number")
    try:
        root = base64.b64decode(root_text, validate=True)
    except binascii.Error:
        raise NoteError("checkpoint root hash is not base64") from None
    if len(root) != 32:
        raise NoteError("checkpoint root hash must be 32 bytes")
    return origin, int(size_text), root
