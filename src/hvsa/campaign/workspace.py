"""A campaign workspace: a git + DVC repository whose ``data/`` holds every round of every video.

``params.yaml`` holds the knobs; ``campaign.yaml`` (written by hvsa) says which videos the
campaign covers and which round each is in. ``dvc.yaml`` templates its per-video stages from
``campaign.yaml``, so the paths of round N (``data/<video>/r<N>/``) change with the round and
each round's outputs stay separately versioned in the DVC cache.
"""

from __future__ import annotations

import contextlib
import fcntl
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hvsa.config import Config, load_config
from hvsa.data.video import Video, load_video
from hvsa.errors import HvsaError

CAMPAIGN_FILE = "campaign.yaml"
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
    text = yaml.safe_dump(campaign.model_dump(), sort_keys=False)
    tmp = root / (CAMPAIGN_FILE + ".tmp")
    tmp.write_text("# written by hvsa: the campaign's videos and the round each is in\n" + text)
    tmp.replace(root / CAMPAIGN_FILE)


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


def recorded_in_round(root: Path, stage: str, key: str, round_no: int) -> bool:
    """Whether ``dvc.lock`` records ``stage@key`` with its outputs in round ``round_no``'s
    folder: a round stage that is not has not finished this round (killed after writing its
    outputs but before DVC recorded them, or not run yet), so it must run, with no need to ask
    DVC — whose status check parses dvc.yaml, dvc.lock and params.yaml again for every stage.
    Whether a recorded stage is still up to date (a changed setting or file) is DVC's to say.
    """
    lock = root / "dvc.lock"
    if not lock.is_file():
        return False
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    entry = ((yaml.load(lock.read_text(), Loader=loader) or {}).get("stages") or {}).get(
        f"{stage}@{key}"
    )
    folder = f"data/{key}/r{round_no}/"
    return bool(entry) and any(
        str(out.get("path", "")).startswith(folder) for out in entry.get("outs") or []
    )
