"""Campaigns: many videos in a versioned workspace — git + DVC stages, Prefect flows, MLflow.

Owns the workspace (``campaign.yaml``, ``params.yaml``, the packaged ``dvc.yaml`` of per-video
stages), its lifecycle (create, advance a round, commit and tag it, add videos), the DVC stage
entry points (``stages/``, thin file I/O around ``hvsa.rounds.steps``), the Prefect flow that
drives rounds and waits for human labels (``flow``), MLflow tracking per round, and rollback.

May import: hvsa.errors, hvsa.config, hvsa.data, hvsa.method, hvsa.annotation, hvsa.rounds
"""
