"""config/slices.yaml: validation errors name the file, the slice and the field."""

from __future__ import annotations

import os
import subprocess

import pytest

from controlplane.slices import SliceConfigError, load_slices
from tests.collectors.conftest import SLICES
from tests.support import CONTROLPLANE


def test_shipped_slices_load() -> None:
    config = load_slices(SLICES)
    assert {s.name for s in config.slices} == {"bet-placement", "settlement", "login", "odds-feed", "stream"}
    assert config.for_span(service="sample-platform", name="POST /v1/bets", kind="server").name == "bet-placement"
    assert config.for_span(service="sample-platform", name="POST /v1/bets", kind="internal") is None
    assert config.for_span(service="other-service", name="POST /v1/bets", kind="server") is None
    assert (
        config.for_metric(service="sample-platform", metric="platform.odds.publish_lag", route=None).name == "odds-feed"
    )
    assert config.latency_label(0.3) == "0.5" and config.latency_label(99) == "+Inf"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("slices: [", "not valid YAML"),
        ("slices: []", "slices"),
        ("slices:\n  - name: bets\n    signal: traces\n", "slice 'bets': `spans`"),
        ("slices:\n  - name: odds\n    signal: metrics\n", "slice 'odds'"),
        ("slices:\n  - name: bets\n    signal: logs\n    spans: [x]\n", "slice 'bets': signal"),
        ("slices:\n  - name: Bets!\n    signal: traces\n    spans: [x]\n", "slice 'Bets!': name"),
        (
            "slices:\n  - name: a\n    signal: traces\n    spans: [x]\n  - name: a\n    signal: traces\n    spans: [y]\n",
            "repeated: a",
        ),
        (
            "latency_boundaries_seconds: [0.5, 0.1]\nslices:\n  - name: a\n    signal: traces\n    spans: [x]\n",
            "latency_boundaries_seconds",
        ),
        ("slices:\n  - name: a\n    signal: traces\n    spans: [x]\n    colour: red\n", "slice 'a': colour"),
        (
            "slices:\n  - name: a\n    signal: traces\n    spans: [x]\n    bad: {http_status_min: 700}\n",
            "slice 'a': bad.http_status_min",
        ),
    ],
)
def test_errors_name_file_slice_and_field(tmp_path, text: str, expected: str) -> None:
    path = tmp_path / "slices.yaml"
    path.write_text(text)
    with pytest.raises(SliceConfigError) as error:
        load_slices(path)
    assert str(path) in str(error.value)
    assert expected in str(error.value)


def test_missing_file_says_what_to_do(tmp_path) -> None:
    with pytest.raises(SliceConfigError, match=r"file not found; copy config/slices\.yaml"):
        load_slices(tmp_path / "nope.yaml")


def test_collector_refuses_bad_slices_with_exit_3(tmp_path) -> None:
    path = tmp_path / "slices.yaml"
    path.write_text("slices:\n  - name: bets\n    signal: traces\n")
    env = os.environ | {"CONTROLPLANE_STORE_URL": f"sqlite:///{tmp_path / 'store.db'}"}
    result = subprocess.run(
        [CONTROLPLANE, "collector", "serve", "--slices", str(path), "--port", "0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 3
    assert "slice 'bets'" in result.stderr and "Traceback" not in result.stderr
