"""Training-loop extensions of the method: the reconstruction-figure hook
and the layer-decay optimizer constructor."""
from .hooks import *  # noqa: F401,F403
from .optimizers import *  # noqa: F401,F403
