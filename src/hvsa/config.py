"""Typed configuration loaded from ``params.yaml``.

``params.yaml`` is the single source of truth for every knob: the models below declare types
and bounds but no defaults, so a knob missing from the file is an error rather than a silent
fallback to a value hidden in code. CLI flags override single values after loading.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hvsa.errors import HvsaError

PARAMS_NAME = "params.yaml"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataConfig(_Section):
    void_id: int = Field(ge=0, le=255)
    classes_file: str
    in_memory_mb: float | None = Field(default=None, ge=0)


class FlowConfig(_Section):
    method: Literal["dis", "raft"]
    dis_preset: Literal["ultrafast", "fast", "medium"]
    dis_finest_scale: int | None = Field(ge=0)
    raft_weights: str | None
    raft_arch: Literal["raft_small", "raft_large"]
    fb_alpha: float = Field(ge=0)
    fb_beta: float = Field(ge=0)


class ModelConfig(_Section):
    arch: Literal["lraspp_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large"]
    scale: float = Field(gt=0, le=1)
    device: Literal["auto", "cpu", "cuda"]
    train_crop: tuple[int, int] | None = None
    start_frames: int = Field(default=64, ge=0)

    @field_validator("train_crop")
    @classmethod
    def _crop_positive(cls, v: tuple[int, int] | None) -> tuple[int, int] | None:
        if v is not None and min(v) < 32:
            raise ValueError("train_crop sides must be at least 32 px (the backbone's stride)")
        return v


class PretrainConfig(_Section):
    steps: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    lr: float = Field(gt=0)
    weight_decay: float = Field(ge=0)
    crop_scale: float = Field(gt=0, le=1)
    warmup_share: float = Field(ge=0, lt=1)
    seed: int


class SamplesConfig(_Section):
    granularity: Literal["frame", "rect", "superpixel", "auto"]
    rect_size: int = Field(ge=2)
    superpixels: int = Field(ge=2)
    compactness: float = Field(gt=0)
    min_unlabelled: float = Field(gt=0, le=1)


class UncertaintyConfig(_Section):
    measure: Literal["entropy", "margin", "least_confidence"]


Selector = Literal["paper", "random", "uncertainty", "diversity", "coverage", "gain"]
SELECTORS: tuple[str, ...] = get_args(Selector)


class SelectionConfig(_Section):
    strategy: Selector
    keep_fraction: float = Field(gt=0, le=1)
    gain_pool: int = Field(ge=1)
    coverage_reach: float | None = Field(gt=0)
    coverage_per_click: bool
    spread_frames: int = Field(ge=0)
    spread_from_nothing: int = Field(ge=0)
    kmeans_init: int = Field(ge=1)
    seed: int


# a campaign's stages that may run on a Dask cluster (hvsa.campaign.cluster.HEAVY)
HeavyStep = Literal["flow", "samples", "start", "finetune", "labels"]


class CampaignConfig(_Section):
    ledger: str = Field(min_length=1)
    remote: str | None
    remote_endpoint: str | None = None
    tracking: str | None = None
    task_runner: str | None = None
    dask_workers: int = Field(default=2, ge=1)
    parallel_steps: int | None = Field(default=None, ge=1)
    opening_ramp: bool = True
    gpu_steps: list[HeavyStep] = Field(default_factory=list)
    heartbeat_s: int | None = Field(default=None, ge=30)

    @field_validator("task_runner")
    @classmethod
    def _runner(cls, value: str | None) -> str | None:
        if value is None or value == "local" or "://" in value:
            return value
        raise ValueError(f"{value!r}: null, local, or a Dask scheduler's address (tcp://HOST:8786)")


class AnnotationConfig(_Section):
    annotator: Literal["oracle", "corrector", "human"]
    wait_timeout_s: int = Field(ge=1)
    poll_s: int = Field(ge=1)
    polygon_tolerance: float = Field(ge=0)
    whole_frame: float = Field(gt=0, le=1)
    leave_width: int = Field(ge=0)
    leave_pixels: int = Field(ge=0)
    leave_share: float = Field(ge=0, le=1)


class AppConfig(_Section):
    host: str
    port: int = Field(ge=1, le=65535)
    lease_s: float = Field(gt=0)
    token_days: float = Field(gt=0)
    max_body_mb: float = Field(gt=0)
    click_factor: float = Field(ge=1)


class FinetuneConfig(_Section):
    steps: int = Field(ge=0)
    batch_size: int = Field(ge=1)
    lr: float = Field(gt=0)
    weight_decay: float = Field(ge=0)
    temporal_weight: float = Field(ge=0)
    neighbour_grad: bool
    labelled_share: float = Field(ge=0, le=1)
    freeze_bn: bool
    seed: int
    pseudo_threshold: float | None = Field(default=None, gt=0, le=1)
    keep_known: float | None = Field(default=None, gt=0, le=1)
    keep_known_ratio: float | None = Field(default=None, gt=0)
    schedule: Literal["constant", "cosine"] = "constant"
    warmup: int = Field(default=0, ge=0)
    average_last: float = Field(default=0.0, ge=0, lt=1)
    keep_change: float = Field(default=1.0, gt=0, le=1)


class FusionConfig(_Section):
    enabled: bool
    window: int | None = Field(ge=1)  # None: no limit
    sigma: float = Field(gt=0)
    distance_power: float = Field(ge=0)
    photo_sigma: float | None = Field(gt=0)
    min_remaining: float = Field(ge=0, le=1)
    network_weight: float = Field(gt=0)
    prior: float = Field(ge=0)
    guided_radius: int = Field(ge=0)
    guided_eps: float = Field(gt=0)
    sparse_share: float = Field(ge=0, le=1)
    radius_choices: list[Annotated[int, Field(ge=0)]]
    # another radius than guided_radius only where it beats it in this share of the probes
    # resampled (hvsa.method.calibrate.confident_choice); None: wherever it scores higher
    radius_confidence: float | None = Field(default=None, gt=0, lt=1)
    calibration_probes: int = Field(ge=1)
    # the most labelled frames the radius calibration hides in turn (spread evenly); None:
    # every labelled frame (hvsa.method.calibrate.radius_probes)
    calibration_probe_limit: int | None = Field(default=64, ge=1)
    # frames labelled in full before a round estimates its labels' quality (with as many probes,
    # up to calibration_probes; above calibration_probes it starts there); auto and class
    # layers wait for calibration_probes
    estimate_from: int = Field(default=4, ge=2)
    estimate_level: float = Field(gt=0, lt=1)
    # the network's vote: the mean of the predictions of this many of the latest networks that
    # differ (1 = the current network's alone); see hvsa.rounds.engine.network_vote
    vote_networks: int = Field(default=2, ge=1, le=2)
    # what the vote of two networks is taken in: "labels" = the labels written (the belief that
    # selection, auto and the estimate read stays the current network's); "all" = those too
    vote_for: Literal["labels", "all"] = "labels"
    # a label named for a whole region with one click (a superpixel's dominant class): in its
    # own frame the named class's belief is multiplied by 1 + this; None: as a drawn label,
    # certain
    region_odds: float | None = Field(default=9.0, gt=0)
    # whether a named label ends a chain as a drawn one does (shadowing farther labels)
    named_shadow: bool = True
    # a named pixel's colour against its region's median colour (mean absolute RGB difference)
    # at which its label counts 1/e as much, in its own frame and carried; None: every named
    # pixel alike (hvsa.method.fusion.named_trust)
    named_colour_sigma: float | None = Field(default=10.0, gt=0)
    # the network's vote weights a round picks among by the estimate's probes, each fused
    # without its own labels; [] = always network_weight (hvsa.method.calibrate.calibrated)
    network_weight_choices: list[Annotated[float, Field(gt=0)]] = []
    # which reading of the network at the probes scores them: its vote as if unseen (mirror
    # image), its own vote, or the mean of the two scores
    network_weight_reading: Literal["mean", "unseen", "own"] = "mean"

    @model_validator(mode="after")
    def _limit_holds_the_probes(self) -> FusionConfig:
        limit = self.calibration_probe_limit
        if limit is not None and limit < self.calibration_probes:
            raise ValueError(
                f"calibration_probe_limit ({limit}) is below calibration_probes "
                f"({self.calibration_probes}), the frames the calibration waits for"
            )
        return self


class LayersConfig(_Section):
    """Class layers (``class_layers.py``): once enough frames are labelled in full, rounds ask
    for one class's regions in a frame at a time, the layers with most IoU to win per click
    first."""

    enabled: bool
    per_round: int = Field(ge=1)
    order: Literal["layer", "class"]


class LoopConfig(_Section):
    budget: int = Field(ge=1)
    rounds: int = Field(ge=1)
    target_miou: float = Field(gt=0, le=1)
    max_clicks: int | None = Field(ge=1)


class AutoConfig(_Section):
    """``auto``: each round, the kind of sample whose batch is worth most estimated mIoU per
    click (``auto.py``)."""

    granularities: list[str] = Field(min_length=1)  # frame, superpixel, rectN (N px) or layers
    budgets: dict[str, int]  # samples per round, by granularity (layers: layers.per_round)
    learn_prices: bool = False  # scale each kind's expected clicks by its last batch's real ones


class OutputConfig(_Section):
    overlay_alpha: float = Field(ge=0, le=1)
    batch_size: int = Field(ge=1)


class SynthConfig(_Section):
    frames: int = Field(ge=2)
    height: int = Field(ge=32)
    width: int = Field(ge=32)


class DemoConfig(_Section):
    out: str
    target_seed: int
    pretrain_seeds: list[int] = Field(min_length=1)
    frames: int = Field(ge=2)
    height: int = Field(ge=32)
    width: int = Field(ge=32)
    pretrain_steps: int = Field(ge=1)
    granularity: Literal["frame", "rect", "superpixel"]
    selector: Selector
    budget: int = Field(ge=1)
    rounds: int = Field(ge=1)


class QuickBenchmarkConfig(_Section):
    frames: int = Field(ge=2)
    scale: float = Field(gt=0, le=1)
    strategies: list[str] = Field(min_length=1)
    budgets: dict[str, int]
    rounds: int = Field(ge=1)
    pretrain_steps: int = Field(ge=1)
    finetune_steps: int = Field(ge=0)


class BenchmarkConfig(_Section):
    strategies: list[str] = Field(min_length=1)  # run by default beside the baselines
    ks: list[int] = Field(min_length=1)
    granularities: list[str] = Field(min_length=1)
    selectors: list[Selector] = Field(min_length=1)
    budgets: dict[str, int]
    rounds: int | None = Field(ge=1)  # None: until the highest target or the click cap
    max_clicks_pct: float = Field(gt=0, le=100)
    targets: list[float] = Field(min_length=1)
    goal_share: float = Field(gt=0, le=1)
    pretrain_steps: int = Field(ge=1)
    overlay_frames: int = Field(ge=1)
    quick: QuickBenchmarkConfig


class Config(_Section):
    data: DataConfig
    flow: FlowConfig
    model: ModelConfig
    pretrain: PretrainConfig
    samples: SamplesConfig
    uncertainty: UncertaintyConfig
    selection: SelectionConfig
    campaign: CampaignConfig
    annotation: AnnotationConfig
    app: AppConfig
    finetune: FinetuneConfig
    fusion: FusionConfig
    layers: LayersConfig
    loop: LoopConfig
    auto: AutoConfig
    output: OutputConfig
    synth: SynthConfig
    demo: DemoConfig
    benchmark: BenchmarkConfig


def default_params() -> Path:
    """The params.yaml shipped with hvsa: every knob at its best measured setting."""
    return Path(str(resources.files("hvsa") / PARAMS_NAME))


def find_params(explicit: str | Path | None = None) -> Path:
    """Locate params.yaml: an explicit path, else the working directory's, else hvsa's own.

    A campaign workspace or a project folder keeps its own params.yaml beside its data; a user
    who has none runs with the defaults that ship with the package (``default_params``).
    """
    if explicit is not None:
        path = Path(explicit)
        if not path.is_file():
            raise HvsaError(f"params file not found: {path}")
        return path
    here = Path.cwd() / PARAMS_NAME
    return here if here.is_file() else default_params()


def apply_overrides(raw: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Set ``section.key`` values in a raw params dict (a copy); unknown keys are errors.

    A value of None sets the key to null (``--set fusion.window=null``), as in params.yaml.
    """
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in raw.items()}
    for dotted, value in overrides.items():
        section, _, key = dotted.partition(".")
        if section not in out or not isinstance(out[section], dict) or not key:
            raise HvsaError(f"unknown setting {dotted!r}")
        if key not in out[section]:
            raise HvsaError(f"unknown setting {dotted!r}")
        out[section][key] = value
    return out


def parse_set_option(items: list[str]) -> dict[str, Any]:
    """Turn ``["loop.budget=5", ...]`` into ``{"loop.budget": 5}`` (values parsed as YAML)."""
    parsed: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise HvsaError(f"--set expects section.key=value, got {item!r}")
        key, _, value = item.partition("=")
        try:
            parsed[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or "not valid YAML"
            raise HvsaError(f"--set {key.strip()}: the value {value!r} is {problem}") from None
    return parsed


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Load and validate params.yaml, then apply overrides; errors are one-line HvsaErrors."""
    params_path = find_params(path)
    try:
        raw = yaml.safe_load(params_path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise HvsaError(f"{params_path} is not valid YAML: {exc}".splitlines()[0]) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise HvsaError(f"cannot read {params_path}: {exc}") from None
    if not isinstance(raw, dict):
        raise HvsaError(
            f"{params_path}: a mapping of sections (data:, model:, ...) expected, "
            f"not a {type(raw).__name__}"
        )
    raw = apply_overrides(raw, overrides or {})
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise HvsaError(f"{params_path}: {where}: {first['msg']}") from exc
