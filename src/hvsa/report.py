"""Benchmark reports: clicks to reach each target, as a table, a chart and an overlay strip."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.colors import LogNorm
from matplotlib.patches import Rectangle
from matplotlib.ticker import FormatStrFormatter

from hvsa.plots import plt

SUMMARY_COLUMNS = ["video", "strategy", "target", "clicks", "clicks_pct", "best_miou"]
HVSA = ("hvsa-", "auto")  # name prefixes of the strategies that run the annotation loop
# the grid's own strategies: no budget suffix, no layers
PLAIN = re.compile(r"^hvsa-(?P<granularity>frame|superpixel|rect\d+)-(?P<selector>[a-z]+)$")


def clicks_to_targets(rows: pd.DataFrame, targets: list[float]) -> pd.DataFrame:
    """One row per video × strategy × target: the clicks at which mIoU first reached it.

    ``clicks`` and ``clicks_pct`` are empty (NA) when the target was never reached;
    ``best_miou`` is the strategy's best mIoU either way.
    """
    out = []
    for (video, strategy), runs in rows.groupby(["video", "strategy"], sort=False):
        runs = runs.sort_values(["clicks", "round"])
        best = float(runs["miou"].max())
        for target in targets:
            hit = runs[runs["miou"] >= target - 1e-12]
            first = hit.iloc[0] if len(hit) else None
            out.append(
                {
                    "video": video,
                    "strategy": strategy,
                    "target": target,
                    "clicks": int(first["clicks"]) if first is not None else pd.NA,
                    "clicks_pct": float(first["clicks_pct"]) if first is not None else pd.NA,
                    "best_miou": best,
                }
            )
    frame = pd.DataFrame(out, columns=SUMMARY_COLUMNS)
    frame["clicks"] = frame["clicks"].astype("Int64")
    frame["clicks_pct"] = frame["clicks_pct"].astype("Float64")
    return frame


def best_of(
    summary: pd.DataFrame, prefix: str | tuple[str, ...], target: float
) -> pd.Series | None:
    """The strategy starting with ``prefix`` that reached ``target`` with the fewest clicks."""
    part = summary[summary["strategy"].str.startswith(prefix) & (summary["target"] == target)]
    part = part.dropna(subset=["clicks"])
    return None if part.empty else part.sort_values("clicks").iloc[0]


def summary_markdown(summary: pd.DataFrame, rows: pd.DataFrame) -> str:
    """The RESULTS.md table: per strategy, clicks (and %) to each target or 'not reached'."""
    targets = sorted(summary["target"].unique())
    spent = rows.groupby("strategy")["clicks"].max()
    head = "| strategy | " + " | ".join(f"{100 * t:.0f} % mIoU" for t in targets) + " | best mIoU |"
    lines = [head, "|---" * (len(targets) + 2) + "|"]
    for strategy, part in summary.groupby("strategy", sort=False):
        cells = []
        for t in targets:
            r = part[part["target"] == t].iloc[0]
            if pd.isna(r["clicks"]):
                best = f"{100 * r['best_miou']:.1f} % at {spent[strategy]:,}"
                cells.append(f"not reached (best {best})")
            else:
                cells.append(f"{int(r['clicks']):,} ({r['clicks_pct']:.1f} %)")
        best = 100 * part["best_miou"].iloc[0]
        lines.append(f"| {strategy} | " + " | ".join(cells) + f" | {best:.1f} % |")
    verdicts = []
    for t in targets:
        hv, pk = best_of(summary, HVSA, t), best_of(summary, "propagate-", t)
        hv_text = f"{hv['strategy']} {hv['clicks_pct']:.1f} %" if hv is not None else "not reached"
        pk_text = f"{pk['strategy']} {pk['clicks_pct']:.1f} %" if pk is not None else "not reached"
        verdicts.append(f"- {100 * t:.0f} %: best hvsa {hv_text}; best propagate-K {pk_text}")
    return (
        "\n".join(lines)
        + "\n\nBest per target (share of the manual clicks):\n"
        + "\n".join(verdicts)
        + "\n"
    )


SELECTOR_COLOURS = {"paper": "C0", "random": "C1", "uncertainty": "C2", "diversity": "C4",
                    "coverage": "C3", "gain": "C5"}  # fmt: skip
GRANULARITY_LINES = {"frame": "-", "rect16": ":", "rect32": "--", "rect64": "-.",
                     "superpixel": (0, (1, 3))}  # fmt: skip
VARIANT = re.compile(r"^hvsa-(frame|superpixel|rect\d+)-([a-z]+)(-b\d+)?(-layers)?$")


def line_style(strategy: str) -> dict:
    """Colour by selector, line by granularity, marker by variant, so two dozen lines part.

    Why: matplotlib's cycle repeats after ten colours, and the grid alone has twenty
    strategies; a reader looks for "the dashed ones" (rectangles) or "the red ones" (coverage).
    """
    if strategy == "auto":
        return {"color": "C6", "lw": 1.6, "marker": "D", "ms": 4, "zorder": 4}  # on top
    m = VARIANT.match(strategy)
    if m is None:
        return {"marker": "."}
    granularity, selector, budget, layers = m.groups()
    return {
        "color": SELECTOR_COLOURS.get(selector, "C7"),
        "ls": GRANULARITY_LINES.get(granularity, "-"),
        "lw": 2.0 if layers else 1.2,
        "marker": "s" if layers else ("^" if budget else "."),
        "ms": 4 if (layers or budget) else 6,
    }


def plot_miou_vs_clicks(rows: pd.DataFrame, targets: list[float], path: Path, title: str) -> None:
    """All strategies on one chart: mIoU against clicks as % of full manual (log axis)."""
    fig, ax = plt.subplots(figsize=(9, 6), dpi=110)
    prop = rows[rows["strategy"].str.startswith("propagate-")].sort_values("clicks_pct")
    if len(prop):
        ax.plot(prop["clicks_pct"], 100 * prop["miou"], "k--o", label="propagate-K", zorder=3)
        for _, r in prop.iterrows():
            ax.annotate(r["strategy"].split("-")[1], (r["clicks_pct"], 100 * r["miou"]),
                        textcoords="offset points", xytext=(3, -11), fontsize=7)  # fmt: skip
    manual = rows[rows["strategy"] == "manual"]
    if len(manual):
        ax.plot(manual["clicks_pct"], 100 * manual["miou"], "k*", ms=12, label="manual")
    for strategy, part in rows[rows["strategy"].str.startswith(HVSA)].groupby("strategy"):
        part = part[part["clicks"] > 0].sort_values("clicks")
        if len(part):
            ax.plot(part["clicks_pct"], 100 * part["miou"], label=strategy, **line_style(strategy))
    for t in targets:
        ax.axhline(100 * t, color="grey", lw=0.8, ls=":")
    ax.set_xscale("log")
    ax.set_xlabel("clicks, % of full manual annotation (log scale)")
    ax.set_ylabel("label mIoU (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, ncol=2, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def grid_cells(rows: pd.DataFrame, targets: list[float]) -> pd.DataFrame:
    """Per plain hvsa strategy: its granularity, selector and clicks (%) to each target."""
    summary = clicks_to_targets(rows, targets)
    parts = summary["strategy"].str.extract(PLAIN)
    summary = summary.join(parts).dropna(subset=["granularity"])
    spent = rows.groupby("strategy")["clicks_pct"].max().rename("spent_pct")
    return summary.join(spent, on="strategy")


def _order(values: pd.Series, first: list[str]) -> list[str]:
    """The values of ``first`` that occur, in that order, then any others sorted."""
    seen = list(dict.fromkeys(values))
    return [v for v in first if v in seen] + sorted(v for v in seen if v not in first)


def plot_grid(cells: pd.DataFrame, targets: list[float], path: Path, title: str) -> None:
    """The grid as a table of cells: rows granularities, columns selectors.

    Why: with two dozen strategies the mIoU-against-clicks chart has more lines than anyone
    can tell apart; "which granularity, which selector, for which target" reads better as
    cells holding the clicks to each target, coloured by the clicks to the lowest one.
    """
    grans = _order(cells["granularity"], ["frame", "rect16", "rect32", "rect64", "superpixel"])
    sels = _order(cells["selector"], ["paper", "random", "uncertainty", "diversity", "coverage"])
    low = min(targets)
    colour = np.full((len(grans), len(sels)), np.nan)
    fig, ax = plt.subplots(figsize=(1.9 * len(sels) + 1.5, 1.1 * len(grans) + 1.2), dpi=110)
    for (g, s), part in cells.groupby(["granularity", "selector"]):
        i, j = grans.index(g), sels.index(s)
        lines = []
        for t in targets:
            r = part[part["target"] == t].iloc[0]
            reached = not pd.isna(r["clicks_pct"])
            lines.append(f"{100 * t:.0f} %: " + (f"{r['clicks_pct']:.1f} %" if reached else "—"))
            if t == low and reached:
                colour[i, j] = float(r["clicks_pct"])
        best = part.iloc[0]
        lines.append(f"best {100 * best['best_miou']:.1f} % at {best['spent_pct']:.1f} %")
        box = {"facecolor": "white", "alpha": 0.7, "linewidth": 0}  # legible on dark cells
        ax.text(j, i, "\n".join(lines), ha="center", va="center", fontsize=7, bbox=box)
        if np.isnan(colour[i, j]):  # run, but never reached the lowest target
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, color="#cccccc", zorder=0))
    for i, g in enumerate(grans):
        for j, s in enumerate(sels):
            if not ((cells["granularity"] == g) & (cells["selector"] == s)).any():
                ax.text(j, i, "not run", ha="center", va="center", fontsize=7, color="grey")
    shown = np.ma.masked_invalid(colour)
    finite = colour[np.isfinite(colour)]
    spread = finite.size and finite.min() < finite.max()
    norm = LogNorm(finite.min(), finite.max()) if spread else None
    image = ax.imshow(shown, cmap="YlGn_r", norm=norm, aspect="auto")
    ax.set_xticks(range(len(sels)), sels)
    ax.set_yticks(range(len(grans)), grans)
    ax.set_xlabel("selector")
    ax.set_ylabel("granularity")
    ax.set_title(title, fontsize=9)
    bar = fig.colorbar(image, ax=ax)
    bar.set_label(f"clicks to {100 * low:.0f} % mIoU, % of manual (grey: not reached)")
    bar.ax.yaxis.set_major_formatter(FormatStrFormatter("%.0f"))
    bar.ax.yaxis.set_minor_formatter(FormatStrFormatter("%.0f"))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_overlay_strip(
    frames: np.ndarray,
    panels: dict[str, np.ndarray],
    palette: np.ndarray,
    indices: list[int],
    path: Path,
    alpha: float,
) -> None:
    """A grid of frames (columns) × label sources (rows: ground truth, strategies) as overlays."""
    fig, axes = plt.subplots(
        len(panels), len(indices), figsize=(3 * len(indices), 2.4 * len(panels)), dpi=100,
        squeeze=False,
    )  # fmt: skip
    for row, (name, labels) in enumerate(panels.items()):
        for col, t in enumerate(indices):
            blend = frames[t] * (1 - alpha) + palette[labels[t]] * alpha
            ax = axes[row][col]
            ax.imshow(blend.astype(np.uint8))
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(name, fontsize=8)
            if row == 0:
                ax.set_title(f"frame {t}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
