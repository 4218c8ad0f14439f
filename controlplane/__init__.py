"""Control plane for betting platforms: SLOs, readiness checklists, unit cost, scheduling and the CLI."""

__version__ = "0.1.0"
