"""Kept traces: whole traces of a slice's bad and slowest events (and of readiness probes), with the log
lines written inside them, kept by the collector under a size bound and a retention, and read back
as a span tree with links (`controlplane trace show`, the dashboard's trace view)."""
