"""``--max-batch``: the largest batch whose training step fits.

:func:`find_max_batch` is the search (doubling from a start, then
bisecting between the largest batch that fitted and the smallest that did
not) over any ``fits(batch) -> bool``; :func:`step_fits` makes that
predicate from a real training step:

- CUDA: a batch fits when its step runs without
  ``torch.cuda.OutOfMemoryError``; after one that does not, the gradients
  and the cache are freed (``torch.cuda.empty_cache``) and the optimizer
  wrapper is built afresh (an interrupted AMP step leaves its loss scaler
  mid-step).
- CPU: running out of memory would take the machine down, so a batch fits
  when its step runs and its peak RSS stays under ``rss_limit_bytes``, and
  the search never goes beyond ``limit``. The peak is per trial: Linux's
  ``VmHWM`` is reset before each (``/proc/self/clear_refs``); where that is
  refused the process's lifetime peak is used, which can only make the
  answer smaller.
"""
import gc
import time
from typing import Callable, List, Optional, Tuple

import torch


def find_max_batch(fits: Callable[[int], bool], start: int, limit: int,
                   step: int = 1,
                   deadline: Optional[float] = None) -> Tuple[int, dict]:
    """The largest multiple of ``step`` in ``[step, limit]`` that fits.

    Doubling from ``start`` until a batch does not fit or ``limit`` is
    reached, then bisecting between the largest batch that fitted and the
    smallest that did not, down to ``step``. ``fits`` must be monotone
    (what fits, fits when smaller).

    Args:
        fits (Callable[[int], bool]): Whether a batch of that size fits.
        start (int): First batch tried (rounded up to a multiple of
            ``step``).
        limit (int): Largest batch tried (rounded down to a multiple of
            ``step``).
        step (int): Granularity of the answer. Defaults to 1.
        deadline (float, optional): ``time.monotonic()`` after which no
            new trial starts; the answer is then the best so far.

    Returns:
        tuple[int, dict]: The largest batch found to fit (0: not even
        ``step``), and ``trials`` (``[batch, fits]`` in order), ``capped``
        (``limit`` fitted: the true maximum may be larger), ``exact`` (the
        bisection finished) and ``first_failure``.
    """
    if step < 1 or start < 1 or limit < 1:
        raise ValueError('--max-batch: start, limit and step must be >= 1 '
                         f'(got start={start}, limit={limit}, step={step}).')
    limit = limit // step * step
    if limit < step:
        raise ValueError(f'--max-batch-limit {limit} is smaller than '
                         f'--max-batch-step {step}.')
    n = min(-(-start // step) * step, limit)
    trials: List[list] = []
    lo, hi = 0, None  # largest that fitted, smallest that did not

    def late() -> bool:
        return deadline is not None and time.monotonic() > deadline

    def trial(b: int) -> bool:
        ok = bool(fits(b))
        trials.append([b, ok])
        return ok

    while not late():
        if not trial(n):
            hi = n
            break
        lo = n
        if n >= limit:
            break
        n = min(2 * n, limit)
    if hi is None and lo == 0:  # deadline before the first trial
        hi = n
    while hi is not None and hi - lo > step and not late():
        mid = lo + (hi - lo) // (2 * step) * step
        if trial(mid):
            lo = mid
        else:
            hi = mid
    fails = [b for b, ok in trials if not ok]
    return lo, dict(trials=trials, capped=hi is None and lo == limit,
                    exact=hi is None or hi - lo <= step,
                    first_failure=fails[0] if fails else None)


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (Linux ``VmHWM``); False if refused."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


def peak_rss_bytes() -> Optional[int]:
    """``VmHWM`` of this process (peak RSS since start or the last reset)."""
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def free_cuda() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def step_fits(run_batch: Callable[[int], None], device: torch.device,
              rss_limit_bytes: Optional[int], log: List[dict],
              on_oom: Callable[[], None]) -> Callable[[int], bool]:
    """``fits(batch)`` from ``run_batch(batch)`` (one training step).

    Appends ``{batch, fits, peak_mem_bytes, reason}`` to ``log`` per trial.
    """

    def fits(batch: int) -> bool:
        entry = dict(batch=batch, fits=False, peak_mem_bytes=None,
                     reason=None)
        log.append(entry)
        if device.type == 'cuda':
            free_cuda()
            torch.cuda.reset_peak_memory_stats(device)
            oom = False
            try:
                run_batch(batch)
            except torch.cuda.OutOfMemoryError as e:
                oom = True
                entry['reason'] = 'CUDA out of memory: ' + str(e).split(
                    '.')[0]
            entry['peak_mem_bytes'] = int(
                torch.cuda.max_memory_allocated(device))
            if oom:  # the exception's frames are gone: memory can go back
                on_oom()
                free_cuda()
                return False
        else:
            exact = reset_peak_rss()
            try:
                run_batch(batch)
            except MemoryError:
                gc.collect()
                entry['reason'] = 'MemoryError'
                return False
            peak = peak_rss_bytes()
            entry['peak_mem_bytes'] = peak
            entry['peak_exact'] = exact
            if rss_limit_bytes and peak and peak > rss_limit_bytes:
                entry['reason'] = (f'peak RSS {peak / 2**30:.2f} GiB > '
                                   f'{rss_limit_bytes / 2**30:.2f} GiB')
                return False
        entry['fits'] = True
        return True

    return fits
