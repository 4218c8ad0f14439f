"""Incidents: opened by page alerts (or declared), closed when the SLI has recovered and every alert has
resolved, with their key figures (time to detect and to mitigate, user-impact minutes, bad events,
budget spent) and the changes around them, all computed from stored data and proved by the audit log.

- `kpis.py`: the figures, pure functions of the SLI per minute and the alerts;
- `build.py`: a record computed from the store and the audit log;
- `record.py`: the record's typed form and its JSON;
- `tracker.py`: opening, closing, declaring; the scheduler's `incidents` job;
- `render.py`: the list, one incident, the post-incident review (Markdown), the monthly report;
- `tables.py`: the `incidents` table.
"""
