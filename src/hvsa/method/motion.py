"""Optical flow between consecutive frames, occlusion masks, warping, and the on-disk cache.

Flow is computed once per video at full resolution (forward t→t+1 and backward t+1→t) and
cached, because every round's temporal loss and any label propagation reuse it. A pixel is
trusted only where forward and backward flow agree (Sundaram et al., ECCV 2010); elsewhere it is
occluded or the flow is wrong, and the temporal loss must not push predictions to agree there.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from hvsa.config import FlowConfig
from hvsa.data.arrays import load_arrays, save_arrays
from hvsa.data.chunks import ChunkStore, frames_digest
from hvsa.errors import HvsaError

RAFT_MIN_SIDE = 128
DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}


@dataclass
class Flow:
    """Flows of one video: forward[t] maps frame t to t+1, backward[t] maps t+1 to t.

    Arrays are (N-1,H,W,2) float32 in pixels (x, y); valid_* are (N-1,H,W) bool. Either in
    memory (``np.ndarray``) or read from the cache a chunk at a time
    (:class:`hvsa.data.chunks.LazyFrames`): code indexes a frame at a time either way.
    """

    forward: np.ndarray
    backward: np.ndarray
    valid_forward: np.ndarray
    valid_backward: np.ndarray


def warp(image: np.ndarray, flow: np.ndarray, nearest: bool = False) -> np.ndarray:
    """Backward warp: ``out[y, x] = image[y + flow_y, x + flow_x]`` (borders replicated).

    With the forward flow of frame t this brings frame t+1's content into frame t's geometry.
    """
    h, w = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    mapx, mapy = gx + flow[..., 0], gy + flow[..., 1]
    interp = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    return cv2.remap(image, mapx, mapy, interp, borderMode=cv2.BORDER_REPLICATE)


def consistency_mask(
    forward: np.ndarray, backward: np.ndarray, alpha: float, beta: float
) -> np.ndarray:
    """Pixels of the source frame whose forward flow is undone by the backward flow.

    ``|f + b(x+f)|² < alpha (|f|² + |b(x+f)|²) + beta``; pixels whose flow leaves the frame are
    invalid as well, since nothing in the target frame corresponds to them.
    """
    h, w = forward.shape[:2]
    back_at_target = warp(backward, forward)
    diff = forward + back_at_target
    lhs = (diff**2).sum(-1)
    rhs = alpha * ((forward**2).sum(-1) + (back_at_target**2).sum(-1)) + beta
    gx, gy = np.meshgrid(np.arange(w), np.arange(h))
    tx, ty = gx + forward[..., 0], gy + forward[..., 1]
    inside = (tx >= 0) & (tx <= w - 1) & (ty >= 0) & (ty <= h - 1)
    return (lhs < rhs) & inside


def _dis_pair(dis, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return dis.calc(a, b, None)


def _gray(frames: np.ndarray) -> list[np.ndarray]:
    return [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]


def _raft_flows(
    frames: np.ndarray, cfg: FlowConfig, device: torch.device
) -> tuple[np.ndarray, np.ndarray]:
    from torchvision.models import optical_flow

    if not cfg.raft_weights:
        raise HvsaError("flow.method=raft needs flow.raft_weights: a local RAFT weights file")
    path = Path(cfg.raft_weights)
    if not path.is_file():
        raise HvsaError(f"RAFT weights not found: {path}")
    model = getattr(optical_flow, cfg.raft_arch)(weights=None)
    try:
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except (RuntimeError, ValueError) as exc:
        raise HvsaError(
            f"{path} is not a {cfg.raft_arch} state dict: {str(exc).splitlines()[0]}"
        ) from exc
    model.eval().to(device)
    h, w = frames.shape[1:3]
    # RAFT's correlation pyramid needs sides of at least 128 px, in multiples of 8
    th, tw = (max(RAFT_MIN_SIDE, -(-side // 8) * 8) for side in (h, w))
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1
    if (th, tw) != (h, w):
        x = F.interpolate(x, size=(th, tw), mode="bilinear", align_corners=False)
    fw, bw = [], []
    with torch.no_grad():
        for t in tqdm(range(len(frames) - 1), desc="flow (raft)", leave=False):
            a, b = x[t : t + 1].to(device), x[t + 1 : t + 2].to(device)
            fw.append(model(a, b)[-1][0].permute(1, 2, 0).cpu().numpy())
            bw.append(model(b, a)[-1][0].permute(1, 2, 0).cpu().numpy())
    if (th, tw) != (h, w):
        return resize_flow(np.stack(fw), (h, w)), resize_flow(np.stack(bw), (h, w))
    return np.stack(fw), np.stack(bw)


def _pair_flows(
    frames, first: int, last: int, cfg: FlowConfig, device: torch.device | None, dis
) -> tuple[np.ndarray, np.ndarray]:
    """Forward and backward flow (float32) of the pairs (t, t+1), first <= t < last."""
    if cfg.method == "raft":
        return _raft_flows(np.asarray(frames[first : last + 1]), cfg, device or torch.device("cpu"))
    gray = _gray(frames[first : last + 1])
    fw = np.stack([_dis_pair(dis, gray[i], gray[i + 1]) for i in range(last - first)])
    bw = np.stack([_dis_pair(dis, gray[i + 1], gray[i]) for i in range(last - first)])
    return fw, bw


def _dis(cfg: FlowConfig):
    if cfg.method == "raft":
        return None
    dis = cv2.DISOpticalFlow_create(DIS_PRESETS[cfg.dis_preset])
    if cfg.dis_finest_scale is not None:
        # the presets stop one or two pyramid levels above full resolution, which leaves
        # borders a pixel or two off: the error that carried labels inherit
        dis.setFinestScale(cfg.dis_finest_scale)
    return dis


def _validity(fw: np.ndarray, bw: np.ndarray, cfg: FlowConfig) -> tuple[np.ndarray, np.ndarray]:
    a, b = cfg.fb_alpha, cfg.fb_beta
    valid_fw = np.stack([consistency_mask(f, g, a, b) for f, g in zip(fw, bw, strict=True)])
    valid_bw = np.stack([consistency_mask(g, f, a, b) for f, g in zip(fw, bw, strict=True)])
    return valid_fw, valid_bw


def _stored_flows(
    frames, first: int, last: int, cfg: FlowConfig, device: torch.device | None, dis
) -> tuple[np.ndarray, ...]:
    """Forward and backward flow of the pairs first <= t < last as float16 (the precision
    the cache keeps), and the validity masks of those very vectors: flow computed in memory
    and flow read back from the cache carry labels along exactly the same vectors."""
    fw, bw = _pair_flows(frames, first, last, cfg, device, dis)
    fw, bw = fw.astype(np.float16), bw.astype(np.float16)
    return (fw, bw, *_validity(fw.astype(np.float32), bw.astype(np.float32), cfg))


def compute_flow(frames: np.ndarray, cfg: FlowConfig, device: torch.device | None = None) -> Flow:
    """Forward/backward flow and validity masks for every consecutive pair of frames, in
    memory (:func:`load_or_compute_flow` keeps a long video's on disk instead)."""
    if len(frames) < 2:
        raise HvsaError("a video needs at least 2 frames for optical flow")
    fw, bw, valid_fw, valid_bw = _stored_flows(frames, 0, len(frames) - 1, cfg, device, _dis(cfg))
    return Flow(fw.astype(np.float32), bw.astype(np.float32), valid_fw, valid_bw)


def flow_key(frames: np.ndarray, cfg: FlowConfig) -> str:
    """Cache key: the frames' bytes and every flow knob, so a changed setting recomputes.

    Hashed a frame at a time (``frames_digest``): frames read from disk never all sit in
    memory, and the same bytes give the same key either way."""
    digest = frames_digest(frames)
    digest.update(cfg.model_dump_json().encode())
    return digest.hexdigest()[:16]


def save_flow(path: Path, flow: Flow) -> None:
    """Write flow as float16 (half the disk, sub-pixel error far below DIS's own)."""
    save_arrays(
        path,
        forward=np.asarray(flow.forward).astype(np.float16),
        backward=np.asarray(flow.backward).astype(np.float16),
        valid_forward=np.asarray(flow.valid_forward),
        valid_backward=np.asarray(flow.valid_backward),
    )


def load_flow(path: Path) -> Flow:
    data = load_arrays(path, "flow")
    return Flow(
        data["forward"].astype(np.float32),
        data["backward"].astype(np.float32),
        data["valid_forward"],
        data["valid_backward"],
    )


FLOW_PARTS = ("forward", "backward", "valid_forward", "valid_backward")
FLOW_CHUNK_MB = 32  # pairs per chunk: about this many MB of float16 flow in each direction


def flow_chunk(size: tuple[int, int]) -> int:
    """Pairs per chunk of the flow cache: ~32 MB a chunk per direction (46 pairs at 360×480,
    8 at 1280×720), so a chain walking a few frames reads one chunk, not the video."""
    pair = size[0] * size[1] * 2 * 2
    return int(max(1, min(64, FLOW_CHUNK_MB * 2**20 // pair)))


def load_or_compute_flow(
    frames: np.ndarray,
    cfg: FlowConfig,
    cache_dir: Path,
    device: torch.device | None = None,
    cache_mb: float = 96,
) -> Flow:
    """Flow from the cache folder ``cache_dir/flow-<key>/``, computing what it lacks.

    The cache is four chunked arrays (``hvsa.data.chunks``): forward and backward flow as
    float16 (sub-pixel error far below DIS's own, half the disk), the validity masks as bool.
    It is computed a chunk of pairs at a time, each chunk written whole, so an interrupted
    computation resumes at the first missing chunk, and only a chunk's frames sit in memory.
    The flow returned reads the cache a chunk at a time (``cache_mb`` per array kept: three
    chunks, what fusion's chains walking out of one frame mostly stay within), as
    float32; a run that computed it and a run that read it — a resumed run, a campaign's
    stage, another strategy of the benchmark — carry labels along exactly the same vectors.
    """
    n = len(frames)
    if n < 2:
        raise HvsaError("a video needs at least 2 frames for optical flow")
    h, w = frames[0].shape[:2]
    chunk = flow_chunk((h, w))
    folder = Path(cache_dir) / f"flow-{flow_key(frames, cfg)}"
    shapes = {"forward": (n - 1, h, w, 2), "valid_forward": (n - 1, h, w)}
    stores = {}
    for part in FLOW_PARTS:
        dtype = np.bool_ if "valid" in part else np.float16
        shape = shapes[part.replace("backward", "forward")]
        stores[part] = ChunkStore.create(folder / part, shape, dtype, chunk)
    todo = sorted({b for s in stores.values() for b in s.missing()})
    if todo:
        dis = _dis(cfg)
        done = (stores["forward"].chunks - len(todo)) * chunk
        with tqdm(total=n - 1, initial=min(done, n - 1), desc=f"flow ({cfg.method})",
                  unit="pair", leave=False) as bar:  # fmt: skip
            for b in todo:
                rows = stores["forward"].chunk_rows(b)
                blocks = _stored_flows(frames, rows.start, rows.stop, cfg, device, dis)
                for part, block in zip(FLOW_PARTS, blocks, strict=True):
                    stores[part].write(b, block)
                bar.update(len(rows))
    return Flow(*(stores[p].lazy(cache_mb, np.float32 if "valid" not in p else None)
                  for p in FLOW_PARTS))  # fmt: skip


def resize_flow(flow: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize (…,H,W,2) flow to (h,w), scaling the vectors with the image."""
    h, w = size
    src_h, src_w = flow.shape[-3:-1]
    out = np.stack(
        [
            cv2.resize(f, (w, h), interpolation=cv2.INTER_LINEAR)
            for f in flow.reshape(-1, src_h, src_w, 2)
        ]
    )
    out[..., 0] *= w / src_w
    out[..., 1] *= h / src_h
    return out.reshape(*flow.shape[:-3], h, w, 2)


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    h, w = size
    return np.stack(
        [cv2.resize(m.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) for m in mask]
    ).astype(bool)


def torch_warp(values: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Differentiable backward warp of (B,C,H,W) ``values`` by (B,H,W,2) pixel ``flow``."""
    b, _, h, w = values.shape
    gy, gx = torch.meshgrid(
        torch.arange(h, device=values.device, dtype=values.dtype),
        torch.arange(w, device=values.device, dtype=values.dtype),
        indexing="ij",
    )
    x = (gx + flow[..., 0]) / max(w - 1, 1) * 2 - 1
    y = (gy + flow[..., 1]) / max(h - 1, 1) * 2 - 1
    grid = torch.stack([x, y], dim=-1)
    return F.grid_sample(values, grid, mode="bilinear", padding_mode="border", align_corners=True)
