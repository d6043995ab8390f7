"""Rounds: one video adapted round by round — the state a round carries, its steps, the loop.

``steps`` holds each step of a round (select, annotate, record, fine-tune, compose labels) as
a function over in-memory state, shared by every driver: the in-process ``loop`` behind
``hvsa run`` and ``hvsa benchmark``, and the DVC stages of a campaign. ``state`` is what a round
hands to the next (human labels, provenance, class layers, clicks); ``result`` and ``chart``
are light (no torch), so that campaign tracking can read and plot rounds cheaply.

May import: hvsa.errors, hvsa.config, hvsa.data, hvsa.method, hvsa.annotation
"""
