"""Benchmark strategy names, parsed in one place.

Why: the benchmark runs a strategy by its name, and the reports colour, order and group by the
same parts of it (granularity, selector, budget, layers); one pattern keeps them from drifting.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hvsa.config import SELECTORS

HVSA_NAME = re.compile(
    r"^hvsa-(?P<samples>frame|superpixel|rect(?P<rect>\d+))"
    rf"-(?P<selector>{'|'.join(SELECTORS)})(?:-b(?P<budget>\d+))?(?P<layers>-layers)?$"
)


@dataclass(frozen=True)
class HvsaName:
    """The parts of ``hvsa-<frame|superpixel|rectN>-<selector>[-bB][-layers]``."""

    samples: str  # frame, superpixel or rectN, as benchmark.budgets names them
    rect_size: int  # N of rectN; 0 otherwise
    selector: str
    budget: int | None  # B of -bB; None: benchmark.budgets
    layers: bool

    @property
    def plain(self) -> bool:
        """One cell of the grid: the granularity's budget, no class layers."""
        return self.budget is None and not self.layers


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
    )
