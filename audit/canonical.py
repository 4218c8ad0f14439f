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


def _check(value: Any, where: str = "$") -> None:
    if value is None or isinstance(value, (bool, str)):
        return
    if isinstance(value, int):
        return
    if isinstance(value, float):
        raise NotCanonical(f"{where}: floats are not allowed (use integer minor units, or a decimal string)")
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise NotCanonical(f"{where}: object keys must be strings, not {type(key).__name__}")
            _check(item, f"{where}.{key}")
        return
    raise NotCanonical(f"{where}: {type(value).__name__} has no JSON form")


def _sorted(value: Any) -> Any:
    # JCS orders object members by the UTF-16 code units of their names.
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value, key=lambda k: k.encode("utf-16-be"))}
    if isinstance(value, (list, tuple)):
        return [_sorted(v) for v in value]
    return value


def canonical_json(value: Any) -> str:
    _check(value)
    # With ensure_ascii off, json escapes exactly what JCS escapes: '"', '\\' and control characters.
    return json.dumps(_sorted(value), ensure_ascii=False, separators=(",", ":"), allow_nan=False)


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
