"""The collector process: the OTLP receiver plus, in the background, the Prometheus scraper.

Usage:

    app = create_collector_app(settings, engine=store_engine, slices=load_slices(path))
    uvicorn.run(app, port=4318)
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import FastAPI
from sqlalchemy import Engine

from collectors.receiver import create_receiver
from collectors.scraper import Scraper
from collectors.slo_gauges import SloGauges
from controlplane.config import ControlPlaneConfig
from controlplane.settings import Settings
from controlplane.slices import SliceConfig


def _names(csv: str) -> list[str]:
    return [item.strip() for item in csv.split(",") if item.strip()]


def create_collector_app(
    settings: Settings,
    *,
    engine: Engine,
    slices: SliceConfig,
    config: ControlPlaneConfig | None = None,
) -> FastAPI:
    """The receiver, the scraper, and (given the SLO files) SLO gauges on /metrics."""
    gauges = None
    if config is not None:
        gauges = SloGauges(engine, config.specs, events=config.events, boundaries=config.boundaries)
    app = create_receiver(settings, engine=engine, slices=slices, extra_metrics=gauges.register_on if gauges else None)
    targets = _names(settings.scrape_targets)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        stop = threading.Event()
        worker = scraper = None
        if targets:
            # Scraped series are kept a week; SLI buckets are the long-term record.
            scraper = Scraper.from_settings(settings, engine=engine, retention=timedelta(days=7))
            worker = threading.Thread(
                target=scraper.run, args=(stop, settings.scrape_interval_seconds), name="scraper", daemon=True
            )
            worker.start()
        try:
            yield
        finally:
            stop.set()
            if worker is not None:
                worker.join(timeout=10)
            if scraper is not None:
                scraper.close()

    app.router.lifespan_context = lifespan
    return app
