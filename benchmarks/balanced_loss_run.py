"""`hvsa run` with class-balanced cross-entropy in fine-tuning: does the network learn thin classes?

Why: fine-tuned on frames whose poles were drawn, the network still labels almost no pole
(``thin_class_probe.py``). This runs the same command as ``hvsa run`` with the supervised term
of fine-tuning (``hvsa.method.finetune.supervised_loss``) replaced by cross-entropy that weighs
each class by the inverse square root of its share of the batch's labelled pixels, so that the
two runs differ in that alone. A probe, not a setting (measured worse: benchmarks/RESULTS.md).

    C=../shared/datasets/camvid/clips
    .venv/bin/python benchmarks/balanced_loss_run.py run $C/0016E5_15hz \
        --model runs/b15/pretrained.pt --out runs/fix_b15_wce --annotator corrector --rounds 7
"""

from __future__ import annotations

import sys

import torch
import torch.nn.functional as F

import hvsa.method.finetune as finetune
from hvsa.cli import main
from hvsa.data.video import VOID


def balanced(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over labelled pixels, each class weighed by 1 / sqrt(its share of them)."""
    known = labels != VOID
    if not known.any():
        return logits.sum() * 0.0
    count = torch.bincount(labels[known].flatten(), minlength=logits.shape[1]).float()
    weight = torch.where(count > 0, (count / count.sum()).clamp_min(1e-6).rsqrt(), 0.0)
    return F.cross_entropy(logits, labels, weight=weight.to(logits.device), ignore_index=VOID)


if __name__ == "__main__":
    finetune.supervised_loss = balanced
    sys.exit(main(sys.argv[1:]))
