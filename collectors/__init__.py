"""Collectors: receive the platform's OTLP traces and metrics and scrape its Prometheus metrics into per-slice SLIs."""
