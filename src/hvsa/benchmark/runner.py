"""The click-efficiency benchmark: clicks each strategy needs for a label quality, on one video.

Every strategy labels the same video with the same oracle and the same click model, so their
clicks compare:

* ``manual`` — every frame annotated in full: 100 % of the clicks, exact labels;
* ``propagate-K`` — every K-th frame (and the last) annotated in full, the others by both-way
  flow propagation (``propagate.py``), one point per K;
* ``hvsa-<granularity>-<selector>`` — the annotation loop from the pretrained network, round by
  round, e.g. ``hvsa-rect32-paper`` or ``hvsa-frame-random``.

Each strategy yields rows (strategy, round, cumulative clicks, label mIoU, per-class IoU, round
wall time, peak memory); ``report`` turns them into the summary table and the plots.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from hvsa.annotation.annotator import make_annotator
from hvsa.benchmark.charts import grid_cells, grid_table, plot_grid
from hvsa.benchmark.report import (
    HVSA,
    clicks_to_targets,
    plot_miou_vs_clicks,
    plot_overlay_strip,
    summary_markdown,
)
from hvsa.benchmark.strategies import Strategy, headline, parse_strategy, strategy_grid
from hvsa.config import Config
from hvsa.data.images import read_image
from hvsa.data.resources import peak_memory_mb, reset_peak_memory
from hvsa.data.video import VOID, ClassList, Video, check_classes, load_video
from hvsa.errors import HvsaError
from hvsa.method.clicks import region_clicks
from hvsa.method.metrics import miou
from hvsa.method.motion import Flow, load_or_compute_flow
from hvsa.method.network import load_checkpoint, pick_device, save_checkpoint
from hvsa.method.pretrain import pretrain
from hvsa.method.propagate import every_kth, next_k, propagate, propagate_human
from hvsa.rounds.loop import AnnotationLoop
from hvsa.rounds.state import LoopState


def shrink(video: Video, frames: int, scale: float) -> Video:
    """The first ``frames`` frames at ``scale`` of the size: the quick mode's video."""
    if video.labels is None:
        raise HvsaError(f"the benchmark needs ground truth, and {video.path} has no labels/")
    h, w = (max(32, round(s * scale)) for s in video.size)
    n = min(frames, len(video))
    if n < 2:
        raise HvsaError(f"{video.path}: the benchmark needs at least 2 frames")
    small = np.stack(
        [cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in video.frames[:n]]
    )
    labels = np.stack(
        [cv2.resize(m, (w, h), interpolation=cv2.INTER_NEAREST) for m in video.labels[:n]]
    )
    return Video(video.path, small, video.frame_names[:n], labels, video.classes, video.void_id)


def manual_clicks_per_frame(video: Video, tolerance: float) -> np.ndarray:
    """Clicks to annotate each frame in full under the click model (the 100 % reference)."""
    assert video.labels is not None
    return np.array(
        [region_clicks(m, tolerance).total for m in tqdm(video.labels, desc="manual clicks")],
        np.int64,
    )


@dataclass
class Bench:
    """What every strategy shares: the video, its reference costs, flow cache, the network."""

    video: Video
    classes: ClassList
    cfg: Config
    model_path: Path
    out: Path
    frame_clicks: np.ndarray
    device: torch.device

    @property
    def manual_total(self) -> int:
        return int(self.frame_clicks.sum())

    def row(self, strategy: str, round_no: int, clicks: int, value: float, per_class: dict,
            seconds: float, memory: float | None) -> dict:  # fmt: skip
        return {
            "video": self.video.name,
            "strategy": strategy,
            "round": round_no,
            "clicks": int(clicks),
            "clicks_pct": 100 * clicks / self.manual_total,
            "miou": value,
            "seconds": round(seconds, 2),
            "peak_memory_mb": memory,
            **{f"iou_{k}": v for k, v in per_class.items()},
        }

    def flow(self) -> Flow:
        """The video's optical flow, from the benchmark's cache (computed once, by the first
        strategy that needs it)."""
        return load_or_compute_flow(self.video.frames, self.cfg.flow, self.out / "cache")

    def score(self, labels: np.ndarray) -> tuple[float, dict[str, float | None]]:
        assert self.video.labels is not None
        value, ious = miou(self.video.labels, labels, len(self.classes))
        names = self.classes.names
        per_class = {n: None if np.isnan(v) else float(v) for n, v in zip(names, ious, strict=True)}
        return value, per_class


def run_manual(bench: Bench, strategy: Strategy) -> list[dict]:
    assert bench.video.labels is not None
    value, per_class = bench.score(bench.video.labels)
    return [bench.row(strategy.name, 1, bench.manual_total, value, per_class, 0.0, None)]


def run_propagate(bench: Bench, strategy: Strategy) -> list[dict]:
    """Keyframes every K annotated in full, the rest by both-way flow propagation."""
    assert bench.video.labels is not None
    reset_peak_memory()
    started = time.perf_counter()
    flow = bench.flow()
    keys = every_kth(len(bench.video), strategy.k)
    labels = propagate(bench.video.labels, keys, flow)
    seconds = time.perf_counter() - started
    value, per_class = bench.score(labels)
    clicks = int(bench.frame_clicks[keys].sum())
    return [
        bench.row(strategy.name, 1, clicks, value, per_class, seconds, round(peak_memory_mb(), 1))
    ]


def hvsa_config(bench: Bench, strategy: Strategy) -> Config:
    """The run's config: granularity, selector and budget of the strategy, the benchmark's stops."""
    b, cfg = bench.cfg.benchmark, bench.cfg
    samples = {"granularity": strategy.granularity}
    if strategy.granularity == "rect":
        samples["rect_size"] = strategy.rect_size
    if strategy.granularity == "auto":
        budget = 1  # auto.budgets, per granularity
    elif strategy.budget:
        budget = strategy.budget
    elif strategy.samples not in b.budgets:
        raise HvsaError(f"benchmark.budgets has no entry for {strategy.samples} ({strategy.name})")
    else:
        budget = b.budgets[strategy.samples]
    cap = max(1, int(bench.manual_total * b.max_clicks_pct / 100))
    return cfg.model_copy(
        update={
            "samples": cfg.samples.model_copy(update=samples),
            "selection": cfg.selection.model_copy(update={"strategy": strategy.selector}),
            "layers": cfg.layers.model_copy(update={"enabled": strategy.layers}),
            "annotation": cfg.annotation.model_copy(update={"annotator": strategy.annotator}),
            "loop": cfg.loop.model_copy(
                update={
                    "budget": budget,
                    # no round limit of its own: the highest target or the click cap stops it
                    "rounds": b.rounds or cap,
                    "target_miou": max(b.targets),
                    "max_clicks": cap,
                }
            ),
        }
    )


def run_hvsa(bench: Bench, strategy: Strategy) -> list[dict]:
    """The annotation loop from the pretrained network, round by round, with the oracle (or,
    for ``-fix``, the corrector)."""
    cfg = hvsa_config(bench, strategy)
    model, _, _ = load_checkpoint(bench.model_path, bench.device)
    annotator = make_annotator(cfg.annotation)
    folder = bench.out / "runs" / strategy.name
    folder.mkdir(parents=True, exist_ok=True)
    loop = AnnotationLoop(
        bench.video, model, bench.classes, cfg, annotator, folder, bench.device,
        campaign=f"benchmark/{strategy.name}", cache=bench.out / "cache",
    )  # fmt: skip
    results = loop.run()
    rows = [
        bench.row(
            strategy.name, r.round, r.clicks_total, r.miou, r.per_class, r.seconds, r.peak_memory_mb
        )  # fmt: skip
        # each step's seconds (select, finetune, labels, …): where a slow round spends its time
        | {f"seconds_{step}": round(value, 2) for step, value in r.timings.items()}
        for r in results
    ]
    same = same_labels_propagation(bench, [folder / f"round_{r.round:02d}" for r in results])
    for row, value in zip(rows, same, strict=True):
        row["propagate_same"] = value
    return rows


def same_labels_propagation(bench: Bench, rounds: list[Path]) -> list[float | None]:
    """Per round folder, the mIoU of plain propagation of exactly the human labels the round
    holds (``propagate.propagate_human``): the label generator should never be below it.
    None where nothing was labelled yet."""
    flow = bench.flow()
    out: list[float | None] = []
    for folder in tqdm(rounds, desc="propagate the same labels", leave=False):
        state = LoopState.load(folder / "human.npz")
        if not (state.human != VOID).any() and not (state.layers != VOID).any():
            out.append(None)
            continue
        labels = propagate_human(state.human, state.annotated, flow, state.layers)
        out.append(bench.score(labels)[0])
    return out


RUNNERS = {"manual": run_manual, "propagate": run_propagate, "hvsa": run_hvsa}


def run_strategies(bench: Bench, strategies: list[Strategy], csv: Path) -> pd.DataFrame:
    """Run each strategy, appending its rows to ``csv`` as soon as it finishes.

    A long grid that is stopped keeps every finished strategy; a strategy already in ``csv``
    is not run again (delete its rows, or the file, to redo it).
    """
    done = pd.read_csv(csv) if csv.is_file() else pd.DataFrame()
    finished = set(done["strategy"]) if len(done) else set()
    for strategy in tqdm(strategies, desc="strategies", unit="strategy"):
        if strategy.name in finished:
            continue
        rows = pd.DataFrame(RUNNERS[strategy.kind](bench, strategy))
        done = pd.concat([done, rows], ignore_index=True) if len(done) else rows
        done.to_csv(csv, index=False)
    return done


def _sparser_baselines(
    bench: Bench, strategies: list[Strategy], rows: pd.DataFrame, lowest: float
) -> tuple[list[Strategy], pd.DataFrame]:
    """propagate-K beyond the sparsest one asked for, while that still reaches the lowest
    target: the best baseline at each target is then the largest K that reaches it, never one
    missing from the grid. Runs them; returns them and every row of ``rounds.csv``."""
    ks = sorted(s.k for s in strategies if s.kind == "propagate")
    added: list[Strategy] = []
    if not ks:
        return added, rows
    k, n = ks[-1], len(bench.video)
    while k < n - 1:
        reached = rows.loc[rows["strategy"] == f"propagate-{k}", "miou"]
        if reached.empty or reached.max() < lowest - 1e-12:
            break
        k = min(next_k(k), n - 1)
        added.append(parse_strategy(f"propagate-{k}"))
        rows = run_strategies(bench, [*strategies, *added], bench.out / "rounds.csv")
    return added, rows


def _frame_clicks(video: Video, tolerance: float, out: Path) -> np.ndarray:
    path = out / "manual_clicks.csv"
    if path.is_file():
        table = pd.read_csv(path)
        if table["frame"].tolist() == video.frame_names:
            return table["clicks"].to_numpy(np.int64)
    clicks = manual_clicks_per_frame(video, tolerance)
    pd.DataFrame({"frame": video.frame_names, "clicks": clicks}).to_csv(path, index=False)
    return clicks


def _starting_network(
    cfg: Config, pretrain_paths: list[str], model: str | None, out: Path, quick: bool
) -> Path:
    """The given checkpoint, or one pretrained on ``pretrain_paths`` (kept in OUT for reuse)."""
    if model is not None:
        if not Path(model).is_file():
            raise HvsaError(f"checkpoint not found: {model}")
        return Path(model)
    if not pretrain_paths:
        raise HvsaError("give --pretrain VIDEO... (never the target video) or --model CHECKPOINT")
    path = out / "pretrained.pt"
    if path.is_file():
        print(f"reusing {path} (delete it to pretrain again)")
        return path
    b = cfg.benchmark
    videos = [load_video(p, cfg.data.classes_file, cfg.data.void_id) for p in pretrain_paths]
    if quick:
        videos = [shrink(v, b.quick.frames, b.quick.scale) for v in videos]
    steps = b.quick.pretrain_steps if quick else b.pretrain_steps
    net, classes, losses = pretrain(videos, cfg, steps)
    save_checkpoint(path, net, classes, {"pretrained_on": pretrain_paths, "final_loss": losses[-1]})
    return path


def _strip(bench: Bench, rows: pd.DataFrame) -> None:
    """Overlays of a few frames: ground truth, the best hvsa run and the nearest propagate-K."""
    assert bench.video.labels is not None
    n, b = len(bench.video), bench.cfg.benchmark
    indices = sorted({int(i) for i in np.linspace(0, n - 1, min(b.overlay_frames, n) + 2)[1:-1]})
    panels = {"ground truth": bench.video.labels}
    hv = rows[rows["strategy"].str.startswith(HVSA)]
    if len(hv):
        best = hv.loc[hv["miou"].idxmax()]
        folder = bench.out / "runs" / best["strategy"] / f"round_{int(best['round']):02d}"
        labels = np.stack(
            [
                read_image(folder / "labels" / f"{bench.video.frame_names[t]}.png", 0)
                if t in indices else np.zeros(bench.video.size, np.uint8)
                for t in range(n)
            ]
        )  # fmt: skip
        panels[f"{best['strategy']} ({best['clicks_pct']:.1f} % clicks)"] = labels
        prop = rows[rows["strategy"].str.startswith("propagate-")]
        if len(prop):
            near = prop.loc[(prop["clicks_pct"] - best["clicks_pct"]).abs().idxmin()]
            flow = bench.flow()
            keys = every_kth(n, parse_strategy(near["strategy"]).k)
            name = f"{near['strategy']} ({near['clicks_pct']:.1f} % clicks)"
            panels[name] = propagate(bench.video.labels, keys, flow)
    plot_overlay_strip(
        bench.video.frames, panels, bench.classes.palette(), indices,
        bench.out / "overlays.png", bench.cfg.output.overlay_alpha,
    )  # fmt: skip


def benchmark(
    video_path: str,
    out: Path,
    cfg: Config,
    pretrain_paths: list[str],
    model: str | None = None,
    names: list[str] | None = None,
    quick: bool = False,
    grid: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run the strategies on one video; write rounds.csv, summary.csv/.md and the plots.

    Returns (rows, summary). ``names`` picks strategies; by default the quick list (``quick``),
    the full grid (``grid``) or the headline: the baselines and ``benchmark.strategies``.
    """
    b = cfg.benchmark
    if quick:
        names = names or b.quick.strategies
    if names:
        strategies = [parse_strategy(n) for n in names]
    else:
        strategies = strategy_grid(b) if grid else headline(b)
    video = load_video(video_path, cfg.data.classes_file, cfg.data.void_id, cfg.data.in_memory_mb)
    if video.labels is None:
        raise HvsaError(f"the benchmark needs ground truth, and {video_path} has no labels/")
    if quick:
        video = shrink(video, b.quick.frames, b.quick.scale)
        cfg = cfg.model_copy(
            update={
                "benchmark": b.model_copy(
                    update={"budgets": b.quick.budgets, "rounds": b.quick.rounds}
                ),
                "finetune": cfg.finetune.model_copy(update={"steps": b.quick.finetune_steps}),
                "auto": cfg.auto.model_copy(update={"budgets": b.quick.budgets}),
            }
        )
    out.mkdir(parents=True, exist_ok=True)
    model_path = _starting_network(cfg, pretrain_paths, model, out, quick)
    device = pick_device(cfg.model.device)
    _, classes, _ = load_checkpoint(model_path, torch.device("cpu"))
    check_classes(video, classes)
    clicks = _frame_clicks(video, cfg.annotation.polygon_tolerance, out)
    bench = Bench(video, classes, cfg, model_path, out, clicks, device)
    rows = run_strategies(bench, strategies, out / "rounds.csv")
    added, rows = _sparser_baselines(bench, strategies, rows, min(b.targets))
    strategies += added
    rows = rows[rows["strategy"].isin([s.name for s in strategies])]
    summary = clicks_to_targets(rows, b.targets)
    summary.to_csv(out / "summary.csv", index=False)
    (out / "summary.md").write_text(summary_markdown(summary, rows, b.goal_share))
    title = f"{video.name}: label mIoU against clicks ({len(video)} frames)"
    plot_miou_vs_clicks(rows, b.targets, out / "miou_vs_clicks.png", title)
    cells = grid_cells(rows, b.targets)
    if not cells.empty:
        grid_title = (
            f"{video.name}: clicks (% of manual) to each mIoU target, per granularity and selector"
        )
        plot_grid(grid_table(cells, b.targets), out / "grid.png", grid_title)
    else:  # an earlier call's chart would not match this call's summary
        (out / "grid.png").unlink(missing_ok=True)
    _strip(bench, rows)
    return rows, summary
