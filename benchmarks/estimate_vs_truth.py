"""How far is the mIoU a round estimates without ground truth from the truth?

Reads the rounds of finished ``hvsa run`` folders of labelled videos and writes, per round, the
truth (``miou``), the estimate the round reported (``miou_estimate`` and where it came from) and,
where the next round was chosen by ``auto``, the leave-one-out estimate ``auto`` took of this
round's labels (``estimated_miou`` in the next round's ``selected.parquet``: the same estimate,
recorded by runs made before ``metrics.json`` held it), and the estimate's interval
(``miou_interval``: ``low``, ``high``) with whether it holds the truth (``holds``).

    .venv/bin/python benchmarks/estimate_vs_truth.py runs/campaign_vs_run/run runs/est_tp \\
        --csv benchmarks/results/estimate_vs_truth.csv
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd


def rounds_of(run: Path) -> list[dict]:
    rows = []
    r = 0
    while (folder := run / f"round_{r:02d}").is_dir():
        m = json.loads((folder / "metrics.json").read_text())
        nxt = run / f"round_{r + 1:02d}" / "selected.parquet"
        auto = None
        if nxt.is_file():
            table = pd.read_parquet(nxt)
            if "estimated_miou" in table and len(table):
                auto = float(table["estimated_miou"].iloc[0])
        video = Path(json.loads((run / "run.json").read_text())["video"]).name
        rows.append({
            "run": run.name, "video": video, "round": r, "clicks": m["clicks_total"],
            "miou": m["miou"],
            "miou_estimate": m.get("miou_estimate"),
            "estimate_from": m.get("miou_estimate_from", "belief"),
            "leave_one_out": auto,
            "low": (m.get("miou_interval") or [None, None])[0],
            "high": (m.get("miou_interval") or [None, None])[1],
        })  # fmt: skip
        r += 1
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path, help="finished `hvsa run` folders")
    ap.add_argument("--csv", required=True, type=Path)
    args = ap.parse_args()
    table = pd.DataFrame([row for run in args.runs for row in rounds_of(run)])
    loo = table["leave_one_out"].where(table["estimate_from"] != "leave-one-out",
                                       table["miou_estimate"])  # fmt: skip
    table["leave_one_out"] = loo
    table["error"] = table["leave_one_out"] - table["miou"]
    has = table["low"].notna()
    holds = (table["low"] <= table["miou"]) & (table["miou"] <= table["high"])
    table["holds"] = holds.astype(object).where(has, None)
    args.csv.parent.mkdir(parents=True, exist_ok=True)
    table.round(4).to_csv(args.csv, index=False)
    print(table.round(4).to_string(index=False))
    scored = table.dropna(subset=["error"])
    for (run, video), part in scored.groupby(["run", "video"]):
        print(f"{video} ({run}): {len(part)} rounds, "
              f"mean error {100 * part.error.mean():+.1f} points, "
              f"mean absolute {100 * part.error.abs().mean():.1f}, "
              f"range {100 * part.error.min():+.1f} to {100 * part.error.max():+.1f}")  # fmt: skip
        spans = part.dropna(subset=["low"])
        if len(spans):
            width = 100 * (spans.high - spans.low)
            print(f"  interval holds the truth in {int(spans.holds.sum())} of {len(spans)} "
                  f"rounds, width {width.min():.1f}-{width.max():.1f} points")  # fmt: skip


if __name__ == "__main__":
    main()
