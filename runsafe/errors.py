"""The error the tools report in one line, without a traceback."""


class RunError(ValueError):
    """A problem with a run's inputs (checkpoint, data, work dir) that the
    message explains in full, with the fix; ``tools/train.py`` and
    ``tools/test.py`` print it as ``error: ...`` and exit with status 1."""


def error_line(err: Exception) -> str:
    """The message of a :class:`RunError`, also when a dataloader worker
    raised it (torch then wraps it in a traceback)."""
    text = str(err)
    if 'Original Traceback' in text:
        last = [line for line in text.splitlines() if line.strip()][-1]
        text = last.split('RunError: ', 1)[-1]
    return text
