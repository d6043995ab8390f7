"""How far a drawn class reaches: a run's labels and network on one class, by frame.

Why: a class layer fixes its class on its own frame; whether it also lifts the frames around it
(carried along the flow) or the network learns the class from it decides how many layers a
thin class needs. For round ``R`` of a finished ``hvsa run``, this script scores one class:

* the round's labels, pooled by each frame's distance to the nearest frame where a person gave
  that class (a layer of it, or a frame labelled in full);
* the round's network alone (its own prediction, argmax), on those frames and on the others,
  with its mean probability of the class on the class's true pixels.

    .venv/bin/python benchmarks/thin_class_probe.py ../shared/datasets/camvid/clips/0016E5_15hz \
        runs/fix_b15 --round 5 --cls pole --csv benchmarks/results/0016E5_15hz/thin_class_probe.csv
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
from probe_common import iou, round_label_files, save_table

from hvsa.config import load_config
from hvsa.data.scaling import frames_to_tensor
from hvsa.data.video import load_video
from hvsa.method.network import load_checkpoint
from hvsa.method.predict import predict


def given_frames(run: Path, last: int, cls: int) -> set[int]:
    """Frames where a person gave ``cls`` by round ``last``: its layer, or the whole frame."""
    out: set[int] = set()
    for r in range(1, last + 1):
        sel = pd.read_parquet(run / f"round_{r:02d}" / "selected.parquet")
        kind = sel["kind"] if "kind" in sel else pd.Series(["frame"] * len(sel))
        layer = sel["class_id"] if "class_id" in sel else pd.Series([-1] * len(sel))
        for f, k, c in zip(sel["frame"], kind, layer, strict=True):
            if k == "frame" or (k == "layer" and c == cls):
                out.add(int(f))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("video")
    ap.add_argument("run")
    ap.add_argument("--round", type=int, required=True)
    ap.add_argument("--cls", required=True, help="class name")
    ap.add_argument("--csv", required=True)
    args = ap.parse_args()
    cfg = load_config(Path(__file__).resolve().parents[1] / "params.yaml")
    video = load_video(args.video, cfg.data.classes_file, cfg.data.void_id)
    run, here = Path(args.run), Path(args.run) / f"round_{args.round:02d}"
    cls = video.classes.names.index(args.cls)
    truth = np.stack([video.labels[f] == cls for f in range(len(video.labels))])
    labels = np.stack([cv2.imread(str(p), cv2.IMREAD_UNCHANGED) == cls
                       for p in round_label_files(run, args.round)])  # fmt: skip
    given = sorted(given_frames(run, args.round, cls))
    distance = np.array([min(abs(f - g) for g in given) for f in range(len(truth))])
    model, _, _ = load_checkpoint(here / "model.pt", torch.device("cpu"))
    frames = frames_to_tensor(video.frames, truth.shape[1:])
    probs = predict(model, frames, cfg.output.batch_size, torch.device("cpu")).probs.float()
    network = (probs.argmax(1) == cls).numpy()
    rows = []
    for d in np.unique(distance):
        on = distance == d
        rows.append({"what": "labels", "distance": int(d), "frames": int(on.sum()),
                     "iou": iou(labels[on], truth[on])})  # fmt: skip
    on = distance > 0
    rows.append({"what": "labels, not given", "frames": int(on.sum()),
                 "iou": iou(labels[on], truth[on])})  # fmt: skip
    for name, on in (("network, class given", distance == 0), ("network, not given", distance > 0)):
        rows.append({"what": name, "frames": int(on.sum()), "iou": iou(network[on], truth[on]),
                     "predicted_pixels": int(network[on].sum()),
                     "true_pixels": int(truth[on].sum()),
                     "mean_probability_on_truth":
                         float(probs[torch.from_numpy(on), cls][torch.from_numpy(truth[on])]
                               .mean())})  # fmt: skip
    table = save_table(rows, Path(args.csv), float_format="%.4f")
    print(table.to_string(index=False, float_format="%.3f"))


if __name__ == "__main__":
    main()
