"""Scheduled campaigns: on a cron schedule, pick up new videos from an inbox folder and run.

Each run adds the videos that appeared in the inbox to the campaign, then runs the campaign
flow (new videos start, unfinished ones continue; a round that waits for human labels keeps
its flow run paused). Serve it with a Prefect server running (schedules need its scheduler):

    prefect server start &
    export PREFECT_API_URL=http://127.0.0.1:4200/api
    python flows/schedule.py WORKSPACE INBOX --cron "0 * * * *"
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from prefect import flow, get_run_logger

sys.path.insert(0, str(Path(__file__).resolve().parent))

from campaign import campaign  # noqa: E402

from hvsa.campaign import add_videos  # noqa: E402


@flow(name="hvsa-campaign-inbox")
def scan_and_run(workspace: str, inbox: str, rounds: int | None = None) -> list[str]:
    """Add new inbox videos to the campaign, then run its rounds; returns the added keys."""
    added = add_videos(Path(workspace), Path(inbox))
    get_run_logger().info("new videos: %s", ", ".join(added) or "none")
    campaign(workspace, rounds)
    return added


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workspace")
    parser.add_argument("inbox", help="folder that new videos (folders or files) are dropped into")
    parser.add_argument("--cron", default="0 * * * *", help="when to look (default: hourly)")
    parser.add_argument("--rounds", type=int, help="rounds per scheduled run (default: until done)")
    args = parser.parse_args()
    scan_and_run.serve(
        name="campaign-inbox",
        cron=args.cron,
        parameters={"workspace": args.workspace, "inbox": args.inbox, "rounds": args.rounds},
    )


if __name__ == "__main__":
    main()
