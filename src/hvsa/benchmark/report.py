"""Benchmark reports: clicks to reach each target, as a table, a chart and an overlay strip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from hvsa.benchmark.strategies import parse_hvsa_name
from hvsa.config import SELECTORS
from hvsa.rounds.chart import plt

SUMMARY_COLUMNS = ["video", "strategy", "target", "clicks", "clicks_pct", "best_miou"]
HVSA = ("hvsa-", "auto")  # name prefixes of the strategies that run the annotation loop


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


def goal_verdict(hvsa_pct: float | None, propagate_pct: float | None, share: float) -> str:
    """Whether the best hvsa strategy met a target's goal: at most ``share`` of the clicks
    that the best propagate-K needs for it (``None``: not reached).

    Why a rule in code: hvsa is judged against propagation, not by an absolute figure.
    Where no propagate-K reaches the target, propagation needs every frame labelled (manual,
    100 %), so the bound is ``share`` of manual's clicks (95 % at ≤ 50 % with share 0.5).
    """
    bound = share * (100.0 if propagate_pct is None else propagate_pct)
    of = "manual" if propagate_pct is None else "propagation"
    met = hvsa_pct is not None and hvsa_pct <= bound + 1e-9
    return f"goal ≤ {bound:.2f} % ({share:g} × {of}): {'met' if met else 'not met'}"


def summary_markdown(
    summary: pd.DataFrame, rows: pd.DataFrame, goal_share: float | None = None
) -> str:
    """The RESULTS.md table: per strategy, clicks (and %) to each target or 'not reached'.

    With ``goal_share`` and propagate-K among the strategies, each target's line also says
    whether the best hvsa strategy met :func:`goal_verdict`.
    """
    targets = sorted(summary["target"].unique())
    # the clicks at which each strategy first reached its best mIoU (not its last round's)
    scored = rows.dropna(subset=["miou"]).sort_values(["clicks", "round"], kind="stable")
    at_best = scored.loc[scored.groupby("strategy")["miou"].idxmax()]
    at_best = at_best.set_index("strategy")["clicks"]
    head = "| strategy | " + " | ".join(f"{100 * t:.0f} % mIoU" for t in targets) + " | best mIoU |"
    lines = [head, "|---" * (len(targets) + 2) + "|"]
    for strategy, part in summary.groupby("strategy", sort=False):
        cells = []
        for t in targets:
            r = part[part["target"] == t].iloc[0]
            if pd.isna(r["clicks"]):
                clicks = at_best.get(strategy)  # none where no round was scored
                at = "" if clicks is None else f" at {int(clicks):,}"
                best = f"{100 * r['best_miou']:.1f} %{at}"
                cells.append(f"not reached (best {best})")
            else:
                cells.append(f"{int(r['clicks']):,} ({r['clicks_pct']:.1f} %)")
        best = 100 * part["best_miou"].iloc[0]
        lines.append(f"| {strategy} | " + " | ".join(cells) + f" | {best:.1f} % |")
    verdicts = []
    has_propagation = summary["strategy"].str.startswith("propagate-").any()

    def pct(best: pd.Series | None) -> float | None:
        return None if best is None else float(best["clicks_pct"])

    for t in targets:
        hv, pk = best_of(summary, HVSA, t), best_of(summary, "propagate-", t)
        hv_text = f"{hv['strategy']} {hv['clicks_pct']:.1f} %" if hv is not None else "not reached"
        pk_text = f"{pk['strategy']} {pk['clicks_pct']:.1f} %" if pk is not None else "not reached"
        line = f"- {100 * t:.0f} %: best hvsa {hv_text}; best propagate-K {pk_text}"
        if goal_share is not None and has_propagation:
            line += f"; {goal_verdict(pct(hv), pct(pk), goal_share)}"
        verdicts.append(line)
    flags = round_flags(rows)
    return (
        "\n".join(lines)
        + "\n\nBest per target (share of the manual clicks):\n"
        + "\n".join(verdicts)
        + "\n\nEvery round of every hvsa strategy against plain propagation of the same human "
        + f"labels, and against its previous round (slack {100 * SLACK:.1f} points):\n"
        + ("\n".join(flags) if flags else "- no round below either")
        + "\n"
    )


SLACK = 0.002  # mIoU: what a round may lose to propagation or to the round before it


def round_flags(rows: pd.DataFrame) -> list[str]:
    """Lines for the rounds where an hvsa strategy's labels were worse than propagating the
    same human labels (``propagate_same``), or worse than its own previous round (a human
    label made the labels worse), by more than :data:`SLACK`."""
    out = []
    hvsa = rows[rows["strategy"].str.startswith(HVSA)]
    for strategy, part in hvsa.groupby("strategy", sort=False):
        part = part.sort_values("round")
        previous = part["miou"].shift()
        for r, now, before in zip(part["round"], part["miou"], previous, strict=True):
            if pd.notna(before) and now < before - SLACK:
                out.append(f"- {strategy} round {r}: mIoU fell {100 * before:.1f} → "
                           f"{100 * now:.1f} % after the round's labels")  # fmt: skip
        if "propagate_same" not in part:
            continue
        for r, now, same in zip(part["round"], part["miou"], part["propagate_same"], strict=True):
            if pd.notna(same) and now < same - SLACK:
                out.append(f"- {strategy} round {r}: {100 * now:.1f} %, below plain propagation "
                           f"of the same labels ({100 * same:.1f} %)")  # fmt: skip
    return out


SELECTOR_COLOURS = {s: f"C{i}" for i, s in enumerate(SELECTORS)}  # C0…C5
AUTO_COLOUR = f"C{len(SELECTORS)}"
GRANULARITY_LINES = {"frame": "-", "rect16": ":", "rect32": "--", "rect64": "-.",
                     "superpixel": (0, (1, 3))}  # fmt: skip
OTHER_RECT_LINE = (0, (5, 1, 1, 1, 1, 1))  # rectangles of another size


def line_style(strategy: str) -> dict:
    """Colour by selector, line by granularity, marker by variant, so thirty-odd lines part.

    Why: matplotlib's cycle repeats after ten colours, and the grid alone has thirty
    strategies; a reader looks for "the dashed ones" (rectangles) or "the red ones" (coverage).
    """
    if strategy in ("auto", "auto-fix"):  # on top; the corrector's crossed
        marker = "X" if strategy.endswith("-fix") else "D"
        return {"color": AUTO_COLOUR, "lw": 1.6, "marker": marker, "ms": 5, "zorder": 4}
    parts = parse_hvsa_name(strategy)
    if parts is None:
        return {"marker": "."}
    return {
        "color": SELECTOR_COLOURS[parts.selector],
        "ls": GRANULARITY_LINES.get(parts.samples, OTHER_RECT_LINE),
        "lw": 2.0 if parts.layers else 1.2,
        "marker": "x" if parts.fix else "s" if parts.layers else "^" if parts.budget else ".",
        "ms": 6 if parts.plain else 4,
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
