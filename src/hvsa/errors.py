"""User-facing errors.

Anything a user can cause (bad paths, malformed labels, mismatched checkpoints) is raised as
:class:`HvsaError`; the CLI prints its message on one line and exits non-zero, so a labelling
campaign never dies with a traceback that hides which file was wrong.
"""


class HvsaError(Exception):
    """An error caused by the user's input, reported as one line without a traceback."""
