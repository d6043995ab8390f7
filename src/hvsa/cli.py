"""The ``hvsa`` command line: synth, pretrain, run, demo.

Every command reads params.yaml (``--params``) and lets flags override it. A user error is one
line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any, NoReturn

from hvsa.config import SELECTORS, Config, load_config, parse_set_option
from hvsa.data.label_formats import FORMATS as LABEL_FORMATS
from hvsa.errors import HvsaError, require_extra


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"size must be HxW, e.g. 96x128, got {text!r}") from exc
    if not (32 <= h <= 4096 and 32 <= w <= 4096):
        raise argparse.ArgumentTypeError(f"size {h}x{w}: each side must be 32..4096 pixels")
    return h, w


def _count(text: str) -> int:
    """A whole number of at least one (frames, steps, rounds, samples, clicks)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a whole number expected, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _fraction(text: str) -> float:
    """A number in (0, 1] (an mIoU target)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a number expected, got {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error reported as one line like every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _config(args: argparse.Namespace, overrides: dict[str, Any]) -> Config:
    merged = parse_set_option(args.set or [])
    merged.update({k: v for k, v in overrides.items() if v is not None})
    return load_config(args.params, merged)


def cmd_synth(args: argparse.Namespace) -> None:
    from hvsa.data.synth import generate, write_video

    cfg = _config(args, {})
    h, w = args.size or (cfg.synth.height, cfg.synth.width)
    _check_out(Path(args.out))
    n = args.frames if args.frames is not None else cfg.synth.frames
    if n < 2:
        raise HvsaError(f"--frames {n}: a video needs at least 2 frames (motion is between frames)")
    frames, labels, classes = generate(n, h, w, args.seed)
    out = write_video(args.out, frames, labels, classes)
    print(f"wrote {len(frames)} frames of {h}x{w} with labels to {out}")


def _pretrain_to(videos: list[str], out: str, cfg: Config, steps: int | None = None) -> Path:
    from hvsa.data.video import load_video
    from hvsa.method.network import save_checkpoint
    from hvsa.method.pretrain import pretrain

    loaded = [load_video(v, cfg.data.classes_file, cfg.data.void_id) for v in videos]
    model, classes, losses = pretrain(loaded, cfg, steps)
    save_checkpoint(
        out, model, classes, {"pretrained_on": [str(v) for v in videos], "final_loss": losses[-1]}
    )
    return Path(out)


def cmd_pretrain(args: argparse.Namespace) -> None:
    cfg = _config(args, {"pretrain.steps": args.steps})
    out = _pretrain_to(args.video, args.out, cfg)
    print(f"wrote checkpoint {out}")


def _check_out(out: Path) -> None:
    """Refuse an output folder that cannot be one, before any input is read."""
    if out.exists() and not out.is_dir():
        raise HvsaError(f"{out} is a file, not a folder for the output")
    existing = next((p for p in [out, *out.parents] if p.exists()), None)
    if existing is not None and not os.access(existing, os.W_OK):
        raise HvsaError(f"cannot write to {out}: {existing} is not writable")


def _run(
    video_path: str,
    model_path: str | None,
    out: str,
    cfg: Config,
    campaign: str = "run",
    fresh: bool = False,
    classes_file: str | None = None,
    labels: dict | None = None,
) -> dict:
    """``labels``: existing labels to start from (``source``, ``fmt``, ``clicks``, ``by``)."""
    from hvsa.annotation.annotator import make_annotator
    from hvsa.annotation.existing import load_existing
    from hvsa.data.video import check_classes, load_video, probe_video
    from hvsa.method.network import load_checkpoint, pick_device
    from hvsa.rounds.loop import AnnotationLoop, open_out, run_manifest
    from hvsa.rounds.rules import check_memory, check_settings, from_nothing

    _check_out(Path(out))
    if model_path is None:
        cfg = from_nothing(cfg)
    check_settings(cfg)
    probed = probe_video(video_path)
    if probed is not None:
        check_memory(*probed, cfg)
    device = pick_device(cfg.model.device)
    video = load_video(video_path, cfg.data.classes_file, cfg.data.void_id, cfg.data.in_memory_mb)
    new_start = None
    if model_path is None:
        model_path = str(Path(out) / FRESH_MODEL)
        if not Path(model_path).is_file():  # made aside, moved in once the folder is ours
            new_start = _start_from_nothing(video, cfg, classes_file)
            model_path = str(new_start)
    try:
        model, classes, _ = load_checkpoint(model_path, device)
        check_classes(video, classes)
        annotator = make_annotator(cfg.annotation)
        if cfg.annotation.annotator != "human" and video.labels is None:
            raise HvsaError(
                f"the {cfg.annotation.annotator} annotator needs ground truth, and {video_path} "
                "has no labels/"
            )
        existing = None
        if labels is not None and labels.get("source") is not None:
            existing = load_existing(labels["source"], video, classes, labels["fmt"],
                                     labels["by"], labels["clicks"], video.void_id)  # fmt: skip
            print(f"existing labels: {len(existing.labels)} frames from {existing.source} "
                  f"({existing.fmt}), clicks {existing.clicks}")  # fmt: skip
        manifest = run_manifest(cfg, Path(video_path), Path(model_path), existing)
        last = open_out(Path(out), manifest, cfg.campaign.ledger, fresh)
        if new_start is not None:
            shutil.move(new_start, Path(out) / FRESH_MODEL)
    finally:  # a refused run leaves no network behind in the temporary folder
        if new_start is not None:
            shutil.rmtree(new_start.parent, ignore_errors=True)
    if last is not None:
        print(f"resuming the run in {out} after round {last}")
    loop = AnnotationLoop(
        video, model, classes, cfg, annotator, Path(out), device, campaign,
        resume=last is not None, existing=existing,
    )  # fmt: skip
    loop.run()
    return json.loads((Path(out) / "summary.json").read_text())


FRESH_MODEL = "start_model.pt"


def _start_from_nothing(video, cfg: Config, classes_file: str | None) -> Path:
    """A starting network that knows nothing, for the video's class list, in a folder of its
    own; the run keeps it as ``start_model.pt`` so that a resumed run starts from the same."""
    import tempfile

    from hvsa.data.video import start_classes
    from hvsa.rounds.rules import start_network

    classes = start_classes([video], classes_file)
    print(f"no --model: starting from a network that knows nothing of {len(classes)} classes "
          f"({', '.join(classes.names)})")  # fmt: skip
    path = Path(tempfile.mkdtemp(prefix="hvsa-start-")) / FRESH_MODEL
    return start_network(path, [video], classes, cfg)


def _print_summary(summary: dict) -> None:
    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{100 * v:.1f}%"

    frames, kind = summary["frames"], summary["granularity"]
    print(f"video      {summary['video']} ({frames} frames, {kind} samples)")
    print(f"rounds     {summary['rounds']}")
    manual = summary["manual_clicks"]
    share = (
        f" ({summary['clicks_pct_of_manual']:.1f}% of {manual} for full manual)" if manual else ""
    )
    print(f"clicks     {summary['clicks']}{share}")
    print(f"mIoU       {pct(summary['miou_start'])} -> {pct(summary['miou_final'])}")
    print(f"outputs    {summary['out']} (round_*/labels, round_*/overlays, clicks_vs_miou.png)")


def cmd_run(args: argparse.Namespace) -> None:
    cfg = _config(
        args,
        {
            "samples.granularity": args.granularity,
            "loop.budget": args.budget,
            "loop.rounds": args.rounds,
            "loop.target_miou": args.target_miou,
            "loop.max_clicks": args.max_clicks,
            "annotation.annotator": args.annotator,
            "selection.strategy": args.selector,
            "uncertainty.measure": args.uncertainty,
        },
    )
    labels = {"source": args.labels, "fmt": args.labels_format, "clicks": args.labels_clicks,
              "by": args.labels_by}  # fmt: skip
    _print_summary(
        _run(
            args.video, args.model, args.out, cfg, args.campaign, args.fresh, args.classes, labels
        )  # fmt: skip
    )


def cmd_demo(args: argparse.Namespace) -> None:
    from hvsa.data.synth import generate, write_video

    cfg = _config(args, {})
    d = cfg.demo
    out = Path(args.out or d.out)
    videos = []
    for seed in [d.target_seed, *d.pretrain_seeds]:
        frames, labels, classes = generate(d.frames, d.height, d.width, seed)
        videos.append(write_video(out / "videos" / f"seed{seed}", frames, labels, classes))
    print(f"generated {len(videos)} videos of {d.frames} frames in {out / 'videos'}")
    model = _pretrain_to(
        [str(v) for v in videos[1:]], str(out / "pretrained.pt"), cfg, d.pretrain_steps
    )
    cfg = cfg.model_copy(
        update={
            "samples": cfg.samples.model_copy(update={"granularity": d.granularity}),
            "selection": cfg.selection.model_copy(update={"strategy": d.selector}),
            "loop": cfg.loop.model_copy(update={"budget": d.budget, "rounds": d.rounds}),
        }
    )
    _print_summary(_run(str(videos[0]), str(model), str(out / "run"), cfg, fresh=True))


def _pixel(text: str) -> tuple[int, int]:
    try:
        x, y = (int(v) for v in text.split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"pixel must be X,Y, e.g. 120,45, got {text!r}") from exc
    return x, y


def cmd_audit(args: argparse.Namespace) -> None:
    from hvsa.annotation.audit import audit_pixel, audit_summary, verify_run

    cfg = _config(args, {})
    run = Path(args.run)
    if not run.is_dir():
        raise HvsaError(f"run folder not found: {run}")
    if args.verify:
        summary, problems = verify_run(run, cfg.campaign.ledger)
        for problem in problems:
            print(f"ledger: {problem}")
        if problems:
            raise HvsaError(f"the ledger does not verify ({len(problems)} problems; {summary})")
        print(f"ledger verified: {summary}")
        return
    if args.summary:
        summary = audit_summary(run, cfg.campaign.ledger)
        shares = summary.pop("shares")
        for name, table in summary.items():
            print(f"clicks per {name}:")
            print(table.round(1).to_string() if len(table) else "  (no annotation yet)")
            print()
        print(f"pixels set by humans {100 * shares['pixels_by_human']:.2f}%, "
              f"by the model {100 * shares['pixels_by_model']:.2f}%")  # fmt: skip
        return
    if args.frame is None or args.pixel is None:
        raise HvsaError("audit needs --frame and --pixel, or --summary")
    answer = audit_pixel(run, cfg.campaign.ledger, args.frame, *args.pixel, args.round)
    where = f"frame {answer['frame']} pixel {answer['x']},{answer['y']}: class {answer['label']}"
    if args.json:
        print(json.dumps(answer, indent=2))
    elif answer["source"] == "model":
        print(
            f"{where}, predicted by the network of round {answer['model_round']} (no human label)"
        )
    elif answer["imported_from"] is not None:
        print(
            f"{where}, labelled by {answer['annotator']} before the rounds: existing labels "
            f"from {answer['imported_from']}, recorded {answer['finished']}, "
            f"ledger event {answer['event_id']}, cost {answer['clicks']} clicks"
        )
    else:
        print(
            f"{where}, labelled by {answer['annotator']} ({answer['tool']}) "
            f"in round {answer['round']}, finished {answer['finished']}, "
            f"ledger event {answer['event_id']}, sample {answer['sample_id']} "
            f"cost {answer['clicks']} clicks"
        )


def _labels_pair(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"--labels expects NAME=SOURCE, got {text!r}")
    return name, path


def _video_pair(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"--video expects NAME=PATH, got {text!r}")
    return name, path


def cmd_campaign(args: argparse.Namespace) -> None:
    require_extra("campaign")
    from hvsa.campaign.lifecycle import init_workspace, run_round
    from hvsa.campaign.workspace import Workspace

    root = Path(args.workspace)
    if args.action == "init":
        if not args.video:
            raise HvsaError("campaign init needs at least one --video NAME=PATH")
        overrides = parse_set_option(args.set or [])
        model = Path(args.model) if args.model else None
        classes = Path(args.classes) if args.classes else None
        labels = {key: {"source": source, "fmt": args.labels_format,
                        "clicks": args.labels_clicks, "by": args.labels_by}
                  for key, source in (args.labels or [])}  # fmt: skip
        ws = init_workspace(
            root, args.name, model, dict(args.video), args.params, overrides, classes, labels
        )
        print(f"campaign {ws.campaign.name} in {ws.root}: {', '.join(ws.campaign.videos)}")
        return
    if args.action == "round":
        for _ in range(args.rounds or 1):
            run_round(root)
            _print_campaign(Workspace.open(root))
        return
    if args.action == "run":
        from hvsa.campaign.flow import run_campaign

        run_campaign(str(root), args.rounds)
    _print_campaign(Workspace.open(root))


def cmd_stack(args: argparse.Namespace) -> None:
    require_extra("campaign")
    from hvsa.campaign import stack

    folder = Path(args.dir)
    if args.action == "up":
        ports = stack.Ports(args.prefect_port, args.mlflow_port, args.app_port)
        workspace = Path(args.workspace) if args.workspace else None
        print(f"starting the stack (logs in {folder})...", flush=True)
        urls = stack.up(folder, ports, workspace, args.mlflow_backend)
        _print_stack(urls, folder)
    elif args.action == "down":
        stopped = stack.down(folder)
        print(f"stopped {', '.join(stopped)}" if stopped else f"no stack runs from {folder}")
    else:
        alive = stack.running(folder)
        if not alive:
            print(f"no stack runs from {folder}")
            return
        _print_stack(stack.urls_of(folder), folder)
        print("running: " + ", ".join(f"{name} (pid {pid})" for name, pid in alive.items()))


def _print_stack(urls: dict[str, str], folder: Path) -> None:
    from hvsa.campaign.stack import POOL

    print(f"Prefect UI  {urls['prefect']}  (export PREFECT_API_URL={urls['prefect_api']})")
    print(f"work pool   {POOL}, one process worker (prefect.yaml deploys the campaign flow to it)")
    print(f"MLflow      {urls['mlflow']}  (--set campaign.tracking={urls['mlflow']})")
    if "app" in urls:
        print(f"app         {urls['app']}")
    print(f"stop it with: hvsa stack down --dir {folder}")


def _print_campaign(ws) -> None:
    """A line per video: its round, the labels' mIoU and the clicks after its last finished
    round, and what it does now (a round waiting for people says how many samples are in)."""
    import pandas as pd

    from hvsa.app.store import app_store
    from hvsa.app.work import open_rounds

    waiting = dict(open_rounds(ws))
    store = app_store(ws) if waiting else None
    for key, video in ws.campaign.videos.items():
        m, done = last_finished(ws, key)
        quality = "n/a" if not m or m["miou"] is None else f"{100 * m['miou']:.1f}%"
        clicks = m["clicks_total"] if m else 0
        state = video.status + (f" ({video.reason})" if video.reason else "")
        if key in waiting:
            n = len(pd.read_parquet(ws.round_dir(key, video.round) / "selected.parquet"))
            with store.transaction() as db:
                k = len(store.submitted(db, key, video.round))
            state = f"waiting for labels ({k} of {n} in)"
        print(f"{key}: round {video.round}, mIoU {quality} and clicks {clicks} after round "
              f"{done}, {state}")  # fmt: skip


def last_finished(ws, key: str) -> tuple[dict | None, int]:
    """The metrics of a video's last finished round, and its number."""
    from hvsa.campaign.lifecycle import round_metrics

    video = ws.video(key)
    m = round_metrics(ws, key)
    if m is not None or video.round == 0:
        return m, video.round
    path = ws.round_dir(key, video.prev) / "metrics.json"
    return (json.loads(path.read_text()) if path.is_file() else None), video.prev


LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def cmd_annotate(args: argparse.Namespace) -> None:
    if args.action == "serve":
        require_extra("app")
    from hvsa.app.store import app_store
    from hvsa.campaign.workspace import Workspace

    ws = Workspace.open(args.workspace)
    if args.action == "add-annotator":
        if not args.name:
            raise HvsaError("add-annotator needs the annotator's NAME")
        token = app_store(ws).add_annotator(args.name, renew=args.renew, admin=args.admin)
        done = ("has a new token" if args.renew else "added") + (" as admin" if args.admin else "")
        days = ws.cfg.app.token_days
        print(f"annotator {args.name!r} {done}; their token (shown once, keep it safe; it signs "
              f"in for {days:g} days):\n{token}")  # fmt: skip
        return
    if args.action == "revoke":
        if not args.name:
            raise HvsaError("revoke needs the annotator's NAME")
        app_store(ws).revoke(args.name)
        print(f"the token of {args.name!r} no longer signs in (add-annotator NAME --renew)")
        return
    if args.action == "annotators":
        print("\n".join(app_store(ws).annotators()) or "no annotators yet (add-annotator NAME)")
        return
    if args.action in ("export", "import"):
        require_extra("campaign")  # an import resumes the paused campaign flow
        from hvsa.app.exchange import export_round, import_labels
        from hvsa.app.work import current_round

        if not args.video or not args.path:
            raise HvsaError(f"annotate {args.action} needs --video KEY and --path")
        if args.action == "export":
            out = export_round(current_round(ws, args.video), Path(args.path))
            print(
                f"round samples of {args.video} exported to {out} (cvat/, cvat.zip, label_studio/)"
            )
            return
        if not args.tool or not args.name:
            raise HvsaError("annotate import needs --tool cvat|label-studio and the annotator NAME")
        done = import_labels(ws.root, args.video, Path(args.path), args.tool, args.name)
        print(
            f"{done['samples']} samples of {args.video} round {done['round']} imported "
            f"({done['clicks']} clicks by the click model, {done['dropped_pixels']} pixels outside "
            f"the samples dropped) as {done['submission']}; flow run resumed: "
            f"{done['resumed_flow_run'] or 'none was paused'}"
        )
        return
    import uvicorn

    from hvsa.app.server import create_app

    app = serve_settings(ws, args.set or [])
    host = args.host or app.host
    port = args.port or app.port
    if host not in LOCAL_HOSTS:
        if not args.allow_remote:
            raise HvsaError(
                f"--host {host} would let other machines reach the app over plain HTTP, tokens "
                "included: put it behind an HTTPS proxy and add --allow-remote"
            )
        print(f"warning: the app listens on {host} over plain HTTP; tokens cross the network "
              "in clear unless an HTTPS proxy stands in front", file=sys.stderr)  # fmt: skip
    prefect_api = reachable_prefect_api()
    from hvsa.app.resume import resume_handed_in

    for video, round_no, run in resume_handed_in(ws.root):
        print(f"{video} round {round_no} was handed in and its flow run still waits: resuming "
              f"{run}")  # fmt: skip
    print(f"annotation app for campaign {ws.campaign.name}: http://{host}:{port}/ (hand-ins "
          f"resume the campaign's flow through {prefect_api})")  # fmt: skip
    uvicorn.run(create_app(ws.root, app_settings=app), host=host, port=port, log_level="warning")


def serve_settings(ws, sets: list[str]):
    """The ``app`` section the app serves with: the workspace's, with ``--set app.KEY=VALUE``.
    Other sections are the campaign's (its flow and stages read them from the workspace's
    params.yaml), so the app refuses to differ from them."""
    overrides = parse_set_option(sets)
    other = sorted(k for k in overrides if not k.startswith("app."))
    if other:
        raise HvsaError(
            f"annotate serve takes --set app.KEY=VALUE only; {other[0]} is the campaign's "
            f"setting: change it in {ws.root / 'params.yaml'}"
        )
    return load_config(ws.root / "params.yaml", overrides).app


def reachable_prefect_api() -> str:
    """The Prefect API the campaign's flow runs on (``PREFECT_API_URL``), checked to answer:
    without it a hand-in could not resume the waiting flow, and Prefect would start a
    server of its own that knows no campaign."""
    import urllib.error
    import urllib.request

    url = os.environ.get("PREFECT_API_URL", "").rstrip("/")
    if not url:
        raise HvsaError(
            "PREFECT_API_URL is not set: start the campaign's Prefect server (`prefect server "
            "start`) and export PREFECT_API_URL=http://127.0.0.1:4200/api, as for the flow"
        )
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=5) as answer:
            if answer.status != 200:
                raise OSError(f"status {answer.status}")
    except (OSError, urllib.error.URLError, ValueError) as exc:
        why = f"the Prefect API at {url} does not answer ({exc}): start it first"
        raise HvsaError(why) from None
    return url


def cmd_rollback(args: argparse.Namespace) -> None:
    require_extra("campaign")
    from hvsa.campaign.rollback import rollback
    from hvsa.campaign.workspace import Workspace

    folder = Path(args.video).resolve()
    if folder.parent.name != "data":
        raise HvsaError(f"{args.video} is not a workspace video folder (WORKSPACE/data/VIDEO)")
    ws = Workspace.open(folder.parent.parent)
    sha = rollback(ws, folder.name, args.to_round)
    if (ws.root / "data" / "app.sqlite").is_file():  # the annotation app's holds and hand-ins
        from hvsa.app.store import app_store

        app_store(ws).forget_after(folder.name, args.to_round)
    print(f"{folder.name} is back at round {args.to_round} (commit {sha[:10]})")


def cmd_export(args: argparse.Namespace) -> None:
    from hvsa.annotation.export import export_dataset

    cfg = _config(args, {})
    _check_out(Path(args.out))
    cards = export_dataset(args.source, args.out, args.format, cfg.campaign.ledger)
    for card in cards:
        estimate = card["miou_estimate"]
        shown = "n/a" if estimate is None else f"{100 * estimate:.1f}%"
        print(f"{card['video']}: {card['frames']} frames of round {card['round']}, "
              f"{100 * card['labelled_by_people']:.1f}% labelled by people, "
              f"estimated mIoU {shown}")  # fmt: skip
    print(f"dataset written to {args.out} ({args.format}; card: README.md, card.json)")


def cmd_benchmark(args: argparse.Namespace) -> None:
    from hvsa.benchmark.runner import benchmark

    cfg = _config(args, {"benchmark.rounds": args.rounds})
    names = [n.strip() for n in (args.strategies or "").split(",") if n.strip()] or None
    out = Path(args.out)
    benchmark(args.video, out, cfg, args.pretrain or [], args.model, names, args.quick, args.grid)
    print((out / "summary.md").read_text(), end="")
    charts = "miou_vs_clicks.png" + (", grid.png" if (out / "grid.png").exists() else "")
    print(f"outputs    {out} (rounds.csv, summary.csv/.md, {charts}, overlays.png)")


def _labels_arguments(p: argparse.ArgumentParser, per_video: bool = False) -> None:
    what = ("labels you already have for some frames, as human labels before round 1: a "
            "folder of label PNGs named as the frames, a CVAT segmentation-mask export (folder "
            "or zip), a Label Studio JSON export, or an `hvsa export` folder")  # fmt: skip
    if per_video:
        p.add_argument("--labels", metavar="NAME=SOURCE", type=_labels_pair, action="append",
                       help=f"init: for the campaign's video NAME, {what}")  # fmt: skip
    else:
        p.add_argument("--labels", metavar="SOURCE", help=what)
    p.add_argument(
        "--labels-format", default="auto", choices=["auto", *LABEL_FORMATS],
        help="the layout of --labels (default: recognised from its files)",
    )  # fmt: skip
    p.add_argument(
        "--labels-clicks", default="none", metavar="none|model|N",
        help="what --labels cost: none (unknown, 0; default), model (hvsa's click model), or "
        "the total clicks they took",
    )  # fmt: skip
    p.add_argument("--labels-by", default="import", metavar="NAME",
                   help="who made --labels, for the ledger (default: import)")  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument(
        "--params", help="params.yaml to read (default: ./params.yaml, else the repository's)"
    )
    common.add_argument(
        "--set",
        action="append",
        metavar="SECTION.KEY=VALUE",
        help="override any knob of params.yaml (repeatable)",
    )
    parser = _Parser(
        prog="hvsa", description="Human-in-the-loop video semantic-segmentation auto-annotation"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synth", parents=[common], help="write a generated video with ground truth")
    p.add_argument("out")
    p.add_argument("--frames", type=_count)
    p.add_argument("--size", type=_size, help="HxW, e.g. 96x128")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser(
        "pretrain", parents=[common], help="train the starting network on labelled videos"
    )
    p.add_argument("--video", nargs="+", required=True, help="labelled video folders")
    p.add_argument("--out", required=True, help="checkpoint to write")
    p.add_argument("--steps", type=_count)
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser("run", parents=[common], help="annotate a video, round by round")
    p.add_argument("video", help="video folder (frames/, labels/) or file (.mp4, .avi)")
    p.add_argument(
        "--model",
        help="starting checkpoint (`hvsa pretrain` or a round); without it, a network that "
        "knows nothing, for the video's classes.json or --classes",
    )
    p.add_argument("--classes", help="class list for a network started from nothing")
    p.add_argument("--out", required=True)
    p.add_argument(
        "--granularity",
        choices=["frame", "rect", "superpixel", "auto"],
        help="auto: each round the kind of auto.granularities worth most per click",
    )
    p.add_argument("--budget", type=_count, help="samples per round")
    p.add_argument("--rounds", type=_count)
    p.add_argument("--target-miou", type=_fraction)
    p.add_argument("--max-clicks", type=_count)
    p.add_argument("--annotator", choices=["oracle", "corrector", "human"])
    p.add_argument("--selector", choices=SELECTORS)
    p.add_argument("--uncertainty", choices=["entropy", "margin", "least_confidence"])
    p.add_argument("--campaign", default="run", help="campaign name recorded in the ledger")
    p.add_argument(
        "--fresh", action="store_true",
        help="start over in an --out that holds a run (default: resume it, same settings only)",
    )  # fmt: skip
    _labels_arguments(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "export", parents=[common],
        help="write the finished labels of a run or a campaign as a dataset",
    )  # fmt: skip
    p.add_argument("source", help="the --out folder of `hvsa run`, a workspace, or its "
                   "data/<video>")  # fmt: skip
    p.add_argument("--out", required=True, help="a new folder for the dataset")
    p.add_argument("--format", default="index", choices=LABEL_FORMATS,
                   help="index: class-index PNGs (default); color; cityscapes (gtFine "
                   "layout); cvat (Segmentation mask 1.1); label-studio (brush JSON)")  # fmt: skip
    p.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "audit", parents=[common], help="who labelled a pixel, and what the annotation cost"
    )
    p.add_argument("run", help="the --out folder of `hvsa run`")
    p.add_argument("--frame", help="frame name (e.g. 000012) or index")
    p.add_argument("--pixel", type=_pixel, help="X,Y in full-resolution pixels")
    p.add_argument("--round", type=int, help="as of this round (default: the last)")
    p.add_argument("--summary", action="store_true", help="clicks per annotator, round, class")
    p.add_argument("--json", action="store_true", help="print the answer as JSON")
    p.add_argument(
        "--verify", action="store_true",
        help="check the ledger's hash chain and triggers against the rounds' folders",
    )  # fmt: skip
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser(
        "campaign", parents=[common], help="a versioned campaign workspace (git + DVC)"
    )
    p.add_argument(
        "action",
        choices=["init", "round", "run", "status"],
        help="round: one round of DVC stages; run: rounds as a Prefect flow (pauses for people)",
    )
    p.add_argument("workspace", help="workspace folder")
    p.add_argument("--name", default="campaign", help="campaign name (init)")
    p.add_argument(
        "--model", help="starting checkpoint (init; default: a network that knows nothing)"
    )
    p.add_argument("--classes", help="class list for a network started from nothing (init)")
    p.add_argument("--video", type=_video_pair, action="append", help="NAME=PATH (init)")
    _labels_arguments(p, per_video=True)
    p.add_argument("--rounds", type=_count, help="rounds to run (round: 1; run: until done)")
    p.set_defaults(func=cmd_campaign)

    p = sub.add_parser(
        "stack", parents=[common],
        help="a Prefect server, a work pool's worker, MLflow and the app, on this machine",
    )  # fmt: skip
    p.add_argument("action", choices=["up", "down", "status"])
    p.add_argument("--dir", default=".hvsa-stack", help="the stack's logs and pids")
    p.add_argument("--workspace", help="up: also serve this campaign's annotation app")
    p.add_argument("--prefect-port", type=int, default=4200)
    p.add_argument("--mlflow-port", type=int, default=5000)
    p.add_argument("--app-port", type=int, default=8765)
    p.add_argument(
        "--mlflow-backend",
        help="up: MLflow's database, e.g. postgresql+psycopg://user@host/db (default: SQLite)",
    )  # fmt: skip
    p.set_defaults(func=cmd_stack)

    p = sub.add_parser(
        "annotate", parents=[common], help="the annotation web app of a campaign workspace"
    )
    p.add_argument(
        "action", choices=["serve", "add-annotator", "annotators", "revoke", "export", "import"]
    )
    p.add_argument("name", nargs="?", help="annotator name (add-annotator, revoke, import)")
    p.add_argument("--renew", action="store_true", help="add-annotator: a known one's new token")
    p.add_argument(
        "--admin", action="store_true",
        help="add-annotator: the page also shows who holds which sample, with a release button",
    )  # fmt: skip
    p.add_argument("--video", help="campaign video KEY (export, import)")
    p.add_argument("--path", help="folder to export to; export folder, zip or JSON to import")
    p.add_argument("--tool", choices=["cvat", "label-studio"], help="format of an import")
    p.add_argument("--workspace", default=".", help="campaign workspace (default: here)")
    p.add_argument("--host", help="bind address (default: app.host of params.yaml, 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default: app.port of params.yaml)")
    p.add_argument(
        "--allow-remote", action="store_true",
        help="serve on a --host other than localhost (plain HTTP: put an HTTPS proxy in front)",
    )  # fmt: skip
    p.set_defaults(func=cmd_annotate)

    p = sub.add_parser(
        "rollback", parents=[common], help="return a campaign video to an earlier (or later) round"
    )
    p.add_argument("video", help="the video's folder in a workspace: WORKSPACE/data/VIDEO")
    p.add_argument("--to-round", type=int, required=True)
    p.set_defaults(func=cmd_rollback)

    p = sub.add_parser(
        "benchmark", parents=[common], help="clicks each strategy needs for 80/90/95 %% mIoU"
    )
    p.add_argument("--video", required=True, help="labelled target video")
    p.add_argument("--pretrain", nargs="+", help="labelled videos to pretrain on (not the target)")
    p.add_argument("--model", help="use this starting checkpoint instead of pretraining")
    p.add_argument("--out", required=True)
    p.add_argument("--strategies", help="comma-separated: manual,propagate-4,hvsa-rect32-paper")
    p.add_argument(
        "--rounds", type=_count, help="most rounds per hvsa strategy (default: until the target)"
    )
    p.add_argument("--quick", action="store_true", help="a few frames at half size, two strategies")
    p.add_argument("--grid", action="store_true", help="every granularity × selector (hours)")
    p.set_defaults(func=cmd_benchmark)

    p = sub.add_parser(
        "demo", parents=[common], help="generate, pretrain and annotate a video end to end"
    )
    p.add_argument("--out", help="output folder (default: demo.out of params.yaml)")
    p.set_defaults(func=cmd_demo)
    return parser


def _printable(text: str) -> str:
    """One line, any file name in it shown with its non-UTF-8 bytes escaped (never a
    UnicodeEncodeError while reporting an error)."""
    raw = text.replace("\n", " ").encode("utf-8", "surrogateescape")
    return raw.decode("utf-8", "backslashreplace")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except HvsaError as exc:
        print(f"hvsa: error: {_printable(str(exc))}", file=sys.stderr)
        return 2
    except OSError as exc:  # the disk, not hvsa: full, read-only, a file where a folder goes
        where = f": {exc.filename}" if exc.filename else ""
        print(f"hvsa: error: {_printable(exc.strerror or str(exc))}{_printable(where)}",
              file=sys.stderr)  # fmt: skip
        return 2
    except MemoryError:
        print("hvsa: error: out of memory: use a shorter video or a smaller model.scale",
              file=sys.stderr)  # fmt: skip
        return 2
    except KeyboardInterrupt:
        print("hvsa: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
