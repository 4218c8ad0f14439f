"""The SLO engine: specs, evaluation, error budgets, burn-rate alerts, rollups and what reads them.

- `spec`: SLO and event files, validated (`load_slos`, `load_events`, `apply_slo_changes`).
- `engine`: one SLO from per-minute counts (`evaluate`), burn windows and alert rules, budget policy.
- `results`: what it reports, typed (`SloReport`, `SloStatus`), and its JSON.
- `periods`: minutes, hours and days, the one vocabulary of time the rest uses.
- `tables`, `rollups`: hour and day rollups of the SLI minutes, and keeping them current.
- `rolled`: evaluation through the rollups (`evaluate_all_from_rollups`), equal to the minute-level one.
- `curves`: error-budget curves for charts; `minutes`: the SLI by hour and the worst minutes.
- `rules`: Prometheus recording and alerting rules; `openslo`: OpenSLO import and export.
"""
