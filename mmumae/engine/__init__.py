"""Training-loop extensions: hooks, optimizers, the runner and the atomic
checkpoint file backend."""
from .atomic_backend import AtomicLocalBackend  # noqa: F401
from .hooks import *  # noqa: F401,F403
from .optimizers import *  # noqa: F401,F403
from .runner import SafeRunner, newest_loadable_checkpoint  # noqa: F401
