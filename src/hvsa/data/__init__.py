"""Data: videos, label files and arrays on disk, and generated videos with exact ground truth.

Owns reading a video (frames folder or file, labels, class list; a long one read a few
frames at a time), writing label PNGs and overlays, atomic ``.npz`` files and chunked arrays
on disk (a long video's per-frame tensors among them: ``spill``), moving between full
resolution and the network's working size, and measuring peak memory. Nothing here knows
about the method or annotation.

May import: hvsa.errors, hvsa.config
"""
