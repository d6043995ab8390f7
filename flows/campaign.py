"""Prefect flow of an annotation campaign: rounds of DVC stages per video, until done.

    python flows/campaign.py WORKSPACE [--rounds N]

The same as ``hvsa campaign run WORKSPACE``; the flow lives in ``hvsa.campaign.flow``.
"""

from hvsa.campaign.flow import main

if __name__ == "__main__":
    main()
