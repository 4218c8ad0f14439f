"""Password hashes: scrypt with its parameters in the hash (`scrypt$15$8$1$salt$digest`), checked in
constant time. A hash made with older parameters still verifies by the ones it names.

    stored = hash_password("correct horse battery")
    verify_password("correct horse battery", stored)   # True
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

SCRYPT_LOG2_N, SCRYPT_R, SCRYPT_P, SCRYPT_LEN, SALT_BYTES = 15, 8, 1, 32, 16
MAX_LOG2_N = 20  # a stored hash asking for more memory than this (about 1 GiB) is refused, not computed


def hash_password(password: str) -> str:
    """A new salted scrypt hash of `password` (N = 2**15, r = 8, p = 1: about 32 MiB and 0.1 s)."""
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(password, salt, SCRYPT_LOG2_N, SCRYPT_R, SCRYPT_P)
    return _encode(SCRYPT_LOG2_N, SCRYPT_R, SCRYPT_P, salt, digest)


def verify_password(password: str, encoded: str) -> bool:
    """Whether `password` is the one `encoded` was made from; the digests are compared in constant time."""
    try:
        scheme, log2_n, r, p, salt, digest = encoded.split("$")
        if scheme != "scrypt" or not 1 <= int(log2_n) <= MAX_LOG2_N:
            return False
        expected = base64.b64decode(digest, validate=True)
        actual = _scrypt(password, base64.b64decode(salt, validate=True), int(log2_n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


def _encode(log2_n: int, r: int, p: int, salt: bytes, digest: bytes) -> str:
    b64 = base64.b64encode
    return f"scrypt${log2_n}${r}${p}${b64(salt).decode()}${b64(digest).decode()}"


# Verified against for unknown usernames, so a miss costs the same scrypt work as a wrong password; no
# password hashes to its random digest.
DECOY_HASH = _encode(
    SCRYPT_LOG2_N, SCRYPT_R, SCRYPT_P, secrets.token_bytes(SALT_BYTES), secrets.token_bytes(SCRYPT_LEN)
)


def _scrypt(password: str, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    n = 1 << log2_n
    # surrogatepass: a password that is not valid text still costs the full work (and matches nothing stored).
    secret = password.encode("utf-8", "surrogatepass")
    return hashlib.scrypt(secret, salt=salt, n=n, r=r, p=p, maxmem=256 * n * r, dklen=SCRYPT_LEN)
