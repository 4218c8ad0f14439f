"""Fixtures for the collectors: a store (SQLite and PostgreSQL) and a running OTLP receiver."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from sqlalchemy import Engine

from collectors.receiver import create_receiver
from controlplane.settings import Settings
from controlplane.slices import load_slices
from sample_platform.server import ThreadedServer
from tests.conftest import SLICES_PATH as SLICES


@pytest.fixture
def start_receiver(store_settings: Settings, store: Engine) -> Iterator:
    """`start_receiver(slices_path=None, **settings)`: a receiver on a free port, stopped after the test."""
    stack = ExitStack()

    def start(slices_path: Path = SLICES, **overrides: object) -> ThreadedServer:
        settings = store_settings.model_copy(update=overrides)
        app = create_receiver(settings, engine=store, slices=load_slices(slices_path))
        return stack.enter_context(ThreadedServer(app))

    with stack:
        yield start


@pytest.fixture
def receiver(start_receiver) -> ThreadedServer:  # type: ignore[no-untyped-def]
    return start_receiver()
