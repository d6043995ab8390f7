"""Scheduled campaigns: on a cron schedule, pick up new videos from an inbox folder and run.

Each run adds the videos that appeared in the inbox to the campaign, then runs the campaign
flow (new videos start, unfinished ones continue; a round that waits for human labels keeps
its flow run paused). Serve it with a Prefect server running (schedules need its scheduler):

    prefect server start &
    export PREFECT_API_URL=http://127.0.0.1:4200/api
    python flows/schedule.py WORKSPACE INBOX --cron "0 * * * *"

The flow lives in ``hvsa.campaign.flow``.
"""

from hvsa.campaign.flow import schedule_main

if __name__ == "__main__":
    schedule_main()
