import numpy as np
import pytest
import torch

from hvsa.method.motion import compute_flow, consistency_mask, resize_flow, torch_warp, warp
from tests.conftest import tiny_config


def _texture(h=64, w=80, seed=0):
    rng = np.random.default_rng(seed)
    import cv2

    base = cv2.GaussianBlur(rng.uniform(0, 255, (h + 20, w + 20)).astype(np.float32), (0, 0), 1.5)
    base = (base - base.min()) / (base.max() - base.min()) * 255
    return np.repeat(base[..., None], 3, -1).astype(np.uint8)


def test_warp_of_a_known_shift_recovers_the_image():
    big = _texture()
    a, b = big[5:69, 5:85], big[5:69, 8:88]  # b is a shifted 3 px left: b(x) = a(x+3)
    flow = np.zeros((64, 80, 2), np.float32)
    flow[..., 0] = -3  # a(x) = b(x - 3)
    back = warp(b, flow)
    assert np.abs(back[:, 5:-5].astype(int) - a[:, 5:-5]).mean() < 1e-6


def test_torch_warp_matches_cv2_warp():
    img = _texture()[:32, :40, 0].astype(np.float32)
    flow = np.random.default_rng(1).uniform(-2, 2, (32, 40, 2)).astype(np.float32)
    ref = warp(img, flow)
    got = torch_warp(torch.from_numpy(img)[None, None], torch.from_numpy(flow)[None])[0, 0].numpy()
    assert np.abs(ref - got)[2:-2, 2:-2].max() < 1e-3


def test_dis_flow_finds_a_translation():
    big = _texture()
    frames = np.stack([big[5:69, 5:85], big[5:69, 7:87]])  # content moves 2 px left
    flow = compute_flow(frames, tiny_config().flow)
    inner = flow.forward[0, 10:-10, 10:-10]
    assert abs(np.median(inner[..., 0]) + 2) < 0.3
    assert abs(np.median(inner[..., 1])) < 0.3
    assert flow.valid_forward[0, 10:-10, 10:-10].mean() > 0.9


def test_consistency_mask_flags_occlusion_and_leaving_pixels():
    h, w = 20, 30
    fw = np.zeros((h, w, 2), np.float32)
    bw = np.zeros((h, w, 2), np.float32)
    fw[..., 0] = 4  # everything moves right by 4 px ...
    bw[..., 0] = -4
    bw[:, 10:16, 0] = 0  # ... but in the target frame these pixels belong to a static occluder
    valid = consistency_mask(fw, bw, alpha=0.01, beta=0.5)
    assert valid[:, :5].all()  # consistent, lands inside
    assert not valid[:, 7:11].any()  # land on the occluder: backward flow disagrees
    assert not valid[:, -4:].any()  # leave the frame
    assert valid[:, 13:25].all()


def test_resize_flow_scales_vectors():
    flow = np.ones((2, 20, 40, 2), np.float32)
    small = resize_flow(flow, (10, 10))
    assert small.shape == (2, 10, 10, 2)
    assert np.allclose(small[..., 0], 0.25)
    assert np.allclose(small[..., 1], 0.5)


def test_raft_needs_a_local_weights_file(tmp_path):
    from hvsa.errors import HvsaError

    frames = np.stack([_texture()[:64, :80]] * 2)
    cfg = tiny_config(**{"flow.method": "raft"}).flow
    with pytest.raises(HvsaError, match="raft_weights"):
        compute_flow(frames, cfg)
    missing = cfg.model_copy(update={"raft_weights": str(tmp_path / "none.pth")})
    with pytest.raises(HvsaError, match="not found"):
        compute_flow(frames, missing)


def test_raft_runs_from_a_local_state_dict(tmp_path):
    from torchvision.models.optical_flow import raft_small

    torch.manual_seed(0)
    path = tmp_path / "raft_small.pth"
    torch.save(raft_small(weights=None).state_dict(), path)
    frames = np.stack([_texture()[:64, :80], _texture()[2:66, 2:82]])
    cfg = tiny_config(**{"flow.method": "raft", "flow.raft_weights": str(path)}).flow
    flow = compute_flow(frames, cfg)
    assert flow.forward.shape == (1, 64, 80, 2) and flow.backward.shape == (1, 64, 80, 2)
    assert np.isfinite(flow.forward).all()
    assert flow.valid_forward.dtype == bool
