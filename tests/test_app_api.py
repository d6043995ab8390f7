"""The annotation app's API: sign-in, sample assignment, every refusal, concurrent annotators.

One human round is prepared once (DVC stages up to ``select``), then each test copies the
workspace, so no test sees another's submissions.
"""

import base64
import json
import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from hvsa.annotation.annotator import OracleAnnotator
from hvsa.annotation.ledger import Ledger
from hvsa.app.server import create_app
from hvsa.app.store import app_store
from hvsa.campaign.lifecycle import advance, init_workspace
from hvsa.campaign.versioning import reproduce
from hvsa.campaign.workspace import Workspace
from hvsa.cli import main
from tests.conftest import selected_samples, write_fast_params

pytestmark = pytest.mark.slow  # a campaign workspace with DVC stages


@pytest.fixture(scope="module")
def waiting_round(tiny_videos, pretrained, tmp_path_factory):
    """A workspace whose video ``cam`` waits for the human labels of round 1."""
    base = tmp_path_factory.mktemp("app")
    params = write_fast_params(
        base / "params.yaml",
        **{"annotation.annotator": "human", "loop.budget": 4, "samples.granularity": "rect"},
    )
    ws = init_workspace(base / "ws", "people", pretrained, {"cam": str(tiny_videos[0])}, params)
    advance(ws)
    reproduce(Workspace.open(ws.root), ["select@cam"])
    return ws.root


@pytest.fixture
def app(waiting_round, tmp_path):
    root = tmp_path / "ws"
    shutil.copytree(waiting_round, root, symlinks=True)
    resumed = []

    def resume(workspace, video, round_no, submission):
        resumed.append((video, round_no, submission))
        return "run-1"

    client = TestClient(create_app(root, resume=resume))
    ws = Workspace.open(root)
    tokens = {name: app_store(ws).add_annotator(name) for name in ("alice", "bob", "carol")}
    return client, root, tokens, resumed


def _auth(token):
    return {"Authorization": f"Bearer {token}"}


def _truth(root, sample):
    """The oracle's labels for a sample, as the page would send them."""
    ws = Workspace.open(root)
    samples, _ = selected_samples(ws, "cam", 1)
    (a,) = OracleAnnotator(2.0).annotate(ws.load_video("cam"), samples, [sample["sample_id"]])
    return a.labels


def _body(labels, clicks=None):
    return {
        "labels": base64.b64encode(np.ascontiguousarray(labels).tobytes()).decode(),
        "clicks_by_tool": clicks or {"polygon": 4, "superpixel": 1},
        "active_s": 3.5, "started": 1.0, "finished": 2.0,
    }  # fmt: skip


def _url(sample):
    return f"/api/rounds/cam/1/samples/{sample['sample_id']}"


def test_the_round_is_listed_and_samples_come_in_selection_order(app):
    client, root, tokens, _ = app
    assert client.get("/api/rounds").status_code == 401
    assert client.get("/api/rounds", headers=_auth("nope")).status_code == 401
    rounds = client.get("/api/rounds", headers=_auth(tokens["alice"])).json()
    assert [(r["video"], r["round"], r["samples"]) for r in rounds] == [("cam", 1, 4)]
    selected = pd.read_parquet(root / "data" / "cam" / "r1" / "selected.parquet")
    first = client.post("/api/rounds/cam/1/next", headers=_auth(tokens["alice"])).json()
    assert first["sample_id"] == int(selected["sample_id"].iloc[0])
    # the same annotator keeps the sample they hold; another gets the next one
    again = client.post("/api/rounds/cam/1/next", headers=_auth(tokens["alice"])).json()
    assert again["sample_id"] == first["sample_id"]
    other = client.post("/api/rounds/cam/1/next", headers=_auth(tokens["bob"])).json()
    assert other["sample_id"] == int(selected["sample_id"].iloc[1])
    for layer in ("region", "prefill", "superpixels"):
        r = client.get(f"{_url(first)}/{layer}.png", headers=_auth(tokens["alice"]))
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    frame = client.get(
        f"/api/rounds/cam/1/frames/{first['frame']}.png", headers=_auth(tokens["bob"])
    )
    assert frame.status_code == 200 and frame.content[:4] == b"\x89PNG"


def test_refusals_change_nothing(app):
    client, root, tokens, resumed = app
    a, b = _auth(tokens["alice"]), _auth(tokens["bob"])
    mine = client.post("/api/rounds/cam/1/next", headers=a).json()
    labels = _truth(root, mine)

    def refused(url, body, headers, status, words):
        r = client.post(url, json=body, headers=headers)
        assert r.status_code == status, r.text
        assert words in r.json()["error"]

    refused(_url(mine), _body(labels), b, 409, "not assigned to bob")
    h, w = labels.shape
    box = mine["box"]
    assert (box["y1"] - box["y0"], box["x1"] - box["x0"]) == (h, w)
    refused(_url(mine), _body(np.zeros((h, w + 1), np.uint8)), a, 422, "label bytes for a")
    refused(_url(mine), _body(np.full((h, w), 200, np.uint8)), a, 422, "not in the list")
    refused(_url(mine), _body(labels, {"lasso": 2}), a, 422, "unknown tool")
    refused(_url(mine), _body(labels, {"polygon": 0}), a, 422, "no click")
    refused("/api/rounds/cam/2/samples/0", _body(labels), a, 409, "not open")
    selected = set(pd.read_parquet(root / "data" / "cam" / "r1" / "selected.parquet")["sample_id"])
    unselected = next(i for i in range(1000) if i not in selected)
    refused(f"/api/rounds/cam/1/samples/{unselected}", _body(labels), a, 404, "not one of")
    assert not (root / "inbox" / "cam" / "r1.parts").exists()

    ok = client.post(_url(mine), json=_body(labels), headers=a)
    assert ok.status_code == 200 and ok.json()["clicks"] == 5
    refused(_url(mine), _body(labels), a, 409, "already submitted")
    assert resumed == []


def test_work_in_progress_is_kept_for_its_holder_and_renews_the_lease(app, monkeypatch):
    client, root, tokens, _ = app
    a, b = _auth(tokens["alice"]), _auth(tokens["bob"])
    mine = client.post("/api/rounds/cam/1/next", headers=a).json()
    labels = _truth(root, mine)
    draft = {k: v for k, v in _body(labels, {"polygon": 3}).items() if k != "finished"}
    assert client.get(f"{_url(mine)}/draft", headers=a).status_code == 404
    assert client.put(f"{_url(mine)}/draft", json=draft, headers=a).status_code == 200
    back = client.get(f"{_url(mine)}/draft", headers=a).json()
    assert back["clicks_by_tool"] == {"polygon": 3} and back["active_s"] == 3.5
    assert base64.b64decode(back["labels"]) == labels.tobytes()
    # nobody else reads or writes it; a draft is checked as a hand-in is
    assert client.get(f"{_url(mine)}/draft", headers=b).status_code == 404
    r = client.put(f"{_url(mine)}/draft", json=draft, headers=b)
    assert r.status_code == 409 and "not assigned to bob" in r.json()["error"]
    bad = dict(draft, labels=base64.b64encode(b"\xc8" * labels.size).decode())
    assert client.put(f"{_url(mine)}/draft", json=bad, headers=a).status_code == 422
    # the lease runs from the last autosave: past lease_s after taking, alice still holds it
    store = app_store(Workspace.open(root))
    taken = time.time()
    monkeypatch.setattr(time, "time", lambda: taken + 0.9 * store.lease_s)
    assert client.put(f"{_url(mine)}/draft", json=draft, headers=a).status_code == 200
    monkeypatch.setattr(time, "time", lambda: taken + 1.5 * store.lease_s)
    others = client.post("/api/rounds/cam/1/next", headers=b).json()
    assert others["sample_id"] != mine["sample_id"], "an autosaving holder keeps the sample"
    monkeypatch.setattr(time, "time", lambda: taken + 3 * store.lease_s)
    carol = _auth(tokens["carol"])
    taken_over = client.post("/api/rounds/cam/1/next", headers=carol).json()
    assert taken_over["sample_id"] == mine["sample_id"], "a lapsed lease frees the sample"
    assert client.get(f"{_url(mine)}/draft", headers=carol).status_code == 404
    assert client.get(f"{_url(mine)}/draft", headers=a).status_code == 404


def test_an_admin_sees_who_holds_what_and_releases_a_sample(app, capsys):
    client, root, tokens, _ = app
    a, b = _auth(tokens["alice"]), _auth(tokens["bob"])
    assert main(["annotate", "add-annotator", "ada", "--admin", "--workspace", str(root)]) == 0
    ada = _auth(capsys.readouterr().out.strip().splitlines()[-1])
    assert client.get("/api/me", headers=ada).json() == {"annotator": "ada", "admin": True}
    mine = client.post("/api/rounds/cam/1/next", headers=a).json()
    draft = {k: v for k, v in _body(_truth(root, mine)).items() if k != "finished"}
    assert client.put(f"{_url(mine)}/draft", json=draft, headers=a).status_code == 200
    r = client.get("/api/admin/holds", headers=b)
    assert r.status_code == 403 and "no admin" in r.json()["error"]
    (held,) = client.get("/api/admin/holds", headers=ada).json()
    assert (held["annotator"], held["sample_id"]) == ("alice", mine["sample_id"])
    assert held["saved"] is not None and 0 < held["lease_left_s"] <= app_store(
        Workspace.open(root)).lease_s  # fmt: skip
    release = f"/api/admin/release/cam/1/{mine['sample_id']}"
    assert client.post(release, headers=b).status_code == 403
    assert client.post(release, headers=ada).json() == {
        "released": mine["sample_id"], "held_by": "alice"}  # fmt: skip
    assert client.get("/api/admin/holds", headers=ada).json() == []
    # the next to ask gets it, from the prefill: alice's draft went with her hold
    assert client.post("/api/rounds/cam/1/next", headers=b).json()["sample_id"] == mine[
        "sample_id"]  # fmt: skip
    assert client.get(f"{_url(mine)}/draft", headers=b).status_code == 404
    assert client.post("/api/admin/release/cam/1/99999", headers=ada).status_code == 404


def test_handing_in_drops_the_work_in_progress(app):
    client, root, tokens, _ = app
    a = _auth(tokens["alice"])
    mine = client.post("/api/rounds/cam/1/next", headers=a).json()
    labels = _truth(root, mine)
    draft = {k: v for k, v in _body(labels, {"polygon": 3}).items() if k != "finished"}
    assert client.put(f"{_url(mine)}/draft", json=draft, headers=a).status_code == 200
    assert client.post(_url(mine), json=_body(labels), headers=a).status_code == 200
    assert client.get(f"{_url(mine)}/draft", headers=a).status_code == 404
    r = client.put(f"{_url(mine)}/draft", json=draft, headers=a)
    assert r.status_code == 409 and "already submitted" in r.json()["error"]


def test_hostile_numbers_are_refused_and_nothing_is_kept(app):
    """Inflated clicks, impossible times and non-numbers: 422 each, nothing written, and the
    honest submission still goes through after them."""
    client, root, tokens, _ = app
    a = _auth(tokens["alice"])
    mine = client.post("/api/rounds/cam/1/next", headers=a).json()
    labels = _truth(root, mine)

    def refused(body, words, raw=None):
        if raw is None:
            r = client.post(_url(mine), json=body, headers=a)
        else:  # JSON that json.dumps would not write: NaN, Infinity
            kind = {"content-type": "application/json"}
            r = client.post(_url(mine), content=raw, headers=a | kind)
        assert r.status_code == 422, r.text
        assert words in r.json()["error"], r.text

    refused(_body(labels, {"polygon": 10**12}), "more than 100000 clicks")
    refused(_body(labels, {"polygon": 10**30}), "more than 100000 clicks")
    refused(_body(labels, {"polygon": 5000}), "app.click_factor")
    refused(_body(labels) | {"started": 50.0, "finished": 2.0}, "started after it finished")
    refused(_body(labels) | {"active_s": 10**9}, "s of work claimed on a sample held")
    refused(_body(labels) | {"finished": 4e12, "started": 3e12}, "finished in the future")
    refused(_body(labels) | {"started": -1e308}, "greater than 0")
    body = json.dumps(_body(labels))
    refused(None, "finite number", body.replace('"active_s": 3.5', '"active_s": NaN'))
    refused(None, "finite number", body.replace('"started": 1.0', '"started": Infinity'))
    assert not (root / "inbox" / "cam" / "r1.parts").exists()
    ok = client.post(_url(mine), json=_body(labels), headers=a)
    assert ok.status_code == 200, ok.text


def test_token_before_body_size_limit_and_headers(app, monkeypatch):
    client, root, tokens, _ = app
    url = "/api/rounds/cam/1/samples/0"
    big = b"x" * (17 * 2**20)  # over app.max_body_mb (16)
    r = client.post(url, content=big)
    assert r.status_code == 401 and "sign in" in r.json()["error"]
    r = client.post(url, content=big, headers=_auth("forged"))
    assert r.status_code == 401 and "unknown annotator token" in r.json()["error"]
    r = client.post(url, content=big, headers=_auth(tokens["alice"]))
    assert r.status_code == 413 and "app.max_body_mb" in r.json()["error"]

    def chunks():  # no Content-Length: the body is counted as it streams in
        for _ in range(17):
            yield b"x" * 2**20

    r = client.post(url, content=chunks(), headers=_auth(tokens["alice"]))
    assert r.status_code == 413
    for path in ("/", "/api/me"):
        h = client.get(path, headers=_auth(tokens["alice"])).headers
        assert "default-src 'self'" in h["content-security-policy"]
        assert "frame-ancestors 'none'" in h["content-security-policy"]
        assert h["x-frame-options"] == "DENY" and h["x-content-type-options"] == "nosniff"
    for path in ("/docs", "/redoc", "/openapi.json"):  # its page would load a CDN
        assert client.get(path).status_code == 404


def test_revoked_and_expired_tokens_stop_signing_in(app, capsys):
    import sqlite3

    client, root, tokens, _ = app
    store = app_store(Workspace.open(root))
    assert main(["annotate", "revoke", "bob", "--workspace", str(root)]) == 0
    r = client.get("/api/me", headers=_auth(tokens["bob"]))
    assert r.status_code == 401 and "revoked" in r.json()["error"]
    assert main(["annotate", "revoke", "nobody", "--workspace", str(root)]) == 2
    assert "no annotator 'nobody'" in capsys.readouterr().err
    db = sqlite3.connect(store.path)
    db.execute("UPDATE annotators SET expires = 1000 WHERE name = 'carol'")
    db.commit()
    r = client.get("/api/me", headers=_auth(tokens["carol"]))
    assert r.status_code == 401 and "expired on 1970-01-01" in r.json()["error"]
    capsys.readouterr()
    assert main(["annotate", "add-annotator", "carol", "--renew", "--workspace", str(root)]) == 0
    fresh = capsys.readouterr().out.strip().splitlines()[-1]
    assert client.get("/api/me", headers=_auth(fresh)).json() == {"annotator": "carol"}
    assert client.get("/api/me", headers=_auth(tokens["carol"])).status_code == 401
    assert client.get("/api/me", headers=_auth(tokens["alice"])).status_code == 200


def test_serving_beyond_localhost_needs_a_flag(waiting_round, capsys):
    assert main(["annotate", "serve", "--workspace", str(waiting_round),
                 "--host", "0.0.0.0"]) == 2  # fmt: skip
    assert "--allow-remote" in capsys.readouterr().err


def test_serve_takes_app_settings_and_needs_the_campaigns_prefect_api(
    waiting_round, capsys, monkeypatch
):
    from hvsa.cli import serve_settings
    from hvsa.errors import HvsaError

    ws = Workspace.open(waiting_round)
    app = serve_settings(ws, ["app.lease_s=60", "app.port=9999"])
    assert (app.lease_s, app.port) == (60, 9999)
    with pytest.raises(HvsaError, match="app.KEY=VALUE only; annotation.annotator"):
        serve_settings(ws, ["annotation.annotator=oracle"])
    serve = ["annotate", "serve", "--workspace", str(waiting_round)]
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    assert main(serve) == 2
    err = capsys.readouterr().err
    assert "PREFECT_API_URL is not set" in err and len(err.strip().splitlines()) == 1
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("PREFECT_API_URL", f"http://127.0.0.1:{port}/api")
    assert main(serve) == 2
    assert "does not answer" in capsys.readouterr().err
    assert main([*serve, "--set", "fusion.window=3"]) == 2
    assert "campaign's setting" in capsys.readouterr().err


def test_labels_outside_a_superpixel_are_refused(waiting_round, tmp_path, tiny_videos, pretrained):
    base = tmp_path
    params = write_fast_params(
        base / "params.yaml",
        **{"annotation.annotator": "human", "loop.budget": 2, "samples.granularity": "superpixel"},
    )
    ws = init_workspace(base / "ws", "sp", pretrained, {"cam": str(tiny_videos[0])}, params)
    advance(ws)
    reproduce(Workspace.open(ws.root), ["select@cam"])
    client = TestClient(create_app(ws.root, resume=lambda *a: None))
    token = app_store(Workspace.open(ws.root)).add_annotator("dora")
    sample = client.post("/api/rounds/cam/1/next", headers=_auth(token)).json()
    labels = _truth(ws.root, sample)
    everywhere = np.zeros_like(labels)  # class 0 over the whole box, outside the superpixel too
    assert (labels == 255).any()
    r = client.post(_url(sample), json=_body(everywhere), headers=_auth(token))
    assert r.status_code == 422 and "outside the sample's region" in r.json()["error"]


def test_concurrent_annotators_lose_nothing_and_count_nothing_twice(app):
    client, root, tokens, resumed = app
    ws = Workspace.open(root)
    names = list(tokens)
    taken: dict[str, list[int]] = {n: [] for n in names}
    errors = []

    def work(name):
        """Take and submit samples until none is left; submit each twice (a double click)."""
        h = _auth(tokens[name])
        while True:
            s = client.post("/api/rounds/cam/1/next", headers=h)
            if s.status_code == 409:  # the round was handed in by someone else meanwhile
                return
            sample = s.json()
            if sample.get("sample_id") is None:
                return
            taken[name].append(sample["sample_id"])
            body = _body(_truth(root, sample), {"polygon": 3})
            codes = [client.post(_url(sample), json=body, headers=h).status_code for _ in (1, 2)]
            if codes[0] != 200 or codes[1] != 409:
                errors.append((name, sample["sample_id"], codes))

    threads = [threading.Thread(target=work, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    everyone = sorted(s for ids in taken.values() for s in ids)
    selected = pd.read_parquet(root / "data" / "cam" / "r1" / "selected.parquet")
    assert everyone == sorted(selected["sample_id"].tolist())  # each sample once, none lost
    assert resumed == [("cam", 1, "inbox/cam/r1.npz")]  # handed in exactly once
    assert client.get("/api/rounds", headers=_auth(tokens["alice"])).json() == []

    # the flow's annotate stage records the app's counts in the ledger, annotator by annotator
    reproduce(ws, ["annotate@cam"])
    with Ledger(ws.ledger_path) as ledger:
        events = ledger.frame()
    assert len(events) == len(selected) and events["clicks"].tolist() == [3] * len(selected)
    by_name = events.groupby("annotator")["sample_id"].apply(sorted).to_dict()
    assert by_name == {n: sorted(ids) for n, ids in taken.items() if ids}
    assert set(events["tool"]) == {"polygon"}
    assert all(
        d == {"polygon": 3, "active_s": 3.5, "source": "app"} for d in events["clicks_detail"]
    )


def test_cli_adds_annotators_and_refuses_a_duplicate(waiting_round, tmp_path, capsys):
    root = tmp_path / "ws"
    shutil.copytree(waiting_round, root, symlinks=True)
    assert main(["annotate", "add-annotator", "erin", "--workspace", str(root)]) == 0
    token = capsys.readouterr().out.strip().splitlines()[-1]
    assert app_store(Workspace.open(root)).who(token) == "erin"
    assert main(["annotate", "add-annotator", "erin", "--workspace", str(root)]) == 2
    assert "exists already" in capsys.readouterr().err


def test_label_studio_rle_round_trips_and_reads_literal_runs():
    from hvsa.data.label_formats import decode_rle, encode_rle, mask_to_rle, rle_to_mask

    rng = np.random.default_rng(0)
    mask = rng.random((37, 53)) > 0.6
    assert (rle_to_mask(mask_to_rle(mask), 37, 53) == mask).all()
    long = np.r_[np.zeros(70000, np.uint8), np.full(5, 9, np.uint8)]  # runs longer than 2**16
    assert (decode_rle(encode_rle(long)) == long).all()
    # a hand-made stream: 3 values, 8-bit words, run-length widths 1..4 bits; one literal run
    bits = format(3, "032b") + format(7, "05b") + "0000" * 4
    bits += "0" + "00" + "1" + "00000101" + "00001010"  # literal: 2 values, 5 and 10
    bits += "1" + "00" + "0" + "11111111"  # repeat: 1 value, 255
    bits += "0" * (-len(bits) % 8)
    stream = [int(bits[i : i + 8], 2) for i in range(0, len(bits), 8)]
    assert decode_rle(stream).tolist() == [5, 10, 255]


def _truth_masks(root):
    ws = Workspace.open(root)
    samples, selected = selected_samples(ws, "cam", 1)
    ids = selected["sample_id"].tolist()
    return {a.sample_id: a.labels for a in OracleAnnotator(2.0).annotate(
        ws.load_video("cam"), samples, ids)}  # fmt: skip


def test_cvat_export_and_import_hand_the_round_in(app, tmp_path, capsys, monkeypatch):
    import cv2

    monkeypatch.setattr("hvsa.app.exchange.resume_waiting_run", lambda *a: None)

    client, root, tokens, _ = app
    out = tmp_path / "export"
    args = ["annotate", "export", "--workspace", str(root), "--video", "cam", "--path", str(out)]
    assert main(args) == 0
    truth = _truth_masks(root)
    stems = (out / "cvat" / "ImageSets" / "Segmentation" / "default.txt").read_text().split()
    assert len(stems) == len(truth) == len(list((out / "images").glob("*.png")))
    assert (out / "cvat.zip").is_file() and (out / "label_studio" / "config.xml").is_file()
    tasks = json.loads((out / "label_studio" / "tasks.json").read_text())
    assert all(t["predictions"][0]["result"] for t in tasks)
    # the team's tool: paint the ground truth in the labelmap's colours, export as CVAT masks
    colours = {}
    for line in (out / "cvat" / "labelmap.txt").read_text().splitlines()[2:]:
        name, rgb = line.split(":")[:2]
        colours[len(colours)] = [int(v) for v in rgb.split(",")]
    folder = out / "cvat" / "SegmentationClass"
    first = None
    for sid, labels in truth.items():
        rgb = np.zeros((*labels.shape, 3), np.uint8)
        for c, colour in colours.items():
            rgb[labels == c] = colour
        cv2.imwrite(str(folder / f"cam_r1_s{sid}.png"), rgb[..., ::-1])
        first = first if first is not None else sid
    cv2.imwrite(
        str(folder / f"cam_r1_s{first}.png"), np.full((*truth[first].shape, 3), 7, np.uint8)
    )
    imp = ["annotate", "import", "zoe", "--workspace", str(root), "--video", "cam",
           "--path", str(out / "cvat"), "--tool", "cvat"]  # fmt: skip
    assert main(imp) == 2 and "is not a class of the labelmap" in capsys.readouterr().err
    (folder / f"cam_r1_s{first}.png").unlink()
    assert (
        main(imp) == 2 and f"sample {first} of cam round 1 has no mask" in capsys.readouterr().err
    )
    assert not (root / "inbox" / "cam" / "r1.npz").exists()
    rgb = np.zeros((*truth[first].shape, 3), np.uint8)
    for c, colour in colours.items():
        rgb[truth[first] == c] = colour
    cv2.imwrite(str(folder / f"cam_r1_s{first}.png"), rgb[..., ::-1])
    assert main(imp) == 0, capsys.readouterr().err
    assert (root / "inbox" / "cam" / "r1.npz").is_file()
    # the round is closed for the app, and a second import is refused
    assert client.get("/api/rounds", headers=_auth(tokens["alice"])).json() == []
    reproduce(Workspace.open(root), ["annotate@cam"])
    with Ledger(Workspace.open(root).ledger_path) as ledger:
        events = ledger.frame()
    assert set(events["tool"]) == {"import"} and set(events["annotator"]) == {"zoe"}
    assert all(d["source"] == "cvat" for d in events["clicks_detail"])
    assert (events["clicks"] > 0).all()


def test_label_studio_import_reads_brush_annotations(app, tmp_path):
    from hvsa.app.exchange import export_round, import_labels
    from hvsa.app.work import current_round
    from hvsa.data.label_formats import mask_to_rle

    _, root, _, resumed = app
    ws = Workspace.open(root)
    out = export_round(current_round(ws, "cam"), tmp_path / "ls")
    tasks = json.loads((out / "label_studio" / "tasks.json").read_text())
    truth = _truth_masks(root)
    names = current_round(ws, "cam").classes.names
    for task in tasks:
        labels = truth[task["data"]["hvsa_sample"]]
        h, w = labels.shape
        task["annotations"] = [{"result": [
            {"type": "brushlabels", "original_height": h, "original_width": w,
             "value": {"rle": mask_to_rle(labels == c), "brushlabels": [names[c]]}}
            for c in np.unique(labels[labels != 255]).tolist()
        ]}]  # fmt: skip
    export = tmp_path / "ls-export.json"
    export.write_text(json.dumps(tasks))
    done = import_labels(root, "cam", export, "label-studio", "yann", resume=lambda *a: "run-9")
    assert done["samples"] == len(truth) and done["dropped_pixels"] == 0
    assert done["resumed_flow_run"] == "run-9"
    from hvsa.annotation.submission import SubmittedAnnotator

    ws = Workspace.open(root)
    got = SubmittedAnnotator(root / "inbox" / "cam", 1, len(names)).annotate(
        ws.load_video("cam"), selected_samples(ws, "cam", 1)[0], list(truth)
    )
    assert all((a.labels == truth[a.sample_id]).all() for a in got)


def _ls_result(task, **change):
    """The exported task's first pre-annotation as a finished annotation, with ``change``."""
    result = dict(task["predictions"][0]["result"][0])
    result["value"] = dict(result["value"])
    for key, value in change.items():
        (result["value"] if key in ("rle", "brushlabels") else result)[key] = value
    return [{"data": task["data"], "annotations": [{"result": [result]}]}]


def _zip(path, entries):
    import zipfile

    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return path


BAD_IMPORTS = {
    # name: (tool, make(export folder, tasks, tmp) -> path, expected words)
    "json_is_a_dict": ("label-studio", lambda o, t, d: _json(d, {"tasks": t}), "a list of tasks"),
    "json_is_an_int": ("label-studio", lambda o, t, d: _json(d, 7), "a list of tasks"),
    "json_not_json": ("label-studio", lambda o, t, d: _text(d, "[{nope"), "not a Label Studio"),
    "negative_size": (
        "label-studio",
        lambda o, t, d: _json(d, _ls_result(t[0], original_height=-5)),
        "mask, the sample's box is",
    ),
    "huge_declared_size": (
        "label-studio",
        lambda o, t, d: _json(d, _ls_result(t[0], original_height=60000, original_width=60000)),
        "60000×60000",
    ),
    "rle_is_a_string": (
        "label-studio",
        lambda o, t, d: _json(d, _ls_result(t[0], rle="AAAA")),
        "not a list of integers",
    ),
    "rle_declares_more": (
        "label-studio",
        lambda o, t, d: _json(d, _ls_result(t[0], rle=[255, 255, 255, 255, 0, 0])),
        "a brush mask holds",
    ),
    "task_not_a_dict": ("label-studio", lambda o, t, d: _json(d, [5]), "task 0 is malformed"),
    "unknown_sample": (
        "label-studio",
        lambda o, t, d: _json(d, _ls_result({**t[0], "data": {"hvsa_sample": 99999}})),
        "not a sample of this round",
    ),
    "zip_missing": ("cvat", lambda o, t, d: d / "gone.zip", "nothing to import"),
    "zip_not_a_zip": ("cvat", lambda o, t, d: _text(d, "PK? no", "x.zip"), "not a zip archive"),
    "zip_slip": (
        "cvat",
        lambda o, t, d: _zip(
            d / "slip.zip", {"SegmentationClass/a.png": b"x", "../../outside.txt": b"owned"}
        ),
        "outside the import",
    ),
    "zip_bomb": (
        "cvat",
        lambda o, t, d: _zip(d / "bomb.zip", {"SegmentationClass/big.bin": b"\0" * 60_000_000}),
        "unpacks to",
    ),
    "zip_many_entries": (
        "cvat",
        lambda o, t, d: _zip(
            d / "many.zip", {f"SegmentationClass/{i}.txt": b"" for i in range(500)}
        ),
        "entries",
    ),
    "mask_corrupt": ("cvat", lambda o, t, d: _corrupt_mask(o), "cannot read image"),
}


def _json(folder, data):
    return _text(folder, json.dumps(data))


def _text(folder, text, name="export.json"):
    (folder / name).write_text(text)
    return folder / name


def _corrupt_mask(out):
    first = sorted((out / "cvat" / "SegmentationClass").glob("*.png"))[0]
    first.write_bytes(b"not a png at all")
    return out / "cvat"


@pytest.mark.parametrize("name", sorted(BAD_IMPORTS))
def test_a_bad_import_is_refused_in_one_line_leaving_nothing(
    name, app, tmp_path, capsys, monkeypatch
):
    import tempfile

    monkeypatch.setattr("hvsa.app.exchange.resume_waiting_run", lambda *a: None)
    _, root, _, _ = app
    out = tmp_path / "export"
    main(["annotate", "export", "--workspace", str(root), "--video", "cam", "--path", str(out)])
    tasks = json.loads((out / "label_studio" / "tasks.json").read_text())
    tool, make, expected = BAD_IMPORTS[name]
    source = make(out, tasks, tmp_path)
    leftovers = set(Path(tempfile.gettempdir()).glob("hvsa-import-*"))
    capsys.readouterr()
    status = main(["annotate", "import", "zoe", "--workspace", str(root), "--video", "cam",
                   "--path", str(source), "--tool", tool])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1 and err.startswith("hvsa: error: "), err
    assert expected in err, err
    assert not (root / "inbox" / "cam" / "r1.npz").exists()
    assert set(Path(tempfile.gettempdir()).glob("hvsa-import-*")) == leftovers
    assert not (tmp_path.parent / "outside.txt").exists() and not (out / "outside.txt").exists()


def test_the_app_refuses_to_start_without_its_drawing_library(waiting_round, tmp_path,
                                                               monkeypatch):
    """An install whose build could not reach npm has no Konva: one line, not a blank page."""
    from hvsa.app import server
    from hvsa.errors import HvsaError

    monkeypatch.setattr(server, "KONVA", tmp_path / "vendor" / "konva.min.js")
    with pytest.raises(HvsaError, match="drawing library is missing"):
        create_app(waiting_round)


def test_the_page_loads_konva_from_the_app_itself(app):
    client, *_ = app
    assert '<script src="/static/vendor/konva.min.js">' in client.get("/").text
    answer = client.get("/static/vendor/konva.min.js")
    assert answer.status_code == 200 and "Konva JavaScript Framework" in answer.text[:600]


def test_serve_resumes_a_handed_in_round_whose_flow_still_waits(app, monkeypatch):
    """A round handed in whose resume never went out (the app stopped first) is resumed when
    the app starts again; a round still open is not."""
    from types import SimpleNamespace

    from hvsa.app import resume

    client, root, tokens, _ = app
    monkeypatch.setattr(resume, "paused_run_of", lambda ws, video: SimpleNamespace(id="run-3"))
    sent = []
    monkeypatch.setattr("prefect.flow_runs.resume_flow_run",
                        lambda run_id, run_input: sent.append((run_id, run_input)))  # fmt: skip
    assert resume.resume_handed_in(root) == []  # round 1 is open: nothing to resume
    h = _auth(tokens["alice"])
    while (sample := client.post("/api/rounds/cam/1/next", headers=h).json()).get(
        "sample_id"
    ) is not None:
        body = _body(_truth(root, sample), {"polygon": 3})
        assert client.post(_url(sample), json=body, headers=h).status_code == 200
    assert (root / "inbox" / "cam" / "r1.npz").is_file()
    assert resume.resume_handed_in(root) == [("cam", 1, "run-3")]
    for t in threading.enumerate():
        if t.name == "resume-cam-r1":
            t.join(10)
    assert sent == [("run-3", {"video": "cam", "round": 1, "submission": "inbox/cam/r1.npz"})]
