"""The click-efficiency benchmark: clicks each strategy needs for 80 / 90 / 95 % mIoU.

Owns the strategy names (``manual``, ``propagate-K``, ``hvsa-<granularity>-<selector>…``,
``auto``), running them on one labelled video with the oracle (``runner``), the summary tables
(``report``) and the charts. The hvsa strategies run the same round loop as ``hvsa run``.

May import: hvsa.errors, hvsa.config, hvsa.data, hvsa.method, hvsa.annotation, hvsa.rounds
"""
