"""The round engine: what one round does, in four calls, for every driver.

A round is **select** (which samples, or class layers, of which kind — ``auto`` chooses),
**annotate** (ask the annotator, record in the ledger), **train** (fine-tune, unless the round
drew class layers, which teach the network nothing) and **label** (predict, calibrate the
fusion, fuse labels for every frame). Each call takes what the previous ones produced and
returns what the next need: the :class:`View` a round's labels were made from (the network's
prediction, the fused belief, the calibrated fusion settings), the :class:`Selection`, and the
``auto`` chooser's state. The in-process loop (``hvsa run``, ``hvsa benchmark``) keeps them in
memory; the DVC stages of a campaign write them to the round's folder (``fusion.json``,
``selected.parquet``, ``auto.json``; the prediction and belief to an unversioned store,
``hvsa.campaign.stages.inputs``) and the next stage reads them back, so nothing is computed
twice and both drivers run the same method.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from hvsa.annotation.annotator import Annotation, Annotator, Prefill, layer_id
from hvsa.annotation.ledger import Ledger
from hvsa.config import Config, FusionConfig
from hvsa.data.scaling import resize_labels
from hvsa.data.video import VOID, ClassList
from hvsa.method.auto import (
    LAYERS,
    AutoChooser,
    Offer,
    class_pixels,
    promise,
    region_class_pixels,
)
from hvsa.method.estimate import (
    VideoSummary,
    expected_confusion,
    frame_accuracy,
    reliability,
    summarise,
)
from hvsa.method.estimate import interval as estimate_interval
from hvsa.method.fusion import reach
from hvsa.method.metrics import expected_miou, iou_per_class, mean_iou
from hvsa.method.network import SegmentationNet
from hvsa.method.predict import MeanProbs, Prediction, mean_prediction, predict
from hvsa.method.uncertainty import pixel_uncertainty
from hvsa.rounds.result import RoundResult
from hvsa.rounds.rules import is_auto, sample_set_names
from hvsa.rounds.state import LoopState
from hvsa.rounds.steps import (
    Estimates,
    VideoContext,
    belief_labels,
    class_estimates,
    class_values,
    compose_labels,
    estimate_probes,
    estimated_class_iou,
    finetune_model,
    fusion_settings,
    layer_choice,
    layer_drawer,
    record_annotations,
    sample_clicks,
    score,
    select_layers,
    select_samples,
    unseen_votes,
    within_cap,
)

FUSION, AUTO = "fusion.json", "auto.json"


@dataclass
class View:
    """What a round's labels were made from, and what the next round selects by."""

    # the prediction the belief is fused from, softmax and features: the current network's
    # own unless the vote of two networks goes into the belief too (``fusion.vote_for: all``)
    pred: Prediction
    belief: Prediction  # the fused probabilities (with the network's features)
    fusion: FusionConfig  # the fusion settings, calibrated on the human labels so far
    # the probes' estimates of this view, and the labels they were taken on (probes_of)
    probed: tuple[tuple, Estimates | None] | None = None
    # (N,) bool: the frames fused anew for this view, the others kept from the view before
    # (``label_round``'s ``previous``); None = every frame
    fused: np.ndarray | None = None
    # where ``pred`` is a vote of two networks (``vote_for: all``): the current network's own
    # prediction (None: ``pred`` is the current network's own)
    own: Prediction | None = None
    # the earlier network's prediction that voted with the current one, in ``pred`` or in
    # ``label_vote`` (None: no vote of two networks)
    earlier: Prediction | None = None
    # the network's vote at the estimate's probes as if it had not seen them (frame → (C,h,w),
    # ``steps.unseen_votes``); None: its own vote (a view made without the network at hand)
    unseen: dict[int, torch.Tensor] | None = None
    # the vote of two networks the labels alone were made from (``fusion.vote_for: labels``;
    # ``pred`` and the belief are then the current network's own); None: the labels' vote is
    # ``pred``
    label_vote: Prediction | None = None

    @property
    def network(self) -> Prediction:
        """The current network's own prediction: the earlier one of the next vote."""
        return self.pred if self.own is None else self.own

    @property
    def vote(self) -> Prediction:
        """The network vote the labels were made from."""
        return self.pred if self.label_vote is None else self.label_vote


def network_vote(
    pred: Prediction, earlier: Prediction | None, cfg: Config, before: View | None = None
) -> Prediction:
    """The prediction the label generator takes the network's vote from.

    With ``fusion.vote_networks: 2``, the mean of the current network's prediction and the
    earlier network's (the latest that differs: a round of class layers keeps its network). Why:
    at 1 Hz the network decides most pixels, and one round's fine-tuning on two new frames swings
    single classes by +-10 points IoU on frames nobody labelled while the mean rises; the mean of
    two networks keeps the rise and halves the swing (benchmarks/RESULTS.md "Does fine-tuning
    make the network worse?"). ``before`` is the last round's view: when it was made from the
    same two predictions, its vote is reused (no new array; fusion can then stay incremental).
    :func:`split_vote` says what the vote is taken in.
    """
    if cfg.fusion.vote_networks < 2 or earlier is None or earlier is pred:
        return pred
    # in the labels alone fusion reads the mean frame by frame: made there, never stored whole;
    # in the belief too (vote_for: all) every step reads it, with tensor methods, so it is stored
    lazy = cfg.fusion.vote_for == "labels"
    same = before is not None and before.network is pred and before.earlier is earlier
    if same and isinstance(before.vote.probs, MeanProbs) == lazy:
        return before.vote
    return mean_prediction(pred, earlier, lazy=lazy)


def split_vote(
    own: Prediction, vote: Prediction, cfg: Config
) -> tuple[Prediction, Prediction | None]:
    """The network vote the belief is fused from, and the one the labels alone are fused from
    (None: the same). With ``fusion.vote_for: labels`` (the default) the vote of two networks
    writes the labels while the belief — what selection, ``auto``, class layers and the
    estimate read — stays the current network's. Why: the mean of two networks is flatter where
    they disagree, and with it in the belief ``auto`` on 0006R0 took rectangles from round 9
    where it had taken whole frames and fell 9 points behind by round 16; in the labels alone it
    only removes the swings a round's fine-tuning leaves (benchmarks/RESULTS.md "Does
    fine-tuning make the network worse?")."""
    if vote is own or cfg.fusion.vote_for == "all":
        if isinstance(vote.probs, MeanProbs):
            raise ValueError("a mean made frame by frame cannot be the belief's vote")
        return vote, None
    return own, vote


def earlier_network_round(round_no: int, trained: Callable[[int], bool]) -> int | None:
    """The round whose network is the one before round ``round_no``'s, for the vote of two
    networks: the round before the last round up to ``round_no`` that fine-tuned
    (``trained(r)``; a round of class layers keeps its network). None where no round did:
    round 0's network is the first."""
    r = round_no
    while r > 0 and not trained(r):
        r -= 1
    return r - 1 if r > 0 else None


def probes_of(
    ctx: VideoContext, view: View, state: LoopState, cfg: Config, least: int | None = None
) -> Estimates | None:
    """:func:`class_estimates` of ``view``, taken once per view, human labels and probes: a
    round measures its labels with them, and the next round's ``auto`` prices its offers with
    the same ones (hiding each probe and fusing it costs seconds a round). ``least``: fewer
    frames labelled in full will do (``steps.estimate_probes``; the round's measurement)."""
    probes = estimate_probes(state, cfg, least)
    if probes.size == 0:
        return None
    key = (id(state), state.clicks_total, int(state.annotated.sum()), len(state.complete),
           tuple(probes.tolist()))  # fmt: skip
    if view.probed is None or view.probed[0] != key:
        estimates = class_estimates(ctx, view.pred, state, cfg, view.fusion, view.unseen, probes)
        view.probed = (key, estimates)
    return view.probed[1]


def round_summary(
    ctx: VideoContext, view: View, state: LoopState
) -> tuple[VideoSummary, np.ndarray]:
    """What the round's estimate counts of the video (``estimate.summarise``: the pixels people
    gave, the belief's free pixels), and people's drawn labels at the belief's size."""
    h, w = view.belief.probs.shape[2:]
    # a named superpixel's pixels are evidence, not known: the belief says what they are
    human_small = resize_labels(state.drawn_human(), (h, w))
    known = np.where(human_small != VOID, human_small, resize_labels(state.layers, (h, w)))
    return summarise(view.belief.probs, known, state.complete_mask(len(ctx.classes))), human_small


def save_fusion(folder: Path, view: View) -> None:
    """``fusion.json``: the fusion settings a round's labels were made with (calibrated)."""
    (folder / FUSION).write_text(view.fusion.model_dump_json(indent=2) + "\n")


def save_chooser(folder: Path, chooser: AutoChooser) -> None:
    (folder / AUTO).write_text(json.dumps(chooser.to_json(), indent=2) + "\n")


def load_chooser(folder: Path) -> AutoChooser:
    path = folder / AUTO
    return AutoChooser.from_json(json.loads(path.read_text())) if path.is_file() else AutoChooser()


@dataclass
class Selection:
    """A round's choice: the samples of one sample set, or class layers ``(frame, class)``."""

    granularity: str  # the sample set's name (frame, rectN, superpixel), or "layers"
    table: pd.DataFrame  # selected.parquet
    layers: list[tuple[int, int]]

    @classmethod
    def from_table(cls, table: pd.DataFrame) -> Selection:
        """A selection read back from ``selected.parquet``."""
        name = str(table["granularity"].iloc[0]) if len(table) else "frame"
        layers = []
        if name == LAYERS:
            pairs = zip(table["frame"], table["class_id"], strict=True)
            layers = [(int(f), int(c)) for f, c in pairs]
        return cls(name, table, layers)


def video_contexts(base: VideoContext, sample_sets: dict) -> dict[str, VideoContext]:
    """Each sample set's context, sharing the frames and flow of ``base``."""
    return {name: base.with_samples(samples) for name, samples in sample_sets.items()}


def label_round(
    ctx: VideoContext,
    pred: Prediction,
    state: LoopState,
    cfg: Config,
    timings: dict[str, float] | None = None,
    previous: tuple[View, np.ndarray] | None = None,
    earlier: Prediction | None = None,
    network: tuple[SegmentationNet, torch.device] | None = None,
) -> tuple[np.ndarray, View]:
    """Every frame's labels from the network's prediction and the human labels so far, and
    the :class:`View` they were made from (the fusion's radius calibrated on those labels).
    ``timings`` gets the seconds of ``calibrate`` and ``labels``. ``earlier`` is the earlier
    network's prediction, which votes with ``pred`` where ``fusion.vote_networks`` says so
    (:func:`network_vote`). ``network`` (the model that made ``pred``, and its device): the
    view then holds its vote at the estimate's probes as if unseen (``steps.unseen_votes``),
    which the network weight is calibrated by (``fusion.network_weight_choices``) and the
    round's measurement takes; without it the weight stays as configured and the estimate
    reads the network's own.

    ``previous`` is the last round's view and labels: when this round left the network as it
    was (a round of class layers) and calibrated the same fusion settings, only the frames
    its new labels can reach are fused again (``fusion.reach``); the others keep their labels
    and belief, the same numbers fusing them again would give.
    """
    t0 = time.perf_counter()
    own = pred
    vote = network_vote(own, earlier, cfg, previous[0] if previous is not None else None)
    pred, label_vote = split_vote(own, vote, cfg)
    t_vote = time.perf_counter()
    unseen = None
    if network is not None:
        kept = previous[0].unseen if previous is not None and previous[0].pred is pred else None
        probes = estimate_probes(state, cfg, cfg.fusion.estimate_from)
        same = kept is not None and sorted(kept) == probes.tolist()
        unseen = kept if same else unseen_votes(network[0], ctx, probes, cfg, network[1])
    t_probes = time.perf_counter()
    fusion = fusion_settings(ctx, pred, state, cfg, unseen)
    t1 = time.perf_counter()
    only, before = None, None
    if previous is not None and cfg.fusion.enabled:
        view, labels_before = previous
        if view.pred is pred and view.label_vote is label_vote and view.fusion == fusion:
            only = reach(state.touched, state.touched_layers, len(ctx.video), fusion)
            before = (labels_before, view.belief.probs)
    labels, belief = compose_labels(ctx, pred, state, cfg, fusion, only, before, label_vote)
    state.touched.clear()
    state.touched_layers.clear()
    t2 = time.perf_counter()
    if timings is not None:
        timings |= {"calibrate": (t_vote - t0) + (t1 - t_probes), "labels": t2 - t1}
        if network is not None:
            timings["probe_votes"] = t_probes - t_vote
    return labels, view_of(own, vote, earlier, belief, fusion, cfg, fused=only, unseen=unseen)


def view_of(
    own: Prediction,
    vote: Prediction,
    earlier: Prediction | None,
    belief: Prediction,
    fusion: FusionConfig,
    cfg: Config,
    **rest: Any,
) -> View:
    """The :class:`View` of labels made from the current network's prediction ``own`` and the
    network ``vote`` (:func:`network_vote`; ``earlier`` voted in it unless it is ``own``),
    taken as :func:`split_vote` says; ``rest``: the view's other fields."""
    pred, label_vote = split_vote(own, vote, cfg)
    voted = vote is not own
    return View(pred, belief, fusion, own=own if pred is not own else None,
                earlier=earlier if voted else None, label_vote=label_vote, **rest)  # fmt: skip


def predict_video(
    model: SegmentationNet, ctx: VideoContext, cfg: Config, device: torch.device
) -> Prediction:
    """The network's softmax and features for every frame, at the working size."""
    return predict(model, ctx.frames_t, cfg.output.batch_size, device, ctx.scratch)


def start_prediction(
    model: SegmentationNet,
    ctx: VideoContext,
    state: LoopState,
    cfg: Config,
    device: torch.device,
    timings: dict[str, float] | None = None,
) -> Prediction:
    """Round 0's prediction: the starting network's, or, where labels a team already had
    entered before round 1 (``annotation.existing``), the network's after fine-tuning on them
    as a round does after its labels (``model`` in place). ``timings`` gets ``finetune`` and
    ``predict``."""
    t0 = time.perf_counter()
    pred = predict_video(model, ctx, cfg, device)
    if (state.human != VOID).any():
        t1 = time.perf_counter()
        finetune_model(model, ctx, state, cfg, device, 0, pred)
        t2 = time.perf_counter()
        pred = predict_video(model, ctx, cfg, device)
        if timings is not None:
            timings["finetune"] = t2 - t1
        t0 += t2 - t1
    if timings is not None:
        timings["predict"] = time.perf_counter() - t0
    return pred


def select_round(
    contexts: dict[str, VideoContext],
    view: View,
    state: LoopState,
    cfg: Config,
    chooser: AutoChooser,
    round_no: int,
) -> Selection:
    """This round's samples or class layers: the selector's, class layers once they can be
    priced (``layers.enabled``), or ``auto``'s choice (which also settles ``chooser``)."""
    if is_auto(cfg):
        return _select_auto(contexts, view, state, cfg, chooser, round_no)
    (name,) = sample_set_names(cfg)
    ctx = contexts[name]
    if cfg.layers.enabled:
        layers = select_layers(ctx, view.pred, view.belief, state, cfg, view.fusion)
        if layers:
            return Selection(LAYERS, layer_table(layers, ctx.classes), layers)
    table = select_samples(ctx, view.belief, state, cfg, round_no)
    return Selection(name, table.assign(granularity=name), [])


def _select_auto(
    contexts: dict[str, VideoContext],
    view: View,
    state: LoopState,
    cfg: Config,
    chooser: AutoChooser,
    round_no: int,
) -> Selection:
    """``auto`` (``hvsa.method.auto``): each kind of sample in ``auto.granularities`` offers a
    batch (its selector's, or the class layers'); the batch of highest estimated mIoU rise per
    click, scaled by what that kind's last batch delivered, is labelled. Whole frames while
    nothing can be estimated yet."""
    frame_ctx, belief = contexts["frame"], view.belief
    estimates = probes_of(frame_ctx, view, state, cfg)
    chooser.learn_prices = cfg.auto.learn_prices
    if estimates is None:
        table = select_samples(frame_ctx, belief, state, _with_budget(cfg, "frame"), round_no)
        if cfg.auto.learn_prices:  # what these frames cost against the click model's price
            chooser.settle_price(state.clicks_total)
            expected = _batch_clicks(frame_ctx, belief_labels(belief.probs), table, cfg).sum()
            chooser.bill("frame", float(expected), state.clicks_total)
        return Selection("frame", table.assign(granularity="frame"), [])
    quality = estimates.quality
    # shared by every granularity's offer: the belief's uncertainty and labels
    unc_pix = pixel_uncertainty(belief.probs, cfg.uncertainty.measure)
    predicted = belief_labels(belief.probs)
    soft = class_pixels(belief.probs)
    totals = soft.sum(0)
    ious = estimated_class_iou(quality, state, belief, totals, frame_ctx)
    now = mean_iou(ious)
    chooser.settle(ious, state.clicks_total)
    batches: dict[str, Selection] = {}
    offers: dict[str, Offer] = {}
    for name in cfg.auto.granularities:
        if name == LAYERS:
            layers = layer_choice(estimates, belief, state, cfg)
            if not layers:
                continue
            frames, cls = np.array(layers).T
            covered = np.zeros(len(quality))
            np.add.at(covered, cls, soft[frames, cls])
            clicks = float(np.nansum(estimates.cost[cls]))
            batches[name] = Selection(name, layer_table(layers, frame_ctx.classes), layers)
        else:
            ctx = contexts[name]
            table = select_samples(ctx, belief, state, _with_budget(cfg, name), round_no, unc_pix)
            if table.empty:
                continue
            frames, segs = table["frame"].to_numpy(), table["segment"].to_numpy()
            covered = region_class_pixels(belief.probs, ctx.small_segments, frames, segs).sum(0)
            clicks = float(_batch_clicks(ctx, predicted, table, cfg).sum())
            batches[name] = Selection(name, table.assign(granularity=name), [])
        offers[name] = Offer(promise(quality, covered, totals), clicks)
    if not offers:
        return Selection("frame", frame_ctx.samples.table.iloc[[]].assign(granularity=[]), [])
    chosen = batches[chooser.choose(offers, ious, state.clicks_total)]
    table = chosen.table.assign(estimated_miou=now)
    for k, offer in offers.items():  # what each kind offered, for the record
        table[f"promise_{k}"] = offer.per_click
        table[f"yield_{k}"] = chooser.yields.get(k, np.nan)
        table[f"price_{k}"] = chooser.prices.get(k, np.nan)
    return Selection(chosen.granularity, table, chosen.layers)


def _with_budget(cfg: Config, name: str) -> Config:
    """The config with ``auto.budgets[name]`` samples a round."""
    loop = cfg.loop.model_copy(update={"budget": cfg.auto.budgets[name]})
    return cfg.model_copy(update={"loop": loop})


def _batch_clicks(
    ctx: VideoContext, predicted: np.ndarray, table: pd.DataFrame, cfg: Config
) -> np.ndarray:
    """Expected clicks of a selected batch: the selector's own estimate, or the click model run
    on the belief's labels ``predicted`` (N,h,w)."""
    if "expected_clicks" in table:
        return table["expected_clicks"].to_numpy()
    return sample_clicks(ctx, predicted, table["sample_id"].to_numpy(), cfg)


def layer_table(layers: list[tuple[int, int]], classes: ClassList) -> pd.DataFrame:
    """A layer round's selection, as selected.parquet records it."""
    return pd.DataFrame(
        {
            "sample_id": [layer_id(f, c, len(classes)) for f, c in layers],
            "frame": [f for f, _ in layers],
            "kind": "layer",
            "class_id": [c for _, c in layers],
            "class_name": [classes.names[c] for _, c in layers],
            "rank": np.arange(len(layers)),
            "granularity": LAYERS,
        }
    )


def context_of(contexts: dict[str, VideoContext], selection: Selection) -> VideoContext:
    """The context a selection's samples belong to (class layers: any, they need no set)."""
    return contexts.get(selection.granularity) or next(iter(contexts.values()))


def ask(
    contexts: dict[str, VideoContext],
    selection: Selection,
    annotator: Annotator,
    prefill: Prefill | None = None,
) -> list[Annotation]:
    """The annotator's answer to every sample or class layer of the selection, shown with the
    labels of ``prefill`` (the previous round's, as the annotation app shows them)."""
    ctx = context_of(contexts, selection)
    if selection.layers:
        return layer_drawer(annotator)(ctx.video, selection.layers, len(ctx.classes), prefill)
    ids = [int(i) for i in selection.table["sample_id"]]
    return annotator.annotate(ctx.video, ctx.samples, ids, prefill)


def annotate_round(
    contexts: dict[str, VideoContext],
    selection: Selection,
    annotator: Annotator,
    state: LoopState,
    cfg: Config,
    prefill: Prefill | None = None,
) -> list[Annotation]:
    """The annotator's answers to the selection (samples, or class layers), up to the click
    cap: later ones stay unlabelled rather than pass it."""
    return within_cap(ask(contexts, selection, annotator, prefill), state, cfg)


def record_round(
    ledger: Ledger,
    annotations: list[Annotation],
    contexts: dict[str, VideoContext],
    selection: Selection,
    state: LoopState,
    campaign: str,
    video_key: str,
    round_no: int,
) -> pd.DataFrame:
    """Append the annotations to the ledger and the state; the round's annotations table."""
    ctx = context_of(contexts, selection)
    return record_annotations(ledger, annotations, ctx, state, campaign, video_key, round_no)


def train_round(
    model: SegmentationNet,
    ctx: VideoContext,
    state: LoopState,
    cfg: Config,
    device: torch.device,
    round_no: int,
    selection: Selection,
    before: View,
) -> list[dict[str, float]] | None:
    """Fine-tune in place on every human label so far, or nothing after a class-layer round
    (a layer says nothing of its frame's other classes; ``state.py``) or a round that found
    nothing to label. ``before`` is the previous round's view: its prediction is the network
    before this round."""
    if selection.layers or selection.table.empty:
        return None
    return finetune_model(model, ctx, state, cfg, device, round_no, before.pred)


def measure_round(
    round_no: int,
    recorded: pd.DataFrame,
    state: LoopState,
    labels: np.ndarray,
    ctx: VideoContext,
    view: View,
    cfg: Config,
    started: float,
    timings: dict[str, float],
    peak_mb: float | None = None,
) -> RoundResult:
    """What a round reports (``metrics.json``): clicks, labelled share, mIoU where the video has
    ground truth, an estimate of it (the stop rule where it has none), the calibrated radius,
    time and memory.

    The estimate (``hvsa.method.estimate``) spreads every pixel nobody labelled over the
    classes it is in expectation, given the belief's class there and how clearly it wins, as
    measured on frames labelled in full and fused without their own labels (the probes of
    :func:`class_estimates`, up to ``fusion.calibration_probes`` of them), once
    ``fusion.estimate_from`` frames are; its interval resamples the probes. Before that, the
    mIoU the fused belief expects of itself, far lower (the carried votes are soft): it stops
    nothing. ``started`` is when the round began
    (``time.perf_counter()``): its seconds include this measuring (``timings["measure"]``),
    part of every round's wall time."""
    t0 = time.perf_counter()
    value, per_class = score(ctx.video, labels, ctx.classes)
    estimates = probes_of(ctx, view, state, cfg, cfg.fusion.estimate_from)
    summary, human_small = round_summary(ctx, view, state)
    interval, class_estimate, post = None, None, None
    if estimates is not None:
        post = reliability(estimates.probe_counts.sum(0))
        ious = iou_per_class(expected_confusion(summary, post))
        estimate, source = mean_iou(ious), "leave-one-out"
        class_estimate = class_values(ctx.classes, ious)
        low, high = estimate_interval(summary, estimates.probe_counts, cfg.fusion.estimate_level,
                                      high_counts=estimates.own_counts)  # fmt: skip
        if np.isfinite(low):
            interval = [min(low, estimate), max(high, estimate)]
    else:
        estimate, source = expected_miou(view.belief.probs, human_small), "belief"
    per_frame = frame_accuracy(summary, post)
    timings["measure"] = time.perf_counter() - t0
    return RoundResult(
        round=round_no,
        clicks=int(recorded["clicks"].sum()) if len(recorded) else 0,
        clicks_total=state.clicks_total,
        samples=len(recorded),
        labelled_fraction=float(state.annotated.mean()),
        miou=value,
        per_class=per_class,
        seconds=time.perf_counter() - started,
        timings={k: round(v, 3) for k, v in timings.items()},
        peak_memory_mb=peak_mb,
        guided_radius=view.fusion.guided_radius if cfg.fusion.enabled else None,
        network_weight=view.fusion.network_weight if cfg.fusion.enabled else None,
        miou_estimate=None if np.isnan(estimate) else estimate,
        miou_estimate_from=source,
        miou_interval=interval,
        per_class_estimate=class_estimate,
        frame_estimates=[None if np.isnan(v) else round(float(v), 4) for v in per_frame],
    )
