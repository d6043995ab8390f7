"""Does a campaign round's MLflow logging cost less beside training or after it?

Times a fixed number of training steps of the network (batch of 4 windows of 180×240, the
fine-tuning's shape) alone, then the logging a campaign does for a round after its first (a
run, metrics, the model pickled and a new version registered) either in a thread beside the
same steps (as a flow that submits the logging task would) or one after the other. Each mode
runs in a fresh process that logged one round before the timing (MLflow imported, the store,
experiment and registered model made).

    .venv/bin/python benchmarks/mlflow_beside_training.py runs/bench/default/pretrained.pt \\
        --csv benchmarks/results/generated/mlflow_beside_training.csv
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

PROBE = r"""
import json, os, sys, tempfile, threading, time
import hvsa  # analytics and telemetry off
import torch
from hvsa.method.network import load_checkpoint

torch.set_num_threads(int(sys.argv[3]))
model, _, _ = load_checkpoint(sys.argv[1], torch.device("cpu"))
x = torch.randn(4, 3, 180, 240)
opt = torch.optim.SGD(model.parameters(), lr=1e-4)


def train(steps=8):
    t = time.perf_counter()
    for _ in range(steps):
        logits, _ = model(x)
        loss = logits.float().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return time.perf_counter() - t


os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
import mlflow

store = tempfile.mkdtemp()
mlflow.set_tracking_uri(f"sqlite:///{store}/mlflow.db")
eid = mlflow.create_experiment("probe", artifact_location=f"file://{store}/mlruns")


def log():
    with mlflow.start_run(experiment_id=eid):
        mlflow.log_metrics({"miou": 0.5}, step=1)
        mlflow.pytorch.log_model(model, name="model", registered_model_name="probe",
                                 pip_requirements=["torch"], serialization_format="pickle")


train(2)  # warm-up
log()  # a campaign's first round creates the store, the experiment and the registered model
alone = train()
t0 = time.perf_counter()
if sys.argv[2] == "beside":
    thread = threading.Thread(target=log)
    thread.start()
    training = train()
    thread.join()
else:
    log()
    training = train()
total = time.perf_counter() - t0
print(json.dumps({"mode": sys.argv[2], "train_alone_s": alone, "train_s": training,
                  "train_and_log_s": total}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path, help="a checkpoint (the benchmark's starting network)")
    ap.add_argument("--csv", required=True, type=Path)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2, help="torch threads (the machine's cores)")
    args = ap.parse_args()
    rows = []
    for repeat in range(args.repeats):
        for mode in ("after", "beside"):
            out = subprocess.run(
                [sys.executable, "-c", PROBE, str(args.model), mode, str(args.threads)],
                capture_output=True, text=True, check=True,
            ).stdout  # fmt: skip
            row = json.loads(out.strip().splitlines()[-1]) | {"repeat": repeat}
            rows.append(row)
            print(row, flush=True)
    table = pd.DataFrame(rows).round(3)
    args.csv.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.csv, index=False)
    print(table.groupby("mode")[["train_alone_s", "train_s", "train_and_log_s"]].median())


if __name__ == "__main__":
    main()
