"""A campaign workspace: a git + DVC repository whose ``data/`` holds every round of every video.

``params.yaml`` holds the knobs; ``campaign.yaml`` (written by hvsa) says which videos the
campaign covers and which round each is in. Each video has its stages in ``data/<video>/dvc.yaml``
(the packaged template filled in from its ``campaign.yaml`` entry whenever that changes) and
their record in ``data/<video>/dvc.lock``, so the paths of round N (``data/<video>/r<N>/``)
change with the round, each round's outputs stay separately versioned in the DVC cache, and
recording one video's stage reads and rewrites only that video's files.
"""

from __future__ import annotations

import contextlib
import fcntl
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hvsa.config import Config, load_config
from hvsa.data.video import Video, load_video
from hvsa.errors import HvsaError

CAMPAIGN_FILE = "campaign.yaml"
STAGES_FILE = "dvc.yaml"  # data/<video>/dvc.yaml: a video's stages
LOCK_FILE = "dvc.lock"  # data/<video>/dvc.lock: DVC's record of them
LOCK_READ_TRIES = 5  # reads of a dvc.lock caught half rewritten (lock_entries)
# the per-video stages of dvc.yaml, in the order a round runs them
STAGES = ("flow", "samples", "start", "select", "annotate", "finetune", "labels")
# the stages that run once a round, their outputs in the round's folder
ROUND_STAGES = STAGES[STAGES.index("select") :]
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class CampaignVideo(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str
    round: int = Field(ge=1)
    prev: int = Field(ge=0)
    status: Literal["active", "done"]
    reason: str | None


class Campaign(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    start_model: str
    videos: dict[str, CampaignVideo]


@contextlib.contextmanager
def workspace_lock(root: Path) -> Iterator[None]:
    """Hold the workspace's lock: what every video's flow run shares is changed under it.

    Videos of a campaign run their rounds at the same time (a flow run each, in threads of one
    process or in processes of their own); their heavy steps need no lock, but DVC's record of a
    stage (``dvc.lock`` and DVC's own repository lock), ``campaign.yaml``, a git commit and
    MLflow's SQLite file are one per workspace. ``flock`` on ``.hvsa/lock``: each holder opens
    its own descriptor, so threads of one process exclude each other as processes do.
    """
    folder = Path(root) / ".hvsa" / "lock"
    if not folder.is_dir():
        folder.mkdir(parents=True, exist_ok=True)
        (folder / ".gitignore").write_text("*\n")  # never versioned
    with (folder / "workspace").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_campaign(root: Path) -> Campaign:
    path = root / CAMPAIGN_FILE
    if not path.is_file():
        raise HvsaError(f"{root} is not a campaign workspace (no {CAMPAIGN_FILE})")
    try:
        return Campaign.model_validate(yaml.safe_load(path.read_text()))
    except (yaml.YAMLError, ValidationError) as exc:
        raise HvsaError(f"{path} is malformed: {str(exc).splitlines()[0]}") from exc


def write_campaign(root: Path, campaign: Campaign) -> None:
    """Write campaign.yaml, and each video's dvc.yaml from it (where that changes)."""
    text = yaml.safe_dump(campaign.model_dump(), sort_keys=False)
    tmp = root / (CAMPAIGN_FILE + ".tmp")
    tmp.write_text("# written by hvsa: the campaign's videos and the round each is in\n" + text)
    tmp.replace(root / CAMPAIGN_FILE)
    for key in campaign.videos:
        path = root / "data" / key / STAGES_FILE
        text = video_stages(campaign, key)
        if not path.is_file() or path.read_text() != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.with_suffix(".tmp").write_text(text)
            path.with_suffix(".tmp").replace(path)


def stages_template() -> str:
    """The per-video stages of a campaign (``dvc.yaml`` shipped with hvsa), as text."""
    return (resources.files("hvsa.campaign") / STAGES_FILE).read_text()


def video_stages(campaign: Campaign, key: str) -> str:
    """The template filled in for video ``key``: its name, path and rounds, the start model."""
    video = campaign.videos[key]
    values = {"key": key, "start_model": campaign.start_model, "item.path": video.path,
              "item.round": str(video.round), "item.prev": str(video.prev)}  # fmt: skip
    return re.sub(r"\$\{([a-z_.]+)\}", lambda m: values[m.group(1)], stages_template())


def stage_target(target: str) -> str:
    """DVC's name of hvsa's ``stage@video``: ``data/<video>/dvc.yaml:<stage>``."""
    stage, _, key = target.partition("@")
    return f"data/{key}/{STAGES_FILE}:{stage}" if key else target


@dataclass
class Workspace:
    root: Path
    cfg: Config
    campaign: Campaign

    @classmethod
    def open(cls, root: str | Path) -> Workspace:
        root = Path(root).resolve()
        campaign = read_campaign(root)  # first: "not a workspace" is the clearer message
        return cls(root, load_config(root / "params.yaml"), campaign)

    def video(self, key: str) -> CampaignVideo:
        if key not in self.campaign.videos:
            known = ", ".join(self.campaign.videos) or "none"
            raise HvsaError(f"video {key!r} is not in campaign {self.campaign.name} ({known})")
        return self.campaign.videos[key]

    def resolve(self, path: str) -> Path:
        p = Path(path)
        return p if p.is_absolute() else self.root / p

    def load_video(self, key: str) -> Video:
        return load_video(
            self.resolve(self.video(key).path), self.cfg.data.classes_file, self.cfg.data.void_id
        )

    def video_dir(self, key: str) -> Path:
        return self.root / "data" / key

    def sample_set(self, key: str, name: str) -> Path:
        """A video's sample set ``name`` (frame, rectN, superpixel), built by stage samples."""
        return self.video_dir(key) / "samples" / f"{name}.npz"

    def round_dir(self, key: str, round_no: int) -> Path:
        return self.video_dir(key) / f"r{round_no}"

    def current(self, key: str) -> tuple[Path, Path]:
        """(previous round's folder, this round's folder) of a video."""
        v = self.video(key)
        return self.round_dir(key, v.prev), self.round_dir(key, v.round)

    @property
    def ledger_path(self) -> Path:
        return self.root / "data" / self.cfg.campaign.ledger


_LOCKS: dict[Path, tuple[tuple[int, int, int], dict]] = {}


def lock_entries(path: Path | str, text: str | None = None) -> dict:
    """The stages a dvc.lock records (of ``text``, else of the file at ``path``), by name; not
    to be changed by the caller.

    A file is parsed again only when it changed (its inode, size or modification time): the
    annotation app asks on every request whether each video's selection is recorded. DVC
    rewrites the file in place, so a reader that does not hold the workspace's lock may catch
    it half written: such a read is retried briefly, and a file that still does not parse is
    reported as the error it is."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    if text is not None:
        return (yaml.load(text, Loader=loader) or {}).get("stages") or {}
    path = Path(path)
    for attempt in range(LOCK_READ_TRIES):
        try:
            st = path.stat()
        except FileNotFoundError:
            return {}
        key = (st.st_ino, st.st_size, st.st_mtime_ns)
        cached = _LOCKS.get(path)
        if cached is not None and cached[0] == key:
            return cached[1]
        try:
            entries = (yaml.load(path.read_text(), Loader=loader) or {}).get("stages") or {}
        except (yaml.YAMLError, FileNotFoundError):
            if attempt == LOCK_READ_TRIES - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
            continue
        if path.stat().st_mtime_ns == st.st_mtime_ns:  # not rewritten while read
            _LOCKS[path] = (key, entries)
        return entries
    return {}


def recorded_in_round(root: Path, stage: str, key: str, round_no: int) -> bool:
    """Whether the video's ``dvc.lock`` records ``stage`` with its outputs in round ``round_no``'s
    folder: a round stage that is not has not finished this round (killed after writing its
    outputs but before DVC recorded them, or not run yet), so it must run, with no need to ask
    DVC — whose status check parses dvc.yaml, dvc.lock and params.yaml again for every stage.
    Whether a recorded stage is still up to date (a changed setting or file) is DVC's to say.
    """
    entry = lock_entries(root / "data" / key / LOCK_FILE).get(stage)
    folder = f"data/{key}/r{round_no}/"
    return bool(entry) and any(
        str(out.get("path", "")).startswith(folder) for out in entry.get("outs") or []
    )
