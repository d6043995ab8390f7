"""The segmentation network: a torchvision architecture returning logits *and* features.

Selection clusters samples in the network's own feature space, so the wrapper exposes the
head's last hidden feature map next to the logits. Checkpoints carry the architecture and class
list, so ``--model model.pt`` is all a user passes.
"""

from __future__ import annotations

import pickle
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import segmentation

from hvsa.data.video import ClassList
from hvsa.errors import HvsaError

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
ARCHS = ("lraspp_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large")


def pick_device(choice: str = "auto") -> torch.device:
    """cuda when present (or asked for), else cpu."""
    if choice == "cuda" and not torch.cuda.is_available():
        raise HvsaError("model.device=cuda but no CUDA device is available")
    if choice == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda")


class SegmentationNet(nn.Module):
    """Normalises uint8-range RGB input and returns ``(logits at input size, features)``."""

    def __init__(self, arch: str, num_classes: int):
        super().__init__()
        if arch not in ARCHS:
            raise HvsaError(f"unknown architecture {arch!r}; choose one of {ARCHS}")
        self.arch = arch
        self.net = getattr(segmentation, arch)(
            weights=None, weights_backbone=None, num_classes=num_classes
        )
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1) * 255)
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1) * 255)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        size = x.shape[-2:]
        feats: OrderedDict = self.net.backbone((x - self.mean) / self.std)
        logits, hidden = self.head_logits(feats)
        logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        return logits, hidden

    def head_logits(self, feats: OrderedDict) -> tuple[torch.Tensor, torch.Tensor]:
        """The head on the backbone's features: logits on the head's own grid (stride 8) and
        its last hidden feature map."""
        head = self.net.classifier
        if self.arch.startswith("lraspp"):
            low, high = feats["low"], feats["high"]
            hidden = head.cbr(high) * head.scale(high)
            up = F.interpolate(hidden, size=low.shape[-2:], mode="bilinear", align_corners=False)
            return head.low_classifier(low) + head.high_classifier(up), hidden
        hidden = feats["out"]
        for layer in list(head)[:-1]:  # DeepLabHead cannot be sliced (its init needs classes)
            hidden = layer(hidden)
        return head[-1](hidden), hidden


def normalise_on(model: SegmentationNet, batches: list[torch.Tensor], batch_size: int) -> None:
    """Set every BatchNorm layer's statistics to its inputs' mean and variance over these
    frames ((n,3,h,w) float tensors, one per video), averaged over their batches. Only the
    BatchNorm layers run as in training (dropout, if any, stays off).

    Why: a network built with ``weights=None`` normalises with mean 0 and variance 1, which
    fits no layer's real inputs, and fine-tuning keeps BatchNorm frozen (``finetune.freeze_bn``,
    batches of 4 are too small to estimate it): left so, its activations drift from layer to
    layer and it learns slowly. Taken from the video's own frames (no label needed), the same
    240 fine-tuning steps on 8 labelled frames of 0016E5_15hz give a network that scores
    50.5 % mIoU on the unlabelled frames instead of 35.7 % (RESULTS.md "From nothing").
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    model.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over every batch below
        m.train()
    device = next(model.parameters()).device
    with torch.no_grad():
        for frames in batches:
            for i in range(0, len(frames), batch_size):
                model(frames[i : i + batch_size].to(device))
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    model.eval()


def fresh_network(
    arch: str,
    num_classes: int,
    seed: int,
    frames: list[torch.Tensor] | None = None,
    batch_size: int = 8,
) -> SegmentationNet:
    """A network that knows nothing yet (``weights=None``: nothing is downloaded), seeded so
    that the same settings give the same network, its BatchNorm statistics taken from
    ``frames`` of the videos it will label (:func:`normalise_on`) when given."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SegmentationNet(arch, num_classes)
    if frames:
        normalise_on(model, frames, batch_size)
    return model


def write_fresh_network(
    path: str | Path,
    arch: str,
    classes: ClassList,
    seed: int,
    frames: list[torch.Tensor] | None = None,
    batch_size: int = 8,
) -> Path:
    """Write :func:`fresh_network` for ``classes`` at ``path``.

    Why: a user's own video has no network pretrained on its classes; the first rounds need no
    trained network (whole frames spread by coverage), and the carried human labels do most of
    the work until fine-tuning has seen a few frames.
    """
    model = fresh_network(arch, len(classes), seed, frames, batch_size)
    save_checkpoint(path, model, classes, {"fresh": True, "seed": seed})
    return Path(path)


def save_checkpoint(
    path: str | Path, model: SegmentationNet, classes: ClassList, meta: dict | None = None
) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "arch": model.arch,
        "classes": classes.to_json(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "meta": meta or {},
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def load_checkpoint(
    path: str | Path, device: torch.device
) -> tuple[SegmentationNet, ClassList, dict]:
    """Load a checkpoint written by :func:`save_checkpoint` (no flags needed)."""
    path = Path(path)
    if not path.is_file():
        raise HvsaError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        classes = ClassList.from_json(state["classes"])
        model = SegmentationNet(state["arch"], len(classes))
        model.load_state_dict(state["state_dict"])
    except (
        RuntimeError, KeyError, TypeError, ValueError, EOFError, OSError, pickle.UnpicklingError
    ) as exc:  # fmt: skip
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise HvsaError(f"{path} is not an hvsa checkpoint: {msg}") from exc
    return model.to(device), classes, dict(state.get("meta", {}))
