"""Finished `hvsa run` folders side by side: every round's clicks, mIoU, per-class IoU and what
its annotations were (tools, pixels left wrong), as one CSV and one chart of mIoU against clicks.

Why: `hvsa run` writes each round's metrics and ledger rows in its own folder; comparing an
annotator or a setting across runs (the oracle against the corrector, say) needs them in one
table, with the clicks as a share of the manual clicks the run measured.

    python benchmarks/runs_table.py --csv OUT.csv [--png OUT.png] \\
        runs/bn_15hz:oracle runs/fix_15hz:corrector ...

Each argument is RUN:LABEL (the label names the run's row group, e.g. its annotator).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

TARGETS = (0.8, 0.9, 0.95)


def run_rows(run: Path, label: str, manual: int | None) -> list[dict]:
    """One row per finished round of ``run``; ``manual``: the manual clicks of its video when
    the run has no summary (stopped before its end)."""
    summary = (
        json.loads((run / "summary.json").read_text()) if (run / "summary.json").is_file() else {}
    )
    manual = summary.get("manual_clicks") or manual
    rows = []
    for folder in sorted(run.glob("round_[0-9][0-9]")):
        metrics = json.loads((folder / "metrics.json").read_text())
        row = {"run": str(run), "label": label, "round": metrics["round"],
               "clicks": metrics["clicks_total"], "miou": metrics["miou"]}  # fmt: skip
        if manual:
            row["clicks_pct"] = 100 * metrics["clicks_total"] / manual
        row |= {f"iou_{k}": v for k, v in (metrics.get("per_class") or {}).items()}
        table = folder / "annotations.parquet"
        events = pd.read_parquet(table) if table.is_file() else pd.DataFrame()
        if len(events):
            row["kind"] = events["granularity"].iloc[0]
            row["round_clicks"] = int(events["clicks"].sum())
            for tool, n in events["tool"].value_counts().items():
                row[f"samples_{tool}"] = int(n)
            if "clicks_left_pixels" in events:
                row["left_pixels"] = int(events["clicks_left_pixels"].fillna(0).sum())
        rows.append(row)
    return rows


def first_reached(table: pd.DataFrame) -> pd.DataFrame:
    """Per run and target: the clicks (and share) of the first round at or above it."""
    out = []
    for (run, label), part in table.groupby(["run", "label"], sort=False):
        for target in TARGETS:
            hit = part[part["miou"] >= target]
            first = hit.iloc[0] if len(hit) else None
            reached = {"clicks": first["clicks"], "clicks_pct": first.get("clicks_pct")} if (
                first is not None) else {"clicks": None, "clicks_pct": None}  # fmt: skip
            out.append({"run": run, "label": label, "target": target, **reached})
    return pd.DataFrame(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="RUN:LABEL")
    parser.add_argument("--csv", required=True)
    parser.add_argument("--png")
    parser.add_argument("--manual", type=int, help="the video's manual clicks, for stopped runs")
    args = parser.parse_args()
    rows = []
    for spec in args.runs:
        run, _, label = spec.partition(":")
        rows += run_rows(Path(run), label or Path(run).name, args.manual)
    table = pd.DataFrame(rows)
    Path(args.csv).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.csv, index=False, float_format="%.4f")
    print(first_reached(table).to_string(index=False))
    if args.png:
        fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
        x = "clicks_pct" if "clicks_pct" in table else "clicks"
        for label, part in table.groupby("label", sort=False):
            ax.plot(part[x], 100 * part["miou"], marker=".", label=label)
        for target in TARGETS:
            ax.axhline(100 * target, color="grey", lw=0.6, ls=":")
        ax.set_xlabel("clicks, % of manual" if x == "clicks_pct" else "clicks")
        ax.set_ylabel("label mIoU, %")
        ax.set_ylim(60, 100)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(args.png)


if __name__ == "__main__":
    main()
