"""Training-loop extensions: hooks, optimizers and the strict runner."""
from .hooks import *  # noqa: F401,F403
from .optimizers import *  # noqa: F401,F403
from .runner import SafeRunner, prepare_image_loading  # noqa: F401
