"""Benchmark strategies and their names, parsed in one place.

Why: the benchmark runs a strategy by its name, and the reports colour, order and group by the
same parts of it (granularity, selector, budget, layers); one pattern keeps them from drifting.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hvsa.config import SELECTORS, BenchmarkConfig
from hvsa.errors import HvsaError

HVSA_NAME = re.compile(
    r"^hvsa-(?P<samples>frame|superpixel|rect(?P<rect>\d+))"
    rf"-(?P<selector>{'|'.join(SELECTORS)})(?:-b(?P<budget>\d+))?(?P<layers>-layers)?(?P<fix>-fix)?$"
)


@dataclass(frozen=True)
class HvsaName:
    """The parts of ``hvsa-<frame|superpixel|rectN>-<selector>[-bB][-layers][-fix]``."""

    samples: str  # frame, superpixel or rectN, as benchmark.budgets names them
    rect_size: int  # N of rectN; 0 otherwise
    selector: str
    budget: int | None  # B of -bB; None: benchmark.budgets
    layers: bool
    fix: bool = False  # the corrector annotator: prefilled labels corrected, not redrawn

    @property
    def plain(self) -> bool:
        """One cell of the grid: the granularity's budget, no class layers, the oracle."""
        return self.budget is None and not self.layers and not self.fix


def parse_hvsa_name(name: str) -> HvsaName | None:
    """The parts of an hvsa strategy's name, or None if it is not one."""
    m = HVSA_NAME.match(name)
    if m is None:
        return None
    return HvsaName(
        samples=m["samples"],
        rect_size=int(m["rect"] or 0),
        selector=m["selector"],
        budget=None if m["budget"] is None else int(m["budget"]),
        layers=m["layers"] is not None,
        fix=m["fix"] is not None,
    )


_PROPAGATE = re.compile(r"^propagate-(\d+)$")


@dataclass(frozen=True)
class Strategy:
    """One way to label the video; ``name`` is what the results call it."""

    name: str
    kind: str  # manual | propagate | hvsa
    k: int = 0
    granularity: str = ""
    rect_size: int = 0
    selector: str = ""
    budget: int = 0  # samples per round; 0 = benchmark.budgets of the granularity
    layers: bool = False  # class layers once enough frames are labelled (class_layers.py)
    fix: bool = False  # -fix: the corrector annotator (method/corrections.py), not the oracle

    @property
    def annotator(self) -> str:
        """The simulated annotator: the corrector fixes the prefill, the oracle redraws."""
        return "corrector" if self.fix else "oracle"

    @property
    def samples(self) -> str:
        """The granularity as the budgets name it: frame, superpixel or rectN."""
        return f"rect{self.rect_size}" if self.granularity == "rect" else self.granularity


def parse_strategy(name: str) -> Strategy:
    """``manual``, ``propagate-K``, ``auto[-fix]`` or
    ``hvsa-<frame|superpixel|rectN>-<selector>[-bB][-layers][-fix]``.

    The optional ``-bB`` suffix sets the samples per round to B (default: benchmark.budgets), so
    one results table can compare budgets of one granularity and selector; ``-layers`` turns
    class layers on (``layers.enabled``); ``-fix`` has the corrector annotate (it corrects the
    labels each sample is shown with, priced by the correction click model) instead of the
    oracle (it redraws each sample from nothing).
    """
    if name == "manual":
        return Strategy(name, "manual")
    if name in ("auto", "auto-fix"):
        # frames (and rectangles) within auto by the selector that did best on whole frames
        return Strategy(name, "hvsa", granularity="auto", selector="coverage",
                        fix=name.endswith("-fix"))  # fmt: skip
    if m := _PROPAGATE.match(name):
        k = int(m.group(1))
        if k < 2:
            raise HvsaError(f"{name}: K must be at least 2 (K=1 is manual)")
        return Strategy(name, "propagate", k=k)
    if parts := parse_hvsa_name(name):
        granularity = "rect" if parts.rect_size else parts.samples
        if parts.layers and parts.samples != "frame":
            raise HvsaError(f"{name}: -layers needs whole frames (hvsa-frame-<selector>...)")
        if parts.budget is not None and parts.budget < 1:
            raise HvsaError(f"{name}: the budget suffix -bB needs B ≥ 1 samples per round")
        return Strategy(
            name, "hvsa", granularity=granularity, rect_size=parts.rect_size,
            selector=parts.selector, budget=parts.budget or 0, layers=parts.layers,
            fix=parts.fix,
        )  # fmt: skip
    raise HvsaError(
        f"unknown strategy {name!r}: use manual, propagate-K, auto[-fix] or "
        f"hvsa-<frame|superpixel|rectN>-<{'|'.join(SELECTORS)}>[-bB][-layers][-fix]"
    )


def baselines(cfg: BenchmarkConfig) -> list[str]:
    return ["manual", *(f"propagate-{k}" for k in cfg.ks)]


def headline(cfg: BenchmarkConfig) -> list[Strategy]:
    """What ``hvsa benchmark`` runs by default: the baselines and ``benchmark.strategies`` (the
    method a team runs by default, measured against them)."""
    return [parse_strategy(n) for n in [*baselines(cfg), *cfg.strategies]]


def strategy_grid(cfg: BenchmarkConfig) -> list[Strategy]:
    """The full grid of params.yaml's ``benchmark`` section, baselines first."""
    names = baselines(cfg)
    names += [f"hvsa-{g}-{s}" for g in cfg.granularities for s in cfg.selectors]
    names.append("auto")
    return [parse_strategy(n) for n in names]
