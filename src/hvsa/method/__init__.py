"""The method, as functions over arrays: everything a round computes, nothing it stores.

Optical flow and label propagation, the segmentation network (pretraining, prediction,
fine-tuning with the temporal loss), candidate samples and their uncertainty, the selectors,
``auto``'s pricing, the label generator (fusion along the flow, calibrated per video), class
layers, the click model and the metrics. Inputs and outputs are arrays and tensors; files are
read and written by the callers (``rounds``, ``campaign``, ``benchmark``), except the flow and
sample caches, which are part of computing them.

May import: hvsa.errors, hvsa.config, hvsa.data
"""
