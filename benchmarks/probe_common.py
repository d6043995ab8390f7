"""What the diagnosis scripts beside this file share: their command line, a finished round of a
run loaded as the loop holds it, the network's own score, and the output table.

Each script reads a finished run folder (``round_NN`` inside) on the video it ran on: an
``hvsa run`` output (its flow cache inside it) or a benchmark strategy's (the flow cache two
levels up); only what they do with it differs.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from hvsa.config import Config, load_config, parse_set_option
from hvsa.data.scaling import upsample_argmax
from hvsa.data.video import VOID, Video, load_video
from hvsa.method.metrics import miou
from hvsa.method.motion import Flow, load_or_compute_flow
from hvsa.method.network import SegmentationNet, load_checkpoint
from hvsa.method.predict import predict
from hvsa.method.samples import build_samples
from hvsa.rounds.state import LoopState
from hvsa.rounds.steps import VideoContext

CPU = torch.device("cpu")


def parse(doc: str, add: Callable[[argparse.ArgumentParser], None]) -> argparse.Namespace:
    """``VIDEO RUN [--set k=v]... --csv FILE`` plus the script's own options (``add``)."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("video")
    ap.add_argument("run", type=Path,
                    help="a finished run folder (round_NN inside): hvsa run's or a strategy's")
    add(ap)
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--csv", type=Path, required=True)
    return ap.parse_args()


def labelled_video(path: str, sets: list[str]) -> tuple[Config, Video]:
    """The settings (params.yaml with ``--set`` ``sets``) and the video at ``path``; refused in
    one line when it has no ground truth, which every diagnosis scores against."""
    cfg = load_config(None, parse_set_option(sets))
    video = load_video(path, cfg.data.classes_file, cfg.data.void_id)
    if video.labels is None:
        raise SystemExit(f"{path} has no labels/: the diagnosis needs ground truth")
    return cfg, video


def open_run(args: argparse.Namespace) -> tuple[Config, Video, Flow]:
    """The settings, the video (with its ground truth) and the run's cached flow."""
    cfg, video = labelled_video(args.video, args.set)
    own = args.run / "cache"  # an `hvsa run` folder; a benchmark's shares its video's cache
    cache = own if own.is_dir() else args.run.parents[1] / "cache"
    flow = load_or_compute_flow(video.frames, cfg.flow, cache)
    return cfg, video, flow


def open_round(
    run: Path, r: int, cfg: Config, video: Video, flow: Flow
) -> tuple[SegmentationNet, VideoContext, LoopState]:
    """Round ``r``'s fine-tuned network, the video as a round sees it, and its human labels."""
    folder = run / f"round_{r:02d}"
    model, classes, _ = load_checkpoint(folder / "model.pt", CPU)
    samples = build_samples(video.frames, cfg.samples, "frame")  # only the context needs them
    ctx = VideoContext.build(video, classes, cfg, flow, samples)
    return model, ctx, LoopState.load(folder / "human.npz")


def unlabelled(state: LoopState) -> np.ndarray:
    """(N,) bool: frames that hold no human label."""
    return ~(state.human != VOID).reshape(len(state.human), -1).any(1)


def labelled_in_full(state: LoopState, whole_frame: float) -> np.ndarray:
    """(N,) bool: frames whose human labels cover at least ``whole_frame`` of them
    (``annotation.whole_frame``; the ground truth itself leaves 0.4–2 % void)."""
    return (state.human != VOID).reshape(len(state.human), -1).mean(1) >= whole_frame


def round_label_files(run: Path, r: int) -> list[Path]:
    """The labels round ``r`` of a run wrote, one PNG per frame, in frame order."""
    return sorted((run / f"round_{r:02d}" / "labels").glob("*.png"))


def network_miou(model: SegmentationNet, ctx: VideoContext, state: LoopState, cfg: Config) -> float:
    """The network alone (upsampled argmax) scored on the frames nobody labelled."""
    probs = predict(model, ctx.frames_t, cfg.output.batch_size, CPU).probs
    free = unlabelled(state)
    net = upsample_argmax(probs, ctx.full)
    assert ctx.video.labels is not None
    return miou(ctx.video.labels[free], net[free], len(ctx.classes))[0]


def iou(guess: np.ndarray, truth: np.ndarray) -> float:
    """IoU of two boolean masks (any shape); 0 where both are empty."""
    return float((guess & truth).sum() / max((guess | truth).sum(), 1))


def save_table(rows: list[dict], csv: Path, float_format: str | None = None) -> pd.DataFrame:
    table = pd.DataFrame(rows)
    csv.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(csv, index=False, float_format=float_format)
    return table
