"""How good can a carried label be? One labelled frame, carried d frames along the flow.

Why: hvsa's labels for an unlabelled frame come mostly from human labels carried along the
optical flow (``hvsa.method.fusion``). If even a label carried one frame scores well below
the target, no selection of whole frames can reach the target with few of them; the remaining
clicks must go where carrying fails (thin classes). This script measures that ceiling on a video
with ground truth: the ground truth of frame t, carried to t + d (d = 1, 3, 6) by the fusion's own
vote (``carried_votes``, one direction only) and refined as ``fuse_frame`` does, pooled over
many t; for several DIS settings (is the flow at fault?) and guided-filter radii.

    .venv/bin/python benchmarks/carry_ceiling.py ../shared/datasets/camvid/clips/0016E5_15hz \
        benchmarks/results/0016E5_15hz/carry_ceiling.csv

Writes one row per (flow variant, guided radius, d): pooled mIoU and per-class IoU.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from hvsa.config import load_config
from hvsa.data.video import VOID, load_video
from hvsa.method.fusion import carried_votes, fuse_frame
from hvsa.method.motion import DIS_PRESETS, Flow

# DIS settings tried: does a finer flow carry thin objects better?
FLOWS = {
    "medium": {},
    "medium-2x-upsampled": {"up": 2},
    "medium-patch6-stride2": {"patch": 6, "stride": 2},
    "medium-no-variational": {"vr": 0},
}
DISTANCES = (1, 3, 6)
RADII = (0, 1, 2)


def dis_pair(a: np.ndarray, b: np.ndarray, up: int = 1, patch=None, stride=None, vr=None):
    """Forward and backward DIS flow of two RGB frames at full resolution."""
    dis = cv2.DISOpticalFlow_create(DIS_PRESETS["medium"])
    dis.setFinestScale(0)
    if patch:
        dis.setPatchSize(patch)
    if stride:
        dis.setPatchStride(stride)
    if vr is not None:
        dis.setVariationalRefinementIterations(vr)
    ga, gb = (cv2.cvtColor(x, cv2.COLOR_RGB2GRAY) for x in (a, b))
    if up > 1:
        big = {"fx": up, "fy": up, "interpolation": cv2.INTER_CUBIC}
        ga, gb = (cv2.resize(x, None, **big) for x in (ga, gb))
    f, g = dis.calc(ga, gb, None), dis.calc(gb, ga, None)
    if up > 1:
        size = a.shape[1], a.shape[0]
        f, g = (cv2.resize(x, size, interpolation=cv2.INTER_AREA) / up for x in (f, g))
    return f.astype(np.float32), g.astype(np.float32)


def confusion(pred: np.ndarray, truth: np.ndarray, num: int) -> np.ndarray:
    ok = truth != VOID
    idx = truth[ok].astype(np.int64) * num + pred[ok]
    return np.bincount(idx, minlength=num * num).reshape(num, num)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("video")
    ap.add_argument("out")
    ap.add_argument("--every", type=int, default=6, help="a start frame every this many frames")
    ap.add_argument("--flows", nargs="+", choices=list(FLOWS), default=list(FLOWS))
    ap.add_argument("--distances", nargs="+", type=int, default=list(DISTANCES))
    ap.add_argument("--radii", nargs="+", type=int, default=list(RADII))
    args = ap.parse_args()
    cfg = load_config(Path(__file__).resolve().parents[1] / "params.yaml")
    video = load_video(args.video, cfg.data.classes_file, cfg.data.void_id)
    assert video.labels is not None, "needs ground truth"
    gt, num = video.labels, len(video.classes)
    rows = []
    for name in tqdm(args.flows, desc="flow variants"):
        kw = FLOWS[name]
        flows = [dis_pair(video.frames[t], video.frames[t + 1], **kw) for t in range(len(gt) - 1)]
        fw, bw = (np.stack(x) for x in zip(*flows, strict=True))
        flow = Flow(fw, bw, np.ones(fw.shape[:3], bool), np.ones(fw.shape[:3], bool))
        for d in args.distances:
            cms = {r: np.zeros((num, num), np.int64) for r in args.radii}
            for t in range(0, len(gt) - d, args.every):
                human = np.full_like(gt, VOID)
                human[t] = gt[t]
                labelled = np.zeros(len(gt), bool)
                labelled[t] = True
                votes = carried_votes(human, labelled, flow, t + d, num, cfg.fusion, video.frames)
                uniform = torch.full((num, 8, 8), 1.0 / num)
                nothing = np.full(gt.shape[1:], VOID, np.uint8)
                for r in args.radii:
                    fcfg = cfg.fusion.model_copy(update={"guided_radius": r})
                    fused = fuse_frame(uniform, votes, video.frames[t + d], nothing, fcfg)
                    cms[r] += confusion(fused.argmax(0), gt[t + d], num)
            for r, cm in cms.items():
                inter = np.diag(cm)
                iou = inter / np.maximum(cm.sum(0) + cm.sum(1) - inter, 1)
                rows.append(
                    {"flow": name, "guided_radius": r, "distance": d, "miou": iou.mean()}
                    | {f"iou_{c}": v for c, v in zip(video.classes.names, iou, strict=True)}
                )
    table = pd.DataFrame(rows)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False, float_format="%.4f")
    cols = ["flow", "guided_radius", "distance", "miou", "iou_pole"]
    print(table[cols].to_string(index=False))


if __name__ == "__main__":
    main()
