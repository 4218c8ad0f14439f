"""RFC 8785 canonical JSON for audit entries."""

from __future__ import annotations

import functools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit.canonical import NotCanonical, canonical_entry, canonical_json


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"b": 1, "a": [True, None, "x"]}, '{"a":[true,null,"x"],"b":1}'),
        ({"\u20ac": 1, "\U0001f600": 2, "\ufb33": 3}, '{"\u20ac":1,"\U0001f600":2,"\ufb33":3}'),  # UTF-16 order
        (
            {"s": 'quote " slash \\ tab \t nl \n ctl \x01 é'},
            '{"s":"quote \\" slash \\\\ tab \\t nl \\n ctl \\u0001 é"}',
        ),
        ({"big": 10**20, "neg": -5}, '{"big":100000000000000000000,"neg":-5}'),
    ],
)
def test_canonical_form(value, expected: str) -> None:
    assert canonical_json(value) == expected


@pytest.mark.parametrize("value", [{"amount": 1.5}, {1: "x"}, {"when": object()}, [float("nan")]])
def test_values_without_a_canonical_form_are_refused(value) -> None:
    with pytest.raises(NotCanonical):
        canonical_json(value)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300)
@given(
    seq=st.integers(0, 2**63 - 1),
    kind=st.text(max_size=12),
    actor=st.text(max_size=20),
    subject=st.text(max_size=20),
    payload=st.dictionaries(st.text(max_size=10), _json, max_size=5),
    event_id=st.none() | st.text(min_size=1, max_size=20),
)
def test_an_entry_assembled_around_its_payload_is_its_canonical_form(
    seq: int, kind: str, actor: str, subject: str, payload: dict, event_id: str | None
) -> None:
    document = {"seq": seq, "time": "2026-12-06T03:00:00.123456Z", "kind": kind, "actor": actor,
                "subject": subject, "payload": payload, "prev_hash": "ab" * 32}  # fmt: skip
    if event_id is not None:
        document["event_id"] = event_id
    assembled = canonical_entry(
        seq=seq, time=document["time"], kind=kind, actor=actor, subject=subject,
        payload_json=canonical_json(payload), prev_hash="ab" * 32, event_id=event_id,
    )  # fmt: skip
    assert assembled == canonical_json(document)


def test_an_entry_with_a_field_that_is_not_a_string_takes_the_general_way() -> None:
    assembled = canonical_entry(
        seq=3,
        time="t",
        kind="money",
        actor=None,
        subject="s",
        payload_json='{"a":1}',
        prev_hash="0",  # type: ignore[arg-type]
    )
    assert (
        assembled == '{"actor":null,"kind":"money","payload":{"a":1},"prev_hash":"0","seq":3,"subject":"s","time":"t"}'
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"a": [1, {"b": 1.5}]}, "$.a[1].b: floats are not allowed"),
        ({"a": {"b": {2: "x"}}}, "$.a.b: object keys must be strings, not int"),
        ([None, [object()]], "$[1][0]: object has no JSON form"),
        (2.5, "$: floats are not allowed"),
    ],
)
def test_a_refusal_names_where_the_value_is(value: object, message: str) -> None:
    with pytest.raises(NotCanonical) as refused:
        canonical_json(value)
    assert str(refused.value).startswith(message)


def _reference(value: object) -> object:
    """JCS order written the plain way: every object's members sorted by UTF-16 code units."""
    if isinstance(value, dict):
        return {k: _reference(value[k]) for k in sorted(value, key=lambda k: k.encode("utf-16-be"))}
    if isinstance(value, list):
        return [_reference(v) for v in value]
    return value


@settings(max_examples=500)
@given(value=_json, strings=st.lists(st.text(), max_size=3))
def test_every_shortcut_gives_the_form_written_the_plain_way(value: object, strings: list[str]) -> None:
    # ASCII keys take json's own key sorting, other keys the UTF-16 sort; quoted fields skip json for
    # text that needs no escape: each must equal the form written without shortcuts.
    import json

    for each in (value, {"k": value, "strings": strings}, {s: value for s in strings}):
        expected = json.dumps(_reference(each), ensure_ascii=False, separators=(",", ":"))
        assert canonical_json(each) == expected
    for s in strings:
        entry = canonical_entry(seq=1, time=s, kind=s, actor=s, subject=s, payload_json="{}", prev_hash=s)
        assert json.loads(entry)["actor"] == s and entry == canonical_json(json.loads(entry))


@settings(max_examples=300)
@given(value=_json, key=st.text(max_size=4))
def test_payloads_through_orjson_take_the_same_form(value: object, key: str) -> None:
    from audit.log import canonical_payload

    for each in (value, {"k": value}, {key: value, "z": [value]}):
        assert canonical_payload(each) == canonical_json(each)


@pytest.mark.parametrize(
    "value",
    [
        {"big": 2**70, "neg": -(2**64)},  # beyond orjson's 64 bits
        {"lone": "\ud800"},  # a lone surrogate orjson refuses
        {"é": 1, "e": 2, "\U0001f600": 3, "\uffff": 4},  # keys sorted by UTF-16 code units, not by json
        {"deep": functools.reduce(lambda inner, _: [inner], range(300), 0)},  # deeper than orjson goes
        {"ctl": "\x00\x1f\x7f\u2028", "q": '"\\'},
    ],
)
def test_payloads_orjson_cannot_take_fall_back_to_the_same_form(value: object) -> None:
    from audit.log import canonical_payload

    assert canonical_payload(value) == canonical_json(value)
    with pytest.raises(NotCanonical):
        canonical_payload({"odds": 1.5, "v": value})
