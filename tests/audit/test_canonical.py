"""RFC 8785 canonical JSON for audit entries."""

from __future__ import annotations

import pytest

from audit.canonical import NotCanonical, canonical_json


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
