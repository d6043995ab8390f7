"""Generated driving-like videos with exact ground truth.

Hard enough for the method to matter: several textured background classes, a camera that pans
and zooms, independently moving objects that occlude each other, thin poles, lighting change
and sensor noise. Each seed draws its own colours and textures around class-typical priors, so
a network pretrained on some seeds sees a shifted domain on a new one and has to adapt — the
situation test-time fine-tuning is for.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from hvsa.data.images import write_image
from hvsa.data.video import ClassList, write_classes_file

CLASSES = ClassList(
    names=("sky", "building", "road", "vegetation", "car", "pedestrian", "pole"),
    colors=(
        (70, 130, 180),
        (70, 70, 70),
        (128, 64, 128),
        (107, 142, 35),
        (0, 0, 142),
        (220, 20, 60),
        (153, 153, 153),
    ),
)
SKY, BUILDING, ROAD, VEGETATION, CAR, PEDESTRIAN, POLE = range(len(CLASSES))

# Class-typical colours (RGB) and how far a seed may move away from them.
_PRIOR = {
    SKY: ((135, 185, 235), 55),
    BUILDING: ((140, 120, 110), 55),
    ROAD: ((95, 95, 100), 40),
    VEGETATION: ((70, 130, 60), 45),
    PEDESTRIAN: ((190, 140, 120), 60),
    POLE: ((70, 70, 70), 45),
}
WORLD_SCALE = (1.5, 1.8)  # world canvas relative to the frame (height, width)


def _colour(rng: np.random.Generator, cls: int) -> np.ndarray:
    base, spread = _PRIOR[cls]
    return np.clip(np.asarray(base) + rng.normal(0, spread, 3), 0, 255)


def _noise_field(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Smooth zero-mean unit-variance noise: the texture of one class in one seed."""
    field = cv2.GaussianBlur(rng.normal(0, 1, shape).astype(np.float32), (0, 0), sigma)
    return (field - field.mean()) / (field.std() + 1e-6)


def _texture(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """A (H,W,3) texture: coarse and fine noise with seed-dependent strength and grain."""
    coarse = _noise_field(rng, shape, rng.uniform(2.0, 8.0)) * rng.uniform(5, 25)
    fine = _noise_field(rng, shape, rng.uniform(0.5, 1.5)) * rng.uniform(2, 15)
    tint = rng.uniform(0.6, 1.4, 3)
    return (coarse + fine)[..., None] * tint


def _paint(image, labels, mask, cls, colour, texture) -> None:
    image[mask] = np.clip(colour + texture[mask], 0, 255)
    labels[mask] = cls


class _Scene:
    """A static world (background, buildings, trees, poles) plus moving objects."""

    def __init__(self, rng: np.random.Generator, height: int, width: int, frames: int):
        self.rng = rng
        self.height, self.width, self.frames = height, width, frames
        hw, ww = int(height * WORLD_SCALE[0]), int(width * WORLD_SCALE[1])
        self.shape = (hw, ww)
        self.horizon = int(hw * rng.uniform(0.42, 0.55))
        self.textures = {c: _texture(rng, self.shape) for c in range(len(CLASSES))}
        self.image = np.zeros((hw, ww, 3), np.float32)
        self.labels = np.zeros((hw, ww), np.uint8)
        self._draw_static()
        self.movers = self._make_movers()

    def _draw_static(self) -> None:
        rng, hw, ww, hz = self.rng, *self.shape, self.horizon
        img, lab, tex = self.image, self.labels, self.textures
        yy, _ = np.mgrid[0:hw, 0:ww]
        sky = _colour(rng, SKY)
        gradient = ((yy / max(hz, 1))[..., None] * rng.normal(0, 30, 3)).astype(np.float32)
        img[:] = np.clip(sky + gradient + tex[SKY] * 0.5, 0, 255)
        lab[:] = SKY
        x = 0
        while x < ww:  # skyline of buildings with windows
            w = int(rng.integers(max(ww // 12, 4), max(ww // 5, 6)))
            h = int(rng.uniform(0.12, 0.4) * hw)
            mask = np.zeros(self.shape, bool)
            mask[max(hz - h, 0) : hz, x : x + w] = True
            _paint(img, lab, mask, BUILDING, _colour(rng, BUILDING), tex[BUILDING])
            win = max(2, w // 8)
            dark = rng.uniform(0.4, 0.8)
            for wy in range(max(hz - h, 0) + win, hz - win, 2 * win):
                for wx in range(x + win, x + w - win, 2 * win):
                    img[wy : wy + win, wx : wx + win] *= dark
            x += w
        for _ in range(int(rng.integers(3, 7))):  # trees in front of the buildings
            r = int(rng.uniform(0.05, 0.13) * hw)
            cx, cy = int(rng.integers(0, ww)), hz - int(r * rng.uniform(0.2, 0.9))
            mask = np.zeros(self.shape, np.uint8)
            pts = [
                (
                    cx + r * np.cos(a) * rng.uniform(0.7, 1.2),
                    cy + r * np.sin(a) * rng.uniform(0.7, 1.2),
                )
                for a in np.linspace(0, 2 * np.pi, 14, endpoint=False)
            ]
            cv2.fillPoly(mask, [np.asarray(pts, np.int32)], 1)
            _paint(
                img, lab, mask.astype(bool), VEGETATION, _colour(rng, VEGETATION), tex[VEGETATION]
            )
        ground = yy >= hz
        _paint(img, lab, ground, VEGETATION, _colour(rng, VEGETATION) * 0.8, tex[VEGETATION])
        left, right = rng.uniform(0.0, 0.2) * ww, rng.uniform(0.8, 1.0) * ww
        vanish = rng.uniform(0.4, 0.6) * ww
        road = np.zeros(self.shape, np.uint8)
        cv2.fillPoly(
            road,
            [np.asarray([(vanish - 2, hz), (vanish + 2, hz), (right, hw), (left, hw)], np.int32)],
            1,
        )
        road_colour = _colour(rng, ROAD)
        _paint(img, lab, road.astype(bool), ROAD, road_colour, tex[ROAD])
        for y in range(hz + 4, hw, 8):  # dashed centre line: still road
            t = (y - hz) / max(hw - hz, 1)
            cx = vanish + t * ((left + right) / 2 - vanish)
            half = max(1, int(1 + 2 * t))
            img[y : y + 3, int(cx) - half : int(cx) + half] = np.clip(road_colour + 90, 0, 255)
        self.road = (left, right, vanish)
        for _ in range(int(rng.integers(2, 5))):  # thin poles beside the road
            bottom = int(rng.uniform(hz + 0.2 * (hw - hz), hw))
            t = (bottom - hz) / max(hw - hz, 1)
            side = rng.choice([-1, 1])
            edge = vanish + t * ((right if side > 0 else left) - vanish)
            px = int(edge + side * rng.uniform(2, 8))
            top = bottom - int(rng.uniform(0.35, 0.6) * hw)
            width = int(rng.integers(1, 3))
            mask = np.zeros(self.shape, bool)
            mask[max(top, 0) : bottom, max(px - width, 0) : px + width] = True
            _paint(img, lab, mask, POLE, _colour(rng, POLE), tex[POLE] * 0.3)

    def _make_movers(self) -> list[dict]:
        rng, (hw, ww), hz = self.rng, self.shape, self.horizon
        left, right, vanish = self.road
        movers = []
        for _ in range(int(rng.integers(2, 5))):
            bottom = rng.uniform(hz + 0.25 * (hw - hz), hw - 2)
            t = (bottom - hz) / max(hw - hz, 1)
            width = (right - left) * t * rng.uniform(0.18, 0.3)
            movers.append(
                {
                    "cls": CAR,
                    "x": rng.uniform(0, ww),
                    "bottom": bottom,
                    "w": width,
                    "h": width * rng.uniform(0.45, 0.7),
                    "vx": rng.uniform(-2.5, 2.5) * (1 + t),
                    "colour": rng.uniform(0, 255, 3),
                }
            )
        for _ in range(int(rng.integers(2, 5))):
            bottom = rng.uniform(hz + 0.1 * (hw - hz), hw - 2)
            t = (bottom - hz) / max(hw - hz, 1)
            h = (0.15 + 0.35 * t) * hw * rng.uniform(0.6, 1.0)
            movers.append(
                {
                    "cls": PEDESTRIAN,
                    "x": rng.uniform(0, ww),
                    "bottom": bottom,
                    "w": h * 0.3,
                    "h": h,
                    "vx": rng.uniform(-0.8, 0.8),
                    "colour": _colour(rng, PEDESTRIAN),
                }
            )
        return sorted(movers, key=lambda m: m["bottom"])  # far ones first: near ones occlude

    def world_at(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        img, lab = self.image.copy(), self.labels.copy()
        ww = self.shape[1]
        for m in self.movers:
            x = (m["x"] + m["vx"] * t) % (ww + m["w"]) - m["w"] / 2
            x0, x1 = int(x - m["w"] / 2), int(x + m["w"] / 2)
            y1, y0 = int(m["bottom"]), int(m["bottom"] - m["h"])
            mask = np.zeros(self.shape, np.uint8)
            if m["cls"] == CAR:
                cv2.rectangle(mask, (x0, int(y0 + m["h"] * 0.35)), (x1, y1), 1, -1)
                cv2.rectangle(
                    mask, (int(x0 + m["w"] * 0.2), y0), (int(x1 - m["w"] * 0.2), y1), 1, -1
                )
            else:
                head = max(1, int(m["w"] * 0.35))
                cv2.circle(mask, ((x0 + x1) // 2, y0 + head), head, 1, -1)
                cv2.rectangle(mask, (x0, y0 + 2 * head), (x1, y1), 1, -1)
            noise = self.rng.normal(0, 6, (*self.shape, 3))
            _paint(img, lab, mask.astype(bool), m["cls"], m["colour"], noise)
        return img, lab


def generate(
    frames: int, height: int, width: int, seed: int
) -> tuple[np.ndarray, np.ndarray, ClassList]:
    """Return frames (N,H,W,3) uint8, labels (N,H,W) uint8 and the class list for one seed."""
    rng = np.random.default_rng(seed)
    scene = _Scene(rng, height, width, frames)
    hw, ww = scene.shape
    pan = rng.uniform(0.15, 0.35) * width * rng.choice([-1, 1])
    zoom = rng.uniform(0.0, 0.2)
    gain_amp, gain_phase = rng.uniform(0.1, 0.3), rng.uniform(0, 2 * np.pi)
    cast = rng.normal(0, 0.08, 3)
    noise_sigma = rng.uniform(3, 9)
    out_frames = np.zeros((frames, height, width, 3), np.uint8)
    out_labels = np.zeros((frames, height, width), np.uint8)
    for t in range(frames):
        progress = t / max(frames - 1, 1)
        scale = 1.0 + zoom * progress
        cx = ww / 2 + pan * (progress - 0.5)
        cy = hw / 2 + 0.03 * height * np.sin(2 * np.pi * progress)
        m = np.float32([[scale, 0, width / 2 - scale * cx], [0, scale, height / 2 - scale * cy]])
        world_img, world_lab = scene.world_at(t)
        img = cv2.warpAffine(world_img, m, (width, height), flags=cv2.INTER_LINEAR)
        lab = cv2.warpAffine(world_lab, m, (width, height), flags=cv2.INTER_NEAREST)
        gain = 1 + gain_amp * np.sin(2 * np.pi * progress + gain_phase)
        img = img * gain * (1 + cast) + rng.normal(0, noise_sigma, img.shape)
        out_frames[t] = np.clip(img, 0, 255).astype(np.uint8)
        out_labels[t] = lab
    return out_frames, out_labels, CLASSES


def write_video(
    out: str | Path, frames: np.ndarray, labels: np.ndarray | None, classes: ClassList
) -> Path:
    """Write the hvsa video folder layout: frames/, labels/, classes.json."""
    out = Path(out)
    (out / "frames").mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        write_image(out / "frames" / f"{i:06d}.png", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    if labels is not None:
        (out / "labels").mkdir(exist_ok=True)
        for i, mask in enumerate(labels):
            write_image(out / "labels" / f"{i:06d}.png", mask)
    write_classes_file(out / "classes.json", classes)
    return out
