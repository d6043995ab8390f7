"""The benchmark grid as a chart of cells: granularity × selector, clicks to each target.

Why: the grid alone is thirty strategies (five granularities × six selectors), more lines than
anyone can tell apart on the mIoU-against-clicks chart; "which granularity, which selector,
for which target" reads better as cells holding the clicks to each target, coloured by the
clicks to the lowest one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.colors import LogNorm
from matplotlib.patches import Rectangle
from matplotlib.ticker import NullFormatter

from hvsa.benchmark.report import clicks_to_targets
from hvsa.benchmark.strategies import parse_hvsa_name
from hvsa.config import SELECTORS
from hvsa.method.samples import parse_granularity
from hvsa.rounds.chart import plt

# colour-bar ticks, % of the manual clicks: those within the cells' range are shown
NICE_TICKS = (0.5, 1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 70, 100)


def grid_cells(rows: pd.DataFrame, targets: list[float]) -> pd.DataFrame:
    """Per plain hvsa strategy (no -bB, no -layers) and target: clicks (%) to reach it.

    Columns of :func:`hvsa.benchmark.report.clicks_to_targets` plus ``granularity``,
    ``selector`` and ``spent_pct`` (the strategy's clicks over all its rounds, % of manual).
    """
    summary = clicks_to_targets(rows, targets)
    parts = summary["strategy"].map(parse_hvsa_name)
    keep = parts.map(lambda p: p is not None and p.plain).astype(bool)
    summary, parts = summary[keep].copy(), parts[keep]
    summary["granularity"] = parts.map(lambda p: p.samples)
    summary["selector"] = parts.map(lambda p: p.selector)
    spent = rows.groupby(["video", "strategy"])["clicks_pct"].max().rename("spent_pct")
    return summary.join(spent, on=["video", "strategy"])


def _granularity_key(granularity: str) -> tuple[int, int]:
    """Whole frames first, rectangles from small to large, superpixels last."""
    kind, size = parse_granularity(granularity)
    return (("frame", "rect", "superpixel").index(kind), size or 0)


@dataclass
class GridTable:
    """What the chart draws, kept apart from drawing so that tests can read it."""

    granularities: list[str]  # rows
    selectors: list[str]  # columns
    texts: list[list[str | None]]  # per cell; None: not run
    colour: np.ndarray  # clicks (%) to the lowest target; NaN: not run or not reached
    low: float  # the lowest target


def grid_table(cells: pd.DataFrame, targets: list[float]) -> GridTable:
    """Cells of one video: the clicks (%) to each target, and the best mIoU and clicks spent."""
    if cells["video"].nunique() > 1:
        raise ValueError(f"one video per grid chart, got {sorted(cells['video'].unique())}")
    grans = sorted(cells["granularity"].unique(), key=_granularity_key)
    order = {s: i for i, s in enumerate(SELECTORS)}
    sels = sorted(cells["selector"].unique(), key=lambda s: order.get(s, len(order)))
    low = min(targets)
    texts: list[list[str | None]] = [[None] * len(sels) for _ in grans]
    colour = np.full((len(grans), len(sels)), np.nan)
    for (g, s), part in cells.groupby(["granularity", "selector"]):
        i, j = grans.index(g), sels.index(s)
        lines = []
        for t in targets:
            r = part[part["target"] == t].iloc[0]
            reached = not pd.isna(r["clicks_pct"])
            lines.append(f"{100 * t:.0f} %: " + (f"{r['clicks_pct']:.1f} %" if reached else "—"))
            if t == low and reached:
                colour[i, j] = float(r["clicks_pct"])
        first = part.iloc[0]
        lines.append(f"best {100 * first['best_miou']:.1f} % (spent {first['spent_pct']:.1f} %)")
        texts[i][j] = "\n".join(lines)
    return GridTable(grans, sels, texts, colour, low)


def _norm_and_ticks(colour: np.ndarray) -> tuple[LogNorm, list[float]] | None:
    """A log scale over the reached cells (a target met at 0 clicks drawn at the bottom)."""
    values = colour[np.isfinite(colour)]
    if not values.size:
        return None
    positive = values[values > 0]
    bottom = float(positive.min()) if positive.size else NICE_TICKS[0]
    top = max(float(values.max()), bottom)
    if top / bottom < 1.5:  # one value, or nearly: widen so the colour bar has a range
        bottom, top = bottom / 1.5, top * 1.5
    ticks = [t for t in NICE_TICKS if bottom <= t <= top] or [round(bottom, 1), round(top, 1)]
    return LogNorm(bottom, top), ticks


def plot_grid(table: GridTable, path: Path, title: str) -> None:
    """Rows granularities, columns selectors; grey: never reached the lowest target."""
    n_rows, n_cols = len(table.granularities), len(table.selectors)
    size = (max(1.9 * n_cols + 2.5, 6.5), 1.1 * n_rows + 1.6)
    fig, ax = plt.subplots(figsize=size, dpi=110)
    box = {"facecolor": "white", "alpha": 0.7, "linewidth": 0}  # legible on dark cells
    for i in range(n_rows):
        for j in range(n_cols):
            text = table.texts[i][j]
            if text is None:
                ax.text(j, i, "not run", ha="center", va="center", fontsize=7, color="grey")
                continue
            ax.text(j, i, text, ha="center", va="center", fontsize=7, bbox=box)
            if np.isnan(table.colour[i, j]):
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, color="#cccccc", zorder=0))
    scale = _norm_and_ticks(table.colour)
    colour = table.colour
    if scale is not None:
        colour = np.where(colour <= 0, scale[0].vmin, colour)
    image = ax.imshow(
        np.ma.masked_invalid(colour), cmap="YlGn_r", aspect="auto",
        norm=scale[0] if scale else None,
    )  # fmt: skip
    ax.set_xlim(-0.5, n_cols - 0.5)
    ax.set_ylim(n_rows - 0.5, -0.5)
    ax.set_xticks(range(n_cols), table.selectors)
    ax.set_yticks(range(n_rows), table.granularities)
    ax.set_xlabel("selector")
    ax.set_ylabel("granularity")
    low = f"{100 * table.low:.0f} %"
    ax.set_title(title if scale else f"{title}\n(none of these reached {low} mIoU)", fontsize=9)
    if scale is not None:
        bar = fig.colorbar(image, ax=ax)
        bar.set_label(f"clicks to {low} mIoU, % of manual (grey: not reached)")
        bar.set_ticks(scale[1], labels=[f"{t:g}" for t in scale[1]])
        bar.ax.yaxis.set_minor_formatter(NullFormatter())
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
