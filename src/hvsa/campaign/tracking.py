"""MLflow per campaign round: one parent run per (campaign, video), one nested run per round.

Each round's run holds its params, metrics (mIoU where there is truth, clicks this round and in
all, labelled share, wall time), the selected samples as a table, the clicks-vs-mIoU plot, a few
overlays and the model, registered with the alias ``current`` moved to the newest round. It
records the git commit and the hash of the video's dvc.lock it came from, so any number traces
to its files.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import pandas as pd

from hvsa.campaign.versioning import git
from hvsa.campaign.workspace import LOCK_FILE, Workspace, lock_entries
from hvsa.rounds.chart import plot_clicks_vs_miou
from hvsa.rounds.result import RoundResult

ALIAS = "current"
OVERLAYS_LOGGED = 3


def tracking_uri(ws: Workspace) -> str:
    """The workspace's MLflow: ``campaign.tracking`` (a tracking server's URL), or the SQLite
    file ``mlflow.db`` in the workspace."""
    return ws.cfg.campaign.tracking or local_uri(ws.root)


def local_uri(root: Path) -> str:
    return f"sqlite:///{(root / 'mlflow.db').resolve()}"


def has_tracking(ws: Workspace) -> bool:
    """Whether the workspace has logged to MLflow yet (a server is always there to ask)."""
    return bool(ws.cfg.campaign.tracking) or (ws.root / "mlflow.db").is_file()


def model_name(campaign: str, video: str) -> str:
    return f"{campaign}-{video}"


def ensure_store(root: Path) -> None:
    """Create ``mlflow.db`` whole or not at all: MLflow builds its schema in some forty
    migrations, and a process killed among them (a campaign flow killed while it logs its
    first round) leaves a database no later process can open ("table … already exists"). So it
    is built under another name and renamed into place when complete."""
    db = root / "mlflow.db"
    if db.is_file():
        return
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    tmp = root / "mlflow.db.creating"
    for leftover in (tmp, tmp.with_name(tmp.name + "-journal")):
        leftover.unlink(missing_ok=True)
    store = SqlAlchemyStore(f"sqlite:///{tmp.resolve()}", (root / "mlruns").resolve().as_uri())
    store.engine.dispose()
    tmp.replace(db)


def _mlflow(ws: Workspace):
    import mlflow

    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
    if not ws.cfg.campaign.tracking:
        ensure_store(ws.root)
    mlflow.set_tracking_uri(tracking_uri(ws))
    return mlflow


def _experiment(mlflow, ws: Workspace, name: str) -> str:
    """The campaign's experiment; its artifacts in the workspace's mlruns/ when MLflow is the
    local file, else where the server keeps them (``--serve-artifacts``)."""
    found = mlflow.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    where = None if ws.cfg.campaign.tracking else (ws.root / "mlruns").resolve().as_uri()
    return mlflow.create_experiment(name, artifact_location=where)


def _parent_run(mlflow, experiment_id: str, video: str) -> str:
    runs = mlflow.search_runs(
        [experiment_id],
        filter_string=f"tags.`hvsa.video` = '{video}' and tags.`hvsa.level` = 'video'",
        output_format="list",
    )
    if runs:
        return runs[0].info.run_id
    with mlflow.start_run(experiment_id=experiment_id, run_name=video) as run:
        mlflow.set_tags({"hvsa.video": video, "hvsa.level": "video"})
        return run.info.run_id


def model_md5(
    ws: Workspace, key: str, round_no: int | None = None, lock: str | None = None
) -> str | None:
    """The DVC hash of the video's checkpoint of ``round_no`` (default: its current round), as
    ``lock`` (the text of the video's dvc.lock; default: as it is now) records it.

    Model versions carry it, so a rollback finds the version of exactly the restored model.
    """
    entries = lock_entries(ws.video_dir(key) / LOCK_FILE, lock)
    round_no = ws.video(key).round if round_no is None else round_no
    wanted = f"data/{key}/r{round_no}/model.pt"
    for out in entries.get("finetune", {}).get("outs", []):
        if out["path"] == wanted:
            return out["md5"]
    return None


def history_of(ws: Workspace, key: str, last: int) -> list[RoundResult]:
    """The video's rounds up to ``last``, read back from their metrics.json."""
    results = []
    for r in range(1, last + 1):
        path = ws.round_dir(key, r) / "metrics.json"
        if path.is_file():
            m = json.loads(path.read_text())
            results.append(RoundResult(
                m["round"], m["clicks"], m["clicks_total"], m["samples"],
                m["labelled_fraction"], m["miou"], m["per_class"], m.get("seconds", 0.0),
            ))  # fmt: skip
    return results


def log_round(ws: Workspace, key: str, round_no: int, commit: str, seconds: float) -> str:
    """Log round ``round_no`` of a video, committed as ``commit``, as a nested run; returns the
    run id. Everything comes from that round's folder and that commit, so the flow may log a
    round while the next one runs."""
    import torch

    mlflow = _mlflow(ws)
    from mlflow import MlflowClient

    from hvsa.method.network import load_checkpoint

    folder = ws.round_dir(key, round_no)
    metrics = json.loads((folder / "metrics.json").read_text())
    lock = git(ws.root, "show", f"{commit}:data/{key}/{LOCK_FILE}")
    lock_hash = hashlib.sha256(lock.encode()).hexdigest()
    experiment_id = _experiment(mlflow, ws, ws.campaign.name)
    parent = _parent_run(mlflow, experiment_id, key)
    with (
        mlflow.start_run(run_id=parent),
        mlflow.start_run(
            experiment_id=experiment_id, run_name=f"{key} round {round_no}", nested=True
        ) as run,
    ):
        mlflow.set_tags({
            "hvsa.video": key, "hvsa.level": "round", "hvsa.round": str(round_no),
            "git.commit": commit, "dvc.lock.sha256": lock_hash,
        })  # fmt: skip
        cfg = ws.cfg
        mlflow.log_params({
            "granularity": cfg.samples.granularity, "budget": cfg.loop.budget,
            "selector": cfg.selection.strategy, "uncertainty": cfg.uncertainty.measure,
            "finetune_steps": cfg.finetune.steps, "temporal_weight": cfg.finetune.temporal_weight,
            "lr": cfg.finetune.lr, "scale": cfg.model.scale, "round": round_no,
        })  # fmt: skip
        values = {
            "clicks_round": metrics["clicks"],
            "clicks_total": metrics["clicks_total"],
            "labelled_fraction": metrics["labelled_fraction"],
            "round_seconds": seconds,
        }
        if metrics.get("miou_estimate") is not None:
            values["miou_estimate"] = metrics["miou_estimate"]
        if metrics.get("miou_interval"):
            values["miou_low"], values["miou_high"] = metrics["miou_interval"]
        if metrics["miou"] is not None:
            values["miou"] = metrics["miou"]
            values |= {f"iou_{k}": v for k, v in metrics["per_class"].items() if v is not None}
        mlflow.log_metrics(values, step=round_no)
        selected = pd.read_parquet(folder / "selected.parquet")
        mlflow.log_table(selected, artifact_file="selected_samples.json")
        history = history_of(ws, key, round_no)
        if all(r.miou is not None for r in history):
            with tempfile.TemporaryDirectory() as tmp:  # not in the round folder: DVC owns it
                plot = Path(tmp) / "clicks_vs_miou.png"
                plot_clicks_vs_miou(history, None, plot, key)
                mlflow.log_artifact(str(plot))
        overlays = sorted((folder / "overlays").glob("*.jpg"))
        for image in overlays[:: max(1, len(overlays) // OVERLAYS_LOGGED)][:OVERLAYS_LOGGED]:
            mlflow.log_artifact(str(image), artifact_path="overlays")
        model, _, _ = load_checkpoint(folder / "model.pt", torch.device("cpu"))
        name = model_name(ws.campaign.name, key)
        info = mlflow.pytorch.log_model(
            model, name="model", registered_model_name=name,
            pip_requirements=["torch", "torchvision", "hvsa"], serialization_format="pickle",
        )  # fmt: skip
        MlflowClient().set_registered_model_alias(name, ALIAS, info.registered_model_version)
        client = MlflowClient()
        tags = {"hvsa.round": str(round_no), "git.commit": commit}
        tags["model.md5"] = model_md5(ws, key, round_no, lock) or ""
        for tag, value in tags.items():
            client.set_model_version_tag(name, info.registered_model_version, tag, value)
        return run.info.run_id
