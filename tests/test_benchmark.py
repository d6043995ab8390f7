from types import SimpleNamespace

import cv2
import numpy as np
import pandas as pd
import pytest

from hvsa.benchmark.charts import grid_cells, grid_table, plot_grid
from hvsa.benchmark.report import (
    SUMMARY_COLUMNS,
    clicks_to_targets,
    goal_verdict,
    line_style,
    round_flags,
    summary_markdown,
)
from hvsa.benchmark.runner import hvsa_config
from hvsa.benchmark.strategies import parse_strategy, strategy_grid
from hvsa.cli import main
from hvsa.config import SELECTORS, load_config
from hvsa.data.video import load_video
from hvsa.errors import HvsaError
from tests.conftest import REPO


def test_strategy_names_parse():
    assert parse_strategy("manual").kind == "manual"
    assert parse_strategy("propagate-6").k == 6
    s = parse_strategy("hvsa-rect32-uncertainty")
    assert (s.kind, s.granularity, s.rect_size, s.selector) == ("hvsa", "rect", 32, "uncertainty")
    assert parse_strategy("hvsa-rect32-paper").samples == "rect32"
    assert parse_strategy("hvsa-superpixel-random").samples == "superpixel"
    assert parse_strategy("hvsa-frame-coverage").budget == 0  # benchmark.budgets
    b2 = parse_strategy("hvsa-frame-coverage-b2")
    assert (b2.selector, b2.budget, b2.samples) == ("coverage", 2, "frame")
    with pytest.raises(HvsaError, match="B ≥ 1"):
        parse_strategy("hvsa-frame-coverage-b0")
    # -fix: the corrector annotates (it corrects the prefill) instead of the oracle
    fix = parse_strategy("hvsa-frame-coverage-b2-layers-fix")
    assert (fix.budget, fix.layers, fix.annotator) == (2, True, "corrector")
    assert parse_strategy("auto-fix").annotator == "corrector"
    assert parse_strategy("auto").annotator == "oracle"


def test_a_budget_suffix_sets_the_samples_per_round():
    cfg = load_config(REPO / "params.yaml")
    bench = SimpleNamespace(cfg=cfg, manual_total=1000)
    default = hvsa_config(bench, parse_strategy("hvsa-frame-coverage"))
    assert default.loop.budget == cfg.benchmark.budgets["frame"]
    assert default.selection.strategy == "coverage"
    assert hvsa_config(bench, parse_strategy("hvsa-frame-coverage-b2")).loop.budget == 2
    assert default.annotation.annotator == "oracle"
    assert hvsa_config(bench, parse_strategy("auto-fix")).annotation.annotator == "corrector"


def test_the_grid_covers_every_granularity_and_selector():
    b = load_config(REPO / "params.yaml").benchmark
    names = [s.name for s in strategy_grid(b)]
    assert names[0] == "manual"
    assert {f"propagate-{k}" for k in b.ks} <= set(names)
    for g in b.granularities:
        for s in b.selectors:
            assert f"hvsa-{g}-{s}" in names
        assert g in b.budgets, f"benchmark.budgets lacks {g}"


def test_clicks_to_targets_takes_the_first_round_that_reaches_each():
    rows = pd.DataFrame(
        {
            "video": "v",
            "strategy": ["a"] * 4 + ["propagate-2"],
            "round": [0, 1, 2, 3, 1],
            "clicks": [0, 10, 20, 30, 50],
            "clicks_pct": [0.0, 10.0, 20.0, 30.0, 50.0],
            "miou": [0.5, 0.85, 0.91, 0.90, 0.94],
        }
    )
    summary = clicks_to_targets(rows, [0.8, 0.9, 0.95])
    assert list(summary.columns) == SUMMARY_COLUMNS
    a = summary[summary["strategy"] == "a"].set_index("target")
    assert a.loc[0.8, "clicks"] == 10 and a.loc[0.9, "clicks"] == 20
    assert pd.isna(a.loc[0.95, "clicks"]) and pd.isna(a.loc[0.95, "clicks_pct"])
    assert a.loc[0.95, "best_miou"] == pytest.approx(0.91)
    p = summary[summary["strategy"] == "propagate-2"].set_index("target")
    assert p.loc[0.9, "clicks_pct"] == 50.0 and pd.isna(p.loc[0.95, "clicks"])


def test_goal_verdict_bounds_hvsa_by_a_share_of_propagation_or_of_manual():
    assert goal_verdict(5.7, 6.3, 0.5) == "goal ≤ 3.15 % (0.5 × propagation): not met"
    assert goal_verdict(10.6, 26.0, 0.5) == "goal ≤ 13.00 % (0.5 × propagation): met"
    assert goal_verdict(13.0, 26.0, 0.5).endswith(": met")  # the bound itself meets it
    # no propagate-K reaches the target: propagation needs every frame, i.e. manual's clicks
    assert goal_verdict(18.9, None, 0.5) == "goal ≤ 50.00 % (0.5 × manual): met"
    assert goal_verdict(None, 6.3, 0.5).endswith("not met")  # hvsa never reached it


def test_summary_lines_judge_each_target_only_beside_propagation():
    rows = _rows({"hvsa-frame-paper": [0.5, 0.85, 0.96], "propagate-4": [0.0, 0.86]})
    summary = clicks_to_targets(rows, [0.8, 0.95])
    text = summary_markdown(summary, rows, goal_share=0.5)
    assert (
        "- 80 %: best hvsa hvsa-frame-paper 20.0 %; best propagate-K propagate-4 20.0 %; "
        "goal ≤ 10.00 % (0.5 × propagation): not met" in text
    )
    assert (
        "- 95 %: best hvsa hvsa-frame-paper 40.0 %; best propagate-K not reached; "
        "goal ≤ 50.00 % (0.5 × manual): met" in text
    )
    alone = rows[rows["strategy"] != "propagate-4"]
    assert "goal" not in summary_markdown(clicks_to_targets(alone, [0.8]), alone, 0.5)
    assert "goal" not in summary_markdown(summary, rows)  # no share given: no verdict


def test_a_target_not_reached_names_the_clicks_where_the_best_was_reached():
    """The best mIoU of a run that fell back is quoted at the round that reached it, not at
    the run's last round."""
    rows = _rows({"hvsa-superpixel-paper": [0.3, 0.6, 0.7, 0.65, 0.69]})
    text = summary_markdown(clicks_to_targets(rows, [0.8]), rows)
    assert "not reached (best 70.0 % at 40)" in text


def _rows(curves: dict[str, list[float]], video: str = "v") -> pd.DataFrame:
    """Benchmark rows: per strategy, mIoU after rounds of 20 % of the manual clicks each."""
    out = []
    for name, mious in curves.items():
        for r, m in enumerate(mious):
            out.append({"video": video, "strategy": name, "round": r, "clicks": 20 * r,
                        "clicks_pct": 20.0 * r, "miou": m})  # fmt: skip
    return pd.DataFrame(out)


def test_the_grid_chart_holds_the_plain_hvsa_strategies_only(tmp_path):
    rows = _rows(
        {
            "manual": [1.0], "propagate-2": [0.5, 0.92], "auto": [0.5, 0.92],
            "hvsa-frame-coverage-b2-layers": [0.5, 0.92], "hvsa-frame-paper-b2": [0.5, 0.92],
            "hvsa-rect32-paper": [0.5, 0.85, 0.92], "hvsa-superpixel-random": [0.5, 0.6],
            "hvsa-rect128-paper": [0.5, 0.7], "hvsa-rect8-random": [0.81],
        }
    )  # fmt: skip
    cells = grid_cells(rows, [0.8, 0.95])
    assert set(cells["strategy"]) == {
        "hvsa-rect32-paper", "hvsa-superpixel-random", "hvsa-rect128-paper", "hvsa-rect8-random"
    }  # fmt: skip
    rect = cells[cells["strategy"] == "hvsa-rect32-paper"].set_index("target")
    assert (rect["granularity"].iloc[0], rect["selector"].iloc[0]) == ("rect32", "paper")
    assert rect.loc[0.8, "clicks_pct"] == 20.0 and pd.isna(rect.loc[0.95, "clicks_pct"])
    assert (rect["spent_pct"] == 40.0).all()
    table = grid_table(cells, [0.8, 0.95])
    # rectangles by size, not as text; selectors in params order
    assert table.granularities == ["rect8", "rect32", "rect128", "superpixel"]
    assert table.selectors == ["paper", "random"]
    i, j = table.granularities.index("rect32"), table.selectors.index("paper")
    assert table.texts[i][j] == "80 %: 20.0 %\n95 %: —\nbest 92.0 % (spent 40.0 %)"
    assert table.colour[i, j] == 20.0
    assert table.texts[0][0] is None and np.isnan(table.colour[0, 0])  # rect8-paper: not run
    assert table.colour[0, 1] == 0.0  # rect8-random met 80 % before any click
    spx = table.granularities.index("superpixel"), table.selectors.index("random")
    assert np.isnan(table.colour[spx]) and "best 60.0 %" in table.texts[spx[0]][spx[1]]
    plot_grid(table, tmp_path / "grid.png", "v")  # a 0 on a log colour scale draws
    assert (tmp_path / "grid.png").stat().st_size > 10_000
    with pytest.raises(ValueError, match="one video"):
        grid_table(grid_cells(pd.concat([rows, _rows({"hvsa-frame-paper": [0.9]}, "w")]),
                              [0.8]), [0.8])  # fmt: skip


def test_the_grid_chart_draws_when_nothing_reached_the_lowest_target(tmp_path):
    table = grid_table(grid_cells(_rows({"hvsa-frame-paper": [0.5, 0.6]}), [0.8]), [0.8])
    assert np.isnan(table.colour).all()
    plot_grid(table, tmp_path / "grid.png", "v")
    assert (tmp_path / "grid.png").stat().st_size > 5_000


def test_chart_lines_part_by_selector_granularity_and_variant():
    paper, rect = line_style("hvsa-frame-paper"), line_style("hvsa-rect32-paper")
    assert paper["color"] == rect["color"] and paper["ls"] != rect["ls"]  # same selector
    colours = {line_style(f"hvsa-frame-{s}")["color"] for s in SELECTORS}
    assert len(colours) == len(SELECTORS) and line_style("auto")["color"] not in colours
    assert line_style("auto")["zorder"] > 3  # above propagate-K
    layers, b2 = line_style("hvsa-frame-paper-b2-layers"), line_style("hvsa-frame-paper-b2")
    assert layers["color"] == paper["color"]
    assert len({layers["marker"], b2["marker"], paper["marker"]}) == 3
    lines = {line_style(f"hvsa-{g}-paper")["ls"] for g in
             ["frame", "rect16", "rect32", "rect64", "superpixel", "rect128"]}  # fmt: skip
    assert len(lines) == 6


def test_quick_benchmark_end_to_end(tiny_videos, tmp_path, capsys):
    out = tmp_path / "bench"
    argv = ["benchmark", "--quick", "--video", str(tiny_videos[0]), "--out", str(out)]
    argv += ["--pretrain", str(tiny_videos[1]), str(tiny_videos[2])]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "| strategy |" in printed and "hvsa-frame-paper" in printed
    assert printed.count("(0.5 × ") == 3  # each target judged against propagate-4 or manual
    rows = pd.read_csv(out / "rounds.csv")
    quick = load_config(REPO / "params.yaml").benchmark.quick
    # propagate-K extends itself while its sparsest K still reaches the lowest target
    extra = sorted(set(rows["strategy"]) - set(quick.strategies))
    assert set(rows["strategy"]) >= set(quick.strategies)
    ks = [4] + sorted(int(name.split("-")[1]) for name in extra)
    assert all(name.startswith("propagate-") for name in extra)
    sparsest = rows[rows["strategy"] == f"propagate-{ks[-1]}"]["miou"].max()
    assert ks[-1] == quick.frames - 1 or sparsest < 0.8
    for k in ks[:-1]:
        assert rows[rows["strategy"] == f"propagate-{k}"]["miou"].max() >= 0.8
    for column in ["round", "clicks", "clicks_pct", "miou", "seconds", "peak_memory_mb"]:
        assert column in rows.columns
    assert any(c.startswith("iou_") for c in rows.columns)
    # an hvsa round says where its seconds went; the steps take no more than the round
    hvsa_rows = rows[rows["strategy"] == "hvsa-frame-paper"]
    steps = hvsa_rows[[c for c in rows.columns if c.startswith("seconds_")]]
    assert {"seconds_labels", "seconds_finetune", "seconds_select"} <= set(steps.columns)
    last = hvsa_rows["round"].idxmax()
    assert 0 < steps.loc[last].sum() <= hvsa_rows.loc[last, "seconds"] + 0.05
    manual_clicks = pd.read_csv(out / "manual_clicks.csv")
    assert len(manual_clicks) == quick.frames
    total = int(manual_clicks["clicks"].sum())
    manual = rows[rows["strategy"] == "manual"].iloc[0]
    assert manual["clicks"] == total and manual["miou"] == 1.0
    prop = rows[rows["strategy"] == "propagate-4"].iloc[0]
    keys = [0, 4, quick.frames - 1]
    assert prop["clicks"] == manual_clicks["clicks"].to_numpy()[keys].sum()
    assert 0 < prop["miou"] < 1
    hv = rows[rows["strategy"] == "hvsa-frame-paper"].sort_values("round")
    assert hv["round"].tolist() == list(range(quick.rounds + 1))
    assert hv["clicks"].is_monotonic_increasing and hv["clicks"].iloc[-1] > 0
    assert hv["miou"].iloc[-1] > hv["miou"].iloc[0]  # the rounds improved the labels
    # each round beside plain propagation of the very labels it holds (none before round 1)
    assert pd.isna(hv["propagate_same"].iloc[0])
    assert hv["propagate_same"].iloc[1:].between(0, 1).all()
    assert "against plain propagation of the same human labels" in printed
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary.columns) == SUMMARY_COLUMNS
    assert len(summary) == 3 * (len(quick.strategies) + len(extra))
    assert set(summary["target"]) == {0.8, 0.9, 0.95}
    for name in ["miou_vs_clicks.png", "overlays.png", "grid.png"]:
        assert (out / name).stat().st_size > 10_000
    # labels of the hvsa run are written at the quick video's size: quick.scale of the video's
    video = load_video(tiny_videos[0])
    last = out / "runs" / "hvsa-frame-paper" / f"round_{quick.rounds:02d}" / "labels"
    written = sorted(last.glob("*.png"))
    assert [p.stem for p in written] == video.frame_names[: quick.frames]
    size = tuple(round(s * quick.scale) for s in video.size)
    for path in written:
        assert cv2.imread(str(path), cv2.IMREAD_UNCHANGED).shape == size
    # a second call reuses the finished strategies instead of running them again
    before = (out / "rounds.csv").read_text()
    assert main(argv) == 0
    assert (out / "rounds.csv").read_text() == before


def test_benchmark_refuses_bad_input(tiny_videos, tmp_path, capsys):
    base = ["benchmark", "--video", str(tiny_videos[0]), "--out", str(tmp_path / "b")]
    assert main([*base, "--strategies", "manual,bogus", "--model", "x.pt"]) == 2
    assert "unknown strategy 'bogus'" in capsys.readouterr().err
    assert main([*base, "--strategies", "manual"]) == 2
    assert "--pretrain" in capsys.readouterr().err
    assert main([*base, "--strategies", "propagate-1", "--model", "x.pt"]) == 2
    assert "K must be at least 2" in capsys.readouterr().err
    nolabels = tmp_path / "nolabels"
    (nolabels / "frames").mkdir(parents=True)
    for f in sorted((tiny_videos[0] / "frames").iterdir()):
        (nolabels / "frames" / f.name).write_bytes(f.read_bytes())
    args = ["benchmark", "--video", str(nolabels), "--out", str(tmp_path / "c"), "--model", "x"]
    assert main(args) == 2
    assert "ground truth" in capsys.readouterr().err


def test_the_summary_flags_rounds_below_propagation_or_below_their_previous_round():
    rows = pd.DataFrame({
        "video": "v", "strategy": ["auto"] * 4 + ["propagate-4"], "round": [0, 1, 2, 3, 1],
        "clicks": [0, 10, 20, 30, 10], "clicks_pct": [0, 10, 20, 30, 10],
        "miou": [0.5, 0.80, 0.79, 0.90, 0.8],
        "propagate_same": [None, 0.801, 0.85, 0.899, None],
    })  # fmt: skip
    flags = round_flags(rows)
    assert flags == [
        "- auto round 2: mIoU fell 80.0 → 79.0 % after the round's labels",
        "- auto round 2: 79.0 %, below plain propagation of the same labels (85.0 %)",
    ]  # round 1 is 0.1 points below, round 3 above: within the slack
    text = summary_markdown(clicks_to_targets(rows, [0.8]), rows)
    assert text.endswith("\n".join(flags) + "\n")
    fine = rows.assign(miou=[0.5, 0.81, 0.86, 0.90, 0.8])
    assert round_flags(fine) == []
    assert "- no round below either" in summary_markdown(clicks_to_targets(fine, [0.8]), fine)
