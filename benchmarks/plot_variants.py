"""One chart: a strategy as benchmarked, beside the same strategy run with other settings.

Why: variants of one strategy (another network resolution, pseudo-labels, pricing) run in
folders of their own under the same strategy name, so the benchmark's own chart cannot hold
them; this draws them with the propagate-K baselines of the main ``rounds.csv``.

    .venv/bin/python benchmarks/plot_variants.py benchmarks/results/0016E5_15hz \
        hvsa-frame-coverage "half resolution (as benchmarked)"

reads ``DIR/rounds.csv`` and ``DIR/variants.csv`` (column ``setting``), writes
``DIR/variants.png``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from hvsa.benchmark.report import plot_miou_vs_clicks
from hvsa.config import load_config


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("strategy")
    ap.add_argument("label", help="what to call the benchmarked run of the strategy")
    args = ap.parse_args()
    rounds = pd.read_csv(args.folder / "rounds.csv")
    base = rounds[~rounds["strategy"].str.startswith("hvsa-")]
    own = rounds[rounds["strategy"] == args.strategy].assign(setting=args.label)
    variants = pd.read_csv(args.folder / "variants.csv")
    runs = pd.concat([own, variants[variants["strategy"] == args.strategy]])
    runs = runs.assign(strategy=runs["strategy"] + ": " + runs["setting"])
    video = str(rounds["video"].iloc[0])
    plot_miou_vs_clicks(
        pd.concat([base, runs.drop(columns="setting")], ignore_index=True),
        load_config().benchmark.targets,
        args.folder / "variants.png",
        f"{video}: {args.strategy} with other settings",
    )


if __name__ == "__main__":
    main()
