"""The error budget policy: from each SLO's budget and burn rate to a state per slice, `ship`,
`caution` (changes need a second approver) or `freeze` (only emergency changes), with the reason in
words (`spec.py`, `evaluate.py`); recorded when it changes, in the store and the audit log
(`recorder.py`, `tables.py`).
"""
