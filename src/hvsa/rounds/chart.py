"""Plots people would rather look at than read: label quality against clicks spent."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_clicks_vs_miou(results, manual_clicks: int | None, path: Path, title: str) -> None:
    """mIoU after each round against cumulative clicks (and % of full manual annotation)."""
    clicks = [r.clicks_total for r in results]
    values = [100 * r.miou for r in results]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ax.plot(clicks, values, marker="o")
    for r, x, y in zip(results, clicks, values, strict=True):
        ax.annotate(str(r.round), (x, y), textcoords="offset points", xytext=(4, -10), fontsize=8)
    ax.set_xlabel("clicks spent")
    ax.set_ylabel("label mIoU (%)")
    ax.set_title(f"{title}: label quality per round")
    ax.grid(alpha=0.3)
    if manual_clicks:
        top = ax.secondary_xaxis(
            "top", functions=(lambda c: 100 * c / manual_clicks, lambda p: p * manual_clicks / 100)
        )
        top.set_xlabel("% of full manual clicks")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
