"""The scheduler: one process per store running the control plane's periodic work with APScheduler
(SLO snapshots and alert transitions, alert delivery, signed checkpoints, pre-event checklist runs,
rollups, retention), with a leader lock so that a second one refuses to start."""
