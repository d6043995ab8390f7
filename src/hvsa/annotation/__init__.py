"""Annotation: who turns selected samples into labels, what it cost, and the record of it.

Owns the annotators (the simulated oracle; human labels handed in as submissions), the
append-only click ledger (SQLite, WAL) and the audit that answers "who labelled this pixel,
when, at what cost" from a run's provenance maps and the ledger.

May import: hvsa.errors, hvsa.config, hvsa.data, hvsa.method
"""
