"""Readiness checklists: a dated go/no-go before an event, over live signals, recorded in the audit log.

Usage:

    checklist = load_checklist(settings.checklist_path, slo_names={s.name for s in slos})
    run = save_run(settings, store, run_checklist(checklist, ctx))
    run.decision, run.exit_code      # "go" 0 | "go-with-warnings" 1 | "no-go" 2

Modules: `spec` (the YAML file), `results` (statuses, decision, JSON/table/JUnit), `runner`
(concurrency, timeouts, waivers), `records` (store and audit log: runs, attestations, waivers), and
one module per family of evaluators: `gates` (error budget), `probes` (the platform, live),
`signals` (scraped metrics), `facts` (configuration), `evidence` (drills, attestations).
"""
