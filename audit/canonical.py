"""Canonical JSON (RFC 8785, JCS) for the values audit entries hold: objects, arrays, strings,
integers, booleans and null. Floats are refused: money is integers, odds are strings.

Usage:

    canonical_json({"b": 1, "a": "x"})   # '{"a":"x","b":1}'
"""

from __future__ import annotations

import json
from typing import Any


class NotCanonical(TypeError):
    """A value with no canonical form here (a float, a non-string key, an unknown type)."""


class _Refused(NotCanonical):
    """On its way out of the recursion, collecting the path to the value refused."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why, self.path = why, ""


def _utf16(key: str) -> bytes:
    return key.encode("utf-16-be")


def _ordered(keys: Any) -> list[str]:
    """Keys in JCS order: by UTF-16 code units, which is code point order unless a key holds a character
    beyond U+FFFF (as two surrogates it sorts below U+E000-U+FFFF)."""
    ordered = sorted(keys)
    if all(key.isascii() for key in ordered):
        return ordered
    return sorted(ordered, key=_utf16)


def _canonical(value: Any) -> Any:
    """The value with every object's members in JCS order (by UTF-16 code units), checked on the way:
    one pass over the value."""
    if value is None or isinstance(value, (str, int)):  # bool is an int
        return value
    if isinstance(value, dict):
        out = {}
        for key in _ordered(value) if all(isinstance(k, str) for k in value) else _bad_keys(value):
            try:
                out[key] = _canonical(value[key])
            except _Refused as exc:
                exc.path = f".{key}{exc.path}"
                raise
        return out
    if isinstance(value, (list, tuple)):
        items = []
        for i, item in enumerate(value):
            try:
                items.append(_canonical(item))
            except _Refused as exc:
                exc.path = f"[{i}]{exc.path}"
                raise
        return items
    if isinstance(value, float):
        raise _Refused("floats are not allowed (use integer minor units, or a decimal string)")
    raise _Refused(f"{type(value).__name__} has no JSON form")


def _bad_keys(value: dict) -> list[str]:
    key = next(k for k in value if not isinstance(k, str))
    raise _Refused(f"object keys must be strings, not {type(key).__name__}")


_SORTED = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True, check_circular=False)
_ORDERED = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


_SCALARS = frozenset({str, int, bool, type(None)})


def is_plain(value: Any) -> bool:
    """Only the built-in JSON types, no float, every key an ASCII string: then JCS order is json's own
    `sort_keys` order and the value can be serialised as it is."""
    kind = type(value)
    if kind is dict:
        try:
            if not "".join(value).isascii():  # every key at once; a key that is not a str raises
                return False
        except TypeError:
            return False
        for item in value.values():
            if type(item) not in _SCALARS and not is_plain(item):
                return False
        return True
    if kind is list or kind is tuple:
        for item in value:
            if type(item) not in _SCALARS and not is_plain(item):
                return False
        return True
    return kind in _SCALARS


def canonical_json(value: Any) -> str:
    if is_plain(value):
        return _SORTED.encode(value)
    try:
        ordered = _canonical(value)
    except _Refused as exc:
        raise NotCanonical(f"${exc.path}: {exc.why}") from None
    # With ensure_ascii off, json escapes exactly what JCS escapes: '"', '\\' and control characters.
    return _ORDERED.encode(ordered)


def _string(value: str) -> str:
    # Printable text without a quote or a backslash needs no escape in JCS: quoted as it is.
    if value.isprintable() and '"' not in value and "\\" not in value:
        return f'"{value}"'
    return _ORDERED.encode(value)


def canonical_entry(
    *, seq: int, time: str, kind: str, actor: str, subject: str, payload_json: str, prev_hash: str,
    event_id: str | None = None,
) -> str:  # fmt: skip
    """`canonical_json` of an audit entry's document, assembled around its payload's canonical text (the
    members' order is fixed: actor, event_id, kind, payload, prev_hash, seq, subject, time), so the
    payload is not sorted and serialised a second time. Equal to `canonical_json` of the document
    (`tests/audit/test_canonical.py`); a field that is not a string takes the general way."""
    strings = (
        type(time) is str and type(kind) is str and type(actor) is str and type(subject) is str
        and type(prev_hash) is str and (event_id is None or type(event_id) is str)
    )  # fmt: skip
    if type(seq) is not int or not strings:
        document = {"seq": seq, "time": time, "kind": kind, "actor": actor, "subject": subject,
                    "payload": json.loads(payload_json), "prev_hash": prev_hash}  # fmt: skip
        if event_id is not None:
            document["event_id"] = event_id
        return canonical_json(document)
    head = f'{{"actor":{_string(actor)},'
    if event_id is not None:
        head += f'"event_id":{_string(event_id)},'
    return (
        f'{head}"kind":{_string(kind)},"payload":{payload_json},"prev_hash":{_string(prev_hash)},'
        f'"seq":{seq},"subject":{_string(subject)},"time":{_string(time)}}}'
    )


def canonical_bytes(value: Any) -> bytes:
    return canonical_json(value).encode("utf-8")


def floats_as_strings(value: Any) -> Any:
    """For payloads from elsewhere: floats become their shortest decimal string, so nothing is rounded."""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dict):
        return {k: floats_as_strings(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [floats_as_strings(v) for v in value]
    return value
