"""Videos side by side against one after another: wall time and how long annotators wait.

A campaign of generated videos with human annotators is run twice from the same start: in the
serial design (``--serial``: a round of one video after another, the flow paused on the video
whose labels it waits for) and in the concurrent one, the default (each video in a flow run of
its own, side by side). Simulated annotators take the next sample of any open round through the
app's HTTP API, spend a fixed time on it and hand in the oracle's labels. Written per design
(and per repeat, ``--repeats``): wall time from the flow's start to its end (its run's end; the
process's teardown after it, which nobody waits for, is ``process_s``), and the annotators' idle
share — the time between the first round opening and the flow's end in which they had nothing
to label — and when the first sample was taken (``first_sample_s``); beside it the same share
up to the last hand-in (``idle_to_last_hand_in``: while something was still to be labelled) and
the wait from the last hand-in to the end (``tail_s``). Beside the CSV: every
sample's start and end (``…_events.csv``) and a timeline of the first repeat
(``…_timeline.png``); with ``--flow-log DIR``, the flow's output and the app's resumes, timed.

    .venv/bin/python benchmarks/campaign_scale.py --videos 8 --annotators 2 --rounds 3 \\
        --sample-s 1.5 --budget 4 --frames 8 --repeats 3 \\
        --csv benchmarks/results/campaign_scale_1p5s.csv
    # the concurrent design with every video's run started at once
    .venv/bin/python benchmarks/campaign_scale.py ... --designs concurrent \\
        --set campaign.opening_ramp=false --csv ...

Needs the ``app`` extra; starts a Prefect server with ``hvsa stack`` (127.0.0.1, free ports).
"""

from __future__ import annotations

import argparse
import base64
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]


class _Timed(logging.Handler):
    """The app's resume log (``hvsa.app.resume``), each line with the second it came, from
    ``origin`` (set at the flow's start)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.origin = time.perf_counter()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{time.perf_counter() - self.origin:8.2f}  {record.getMessage()}")


def _serve(app, port: int) -> None:
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.1)


class Annotator(threading.Thread):
    """Takes the next sample of any open round, works ``sample_s`` on it, hands in the truth."""

    def __init__(self, url: str, token: str, root: Path, sample_s: float, stop: threading.Event):
        super().__init__(daemon=True)
        self.url, self.token, self.root, self.sample_s, self.stop = url, token, root, sample_s, stop
        self.busy_s, self.first_work, self.samples = 0.0, None, 0
        self.errors: list[str] = []
        self.truth_s: list[float] = []  # reading the oracle's labels (inside sample_s)
        self.post_s: list[float] = []  # handing in: the app's answer (after sample_s)
        self.events: list[tuple[str, int, float, float]] = []  # (video, round, start, end)

    def run(self) -> None:
        import httpx

        auth = {"Authorization": f"Bearer {self.token}"}
        with httpx.Client(base_url=self.url, headers=auth, timeout=120) as client:
            while not self.stop.is_set():
                try:
                    took = self.one_sample(client)
                except Exception as exc:  # a person's page shows the error and tries again
                    self.errors.append(repr(exc))
                    took = False
                if not took:
                    time.sleep(0.2)

    def one_sample(self, client) -> bool:
        """Label the next sample of any open round (the app's choice: the round that has
        waited longest); whether there was one."""
        sample = client.post("/api/next").json()
        if sample.get("sample_id") is None:  # nothing open, or an error: ask again
            return False
        v, n = sample["video"], sample["round"]
        if self.first_work is None:
            self.first_work = time.perf_counter()
        started = time.perf_counter()
        labels = self.truth(v, n, sample["sample_id"])
        read = time.perf_counter() - started
        time.sleep(max(0.0, self.sample_s - (time.perf_counter() - started)))
        posted = time.perf_counter()
        body = {"labels": base64.b64encode(np.ascontiguousarray(labels)).decode(),
                "clicks_by_tool": {"polygon": 4}, "active_s": self.sample_s,
                "started": 1.0, "finished": 2.0}  # fmt: skip
        client.post(f"/api/rounds/{v}/{n}/samples/{sample['sample_id']}", json=body)
        self.busy_s += time.perf_counter() - started
        self.events.append((v, n, started, time.perf_counter()))
        self.truth_s.append(read)
        self.post_s.append(time.perf_counter() - posted)
        self.samples += 1
        return True

    def truth(self, video: str, round_no: int, sample_id: int) -> np.ndarray:
        """The oracle's labels of a sample this annotator holds (read again on a passing
        error: the sample stays leased to it until handed in)."""
        from hvsa.annotation.annotator import OracleAnnotator
        from hvsa.campaign.workspace import Workspace
        from tests.conftest import selected_samples

        for attempt in range(50):
            try:
                ws = Workspace.open(self.root)
                samples, _ = selected_samples(ws, video, round_no)
                (a,) = OracleAnnotator(2.0).annotate(ws.load_video(video), samples, [sample_id])
                return a.labels
            except OSError as exc:
                self.errors.append(repr(exc))
                time.sleep(0.2 * (attempt + 1))
        raise RuntimeError(f"{video} round {round_no}: sample {sample_id} could not be read")


def run_design(
    design: str, repeat: int, args, base: Path, model: Path, videos: dict[str, str], api: str
):
    from hvsa.app.server import create_app
    from hvsa.app.store import app_store
    from hvsa.campaign.lifecycle import init_workspace
    from tests.conftest import free_port, write_fast_params

    params = write_fast_params(base / f"{design}.yaml", **{
        "annotation.annotator": "human", "annotation.poll_s": 1, "loop.budget": args.budget,
        "samples.granularity": "superpixel", **dict(args.set)})  # fmt: skip
    ws = init_workspace(base / f"{design}-{repeat}", design, model, videos, params)
    tokens = [app_store(ws).add_annotator(f"a{i}") for i in range(args.annotators)]
    port = free_port()
    _serve(create_app(ws.root), port)
    stop = threading.Event()
    people = [Annotator(f"http://127.0.0.1:{port}", t, ws.root, args.sample_s, stop)
              for t in tokens]  # fmt: skip
    resumes = _Timed()
    app_log = logging.getLogger("hvsa.app.resume")
    level = app_log.level
    app_log.addHandler(resumes)
    app_log.setLevel(logging.INFO)
    try:
        return _run_flow(design, repeat, args, ws, people, stop, api, resumes)
    finally:
        app_log.removeHandler(resumes)
        app_log.setLevel(level)


def _run_flow(
    design: str, repeat: int, args, ws, people: list, stop: threading.Event, api: str,
    resumes: _Timed,
):
    """The campaign flow of one design's run, with the annotators at work: its CSV row and its
    samples' events."""
    env = dict(os.environ, PREFECT_API_URL=api, PYTHONUNBUFFERED="1")
    serial = ["--serial"] if design == "serial" else []
    argv = [sys.executable, str(REPO / "flows" / "campaign.py"), str(ws.root),
            "--rounds", str(args.rounds), *serial]  # fmt: skip
    started = resumes.origin = time.perf_counter()
    flow = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip
    for p in people:
        p.start()
    # each line of the flow's output with the second it arrived, from the flow's start: where
    # the time between the last hand-in and the end goes (``--flow-log``)
    lines, ended, name = [], None, None
    for line in flow.stdout:
        now = time.perf_counter()
        lines.append(f"{now - started:8.2f}  {line.rstrip()}")
        begun = re.search(r"Beginning flow run '([^']+)' for flow 'hvsa-campaign'", line)
        name = begun.group(1) if begun and name is None else name
        if name and f"Flow run '{name}' - Finished in state" in line:
            ended = now
    if ended is None:
        print(f"{design}: the campaign flow's end was not in its log: measured to the process's "
              "end", flush=True)  # fmt: skip
    flow.wait()
    exited = time.perf_counter()
    lines.append(f"{exited - started:8.2f}  (the flow's process ended)")
    output = "\n".join(lines)
    # the flow's end is its run's end: the process then only tears down (about 1-2 s here,
    # Python unloading torch, MLflow, DVC and Prefect), which nobody waits for
    ended = ended or exited
    stop.set()
    for p in people:
        p.join()
    if args.flow_log:
        args.flow_log.mkdir(parents=True, exist_ok=True)
        (args.flow_log / f"{design}-{repeat}.log").write_text(output)
        (args.flow_log / f"{design}-{repeat}-resumes.log").write_text("\n".join(resumes.lines))
    if flow.returncode != 0:
        raise SystemExit(f"{design}: the campaign flow failed:\n{output[-3000:]}")
    first = min((p.first_work for p in people if p.first_work is not None), default=ended)
    busy = sum(p.busy_s for p in people)

    def idle_until(end: float) -> float:
        return 1 - busy / max(len(people) * (end - first), 1e-9)

    idle = idle_until(ended)
    # the same share up to the last hand-in: after it nothing is left to label, and the wait to
    # the end (the last round's fine-tuning and labels, which need its labels) is no one's
    last = max((e[3] for p in people for e in p.events), default=ended)
    working = idle_until(last)
    errors = [e for p in people for e in p.errors]
    if errors:
        print(f"{design}: {len(errors)} passing errors, e.g. {errors[0]}", flush=True)
    print(f"{design}: {ended - started:.0f} s, annotators idle {100 * idle:.1f} % "
          f"({sum(p.samples for p in people)} samples)", flush=True)  # fmt: skip
    row = {"design": design, "videos": args.videos, "annotators": args.annotators,
           "wall_s": round(ended - started, 1), "annotator_idle_share": round(idle, 3),
           "rounds": args.rounds, "sample_s": args.sample_s, "budget": args.budget,
           "repeat": repeat, "process_s": round(exited - started, 1),
           "first_sample_s": round(first - started, 2),
           "idle_to_last_hand_in": round(working, 3), "tail_s": round(ended - last, 2)}  # fmt: skip
    events = [{"design": design, "repeat": repeat, "annotator": i, "video": v, "round": n,
               "start_s": round(t0 - started, 2), "end_s": round(t1 - started, 2),
               "truth_s": round(t, 2), "post_s": round(q, 2)}
              for i, p in enumerate(people)
              for (v, n, t0, t1), t, q in zip(p.events, p.truth_s, p.post_s,
                                              strict=True)]  # fmt: skip
    events.append({"design": design, "repeat": repeat, "annotator": -1, "video": "", "round": 0,
                   "start_s": 0.0, "end_s": round(ended - started, 2)})  # fmt: skip
    return row, events


def plot_timeline(events: pd.DataFrame, path: Path) -> None:
    """Each annotator's samples over time, coloured by video, one panel per design."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    events = events[events["repeat"] == 0]  # the first run of each design
    designs = list(dict.fromkeys(events["design"]))
    fig, axes = plt.subplots(len(designs), 1, figsize=(10, 1.2 + 1.1 * len(designs)),
                             sharex=True, squeeze=False)  # fmt: skip
    videos = sorted(v for v in set(events["video"]) if isinstance(v, str) and v)
    colours = {v: plt.cm.tab10(i % 10) for i, v in enumerate(videos)}
    for ax, design in zip(axes[:, 0], designs, strict=True):
        mine = events[events["design"] == design]
        people = sorted(a for a in set(mine["annotator"]) if a >= 0)
        for e in mine[mine["annotator"] >= 0].itertuples():
            ax.barh(e.annotator, e.end_s - e.start_s, left=e.start_s, height=0.7,
                    color=colours[e.video])  # fmt: skip
        end = float(mine.loc[mine["annotator"] < 0, "end_s"].max())
        ax.axvline(end, color="k", lw=1)
        ax.set_xlim(0, float(events["end_s"].max()) * 1.02)
        ax.set_yticks(people, [f"annotator {a + 1}" for a in people])
        ax.set_title(f"{design}: ends at {end:.0f} s", fontsize=9, loc="left")
    axes[-1, 0].set_xlabel("seconds from the campaign flow's start (colour: video)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--annotators", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sample-s", type=float, default=4.0, help="an annotator's time a sample")
    parser.add_argument("--budget", type=int, default=6, help="samples a round")
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--designs", default="serial,concurrent")
    parser.add_argument("--csv", type=Path)
    parser.add_argument("--repeats", type=int, default=1,
                        help="run the designs this many times, in turn (a row each)")
    parser.add_argument("--flow-log", type=Path, metavar="DIR",
                        help="write each design's campaign flow output here, each line with "
                             "the second it arrived (from the flow's start), and the app's "
                             "resumes beside it (…-resumes.log: how long each took)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        type=lambda t: (t.split("=", 1)[0], yaml.safe_load(t.split("=", 1)[1])),
                        help="a params.yaml setting for both designs' workspaces")  # fmt: skip
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from hvsa.campaign import stack
    from hvsa.data.synth import generate, write_video
    from tests.conftest import free_port, tiny_config

    base = Path(tempfile.mkdtemp(prefix="hvsa-scale-"))
    videos = {}
    for seed in range(args.videos):
        frames, labels, classes = generate(args.frames, 64, 80, 100 + seed)
        videos[f"v{seed}"] = str(write_video(base / "videos" / f"v{seed}", frames, labels, classes))
    from hvsa.data.video import load_video
    from hvsa.method.network import save_checkpoint
    from hvsa.method.pretrain import pretrain

    model, classes, _ = pretrain([load_video(videos["v0"])], tiny_config())
    save_checkpoint(base / "pretrained.pt", model, classes)
    ports = stack.Ports(free_port(), free_port(), free_port())
    urls = stack.up(base / "stack", ports)
    os.environ["PREFECT_API_URL"] = urls["prefect_api"]
    try:
        done = [run_design(d, k, args, base, base / "pretrained.pt", videos, urls["prefect_api"])
                for k in range(args.repeats) for d in args.designs.split(",")]  # fmt: skip
    finally:
        stack.down(base / "stack")
        shutil.rmtree(base, ignore_errors=True)  # the workspaces of every run: gigabytes
    table = pd.DataFrame([row for row, _ in done])
    print(table.to_string(index=False))
    if args.repeats > 1:
        means = table.groupby("design")[["wall_s", "annotator_idle_share", "idle_to_last_hand_in"]]
        print(means.agg(["mean", "min", "max"]).round(3).to_string())
    if args.csv:
        table.to_csv(args.csv, index=False)
        events = pd.DataFrame([e for _, ev in done for e in ev])
        events.to_csv(args.csv.with_name(args.csv.stem + "_events.csv"), index=False)
        plot_timeline(events, args.csv.with_name(args.csv.stem + "_timeline.png"))


if __name__ == "__main__":
    main()
