"""`hvsa run` with a stride-4 detail branch on the network's head: does a finer output grid
let the network learn thin classes, and do the labels gain from it?

Why: LR-ASPP's logits come on an 8 px grid (the backbone's stride-8 features), wider than a
4 px pole, and fine-tuned on 53 frames whose poles were drawn the network labels poles at IoU
0.02 on those very frames (``thin_class_probe.py``). This adds to the head a branch on the
backbone's stride-4 features (MobileNetV3's block 3, 24 channels): the stride-8 logits
upsampled to stride 4, concatenated with those features, a 3×3 convolution to 32 channels,
ReLU, and a 1×1 convolution to the classes whose output, upsampled to the input, is added to
the logits. The last convolution starts at zero, so the network starts exactly as the
checkpoint it is loaded from (which holds no branch) and fine-tuning alone teaches the
branch. ``--balanced`` also swaps the supervised term for ``balanced_loss_run.balanced``. A
probe, not a setting (measured: benchmarks/RESULTS.md "Why 90 % at 6 % and 95 % at 12 % are
out of reach on this clip").

    C=../shared/datasets/camvid/clips
    .venv/bin/python benchmarks/detail_head_run.py run $C/0016E5_15hz \
        --model runs/b15/pretrained.pt --out runs/fix_b15_d4 --annotator corrector --rounds 7
    .venv/bin/python benchmarks/detail_head_run.py --balanced run $C/0016E5_15hz \
        --model runs/b15/pretrained.pt --out runs/fix_b15_d4w --annotator corrector --rounds 7

Any other benchmark script runs with the branch in the network (so that it loads these runs'
checkpoints) as ``detail_head_run.py script SCRIPT.py ARGS…``:

    R=benchmarks/results/0016E5_15hz
    .venv/bin/python benchmarks/detail_head_run.py script benchmarks/thin_class_probe.py \
        $C/0016E5_15hz runs/fix_b15_d4 --round 5 --cls pole \
        --csv $R/thin_class_probe_detail_head.csv
    .venv/bin/python benchmarks/detail_head_run.py --balanced script \
        benchmarks/thin_class_probe.py $C/0016E5_15hz runs/fix_b15_d4w --round 5 --cls pole \
        --csv $R/thin_class_probe_detail_head_balanced.csv
    .venv/bin/python benchmarks/detail_head_run.py --balanced script benchmarks/network_weight.py \
        $C/0016E5_15hz runs/fix_b15_d4w --rounds 5 --weights 0 0.005 0.05 0.2 1 \
        --csv $R/network_weight_detail_head_balanced.csv
    .venv/bin/python benchmarks/runs_table.py --csv $R/corrector_detail_head.csv \
        "runs/fix_b15:corrector (params.yaml, 2026-12-06)" \
        "runs/fix_b15_d4:stride-4 detail branch" \
        "runs/fix_b15_d4w:stride-4 detail branch + class-balanced CE"
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import hvsa.method.network as network

DETAIL_BLOCK = "3"  # MobileNetV3-large's last block at stride 4
DETAIL_CHANNELS = 24
HIDDEN = 32

_init = network.SegmentationNet.__init__
_load = network.SegmentationNet.load_state_dict


def _init_with_detail(self: network.SegmentationNet, arch: str, num_classes: int) -> None:
    _init(self, arch, num_classes)
    if not arch.startswith("lraspp"):
        raise SystemExit("detail_head_run.py: the branch is built for lraspp_mobilenet_v3_large")
    self.net.backbone.return_layers[DETAIL_BLOCK] = "detail"
    last = nn.Conv2d(HIDDEN, num_classes, 1)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    self.detail = nn.Sequential(
        nn.Conv2d(DETAIL_CHANNELS + num_classes, HIDDEN, 3, padding=1), nn.ReLU(inplace=True), last
    )


def _forward_with_detail(
    self: network.SegmentationNet, x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    size = x.shape[-2:]
    feats = self.net.backbone((x - self.mean) / self.std)
    logits, hidden = self.head_logits(feats)
    fine = feats["detail"]
    on_fine = F.interpolate(logits, size=fine.shape[-2:], mode="bilinear", align_corners=False)
    detail = self.detail(torch.cat([fine, on_fine], 1))
    # each upsampled to the input on its own: with the branch at zero, exactly the checkpoint
    logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
    detail = F.interpolate(detail, size=size, mode="bilinear", align_corners=False)
    return logits + detail, hidden


def _load_without_detail(self: network.SegmentationNet, state: dict, strict: bool = True, **kw):
    """Checkpoints written without the branch load into it (the branch stays at its start)."""
    result = _load(self, state, strict=False, **kw)
    other = [k for k in result.missing_keys if not k.startswith("detail.")]
    if strict and (other or result.unexpected_keys):
        raise RuntimeError(f"missing {other}, unexpected {list(result.unexpected_keys)}")
    return result


network.SegmentationNet.__init__ = _init_with_detail
network.SegmentationNet.forward = _forward_with_detail
network.SegmentationNet.load_state_dict = _load_without_detail


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["--balanced"]:
        sys.path.insert(0, str(Path(__file__).parent))
        from balanced_loss_run import balanced

        import hvsa.method.finetune as finetune

        finetune.supervised_loss = balanced
        args = args[1:]
    if args[:1] == ["script"]:
        if len(args) < 2 or not Path(args[1]).is_file():
            raise SystemExit("detail_head_run.py script: name a benchmark script to run")
        sys.argv = args[1:]
        sys.path.insert(0, str(Path(args[1]).resolve().parent))
        runpy.run_path(args[1], run_name="__main__")
    else:
        from hvsa.cli import main

        sys.exit(main(args))
