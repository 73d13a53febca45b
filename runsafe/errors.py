"""The error the tools report without a traceback."""


class RunError(ValueError):
    """A problem with a run's inputs (checkpoint, data, work dir) that the
    message explains in full, with the fix; ``tools/train.py`` and
    ``tools/test.py`` print it as ``error: ...`` and exit with status 1."""
