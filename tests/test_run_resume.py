"""`hvsa run` killed with SIGKILL at four points of a round resumes from its last complete round:
the same labels, metrics and ledger as a run never interrupted; a rerun with other settings is
refused by name, and ``--fresh`` starts over."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from hvsa.annotation.ledger import Ledger
from hvsa.cli import main

pytestmark = pytest.mark.slow  # nine short runs, each its own process

ROUNDS = 4
SETTINGS = [
    "samples.granularity=auto", "auto.granularities=[frame, rect16, layers]",
    "auto.budgets={frame: 1, rect16: 6}", "layers.per_round=4", "fusion.calibration_probes=2",
    "finetune.steps=5", "samples.rect_size=16", "model.train_crop=null", "model.device=cpu",
    "loop.target_miou=0.999", f"loop.rounds={ROUNDS}", "fusion.vote_networks=2",
]  # fmt: skip
# what identifies an event, not when it was made
EVENT = ["round", "sample_id", "frame", "annotator", "tool", "clicks", "label_hash",
         "idempotency_key"]  # fmt: skip


def _argv(video: Path, model: Path, out: Path) -> list[str]:
    sets = [a for s in SETTINGS for a in ("--set", s)]
    return ["run", str(video), "--model", str(model), "--out", str(out), *sets]


def _hvsa(argv: list[str], crash: str | None = None) -> subprocess.CompletedProcess:
    """``hvsa`` in its own process, with the thread count fixed (the same arithmetic in every
    process, whatever the machine's cores)."""
    env = {**os.environ, "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}
    env.pop("HVSA_CRASH_AT", None)
    if crash:
        env["HVSA_CRASH_AT"] = crash
    code = "import sys; from hvsa.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, *argv], env=env, capture_output=True, text=True, timeout=600
    )


def _outcome(out: Path) -> dict:
    rounds = {}
    for r in range(ROUNDS + 1):
        folder = out / f"round_{r:02d}"
        metrics = json.loads((folder / "metrics.json").read_text())
        labels = {p.name: p.read_bytes() for p in sorted((folder / "labels").iterdir())}
        rounds[r] = (metrics["clicks_total"], metrics["miou"], labels)
    with Ledger(out / "ledger.sqlite") as ledger:
        events = ledger.frame()[EVENT]
    return {"rounds": rounds, "events": events}


@pytest.fixture(scope="module")
def reference(tiny_videos, pretrained, tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    done = _hvsa(_argv(tiny_videos[0], pretrained, out))
    assert done.returncode == 0, done.stderr[-3000:]
    return _outcome(out)


@pytest.mark.parametrize("point", ["select:2", "record:2", "train:3", "write:3"])
def test_killed_run_resumes_as_if_never_interrupted(point, reference, tiny_videos, pretrained,
                                                    tmp_path):  # fmt: skip
    out = tmp_path / "run"
    argv = _argv(tiny_videos[0], pretrained, out)
    killed = _hvsa(argv, crash=point)
    assert killed.returncode == -9, killed.stderr[-3000:]
    round_no = int(point.split(":")[1])
    assert not (out / f"round_{round_no:02d}").exists()  # the round never appears half written
    again = _hvsa(argv)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resuming the run in {out} after round {round_no - 1}" in again.stdout
    assert not list(out.glob("*.partial"))
    mine = _outcome(out)
    for r in range(ROUNDS + 1):
        assert mine["rounds"][r] == reference["rounds"][r], f"round {r}"
    pd.testing.assert_frame_equal(mine["events"], reference["events"])
    assert main(["audit", str(out), "--verify"]) == 0


def test_other_settings_are_refused_by_name_and_fresh_starts_over(
    tiny_videos, pretrained, tmp_path, capsys
):
    out = tmp_path / "run"
    base = _argv(tiny_videos[0], pretrained, out)[:6]
    quick = ["--rounds", "1", "--set", "finetune.steps=2", "--set", "samples.granularity=rect",
             "--set", "model.train_crop=null", "--set", "model.device=cpu"]  # fmt: skip
    assert main([*base, *quick]) == 0
    stamp = (out / "round_01" / "metrics.json").stat().st_mtime_ns
    capsys.readouterr()
    assert main([*base, *quick, "--budget", "3"]) == 2
    err = capsys.readouterr().err
    assert "holds a run made differently (loop.budget" in err and "--fresh" in err
    assert (out / "round_01" / "metrics.json").stat().st_mtime_ns == stamp
    # more rounds with the same settings: resumed, round 1 kept as it was
    assert main([*base, *quick[2:], "--rounds", "2"]) == 0
    assert "resuming the run" in capsys.readouterr().out
    assert (out / "round_01" / "metrics.json").stat().st_mtime_ns == stamp
    assert (out / "round_02" / "metrics.json").is_file()
    assert main([*base, *quick, "--budget", "3", "--fresh"]) == 0
    assert not (out / "round_02").exists()
    with Ledger(out / "ledger.sqlite") as ledger:
        assert set(ledger.frame()["round"]) == {1}
