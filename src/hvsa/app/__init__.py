"""The annotation web app: FastAPI over a campaign workspace, plain HTML + JS in ``static/``.

Owns annotators and their tokens, who holds which sample (``store``), what a round shows and
takes in (``work``), CVAT / Label Studio exchange (``exchange``), and waking the paused
campaign flow (``resume``); ``server`` is the HTTP surface over them.

May import: hvsa.errors, hvsa.config, hvsa.data, hvsa.method, hvsa.annotation, hvsa.rounds,
hvsa.campaign
"""
