"""hvsa: human-in-the-loop video semantic-segmentation auto-annotation."""

__version__ = "0.1.0"
