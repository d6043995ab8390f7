"""One round engine: a campaign's DVC stages and `hvsa run` make the same rounds, with `auto`
choosing among frames, rectangles and class layers, and the corrector correcting what each
round pre-fills (read from the previous round's label PNGs in the campaign, from memory in
`hvsa run`)."""

import json

import pandas as pd
import pytest

from hvsa.campaign.flow import campaign
from hvsa.campaign.lifecycle import init_workspace
from hvsa.campaign.versioning import dvc
from hvsa.cli import main
from tests.conftest import write_fast_params

pytestmark = pytest.mark.slow  # four rounds of a Prefect flow over DVC stages

ROUNDS = 4
SETTINGS = {
    "samples.granularity": "auto",
    "auto.granularities": ["frame", "rect16", "layers"],
    "auto.budgets": {"frame": 1, "rect16": 6},
    "fusion.calibration_probes": 2,
    "layers.per_round": 4,
    "loop.rounds": ROUNDS,
    "loop.target_miou": 0.999,
    "annotation.annotator": "corrector",
    "fusion.vote_networks": 2,  # the harder path: two networks' predictions, across stages
}


def test_a_campaign_runs_the_rounds_of_hvsa_run(prefect_api, tiny_videos, pretrained, tmp_path):
    params = write_fast_params(tmp_path / "params.yaml", **SETTINGS)
    ws = init_workspace(tmp_path / "ws", "eng", pretrained, {"cam": str(tiny_videos[0])}, params)
    done = campaign(str(ws.root), rounds=ROUNDS)
    assert done["cam"]["round"] == ROUNDS
    assert json.loads(dvc(ws.root, "status", "--json")) == {}
    run = tmp_path / "run"
    args = ["run", str(tiny_videos[0]), "--model", str(pretrained), "--out", str(run)]
    assert main([*args, "--params", str(params)]) == 0

    kinds, tools = [], set()
    for r in range(ROUNDS + 1):
        here, there = ws.round_dir("cam", r), run / f"round_{r:02d}"
        a = json.loads((here / "metrics.json").read_text())
        b = json.loads((there / "metrics.json").read_text())
        # the same numbers in (the flow, predictions and beliefs as stored), the same rounds out
        assert (a["clicks_total"], a["miou"]) == (b["clicks_total"], b["miou"]), f"round {r}"
        if r == 0:
            continue
        mine = pd.read_parquet(here / "selected.parquet")
        theirs = pd.read_parquet(there / "selected.parquet")
        assert mine["granularity"].tolist() == theirs["granularity"].tolist(), f"round {r}"
        assert mine["sample_id"].tolist() == theirs["sample_id"].tolist(), f"round {r}"
        paid = pd.read_parquet(here / "annotations.parquet")
        theirs_paid = pd.read_parquet(there / "annotations.parquet")
        assert paid["clicks"].tolist() == theirs_paid["clicks"].tolist(), f"round {r}"
        assert paid["label_hash"].tolist() == theirs_paid["label_hash"].tolist(), f"round {r}"
        tools |= set(paid["tool"])
        kinds.append(mine["granularity"].iloc[0])
    assert kinds[:2] == ["frame", "frame"], "whole frames until two are labelled in full"
    assert "correction" in tools, "the corrector fixed at least one prefill"
    assert set(kinds[2:]) <= {"frame", "rect16", "layers"}
    chooser = json.loads((ws.round_dir("cam", ROUNDS) / "auto.json").read_text())
    assert chooser["pending"]["name"] == kinds[-1], "auto's state goes from round to round"
    for r in range(1, ROUNDS + 1):  # a class-layer round keeps the network as it was
        trained = json.loads((ws.round_dir("cam", r) / "finetune.json").read_text())["trained"]
        assert trained == (kinds[r - 1] != "layers")
