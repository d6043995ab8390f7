"""Label quality: confusion matrix, per-class IoU and mIoU (void ignored)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from hvsa.data.video import VOID


def confusion(truth: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(C,C) counts, rows = truth, columns = prediction, over non-void truth pixels.

    Counted a frame at a time for a video (N,H,W): the int64 indices of a whole video would
    take 16 bytes a pixel."""
    if truth.ndim == 3 and len(truth) > 1:
        return sum(confusion(t, p, num_classes) for t, p in zip(truth, pred, strict=True))
    keep = truth != VOID
    t = truth[keep].astype(np.int64)
    p = pred[keep].astype(np.int64)
    p = np.where(p < num_classes, p, num_classes)  # a void prediction counts as a miss
    cm = np.bincount(t * (num_classes + 1) + p, minlength=num_classes * (num_classes + 1))
    return cm.reshape(num_classes, num_classes + 1)[:, :num_classes]


def iou_per_class(cm: np.ndarray, truth_pixels: np.ndarray | None = None) -> np.ndarray:
    """IoU per class; NaN for a class absent from both truth and prediction.

    ``truth_pixels`` (per class) lets a void prediction count against recall; by default the
    row sums of ``cm`` are used.
    """
    tp = np.diag(cm).astype(np.float64)
    gt = cm.sum(1) if truth_pixels is None else truth_pixels
    union = gt + cm.sum(0) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def mean_iou(ious: np.ndarray) -> float:
    """Mean of the finite entries of (C,) ``ious`` (classes that can be scored); NaN if none."""
    return float(np.nanmean(ious)) if np.isfinite(ious).any() else float("nan")


def miou(truth: np.ndarray, pred: np.ndarray, num_classes: int) -> tuple[float, np.ndarray]:
    """(mIoU over classes present in truth or prediction, per-class IoU)."""
    truth_pixels = np.zeros(num_classes, np.int64)
    for t in truth.reshape(-1, *truth.shape[-2:]) if truth.ndim >= 2 else [truth]:
        keep = t != VOID
        truth_pixels += np.bincount(t[keep].astype(np.int64), minlength=num_classes)[:num_classes]
    ious = iou_per_class(confusion(truth, pred, num_classes), truth_pixels)
    return mean_iou(ious), ious


def expected_miou(probs: torch.Tensor | np.ndarray, human: np.ndarray, chunk: int = 4) -> float:
    """mIoU the network expects of its own labels, for videos without ground truth.

    Soft IoU per class under the network's belief: the intersection is the probability mass of
    class c on pixels labelled c, the union the mass of c plus the pixels labelled c minus the
    intersection. Human-labelled pixels count as certain. ``probs`` is (N,C,h,w) softmax,
    ``human`` (N,h,w) with 255 where no human label exists. Only as good as the network's
    calibration: a stop rule on it is a heuristic, logged as such. ``chunk`` frames at a time
    (bounded memory).
    """
    if isinstance(probs, np.ndarray):
        probs = torch.from_numpy(probs)
    num = probs.shape[1]
    inter = torch.zeros(num, dtype=torch.float64)
    union = torch.zeros(num, dtype=torch.float64)
    for start in range(0, len(probs), chunk):
        p = probs[start : start + chunk].float().flatten(2)  # (B,C,P)
        h = torch.from_numpy(np.ascontiguousarray(human[start : start + chunk])).long().flatten(1)
        labelled = h != VOID
        if labelled.any():
            certain = F.one_hot(h.clamp(max=num - 1), num).permute(0, 2, 1).float()
            p = torch.where(labelled[:, None, :], certain, p)
        top, chosen = p.max(1)  # (B,P); max().indices: several times faster than argmax
        both = torch.zeros(num, dtype=torch.float64).index_add_(
            0, chosen.flatten(), top.flatten().double()
        )
        inter += both
        union += p.sum((0, 2)).double() + torch.bincount(chosen.flatten(), minlength=num) - both
    ok = union > 0
    return float((inter[ok] / union[ok]).mean()) if ok.any() else float("nan")
